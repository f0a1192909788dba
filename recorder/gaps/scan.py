"""Reading a root's gap log: every instance's records, filtered, torn last lines reported.

Readers outside the recorder see the whole log with one glob:
``duckdb.read_json('<root>/_gaps/**/*.jsonl')`` (add ``hive_partitioning=true`` for a ``date``
column) or ``pandas.read_json(path, lines=True)`` per file; :func:`read_gaps` and
:func:`scan_gap_log` do the same here, and :func:`distinct_gaps` keeps one record of a gap that
several instances logged.
"""

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from recorder.clock import event_date
from recorder.errors import StorageError
from recorder.gaps.detector import Gap
from recorder.gaps.layout import GAP_LOG_SUFFIX, gap_log_dir
from recorder.gaps.records import RecordKey, gap_from_record
from recorder.hive import day_of_date_dir
from recorder.ops.logs import get_logger

log = get_logger(__name__)


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
        day = day_of_date_dir(Path(directory).name)
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
