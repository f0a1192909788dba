"""The read side the reports share: what lies under a dataset root, read without change.

Lists the data files of the ``date=*/symbol=*`` partitions (and the ``.parquet`` files outside
them), reads the event times of a sealed file and the newest event of each symbol, parses the
bounds of a report's time window, and holds what every report's outcome is told with: the
:class:`ExitCode` and the wording of counts and of torn gap log lines.
"""

import datetime as dt
import enum
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recorder.clock import US_PER_MS, day_start_ms, parse_utc_us
from recorder.errors import ConfigError, StorageError
from recorder.gaps.scan import TornLine
from recorder.hive import SYMBOL_KEY, date_dir_name, day_of_date_dir, dir_value
from recorder.settings.units import parse_lookback
from recorder.storage.paths import DATA_SUFFIX
from recorder.symbols import is_valid_symbol

MS_PER_SECOND = 1000
"""Milliseconds in a second: event times are milliseconds, durations seconds."""

EVENT_TIME_COLUMN = "event_time"
"""The column of a data file holding each event's ``E``."""

_EVENT_TIME_TYPE = pa.timestamp("ms", tz="UTC")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class ExitCode(enum.IntEnum):
    """Exit codes of ``check`` and ``verify``, for cron."""

    OK = 0
    """Healthy."""
    PROBLEMS = 1
    """At least one problem was found: missed updates over the limit, stale or never recorded
    symbols, an unreadable, unsorted, duplicated or misplaced data file, a gap in the data that
    the gap log does not know."""
    CANNOT_CHECK = 2
    """The check could not be made: root missing or unreadable, a state file or the gap log
    unreadable or invalid, no symbols to check, bad options."""


# -- wording ---------------------------------------------------------------------------------


def plural(count: int, word: str) -> str:
    """Render ``count`` of ``word``, adding an ``s`` unless there is exactly one.

    >>> plural(1, "gap"), plural(0, "missed update")
    ('1 gap', '0 missed updates')
    """
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def torn_line_warning(line: TornLine) -> str:
    """Render the warning a report carries for an incomplete last line of the gap log."""
    return f"incomplete last line {line.line_number} of {line.path} skipped"


# -- the time window -------------------------------------------------------------------------


TIME_FORMS: Final = (
    "'now', a duration before now with a unit, of any length (90m, 24h, 7d, 1000d, 1h30m), "
    "an ISO date (2024-05-01, midnight UTC) or an ISO date and time (2024-05-01T10:00, "
    "2024-05-01 10:00:00.250, 2024-05-01T12:00+02:00; UTC unless an offset is given)"
)
"""How ``--since`` and ``--until`` may be written, for the end of an "expected ..." message."""


def parse_time_bound(text: str, now_ms: int) -> int:
    """Parse a ``--since``/``--until`` value into milliseconds since the epoch, UTC.

    Accepted (:data:`TIME_FORMS`): ``now``; a duration with a unit, of any length, meaning
    that long before now (``24h``, ``90m``, ``7d``, ``1000d``, ``1h30m``; one reaching back
    past 1970 means the epoch); an ISO-8601 date (midnight UTC); an ISO-8601 date and time,
    UTC unless it carries an offset (``2024-05-01T10:00``, ``2024-05-01 10:00:00Z``,
    ``2024-05-01T12:00+02:00``). A bare number is refused: seconds, milliseconds or a year?

    Raises:
        ConfigError: ``text`` is none of these.

    >>> from recorder.clock import format_utc_ms
    >>> now = 1_714_557_600_000  # 2024-05-01T10:00:00Z
    >>> parse_time_bound("24h", now) == now - 86_400_000, parse_time_bound("now", now) == now
    (True, True)
    >>> format_utc_ms(parse_time_bound("2024-05-01", now))
    '2024-05-01T00:00:00.000Z'
    >>> format_utc_ms(parse_time_bound("2024-05-01T12:30+02:00", now))
    '2024-05-01T10:30:00.000Z'
    >>> format_utc_ms(parse_time_bound("1000d", now))
    '2021-08-05T10:00:00.000Z'
    """
    stripped = text.strip()
    if stripped.lower() == "now":
        return now_ms
    if _ISO_DATE.fullmatch(stripped):
        try:
            return day_start_ms(dt.date.fromisoformat(stripped))
        except ValueError:
            pass
    elif re.match(r"\d{4}-\d{2}-\d{2}[T ]", stripped):
        try:
            return parse_utc_us(stripped) // US_PER_MS
        except ValueError:
            pass
    elif stripped and not re.fullmatch(r"[\d.]+", stripped):
        try:
            back_ms = parse_lookback(stripped) * MS_PER_SECOND
        except ConfigError:
            pass
        else:
            # min() first: an absurd length is a float too large to round.
            return now_ms - round(min(back_ms, now_ms))
    raise ConfigError(f"{text!r} is not a time: expected {TIME_FORMS}")


# -- partitions and data files ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MisplacedFile:
    """A file ending in ``.parquet`` that is no partition's data file.

    Attributes:
        path: the file.
        partition: the two directory names above it when it lies at partition depth under
            names that are not a valid ``date=YYYY-MM-DD``/``symbol=<SYMBOL>`` pair; ``None``
            when it lies outside the partitions altogether (another depth, a hidden or ``_``
            directory, or a hidden name).
    """

    path: Path
    partition: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class PartitionFiles:
    """The data files of one symbol-day partition.

    Attributes:
        date: the partition's UTC day.
        paths: its data files, sorted by name.
    """

    date: dt.date
    paths: tuple[Path, ...]


@dataclass(frozen=True, slots=True)
class DataFileListing:
    """What :func:`list_data_files` found.

    Attributes:
        by_symbol: each symbol's partitions, oldest day first; symbols sorted.
        misplaced: the ``.parquet`` files outside valid partitions, in the order found.
    """

    by_symbol: Mapping[str, Sequence[PartitionFiles]]
    misplaced: tuple[MisplacedFile, ...]


def list_data_files(root: Path, date: dt.date | None = None) -> DataFileListing:
    """Walk ``root`` (or only the directory of ``date``) for files ending in ``.parquet``.

    Temporary files (``.<name>.tmp``) do not end in ``.parquet`` and are not listed.

    Raises:
        StorageError: a directory cannot be listed.
    """
    found: dict[str, dict[dt.date, list[Path]]] = {}
    misplaced: list[MisplacedFile] = []
    top = root if date is None else root / date_dir_name(date)
    if not top.is_dir():
        return DataFileListing({}, ())
    try:
        for directory, dir_names, file_names in os.walk(top, onerror=_raise):
            dir_names.sort()
            here = Path(directory)
            for name in sorted(file_names):
                if not name.endswith(DATA_SUFFIX):
                    continue
                path = here / name
                relative = path.relative_to(root).parts
                if len(relative) != 3 or any(part.startswith((".", "_")) for part in relative):
                    misplaced.append(MisplacedFile(path))
                    continue
                date_name, symbol_name, _ = relative
                day = day_of_date_dir(date_name)
                symbol = dir_value(symbol_name, SYMBOL_KEY)
                if day is None or symbol is None or not is_valid_symbol(symbol):
                    misplaced.append(MisplacedFile(path, (date_name, symbol_name)))
                    continue
                found.setdefault(symbol, {}).setdefault(day, []).append(path)
    except OSError as exc:
        raise StorageError(f"cannot list the dataset under {root}: {exc}") from exc
    by_symbol = {
        symbol: [PartitionFiles(day, tuple(paths)) for day, paths in sorted(days.items())]
        for symbol, days in sorted(found.items())
    }
    return DataFileListing(by_symbol, tuple(misplaced))


def _raise(error: OSError) -> None:
    raise error


def _is_data_file_name(name: str) -> bool:
    return name.endswith(DATA_SUFFIX) and not name.startswith((".", "_"))


# -- event times -----------------------------------------------------------------------------


def event_times_ms(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Return an ``event_time`` column of any timestamp unit as int64 ms since the epoch."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if column.type != _EVENT_TIME_TYPE:
        column = column.cast(_EVENT_TIME_TYPE, safe=False)
    return column.cast(pa.int64())


def _newest_in_file(path: Path) -> int | None:
    """Return the newest ``event_time`` of a sealed file, from its footer when possible.

    Raises:
        StorageError: the file cannot be read or has no ``event_time`` column.
    """
    try:
        with pq.ParquetFile(path) as parquet:
            schema = parquet.schema_arrow
            index = schema.get_field_index(EVENT_TIME_COLUMN)
            if index < 0:
                raise StorageError(f"sealed file {path} has no {EVENT_TIME_COLUMN} column")
            metadata = parquet.metadata
            newest: int | None = None
            footer_usable = schema.field(index).type == _EVENT_TIME_TYPE
            for group in range(metadata.num_row_groups):
                stats = metadata.row_group(group).column(index).statistics
                if not footer_usable or stats is None or not stats.has_min_max:
                    footer_usable = False
                    break
                newest = max(stats.max_raw, newest if newest is not None else stats.max_raw)
            if footer_usable:
                return newest
            values = event_times_ms(parquet.read(columns=[EVENT_TIME_COLUMN]).column(0))
            result = pc.max(values).as_py()
            return int(result) if result is not None else None
    except (OSError, pa.ArrowException) as exc:
        if isinstance(exc, StorageError):
            raise
        raise StorageError(f"cannot read sealed file {path}: {exc}") from exc


def newest_sealed_event_times(root: Path, symbols: Iterable[str]) -> dict[str, int]:
    """Return the newest ``E`` of each symbol in the sealed data, from the newest day it has.

    Only the newest ``date=`` partition holding a file of the symbol is read, and only file
    footers where they carry statistics: cheap enough for a cron job.

    Raises:
        StorageError: the root or a file cannot be read.
    """
    remaining = {symbol for symbol in symbols if is_valid_symbol(symbol)}
    newest: dict[str, int] = {}
    try:
        dates = sorted(
            (entry for entry in root.iterdir() if day_of_date_dir(entry.name) is not None),
            key=lambda entry: entry.name,
            reverse=True,
        )
        for date_dir in dates:
            if not remaining:
                break
            for symbol in sorted(remaining):
                symbol_dir = date_dir / f"{SYMBOL_KEY}={symbol}"
                if not symbol_dir.is_dir():
                    continue
                files = [p for p in symbol_dir.iterdir() if _is_data_file_name(p.name)]
                times = [t for t in map(_newest_in_file, files) if t is not None]
                if times:
                    newest[symbol] = max(times)
                    remaining.discard(symbol)
    except OSError as exc:
        if isinstance(exc, StorageError):
            raise
        raise StorageError(f"cannot read the sealed data under {root}: {exc}") from exc
    return newest
