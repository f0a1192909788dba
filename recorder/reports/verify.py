"""What ``recorder verify`` computes: every sealed data file checked, its gaps against the log.

Meant for a daily run, as it reads every file (or every file of one day); :func:`run_verify`
lists what is checked. A data gap the gap log does not know fails the run; a logged gap that
has data inside it now is only a notice.
"""

import bisect
import datetime as dt
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recorder.clock import MS_PER_DAY, day_start_ms, format_utc_ms
from recorder.errors import StorageError
from recorder.gaps.detector import DEFAULT_INTERVAL_MS, Gap, missed_updates
from recorder.gaps.scan import distinct_gaps, scan_gap_log
from recorder.reports.findings import Finding, FindingKind, VerifyReport
from recorder.reports.read import (
    EVENT_TIME_COLUMN,
    MisplacedFile,
    PartitionFiles,
    event_times_ms,
    list_data_files,
    plural,
)
from recorder.storage.paths import DATA_SUFFIX, require_root
from recorder.storage.schema import (
    FILE_SCHEMA,
    METADATA_DATE,
    METADATA_SYMBOL,
    file_schema_version,
)


@dataclass(frozen=True, slots=True)
class _DataGap:
    """A gap in the data: two consecutive events of a symbol, far enough apart to matter."""

    from_ms: int
    to_ms: int


@dataclass(slots=True)
class _SymbolTimeline:
    """What the data says about one symbol, accumulated day by day.

    Attributes:
        first_ms: its oldest event; ``None`` before any.
        last_ms: its newest event so far; ``None`` before any.
        gaps: the gaps between consecutive events so far, oldest first.
    """

    first_ms: int | None = None
    last_ms: int | None = None
    gaps: list[_DataGap] = field(default_factory=list)


@dataclass(slots=True)
class _Verifier:
    """The findings and counts of one ``verify``, gathered file by file and symbol by symbol."""

    interval_ms: int
    findings: list[Finding] = field(default_factory=list)
    files: int = 0
    rows: int = 0
    partitions: int = 0
    data_gaps: int = 0
    schema_versions: Counter[int] = field(default_factory=Counter)

    def add_finding(
        self,
        kind: FindingKind,
        message: str,
        path: Path | None = None,
        symbol: str | None = None,
    ) -> None:
        """Record one finding, in the order found."""
        self.findings.append(Finding(kind, message, path, symbol))

    def check_one_schema(self) -> None:
        """Report files of several schema versions: readers' glob calls refuse such a root."""
        if len(self.schema_versions) > 1:
            counts = ", ".join(
                f"{count} of version {version}"
                for version, count in sorted(self.schema_versions.items())
            )
            self.add_finding(
                FindingKind.MIXED_SCHEMA,
                f"files of several schema versions ({counts}): DuckDB's and polars' readers "
                "refuse a root that mixes them; run `recorder migrate`",
            )

    def report_misplaced(self, misplaced: MisplacedFile) -> None:
        """Report a ``.parquet`` file that readers of the dataset would trip over."""
        path = misplaced.path
        if misplaced.partition is None:
            self.add_finding(
                FindingKind.STRAY_PARQUET,
                f"{path} ends in {DATA_SUFFIX} outside the date=*/symbol=* partitions: "
                "DuckDB's **/*.parquet glob reads it as data",
                path,
            )
            return
        date_name, symbol_name = misplaced.partition
        self.add_finding(
            FindingKind.BAD_PARTITION,
            f"{path} lies in {date_name}/{symbol_name}, which is not a valid "
            "date=YYYY-MM-DD/symbol=<SYMBOL> partition",
            path,
        )

    def read_file(self, path: Path, day: dt.date, symbol: str) -> pa.Array | None:
        """Check one file; return its event times as int64 milliseconds if they are usable.

        Raises:
            StorageError: permission denied: the check cannot be made.
        """
        self.files += 1
        try:
            with pq.ParquetFile(path) as parquet:
                schema = parquet.schema_arrow
                metadata = parquet.metadata.metadata or {}
                table = parquet.read()
        except PermissionError as exc:
            raise StorageError(f"cannot read {path}: {exc}") from exc
        except (OSError, pa.ArrowException) as exc:
            self.add_finding(FindingKind.UNREADABLE, f"{path} cannot be read: {exc}", path, symbol)
            return None
        self.rows += table.num_rows
        version = file_schema_version(schema)
        if version is not None:
            self.schema_versions[version] += 1
        else:
            self.add_finding(
                FindingKind.SCHEMA_MISMATCH,
                f"{path} does not have the recorder schema: {_schema_difference(schema)}",
                path,
                symbol,
            )
        self._check_metadata(path, metadata, day, symbol)
        index = schema.get_field_index(EVENT_TIME_COLUMN)
        if index < 0 or not pa.types.is_timestamp(schema.field(index).type):
            return None
        times = event_times_ms(table.column(index))
        if len(times) > 1 and not pc.all(pc.less_equal(times[:-1], times[1:])).as_py():
            self.add_finding(
                FindingKind.UNSORTED, f"{path}: rows are not sorted by event_time", path, symbol
            )
        start = day_start_ms(day)
        outside = pc.sum(
            pc.or_(pc.less(times, start), pc.greater_equal(times, start + MS_PER_DAY))
        ).as_py()
        if outside:
            self.add_finding(
                FindingKind.WRONG_DATE,
                f"{path}: {plural(outside, 'row')} with an event_time not on {day.isoformat()} "
                "(UTC)",
                path,
                symbol,
            )
        return times

    def _check_metadata(
        self, path: Path, metadata: Mapping[bytes, bytes], day: dt.date, symbol: str
    ) -> None:
        expected = {METADATA_SYMBOL: symbol, METADATA_DATE: day.isoformat()}
        for key, value in expected.items():
            found = metadata.get(key.encode())
            if found is None:
                self.add_finding(
                    FindingKind.METADATA_MISMATCH,
                    f"{path}: key-value metadata {key!r} is missing",
                    path,
                    symbol,
                )
            elif found.decode(errors="replace") != value:
                self.add_finding(
                    FindingKind.METADATA_MISMATCH,
                    f"{path}: key-value metadata {key!r} is "
                    f"{found.decode(errors='replace')!r}, but the partition is {value!r}",
                    path,
                    symbol,
                )

    def verify_partition(
        self, symbol: str, partition: PartitionFiles, min_gap_ms: int, timeline: _SymbolTimeline
    ) -> None:
        """Check one symbol-day and extend the symbol's timeline with it."""
        self.partitions += 1
        day, paths = partition.date, partition.paths
        arrays: list[pa.Array] = []
        owners: list[pa.Array] = []
        for number, path in enumerate(paths):
            times = self.read_file(path, day, symbol)
            if times is not None:
                arrays.append(times)
                owners.append(pa.array([number] * len(times), pa.int32()))
        if not arrays:
            return
        values = pa.concat_arrays(arrays)
        if len(values) == 0:
            return
        order = pc.sort_indices(values)
        ordered = values.take(order)
        repeats = pc.indices_nonzero(pc.equal(ordered[1:], ordered[:-1]))
        if len(repeats):
            file_of = pa.concat_arrays(owners).take(order)
            numbers = pa.concat_arrays(
                [file_of.take(repeats), file_of.take(pc.add(repeats, pa.scalar(1, pa.uint64())))]
            )
            involved = sorted(paths[number].name for number in pc.unique(numbers).to_pylist())
            first = ordered[repeats[0].as_py()].as_py()
            self.add_finding(
                FindingKind.DUPLICATE,
                f"{symbol} on {day.isoformat()}: {plural(len(repeats), 'duplicate event')} "
                f"(first at {format_utc_ms(first)}) in {', '.join(involved)}",
                paths[0].parent,
                symbol,
            )
            ordered = pc.unique(ordered)
        _extend_timeline(timeline, ordered, min_gap_ms)

    def compare_with_log(self, symbol: str, timeline: _SymbolTimeline, logged: list[Gap]) -> None:
        """Report data gaps no logged gap covers, and logged gaps the data contradicts."""
        logged = sorted(logged, key=lambda gap: (gap.from_ms, gap.to_ms))
        logged_starts, logged_reach = _reach(logged)
        for data_gap in timeline.gaps:
            missed = missed_updates(data_gap.from_ms, data_gap.to_ms, self.interval_ms)
            if missed < 1:
                continue
            self.data_gaps += 1
            if not _covers(logged_starts, logged_reach, data_gap.from_ms, data_gap.to_ms):
                self.add_finding(
                    FindingKind.UNLOGGED_GAP,
                    f"{symbol}: gap in the data {format_utc_ms(data_gap.from_ms)} -> "
                    f"{format_utc_ms(data_gap.to_ms)} ({plural(missed, 'missed update')}) is "
                    "not in the gap log",
                    symbol=symbol,
                )
        data_starts, data_reach = _reach(sorted(timeline.gaps, key=lambda gap: gap.from_ms))
        for gap in logged:
            if _has_data_inside(gap, timeline, data_starts, data_reach):
                self.add_finding(
                    FindingKind.GAP_FILLED,
                    f"{symbol}: logged gap {format_utc_ms(gap.from_ms)} -> "
                    f"{format_utc_ms(gap.to_ms)} ({gap.cause.value}, "
                    f"{plural(gap.missed, 'missed update')}) has data inside it now (filled "
                    "later, or recorded by another instance)",
                    symbol=symbol,
                )


def _extend_timeline(timeline: _SymbolTimeline, ordered: pa.Array, min_gap_ms: int) -> None:
    """Append a day's sorted, distinct event times: its gaps, including the one since the last."""
    if timeline.last_ms is not None:
        ordered = pa.concat_arrays([pa.array([timeline.last_ms], pa.int64()), ordered])
    elif timeline.first_ms is None:
        timeline.first_ms = ordered[0].as_py()
    if len(ordered) > 1:
        deltas = pc.subtract(ordered[1:], ordered[:-1])
        for position in pc.indices_nonzero(pc.greater_equal(deltas, min_gap_ms)).to_pylist():
            timeline.gaps.append(_DataGap(ordered[position].as_py(), ordered[position + 1].as_py()))
    timeline.last_ms = ordered[-1].as_py()


def _reach(spans: Sequence[Gap | _DataGap]) -> tuple[list[int], list[int]]:
    """Return the starts of ``spans`` (sorted by start) and the furthest end reached by each."""
    starts = [span.from_ms for span in spans]
    reach: list[int] = []
    for span in spans:
        reach.append(max(span.to_ms, reach[-1]) if reach else span.to_ms)
    return starts, reach


def _covers(starts: list[int], reach: list[int], from_ms: int, to_ms: int) -> bool:
    """Tell whether one span of those given by :func:`_reach` spans ``[from_ms, to_ms]``."""
    index = bisect.bisect_right(starts, from_ms) - 1
    return index >= 0 and reach[index] >= to_ms


def _has_data_inside(
    gap: Gap, timeline: _SymbolTimeline, data_starts: list[int], data_reach: list[int]
) -> bool:
    """Tell whether the data holds an event strictly between ``gap.from_ms`` and ``to_ms``."""
    if timeline.first_ms is None or timeline.last_ms is None:
        return False
    if gap.to_ms <= timeline.first_ms or gap.from_ms >= timeline.last_ms:
        return False
    return not _covers(data_starts, data_reach, gap.from_ms, gap.to_ms)


def _schema_difference(actual: pa.Schema) -> str:
    expected = {f.name: f for f in FILE_SCHEMA}
    found = {f.name: f for f in actual}
    parts = [f"missing {name}" for name in expected if name not in found]
    parts += [f"unexpected {name}" for name in found if name not in expected]
    for name, want in expected.items():
        have = found.get(name)
        if have is not None and (have.type != want.type or have.nullable != want.nullable):
            parts.append(
                f"{name} is {have.type}{'' if have.nullable else ' not null'}, expected "
                f"{want.type}{'' if want.nullable else ' not null'}"
            )
    if not parts and actual.names != FILE_SCHEMA.names:
        parts.append(f"columns in order {actual.names}, expected {FILE_SCHEMA.names}")
    return "; ".join(parts) or "differs"


def run_verify(
    root: Path, date: dt.date | None = None, interval_ms: int = DEFAULT_INTERVAL_MS
) -> VerifyReport:
    """Read every sealed data file under ``root`` (or of one day) and check it.

    Per file: footer and data readable; schema equal to the recorder's
    (:data:`recorder.storage.schema.FILE_SCHEMAS`, either version; a root holding both is a
    finding); key-value metadata naming the file's partition;
    rows sorted by ``event_time``; every row's ``event_time`` on the partition's UTC date. Per
    symbol-day: no event twice, within or across files. Anywhere under the root: no
    ``.parquet`` outside the partitions. Then gaps are recomputed from the data (consecutive
    events of each symbol, across days, with :func:`recorder.gaps.detector.missed_updates`)
    and compared with the gap log: a data gap no logged gap covers is a problem; a logged gap
    with data inside it now is a notice (backfill and redundant instances fill gaps legitimately).

    Raises:
        StorageError: the root or the gap log cannot be read, or the gap log is invalid, or a
            file cannot be opened for lack of permission.
    """
    require_root(root)
    verifier = _Verifier(interval_ms)
    listing = list_data_files(root, date)
    for misplaced in listing.misplaced:
        verifier.report_misplaced(misplaced)
    if date is None:
        scan = scan_gap_log(root)
    else:
        start = day_start_ms(date)
        scan = scan_gap_log(root, since_ms=start, until_ms=start + MS_PER_DAY)
    logged_by_symbol: dict[str, list[Gap]] = {}
    logged = distinct_gaps(scan.gaps)
    for gap in logged:
        logged_by_symbol.setdefault(gap.symbol, []).append(gap)
    # The smallest span that is a gap under this interval: 2 * span >= 3 * interval.
    gap_span_ms = -(-3 * interval_ms // 2)
    for symbol, partitions in listing.by_symbol.items():
        symbol_logged = logged_by_symbol.get(symbol, [])
        # Data gaps as short as the shortest logged gap, so that a logged gap counts as
        # confirmed even if it was logged under another interval.
        min_gap_ms = min([gap_span_ms, *(gap.to_ms - gap.from_ms for gap in symbol_logged)])
        timeline = _SymbolTimeline()
        for partition in partitions:
            verifier.verify_partition(symbol, partition, max(min_gap_ms, 1), timeline)
        verifier.compare_with_log(symbol, timeline, symbol_logged)
    verifier.check_one_schema()
    return VerifyReport(
        date=date,
        files=verifier.files,
        rows=verifier.rows,
        partitions=verifier.partitions,
        data_gaps=verifier.data_gaps,
        logged_gaps=len(logged),
        findings=tuple(verifier.findings),
        torn_lines=tuple(scan.torn),
    )
