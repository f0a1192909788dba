"""Resolved gaps: the append-only records ``recorder backfill`` writes when it fills a gap.

The gap log itself is never rewritten. A filled gap gets one resolution record, one JSON
object per line, in a directory of its own beside it (so that a glob over the gap log still
reads gap records only)::

    <root>/_gaps_resolved/date=YYYY-MM-DD/<writer>.jsonl

    {"symbol": "BTCUSDT", "from_ms": 1714557600000, "to_ms": 1714557900000,
     "from": "2024-05-01T10:00:00.000Z", "to": "2024-05-01T10:05:00.000Z",
     "rows": 4, "source": "backfill", "resolved_at": "2024-05-02T03:00:01.123456Z",
     "resolved_by": "backfill"}

The day is the gap's (the UTC day of its ``to_ms``, as in :mod:`recorder.gaps.layout`); a
resolution names its gap by ``(symbol, from_ms, to_ms)``, the gap's
:data:`~recorder.gaps.records.RecordKey`, which an analyst joins on. ``rows`` is how many rows
the resolution added (0: every whole minute inside it was filled already, by the rows of an
overlapping gap that another instance logged).
Appends are durable and idempotent like the gap log's (:func:`~recorder.gaps.log.
append_lines_durably`): a key already resolved under the root is not written again.
"""

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from recorder.clock import event_date, format_utc_ms, format_utc_us, parse_utc_us
from recorder.errors import StorageError
from recorder.gaps.layout import GAP_LOG_SUFFIX
from recorder.gaps.log import append_lines_durably, complete_lines
from recorder.gaps.records import GapRecordError, RecordKey
from recorder.hive import date_dir_name, day_of_date_dir
from recorder.instance import validate_instance_id

RESOLVED_DIR_NAME: Final = "_gaps_resolved"
"""Directory of the resolution records under the dataset root."""


@dataclass(frozen=True, slots=True)
class Resolution:
    """One gap filled.

    Attributes:
        key: the gap, ``(symbol, from_ms, to_ms)``.
        rows: the rows the resolution added to the dataset.
        source: where they came from (``backfill``).
        resolved_at: wall clock when the rows were published, microseconds since the epoch.
        resolved_by: the writer (names its file).
    """

    key: RecordKey
    rows: int
    source: str
    resolved_at: int
    resolved_by: str

    def to_record(self) -> dict[str, object]:
        """The resolution as a JSON object."""
        symbol, from_ms, to_ms = self.key
        return {
            "symbol": symbol,
            "from_ms": from_ms,
            "to_ms": to_ms,
            "from": format_utc_ms(from_ms),
            "to": format_utc_ms(to_ms),
            "rows": self.rows,
            "source": self.source,
            "resolved_at": format_utc_us(self.resolved_at),
            "resolved_by": self.resolved_by,
        }


def resolution_from_record(record: object) -> Resolution:
    """Build a :class:`Resolution` from its JSON object.

    Raises:
        GapRecordError: a field is missing or of the wrong type.
    """
    if not isinstance(record, Mapping):
        raise GapRecordError(f"a resolution record is a JSON object, not {record!r}")
    values = {}
    for name, kind in (
        ("symbol", str),
        ("from_ms", int),
        ("to_ms", int),
        ("rows", int),
        ("source", str),
        ("resolved_at", str),
        ("resolved_by", str),
    ):
        value = record.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise GapRecordError(f"{name!r} is {value!r}: expected {kind.__name__}")
        values[name] = value
    try:
        resolved_at = parse_utc_us(str(values["resolved_at"]))
    except ValueError as exc:
        raise GapRecordError(f"'resolved_at' is not an ISO-8601 time: {exc}") from exc
    return Resolution(
        key=(str(values["symbol"]), int(values["from_ms"]), int(values["to_ms"])),
        rows=int(values["rows"]),
        source=str(values["source"]),
        resolved_at=resolved_at,
        resolved_by=str(values["resolved_by"]),
    )


def _line(resolution: Resolution) -> bytes:
    text = json.dumps(resolution.to_record(), ensure_ascii=False, separators=(",", ":"))
    return (text + "\n").encode()


def resolved_dir(root: Path) -> Path:
    """Return ``<root>/_gaps_resolved``."""
    return root / RESOLVED_DIR_NAME


def _day_of(key: RecordKey) -> dt.date:
    return event_date(key[2])


def resolution_file(root: Path, day: dt.date, writer: str) -> Path:
    """Return ``<root>/_gaps_resolved/date=YYYY-MM-DD/<writer>.jsonl``.

    Raises:
        UnsafePathError: ``writer`` is not a safe name.
    """
    name = f"{validate_instance_id(writer)}{GAP_LOG_SUFFIX}"
    return resolved_dir(root) / date_dir_name(day) / name


def read_resolutions(root: Path) -> dict[RecordKey, Resolution]:
    """Every resolution under ``root`` by gap; the first written wins. Torn lines are skipped.

    Raises:
        StorageError: a file cannot be read, or a complete line is not a valid record.
    """
    found: dict[RecordKey, Resolution] = {}
    directory = resolved_dir(root)
    if not directory.is_dir():
        return found
    try:
        for day_dir in sorted(directory.iterdir()):
            if day_of_date_dir(day_dir.name) is None or not day_dir.is_dir():
                continue
            for path in sorted(day_dir.glob(f"*{GAP_LOG_SUFFIX}")):
                for number, line in complete_lines(path):
                    try:
                        resolution = resolution_from_record(json.loads(line))
                    except ValueError as exc:
                        msg = f"bad resolution record at {path}:{number}: {exc}"
                        raise StorageError(msg) from exc
                    found.setdefault(resolution.key, resolution)
    except OSError as exc:
        raise StorageError(f"cannot read the resolutions under {directory}: {exc}") from exc
    return found


def append_resolutions(root: Path, writer: str, resolutions: Iterable[Resolution]) -> int:
    """Append the resolutions of gaps not resolved yet, durably; return how many were written.

    Raises:
        StorageError: a file could not be read or written.
    """
    known = read_resolutions(root)
    by_day: dict[dt.date, list[Resolution]] = {}
    for resolution in resolutions:
        if resolution.key not in known:
            known[resolution.key] = resolution
            by_day.setdefault(_day_of(resolution.key), []).append(resolution)
    for day, items in sorted(by_day.items()):
        data = b"".join(
            (
                json.dumps(item.to_record(), ensure_ascii=False, separators=(",", ":")) + "\n"
            ).encode()
            for item in items
        )
        append_lines_durably(resolution_file(root, day, writer), data, "resolution log")
    return sum(len(items) for items in by_day.values())
