"""What ``recorder report`` computes: the coverage of a recording, symbol by UTC hour.

For every symbol and every UTC hour of the window: the rows received from the stream, the rows
``recorder backfill`` rebuilt, the updates expected (the hour's length over the update interval,
clipped to the symbol's first and last sign of life in the window, so that a symbol listed or
recorded from mid-window is not blamed for the time before), and the updates the gap log says
were missed, by cause and by state (open, or resolved by a backfill). Then the totals, per
symbol and over all, and the worst symbols (lowest coverage first).

Only the ``event_time`` and ``source`` columns of the data files are read (the symbol and day
come from the partition path), and only the days of the window: a day of 600 symbols is a few
hundred small column reads. Read-only, and free of any plotting: :mod:`recorder.reports.picture`
draws what this returns.
"""

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recorder.clock import event_date
from recorder.errors import StorageError
from recorder.gaps.detector import Gap, GapCause
from recorder.gaps.resolutions import read_resolutions
from recorder.gaps.scan import TornLine, distinct_gaps, scan_gap_log
from recorder.reports.check import missed_in_window
from recorder.reports.read import EVENT_TIME_COLUMN, event_times_ms, list_data_files
from recorder.storage.paths import require_root
from recorder.storage.schema import SOURCE_BACKFILL, SOURCE_COLUMN

HOUR_MS: Final = 3_600_000
"""One column of the heat map."""

WORST_COUNT: Final = 10
"""How many symbols the worst-symbols table lists."""

_NO_CAUSES: Mapping[GapCause, int] = {}


@dataclass(frozen=True, slots=True)
class Counts:
    """What was received, rebuilt, expected and missed: of one hour, one symbol, or all.

    Attributes:
        received: rows recorded from the stream (``source`` = stream, or a file written before
            ``source`` existed).
        backfilled: rows rebuilt by ``recorder backfill`` (``source`` = backfill).
        expected: updates expected in the window, inside each symbol's recorded span.
        open_missed: missed updates of gaps no backfill resolved, by cause, for the share of each
            gap inside the window.
        resolved_missed: the same for gaps ``recorder backfill`` resolved.
    """

    received: int = 0
    backfilled: int = 0
    expected: int = 0
    open_missed: Mapping[GapCause, int] = field(default_factory=dict)
    resolved_missed: Mapping[GapCause, int] = field(default_factory=dict)

    @property
    def missed(self) -> int:
        """Missed updates of every cause, open and resolved."""
        return sum(self.open_missed.values()) + sum(self.resolved_missed.values())

    @property
    def still_open(self) -> int:
        """Missed updates of the gaps no backfill resolved."""
        return sum(self.open_missed.values())

    @property
    def missed_by_cause(self) -> dict[GapCause, int]:
        """Missed updates by cause, open and resolved together, causes in declaration order."""
        return _add_causes((self.open_missed, self.resolved_missed))

    @property
    def coverage(self) -> float | None:
        """Received over expected; ``None`` when nothing was expected (outside the span)."""
        return self.received / self.expected if self.expected else None

    @classmethod
    def total(cls, parts: Iterable["Counts"]) -> "Counts":
        """The sum of ``parts``."""
        parts = list(parts)
        return cls(
            received=sum(part.received for part in parts),
            backfilled=sum(part.backfilled for part in parts),
            expected=sum(part.expected for part in parts),
            open_missed=_add_causes(part.open_missed for part in parts),
            resolved_missed=_add_causes(part.resolved_missed for part in parts),
        )


@dataclass(frozen=True, slots=True)
class HourCell(Counts):
    """One symbol's UTC hour: its :class:`Counts` and when it starts.

    Attributes:
        hour_ms: start of the hour, milliseconds since the epoch.
    """

    hour_ms: int = 0


@dataclass(frozen=True, slots=True)
class SymbolCoverage:
    """One symbol over the window.

    Attributes:
        symbol: the contract.
        cells: one per hour of the window, oldest first.
        totals: the sum of the cells.
        gaps: the distinct gaps of the symbol overlapping the window.
        open_gaps: those of them no backfill resolved.
    """

    symbol: str
    cells: tuple[HourCell, ...]
    totals: Counts
    gaps: int = 0
    open_gaps: int = 0


@dataclass(frozen=True, slots=True)
class CoverageReport:
    """The coverage of a root over ``[since_ms, until_ms)``.

    Attributes:
        root: the dataset root.
        since_ms: start of the window, milliseconds since the epoch.
        until_ms: end of the window (excluded).
        interval_ms: the update interval the expectation counts with.
        hours: start of each UTC hour of the window, oldest first.
        symbols: every symbol with data or a gap in the window, sorted.
        totals: the sum of every symbol's.
        torn_lines: incomplete last lines of the gap log, skipped.
    """

    root: Path
    since_ms: int
    until_ms: int
    interval_ms: int
    hours: tuple[int, ...]
    symbols: tuple[SymbolCoverage, ...]
    totals: Counts
    torn_lines: tuple[TornLine, ...] = ()

    @property
    def gaps(self) -> int:
        """Distinct gaps overlapping the window."""
        return sum(symbol.gaps for symbol in self.symbols)

    @property
    def open_gaps(self) -> int:
        """Distinct gaps no backfill resolved."""
        return sum(symbol.open_gaps for symbol in self.symbols)

    def worst(self, count: int = WORST_COUNT) -> list[SymbolCoverage]:
        """The ``count`` symbols of lowest coverage; ties: more open missed updates first."""
        rated = [symbol for symbol in self.symbols if symbol.totals.coverage is not None]
        rated.sort(key=lambda s: (s.totals.coverage, -s.totals.still_open, s.symbol))
        return rated[:count]


def _add_causes(parts: Iterable[Mapping[GapCause, int]]) -> dict[GapCause, int]:
    total = dict.fromkeys(GapCause, 0)
    for part in parts:
        for cause, missed in part.items():
            total[cause] += missed
    return {cause: missed for cause, missed in total.items() if missed}


@dataclass(slots=True)
class _SymbolRows:
    """What the data files of one symbol hold in the window, while they are read."""

    received: dict[int, int] = field(default_factory=dict)
    backfilled: dict[int, int] = field(default_factory=dict)
    first_ms: int | None = None
    last_ms: int | None = None

    def seen(self, first_ms: int, last_ms: int) -> None:
        self.first_ms = first_ms if self.first_ms is None else min(self.first_ms, first_ms)
        self.last_ms = last_ms if self.last_ms is None else max(self.last_ms, last_ms)


def _window_days(since_ms: int, until_ms: int) -> list[dt.date]:
    first, last = event_date(since_ms), event_date(until_ms - 1)
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def _hour_counts(times: pa.Array, hour0_ms: int) -> dict[int, int]:
    """Rows per hour index (0 = the window's first hour) of int64 ms event times."""
    if len(times) == 0:
        return {}
    # Times are at or after hour0, so integer division is a floor.
    hours = pc.divide(pc.subtract(times, hour0_ms), HOUR_MS)
    counts = pc.value_counts(hours)
    return dict(
        zip(
            counts.field("values").to_pylist(),
            counts.field("counts").to_pylist(),
            strict=True,
        )
    )


def _read_file(path: Path, rows: _SymbolRows, since_ms: int, until_ms: int, hour0: int) -> None:
    """Add the rows of one data file inside the window to ``rows``.

    Raises:
        StorageError: the file cannot be read or has no ``event_time`` column.
    """
    try:
        with pq.ParquetFile(path) as parquet:
            names = parquet.schema_arrow.names
            if EVENT_TIME_COLUMN not in names:
                raise StorageError(f"data file {path} has no {EVENT_TIME_COLUMN} column")
            # Files written before the source column existed hold stream rows only.
            columns = [EVENT_TIME_COLUMN, *([SOURCE_COLUMN] if SOURCE_COLUMN in names else [])]
            table = parquet.read(columns=columns)
    except (OSError, pa.ArrowException) as exc:
        raise StorageError(f"cannot read data file {path}: {exc}") from exc
    times = event_times_ms(table.column(EVENT_TIME_COLUMN))
    inside = pc.and_(pc.greater_equal(times, since_ms), pc.less(times, until_ms))
    times_inside = times.filter(inside)
    if len(times_inside) == 0:
        return
    bounds = pc.min_max(times_inside)
    rows.seen(int(bounds["min"].as_py()), int(bounds["max"].as_py()))
    if SOURCE_COLUMN in columns:
        sources = table.column(SOURCE_COLUMN).combine_chunks().filter(inside)
        backfill = pc.fill_null(pc.equal(sources, SOURCE_BACKFILL), fill_value=False)
        stream_times = times_inside.filter(pc.invert(backfill))
        backfill_times = times_inside.filter(backfill)
    else:
        stream_times, backfill_times = times_inside, times_inside.slice(0, 0)
    for target, part in ((rows.received, stream_times), (rows.backfilled, backfill_times)):
        for hour, count in _hour_counts(part, hour0).items():
            target[hour] = target.get(hour, 0) + count


def _read_rows(root: Path, since_ms: int, until_ms: int) -> dict[str, _SymbolRows]:
    """Read the rows of every symbol inside ``[since_ms, until_ms)``, by hour of the window.

    Raises:
        StorageError: a directory or a data file cannot be read.
    """
    hour0 = since_ms - since_ms % HOUR_MS
    found: dict[str, _SymbolRows] = {}
    for day in _window_days(since_ms, until_ms):
        for symbol, partitions in list_data_files(root, day).by_symbol.items():
            rows = found.setdefault(symbol, _SymbolRows())
            for partition in partitions:
                for path in partition.paths:
                    _read_file(path, rows, since_ms, until_ms, hour0)
    # A symbol whose files of the day hold nothing inside the window is not in the picture.
    return {symbol: rows for symbol, rows in found.items() if rows.first_ms is not None}


def _expected(start_ms: int, end_ms: int, interval_ms: int) -> int:
    return round(max(0, end_ms - start_ms) / interval_ms)


def _symbol_coverage(
    symbol: str,
    rows: _SymbolRows,
    gaps: Sequence[Gap],
    resolved: set[tuple[str, int, int]],
    report_window: tuple[int, int, int, tuple[int, ...]],
) -> SymbolCoverage:
    since_ms, until_ms, interval_ms, hours = report_window
    # The symbol's span: its data, widened by its gaps (a gap over the whole window still
    # means updates were expected). Its last event counts a full interval.
    starts = [t for t in [rows.first_ms, *(g.from_ms for g in gaps)] if t is not None]
    ends = [t + interval_ms for t in [rows.last_ms] if t is not None] + [g.to_ms for g in gaps]
    span_start = max(since_ms, min(starts)) if starts else until_ms
    span_end = min(until_ms, max(ends)) if ends else since_ms
    hour0 = hours[0]
    cells = []
    for hour_ms in hours:
        start, end = max(hour_ms, since_ms), min(hour_ms + HOUR_MS, until_ms)
        open_missed: dict[GapCause, int] = {}
        resolved_missed: dict[GapCause, int] = {}
        for gap in gaps:
            missed = missed_in_window(gap, start, end)
            if missed:
                target = resolved_missed if gap.key in resolved else open_missed
                target[gap.cause] = target.get(gap.cause, 0) + missed
        hour_index = (hour_ms - hour0) // HOUR_MS
        cells.append(
            HourCell(
                hour_ms=hour_ms,
                received=rows.received.get(hour_index, 0),
                backfilled=rows.backfilled.get(hour_index, 0),
                expected=_expected(max(start, span_start), min(end, span_end), interval_ms),
                open_missed=open_missed or _NO_CAUSES,
                resolved_missed=resolved_missed or _NO_CAUSES,
            )
        )
    open_gaps = sum(1 for gap in gaps if gap.key not in resolved)
    return SymbolCoverage(symbol, tuple(cells), Counts.total(cells), len(gaps), open_gaps)


def run_coverage(root: Path, since_ms: int, until_ms: int, interval_ms: int) -> CoverageReport:
    """Compute the coverage of ``root`` over ``[since_ms, until_ms)``.

    Args:
        root: the dataset root.
        since_ms: start of the window, milliseconds since the epoch.
        until_ms: end of the window (excluded); after ``since_ms``.
        interval_ms: the update interval (``[gaps] interval``).

    Raises:
        StorageError: the root, a data file, the gap log or the resolutions cannot be read.
        ValueError: the window is empty.
    """
    if until_ms <= since_ms:
        raise ValueError(f"the window is empty: until {until_ms} is not after since {since_ms}")
    require_root(root)
    rows = _read_rows(root, since_ms, until_ms)
    scan = scan_gap_log(root, since_ms, until_ms)
    resolved = set(read_resolutions(root))
    gaps_by_symbol: dict[str, list[Gap]] = {}
    for gap in distinct_gaps(scan.gaps):
        gaps_by_symbol.setdefault(gap.symbol, []).append(gap)
    hour0 = since_ms - since_ms % HOUR_MS
    hours = tuple(range(hour0, until_ms, HOUR_MS))
    window = (since_ms, until_ms, interval_ms, hours)
    symbols = tuple(
        _symbol_coverage(
            symbol,
            rows.get(symbol, _SymbolRows()),
            gaps_by_symbol.get(symbol, []),
            resolved,
            window,
        )
        for symbol in sorted(set(rows) | set(gaps_by_symbol))
    )
    totals = Counts.total(symbol.totals for symbol in symbols)
    return CoverageReport(
        root, since_ms, until_ms, interval_ms, hours, symbols, totals, tuple(scan.torn)
    )
