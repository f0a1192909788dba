"""The gap log: every detected gap, as JSON Lines, append-only and durable.

Layout::

    <root>/_gaps/date=YYYY-MM-DD/<instance_id>.jsonl

One directory per UTC day, holding one file per recorder instance. The day is the UTC day of
the gap's ``to_ms``: a gap becomes known only when the event that ends it arrives, so a day's
files grow only while that day's events arrive, and "what happened on day D" is one directory.

Why one file per instance rather than one shared ``YYYY-MM-DD.jsonl``: several instances may
write into one root (symbol shards, redundant pairs), and the log must never show an interleaved
or torn line. With one writer per file (an instance id is held by one running process, see
:mod:`recorder.storage.writer`'s instance lock), a failed append can be cut back to the last
complete line without any risk of cutting off another process's record, and a line torn by a
crash is repaired by the only process that could have written it. Readers see the whole log with one
glob: ``duckdb.read_json('<root>/_gaps/**/*.jsonl')`` (add ``hive_partitioning=true`` for a
``date`` column), ``pandas.read_json(path, lines=True)`` per file, or :func:`read_gaps`. The
leading ``_`` keeps the directory out of Parquet dataset discovery, and nothing here ends in
``.parquet``.

A record, one JSON object per line (UTF-8)::

    {"symbol": "BTCUSDT", "from": "2024-05-01T10:00:00.000Z", "to": "2024-05-01T10:00:10.000Z",
     "from_ms": 1714557600000, "to_ms": 1714557610000, "missed": 4, "cause": "disconnect",
     "detected_at": "2024-05-01T10:00:10.123456Z", "connection_id": "0.3",
     "instance_id": "host-a"}

``from_ms``/``to_ms`` are the exchange event times ``E`` around the gap; ``from``/``to`` repeat
them in ISO-8601 UTC for humans; ``detected_at`` is the recorder's wall clock.

Durability and idempotence: :meth:`GapLog.append` only buffers; :meth:`GapLog.flush` writes
each day's new lines with one ``write`` and one ``fsync`` (plus the directory's on creation).
A gap is identified by ``(symbol, from_ms, to_ms)``: a key already present in that day's
directory, written by this or any other instance, is skipped, so gaps recovered from the
write-ahead log after a crash can be appended again without duplicates.
"""

import datetime as dt
import json
import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from recorder.clock import event_date, format_utc_ms, format_utc_us, parse_utc_us
from recorder.durable import cut_back, fsync_dir, make_dirs, write_all
from recorder.errors import StorageError
from recorder.gaps.detector import Gap, GapCause
from recorder.instance import validate_instance_id
from recorder.ops.logs import get_logger

log = get_logger(__name__)

GAPS_DIR_NAME = "_gaps"
"""Directory of the gap log under the dataset root."""
GAP_LOG_SUFFIX = ".jsonl"
"""Suffix of gap log files."""
DATE_DIR_PREFIX = "date="
"""Prefix of a day's directory, Hive style."""

RecordKey = tuple[str, int, int]
"""``(symbol, from_ms, to_ms)``."""

# Days whose keys stay in memory; older ones are read again if a gap of theirs comes back.
_CACHED_DAYS = 4
_TAIL_CHUNK = 64 * 1024


# -- times -----------------------------------------------------------------------------------


# -- records ---------------------------------------------------------------------------------


class GapRecordError(ValueError):
    """A gap log line is not a valid gap record; the message says which field and why."""


def gap_to_record(gap: Gap, instance_id: str | None = None) -> dict[str, object]:
    """Return the gap log record of ``gap``.

    Args:
        gap: the gap.
        instance_id: the instance to name when the gap does not name one itself.
    """
    return {
        "symbol": gap.symbol,
        "from": format_utc_ms(gap.from_ms),
        "to": format_utc_ms(gap.to_ms),
        "from_ms": gap.from_ms,
        "to_ms": gap.to_ms,
        "missed": gap.missed,
        "cause": gap.cause.value,
        "detected_at": format_utc_us(gap.detected_at),
        "connection_id": gap.connection_id,
        "instance_id": gap.instance_id if gap.instance_id is not None else instance_id,
    }


def _required_int(record: Mapping[str, object], name: str) -> int:
    value = record.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise GapRecordError(f"{name!r} is {value!r}: expected an integer")
    return value


def _optional_str(record: Mapping[str, object], name: str) -> str | None:
    value = record.get(name)
    if value is not None and not isinstance(value, str):
        raise GapRecordError(f"{name!r} is {value!r}: expected a string or null")
    return value


def gap_from_record(record: object) -> Gap:
    """Build a :class:`Gap` from a gap log record (the inverse of :func:`gap_to_record`).

    Raises:
        GapRecordError: a field is missing or has the wrong type or value.
        ValueError: ``detected_at`` is not an ISO-8601 timestamp.
    """
    if not isinstance(record, Mapping):
        raise GapRecordError(f"expected a JSON object, got {type(record).__name__}")
    symbol = record.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        raise GapRecordError(f"'symbol' is {symbol!r}: expected a non-empty string")
    cause = record.get("cause")
    if cause not in GapCause.__members__.values():
        expected = ", ".join(GapCause)
        raise GapRecordError(f"'cause' is {cause!r}: expected one of {expected}")
    detected_at = record.get("detected_at")
    if not isinstance(detected_at, str):
        raise GapRecordError(f"'detected_at' is {detected_at!r}: expected an ISO-8601 timestamp")
    from_ms = _required_int(record, "from_ms")
    to_ms = _required_int(record, "to_ms")
    if to_ms <= from_ms:
        raise GapRecordError(f"'to_ms' {to_ms} is not after 'from_ms' {from_ms}")
    missed = _required_int(record, "missed")
    if missed < 1:
        raise GapRecordError(f"'missed' is {missed}: expected at least 1")
    return Gap(
        symbol=symbol,
        from_ms=from_ms,
        to_ms=to_ms,
        missed=missed,
        cause=GapCause(str(cause)),
        detected_at=parse_utc_us(detected_at),
        connection_id=_optional_str(record, "connection_id"),
        instance_id=_optional_str(record, "instance_id"),
    )


def _encode_line(gap: Gap, instance_id: str) -> bytes:
    record = gap_to_record(gap, instance_id)
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


# -- paths -----------------------------------------------------------------------------------


def gap_log_dir(root: Path) -> Path:
    """Return ``<root>/_gaps``."""
    return root / GAPS_DIR_NAME


def gap_log_day_dir(root: Path, day: dt.date) -> Path:
    """Return ``<root>/_gaps/date=YYYY-MM-DD``, the directory of gaps ending on ``day``."""
    return gap_log_dir(root) / f"{DATE_DIR_PREFIX}{day.isoformat()}"


def gap_log_file(root: Path, day: dt.date, instance_id: str) -> Path:
    """Return ``<root>/_gaps/date=YYYY-MM-DD/<instance_id>.jsonl``.

    Raises:
        UnsafePathError: ``instance_id`` is not a safe name.
    """
    return gap_log_day_dir(root, day) / f"{validate_instance_id(instance_id)}{GAP_LOG_SUFFIX}"


def gap_day(gap: Gap) -> dt.date:
    """Return the UTC day whose file holds ``gap``: the day of its ``to_ms``."""
    return event_date(gap.to_ms)


def _day_of_dir(name: str) -> dt.date | None:
    if not name.startswith(DATE_DIR_PREFIX):
        return None
    try:
        return dt.date.fromisoformat(name.removeprefix(DATE_DIR_PREFIX))
    except ValueError:
        return None


# -- writing ---------------------------------------------------------------------------------


class GapLog:
    """Appends this instance's gaps to the gap log under ``root``. Not thread-safe.

    Args:
        root: the dataset root.
        instance_id: this recorder instance; names its files.

    Raises:
        UnsafePathError: ``instance_id`` is not a safe name.
    """

    def __init__(self, root: Path, instance_id: str) -> None:
        self._root = root
        self._instance_id = validate_instance_id(instance_id)
        self._pending: list[Gap] = []
        self._keys: OrderedDict[dt.date, set[RecordKey]] = OrderedDict()

    @property
    def root(self) -> Path:
        """The dataset root."""
        return self._root

    @property
    def instance_id(self) -> str:
        """The instance whose files this log appends to."""
        return self._instance_id

    @property
    def pending(self) -> int:
        """Gaps appended but not yet durable."""
        return len(self._pending)

    def path_for(self, day: dt.date) -> Path:
        """Return this instance's file for gaps ending on ``day``."""
        return gap_log_file(self._root, day, self._instance_id)

    def append(self, gaps: Iterable[Gap]) -> None:
        """Buffer ``gaps`` until the next :meth:`flush`; nothing is written here."""
        self._pending.extend(gaps)

    def flush(self) -> int:
        """Write every pending gap not already in its day's directory, durably.

        Days are written oldest first, each with one write and one fsync. On failure the days
        already written stay written; the failed day and later ones stay pending, and the
        failed day's file is cut back to its last complete line, so a retry neither duplicates
        nor tears a record.

        Returns:
            The number of records written.

        Raises:
            StorageError: a file or directory could not be read, written or synced.
        """
        by_day: dict[dt.date, list[Gap]] = {}
        for gap in self._pending:
            by_day.setdefault(gap_day(gap), []).append(gap)
        written = 0
        for day in sorted(by_day):
            keys = self._keys_for(day)
            fresh: dict[RecordKey, Gap] = {}
            for gap in by_day[day]:
                if gap.key not in keys and gap.key not in fresh:
                    fresh[gap.key] = gap
            if fresh:
                data = b"".join(_encode_line(gap, self._instance_id) for gap in fresh.values())
                self._append_durably(self.path_for(day), data)
                keys.update(fresh)
                written += len(fresh)
            self._pending = [gap for gap in self._pending if gap_day(gap) != day]
        return written

    def _keys_for(self, day: dt.date) -> set[RecordKey]:
        keys = self._keys.get(day)
        if keys is not None:
            self._keys.move_to_end(day)
            return keys
        directory = gap_log_day_dir(self._root, day)
        keys = set()
        try:
            paths = sorted(directory.glob(f"*{GAP_LOG_SUFFIX}")) if directory.is_dir() else []
            for path in paths:
                for _, line in _complete_lines(path):
                    try:
                        keys.add(gap_from_record(json.loads(line)).key)
                    except ValueError as exc:
                        log.warning("gap log line ignored", path=str(path), error=str(exc))
        except OSError as exc:
            raise StorageError(f"cannot read the gap log in {directory}: {exc}") from exc
        self._keys[day] = keys
        while len(self._keys) > _CACHED_DAYS:
            self._keys.popitem(last=False)
        return keys

    def _append_durably(self, path: Path, data: bytes) -> None:
        try:
            make_dirs(path.parent)
            existed = path.exists()
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
            try:
                size = _cut_torn_tail(fd)
                try:
                    write_all(fd, data)
                    os.fsync(fd)
                except OSError:
                    if not cut_back(fd, size):
                        # The next append cuts the torn tail before it writes.
                        log.warning("gap log cut-back failed", path=str(path))
                    raise
            finally:
                os.close(fd)
            if not existed:
                fsync_dir(path.parent)
        except OSError as exc:
            raise StorageError(f"cannot append to the gap log {path}: {exc}") from exc


def _cut_torn_tail(fd: int) -> int:
    """Cut the file back to its last complete line; return its length afterwards.

    A torn tail is what a crash (or a failed cut-back) left of an append that never
    completed: it was never acknowledged, and the gap it held is appended again.
    """
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    end = size
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            end = start + newline + 1
            break
        end = start
    log.warning("gap log torn tail cut", bytes=size - end)
    os.ftruncate(fd, end)
    os.fsync(fd)
    return end


# -- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TornLine:
    """A last line without its newline: an append in progress or cut short by a crash.

    Attributes:
        path: the file.
        line_number: its line number, from 1.
    """

    path: Path
    line_number: int


@dataclass(frozen=True, slots=True)
class GapLogScan:
    """What :func:`scan_gap_log` found.

    Attributes:
        gaps: the records that matched, sorted by ``to_ms``, symbol, ``from_ms``.
        torn: incomplete last lines, skipped.
        files: the number of files read.
    """

    gaps: list[Gap]
    torn: list[TornLine]
    files: int


def _complete_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line number, line)`` of every newline-terminated, non-blank line."""
    with path.open("rb") as stream:
        for number, line in enumerate(stream, start=1):
            if line.endswith(b"\n") and line.strip():
                yield number, line


def _overlaps(gap: Gap, since_ms: int | None, until_ms: int | None) -> bool:
    return (since_ms is None or gap.to_ms > since_ms) and (
        until_ms is None or gap.from_ms < until_ms
    )


def _log_files(root: Path, since_ms: int | None) -> list[Path]:
    first_day = event_date(since_ms) if since_ms is not None else None
    files: list[Path] = []
    if not gap_log_dir(root).is_dir():
        return files
    for directory, dir_names, file_names in os.walk(gap_log_dir(root), onerror=_raise):
        dir_names[:] = sorted(name for name in dir_names if not name.startswith("."))
        day = _day_of_dir(Path(directory).name)
        # A gap overlapping [since, ...) ends after since, so it is filed on since's day or later.
        if day is not None and first_day is not None and day < first_day:
            continue
        files.extend(
            Path(directory) / name
            for name in sorted(file_names)
            if name.endswith(GAP_LOG_SUFFIX) and not name.startswith(".")
        )
    return files


def _raise(error: OSError) -> None:
    raise error


def scan_gap_log(
    root: Path,
    since_ms: int | None = None,
    until_ms: int | None = None,
    symbol: str | None = None,
) -> GapLogScan:
    """Read the gap log under ``root``: every instance's records, as logged.

    A gap is returned when it overlaps ``[since_ms, until_ms)``: it ends after ``since_ms`` and
    starts before ``until_ms``. Records of several instances describing the same gap are all
    returned (see :func:`distinct_gaps`). A missing ``_gaps`` directory is an empty log.

    Args:
        root: the dataset root.
        since_ms: keep gaps ending after this time, milliseconds since the epoch.
        until_ms: keep gaps starting before this time.
        symbol: keep only this symbol's gaps.

    Raises:
        StorageError: a file cannot be read, or a complete line is not a valid record (the
            message names the file and line).
    """
    directory = gap_log_dir(root)
    try:
        contents = [(path, path.read_bytes()) for path in _log_files(root, since_ms)]
    except OSError as exc:
        raise StorageError(f"cannot read the gap log under {directory}: {exc}") from exc
    gaps: list[Gap] = []
    torn: list[TornLine] = []
    for path, content in contents:
        lines = content.split(b"\n")
        # Whatever follows the last newline is an incomplete line (empty for a whole file).
        if lines[-1]:
            torn.append(TornLine(path, len(lines)))
        for number, line in enumerate(lines[:-1], start=1):
            if not line.strip():
                continue
            try:
                gap = gap_from_record(json.loads(line))
            except ValueError as exc:
                raise StorageError(f"bad gap log record at {path}:{number}: {exc}") from exc
            if (symbol is None or gap.symbol == symbol) and _overlaps(gap, since_ms, until_ms):
                gaps.append(gap)
    gaps.sort(key=lambda gap: (gap.to_ms, gap.symbol, gap.from_ms))
    return GapLogScan(gaps, torn, len(contents))


def read_gaps(
    root: Path,
    since_ms: int | None = None,
    until_ms: int | None = None,
    symbol: str | None = None,
) -> list[Gap]:
    """Return the logged gaps overlapping ``[since_ms, until_ms)``, optionally of one symbol.

    Like :func:`scan_gap_log`; an incomplete last line is skipped and logged as a warning.

    Raises:
        StorageError: a file cannot be read or holds an invalid record.
    """
    scan = scan_gap_log(root, since_ms, until_ms, symbol)
    for line in scan.torn:
        log.warning("gap log torn line skipped", path=str(line.path), line=line.line_number)
    return scan.gaps


def distinct_gaps(gaps: Iterable[Gap]) -> list[Gap]:
    """Keep one record per ``(symbol, from_ms, to_ms)``: the first detected; order kept.

    Redundant instances recording the same symbols log the same gap each.
    """
    first: dict[RecordKey, Gap] = {}
    for gap in gaps:
        known = first.get(gap.key)
        if known is None or gap.detected_at < known.detected_at:
            first[gap.key] = gap
    return list(first.values())
