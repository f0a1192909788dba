"""What ``recorder gaps``, ``recorder check`` and ``recorder verify`` compute, from files alone.

Pure of the command line: every function takes the dataset root and the current time (where it
matters) and returns a report; :mod:`recorder.cli.reports` parses options and prints.

Exit codes (:class:`ExitCode`), the same for ``check`` and ``verify``:

* ``0``: healthy.
* ``1``: a problem was found (missed updates over the limit, stale or never recorded symbols,
  an unreadable, unsorted, duplicated or misplaced data file, a gap in the data that the gap
  log does not know).
* ``2``: the check could not be made (root missing or unreadable, a state file or the gap log
  unreadable or invalid, no symbols to check, bad options).

``check`` works on the gap log and the state files, so it is cheap enough to run every minute;
``verify`` reads every sealed data file and is meant for a daily run.
"""

import bisect
import csv
import datetime as dt
import enum
import io
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recorder.clock import MS_PER_DAY, day_start_ms, format_utc_ms
from recorder.errors import ConfigError, StorageError
from recorder.gaps.detector import DEFAULT_INTERVAL_MS, Gap, GapCause, missed_updates
from recorder.gaps.log import TornLine, distinct_gaps, gap_to_record, scan_gap_log
from recorder.gaps.state import InstanceState, merge_last_event_times, read_states
from recorder.settings import format_duration, parse_duration
from recorder.storage.paths import DATA_SUFFIX, DATE_KEY, SYMBOL_KEY, require_root
from recorder.storage.schema import DATA_SCHEMA, METADATA_DATE, METADATA_SYMBOL
from recorder.symbols import is_valid_symbol


class ExitCode(enum.IntEnum):
    """Exit codes of ``check`` and ``verify``, for cron."""

    OK = 0
    """Healthy."""
    PROBLEMS = 1
    """At least one problem was found."""
    CANNOT_CHECK = 2
    """The check could not be made."""


DEFAULT_CHECK_CAUSES: frozenset[GapCause] = frozenset(
    {GapCause.DISCONNECT, GapCause.STALL, GapCause.RESTART}
)
"""Causes counted by ``check`` by default: ``quiet`` is the exchange's silence, not a loss."""

_EVENT_TIME = "event_time"
_EVENT_TIME_TYPE = pa.timestamp("ms", tz="UTC")
_PARTITION_DIR = re.compile(r"(?P<key>[^=]+)=(?P<value>.*)")
_MS_PER_SECOND = 1000
_SECONDS_PER_DAY = 86_400


# -- times -----------------------------------------------------------------------------------


def parse_time_bound(text: str, now_ms: int) -> int:
    """Parse a ``--since``/``--until`` value into milliseconds since the epoch, UTC.

    Accepted: ``now``; a duration with a unit, meaning that long before now (``24h``, ``90m``,
    ``7d``, ``1h30m``); an ISO-8601 date (midnight UTC); an ISO-8601 date and time, UTC unless
    it carries an offset (``2024-05-01T10:00``, ``2024-05-01 10:00:00Z``,
    ``2024-05-01T12:00+02:00``). A bare number is refused: seconds, milliseconds or a year?

    Raises:
        ConfigError: ``text`` is none of these.

    >>> now = 1_714_557_600_000  # 2024-05-01T10:00:00Z
    >>> parse_time_bound("24h", now) == now - 86_400_000, parse_time_bound("now", now) == now
    (True, True)
    >>> format_utc_ms(parse_time_bound("2024-05-01", now))
    '2024-05-01T00:00:00.000Z'
    >>> format_utc_ms(parse_time_bound("2024-05-01T12:30+02:00", now))
    '2024-05-01T10:30:00.000Z'
    """
    stripped = text.strip()
    if stripped.lower() == "now":
        return now_ms
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", stripped):
        try:
            return day_start_ms(dt.date.fromisoformat(stripped))
        except ValueError:
            pass
    elif re.match(r"\d{4}-\d{2}-\d{2}[T ]", stripped):
        try:
            moment = dt.datetime.fromisoformat(stripped)
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=dt.UTC)
            return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)
    elif stripped and not re.fullmatch(r"[\d.]+", stripped):
        try:
            return now_ms - round(parse_duration(stripped) * _MS_PER_SECOND)
        except ConfigError:
            pass
    raise ConfigError(
        f"{text!r} is not a time: expected 'now', a duration before now with a unit (24h, "
        "90m, 7d, 1h30m), an ISO date (2024-05-01) or an ISO date and time (2024-05-01T10:00, "
        "UTC unless an offset is given)"
    )


def _age_text(age_ms: int) -> str:
    return format_duration(max(age_ms, 0) // _MS_PER_SECOND)


# -- gaps ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CauseTotals:
    """Gaps and missed updates of one cause.

    Attributes:
        gaps: distinct gaps.
        missed: missed updates.
    """

    gaps: int = 0
    missed: int = 0


@dataclass(frozen=True, slots=True)
class GapTotals:
    """The totals line of ``recorder gaps``.

    Attributes:
        gaps: distinct gaps (one per symbol, ``from_ms``, ``to_ms``).
        records: log records; more than ``gaps`` when several instances logged the same gap.
        missed: missed updates of the distinct gaps.
        by_cause: the same per cause, every cause present.
    """

    gaps: int
    records: int
    missed: int
    by_cause: Mapping[GapCause, CauseTotals]


def gap_totals(gaps: Sequence[Gap]) -> GapTotals:
    """Count ``gaps``: each distinct gap once, however many instances logged it."""
    distinct = distinct_gaps(gaps)
    by_cause = {cause: CauseTotals() for cause in GapCause}
    for gap in distinct:
        known = by_cause[gap.cause]
        by_cause[gap.cause] = CauseTotals(known.gaps + 1, known.missed + gap.missed)
    return GapTotals(
        gaps=len(distinct),
        records=len(gaps),
        missed=sum(gap.missed for gap in distinct),
        by_cause=by_cause,
    )


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def render_totals(totals: GapTotals) -> str:
    """Render the totals line of the table format.

    >>> render_totals(gap_totals([]))
    'Total: 0 gaps, 0 missed updates'
    """
    records = f" ({_plural(totals.records, 'record')})" if totals.records != totals.gaps else ""
    line = (
        f"Total: {_plural(totals.gaps, 'gap')}{records}, {_plural(totals.missed, 'missed update')}"
    )
    parts = [
        f"{cause.value} {_plural(counts.gaps, 'gap')}/{counts.missed} missed"
        for cause, counts in totals.by_cause.items()
        if counts.gaps
    ]
    return f"{line}: {', '.join(parts)}" if parts else line


_TABLE_HEADER = ("SYMBOL", "FROM", "TO", "DURATION", "MISSED", "CAUSE", "INSTANCE", "CONNECTION")


def render_gaps_table(gaps: Sequence[Gap]) -> str:
    """Render ``gaps`` as an aligned text table followed by the totals line."""
    rows = [
        (
            gap.symbol,
            format_utc_ms(gap.from_ms),
            format_utc_ms(gap.to_ms),
            format_duration((gap.to_ms - gap.from_ms) / _MS_PER_SECOND),
            str(gap.missed),
            gap.cause.value,
            gap.instance_id or "-",
            gap.connection_id or "-",
        )
        for gap in gaps
    ]
    lines: list[str] = []
    if rows:
        table = [_TABLE_HEADER, *rows]
        widths = [max(len(row[column]) for row in table) for column in range(len(_TABLE_HEADER))]
        numeric = {_TABLE_HEADER.index("MISSED")}
        lines.extend(
            "  ".join(
                cell.rjust(width) if column in numeric else cell.ljust(width)
                for column, (cell, width) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
            for row in table
        )
    else:
        lines.append("No gaps.")
    lines.append(render_totals(gap_totals(gaps)))
    return "\n".join(lines) + "\n"


def render_gaps_json(gaps: Sequence[Gap]) -> str:
    """Render ``gaps`` as one JSON array of gap log records (see :mod:`recorder.gaps.log`)."""
    return json.dumps([gap_to_record(gap) for gap in gaps], ensure_ascii=False, indent=1) + "\n"


_CSV_COLUMNS = (
    "symbol",
    "from",
    "to",
    "from_ms",
    "to_ms",
    "missed",
    "cause",
    "detected_at",
    "connection_id",
    "instance_id",
)


def render_gaps_csv(gaps: Sequence[Gap]) -> str:
    """Render ``gaps`` as CSV with a header row; empty cells for missing ids."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=_CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for gap in gaps:
        record = gap_to_record(gap)
        writer.writerow({name: record[name] for name in _CSV_COLUMNS})
    return out.getvalue()


# -- check -----------------------------------------------------------------------------------


def missed_in_window(gap: Gap, since_ms: int, until_ms: int) -> int:
    """Return how many of ``gap``'s missed updates fall inside ``[since_ms, until_ms)``.

    The missed updates are taken as evenly spread between ``from_ms`` and ``to_ms``, so a gap
    that began before the window counts only its share inside it.

    >>> gap = Gap("X", 0, 10_000, 4, GapCause.STALL, 0)  # missed at 2, 4, 6 and 8 s
    >>> missed_in_window(gap, 0, 20_000), missed_in_window(gap, 5_000, 20_000)
    (4, 2)
    >>> missed_in_window(gap, 0, 4_000), missed_in_window(gap, 10_000, 20_000)
    (1, 0)
    """
    span = gap.to_ms - gap.from_ms
    if span <= 0 or gap.missed <= 0:
        return 0
    slots = gap.missed + 1
    # Missed update k (1..missed) is at from + k * span / slots.
    first = max(1, -((gap.from_ms - since_ms) * slots // span))
    last = min(gap.missed, -((gap.from_ms - until_ms) * slots // span) - 1)
    return max(0, last - first + 1)


@dataclass(frozen=True, slots=True)
class CheckLimits:
    """What ``check`` looks at and what it tolerates.

    Attributes:
        now_ms: the time of the check, milliseconds since the epoch.
        since_ms: start of the window whose missed updates count.
        max_missed: missed updates tolerated per symbol over the window.
        max_missed_total: missed updates tolerated over all symbols; ``None``: no limit.
        max_age_ms: how old a symbol's newest event may be.
        symbols: the symbols expected; ``None``: those named in the state files.
        causes: the causes whose missed updates count.
    """

    now_ms: int
    since_ms: int
    max_missed: int = 0
    max_missed_total: int | None = None
    max_age_ms: int = 15 * 60 * _MS_PER_SECOND
    symbols: tuple[str, ...] | None = None
    causes: frozenset[GapCause] = DEFAULT_CHECK_CAUSES


class ProblemKind(enum.StrEnum):
    """What ``check`` can find wrong."""

    MISSED = "missed"
    """A symbol missed more updates than allowed."""
    MISSED_TOTAL = "missed_total"
    """All symbols together missed more updates than allowed."""
    STALE = "stale"
    """A symbol's newest event is older than allowed."""
    NEVER_RECORDED = "never_recorded"
    """An expected symbol has no event anywhere."""


@dataclass(frozen=True, slots=True)
class CheckProblem:
    """One problem, with its human line.

    Attributes:
        kind: what is wrong.
        symbol: the symbol concerned; ``None`` for totals.
        message: one line for a human.
    """

    kind: ProblemKind
    symbol: str | None
    message: str


@dataclass(frozen=True, slots=True)
class SymbolHealth:
    """One expected symbol as ``check`` saw it.

    Attributes:
        symbol: the symbol.
        newest_event_ms: its newest ``E`` in the state files and sealed data; ``None``: none.
        age_ms: how old that event is at the time of the check.
        missed: missed updates of the counted causes in the window.
        missed_by_cause: the same per cause (counted causes only).
        gaps: distinct gaps of the counted causes overlapping the window.
    """

    symbol: str
    newest_event_ms: int | None
    age_ms: int | None
    missed: int
    missed_by_cause: Mapping[GapCause, int]
    gaps: int


@dataclass(frozen=True, slots=True)
class CheckReport:
    """The outcome of ``check``.

    Attributes:
        limits: what was checked.
        symbols: every expected symbol, sorted.
        missed_total: missed updates of all expected symbols.
        problems: what is wrong; empty when healthy.
        torn_lines: incomplete last lines of the gap log (an append in progress, or a crash).
    """

    limits: CheckLimits
    symbols: tuple[SymbolHealth, ...]
    missed_total: int
    problems: tuple[CheckProblem, ...]
    torn_lines: tuple[TornLine, ...] = ()

    @property
    def exit_code(self) -> ExitCode:
        """``OK`` when healthy, ``PROBLEMS`` otherwise."""
        return ExitCode.PROBLEMS if self.problems else ExitCode.OK

    def render_text(self) -> list[str]:
        """One line per problem, or one ``OK`` line when healthy."""
        if self.problems:
            return [problem.message for problem in self.problems]
        ages = [health.age_ms for health in self.symbols if health.age_ms is not None]
        causes = ", ".join(sorted(self.limits.causes))
        return [
            f"OK: {_plural(len(self.symbols), 'symbol')}, "
            f"{_plural(self.missed_total, 'missed update')} ({causes}) since "
            f"{format_utc_ms(self.limits.since_ms)}, newest events at most "
            f"{_age_text(max(ages, default=0))} old"
        ]

    def to_document(self) -> dict[str, object]:
        """The machine-readable report (``--format json``)."""
        limits = self.limits
        return {
            "status": "ok" if not self.problems else "problems",
            "exit_code": int(self.exit_code),
            "checked_at": format_utc_ms(limits.now_ms),
            "since": format_utc_ms(limits.since_ms),
            "limits": {
                "max_missed": limits.max_missed,
                "max_missed_total": limits.max_missed_total,
                "max_age_seconds": limits.max_age_ms / _MS_PER_SECOND,
                "causes": sorted(limits.causes),
            },
            "missed_total": self.missed_total,
            "symbols": [
                {
                    "symbol": health.symbol,
                    "newest_event": None
                    if health.newest_event_ms is None
                    else format_utc_ms(health.newest_event_ms),
                    "newest_event_ms": health.newest_event_ms,
                    "age_seconds": None
                    if health.age_ms is None
                    else health.age_ms / _MS_PER_SECOND,
                    "gaps": health.gaps,
                    "missed": health.missed,
                    "missed_by_cause": {
                        cause.value: count
                        for cause, count in sorted(health.missed_by_cause.items())
                    },
                }
                for health in self.symbols
            ],
            "problems": [
                {"kind": problem.kind.value, "symbol": problem.symbol, "message": problem.message}
                for problem in self.problems
            ],
            "warnings": [_torn_line_text(line) for line in self.torn_lines],
        }


def _torn_line_text(line: TornLine) -> str:
    return f"incomplete last line {line.line_number} of {line.path} skipped"


def _partition_value(name: str, key: str) -> str | None:
    match = _PARTITION_DIR.fullmatch(name)
    if match is None or match["key"] != key:
        return None
    return match["value"]


def _partition_date(name: str) -> dt.date | None:
    value = _partition_value(name, DATE_KEY)
    if value is None or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def _is_data_file_name(name: str) -> bool:
    return name.endswith(DATA_SUFFIX) and not name.startswith((".", "_"))


def _event_times(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Return an event-time column as int64 milliseconds since the epoch."""
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
            index = schema.get_field_index(_EVENT_TIME)
            if index < 0:
                raise StorageError(f"sealed file {path} has no {_EVENT_TIME} column")
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
            values = _event_times(parquet.read(columns=[_EVENT_TIME]).column(0))
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
            (entry for entry in root.iterdir() if _partition_date(entry.name) is not None),
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


def _expected_symbols(states: Sequence[InstanceState], limits: CheckLimits) -> tuple[str, ...]:
    if limits.symbols is not None:
        return tuple(sorted(set(limits.symbols)))
    return tuple(sorted({symbol for state in states for symbol in state.symbols}))


def _newest_events(
    root: Path, states: Sequence[InstanceState], expected: Sequence[str]
) -> dict[str, int]:
    """Return the newest ``E`` of each expected symbol over the sealed data and the states."""
    newest = newest_sealed_event_times(root, expected)
    for symbol, event_time in merge_last_event_times(states, expected).items():
        newest[symbol] = max(event_time, newest.get(symbol, event_time))
    return newest


def _missed_in_window(
    gaps: Iterable[Gap], expected: Sequence[str], limits: CheckLimits
) -> tuple[dict[str, dict[GapCause, int]], dict[str, int]]:
    """Return missed updates per symbol and cause, and distinct gaps per symbol."""
    missed_by: dict[str, dict[GapCause, int]] = {symbol: {} for symbol in expected}
    gap_counts = dict.fromkeys(expected, 0)
    for gap in distinct_gaps(gaps):
        by_cause = missed_by.get(gap.symbol)
        if by_cause is None or gap.cause not in limits.causes:
            continue
        inside = missed_in_window(gap, limits.since_ms, limits.now_ms)
        by_cause[gap.cause] = by_cause.get(gap.cause, 0) + inside
        gap_counts[gap.symbol] += 1
    return missed_by, gap_counts


def _symbol_problems(health: SymbolHealth, limits: CheckLimits) -> Iterator[CheckProblem]:
    symbol = health.symbol
    if health.missed > limits.max_missed:
        yield CheckProblem(
            ProblemKind.MISSED,
            symbol,
            f"{symbol}: {_plural(health.missed, 'missed update')} since "
            f"{format_utc_ms(limits.since_ms)} ({_cause_text(health.missed_by_cause)}), over "
            f"the limit of {limits.max_missed} per symbol",
        )
    if health.newest_event_ms is None or health.age_ms is None:
        yield CheckProblem(
            ProblemKind.NEVER_RECORDED,
            symbol,
            f"{symbol}: no event recorded (in no state file and no sealed data file)",
        )
    elif health.age_ms > limits.max_age_ms:
        yield CheckProblem(
            ProblemKind.STALE,
            symbol,
            f"{symbol}: newest event {format_utc_ms(health.newest_event_ms)} is "
            f"{_age_text(health.age_ms)} old, older than the limit of "
            f"{_age_text(limits.max_age_ms)}",
        )


def run_check(root: Path, limits: CheckLimits) -> CheckReport:
    """Check the recording under ``root`` against ``limits``.

    Expected symbols are ``limits.symbols``, else every symbol named in a state file. A
    symbol's newest event is the newest over the state files and the sealed data. Gaps count
    once however many instances logged them, only for expected symbols and counted causes,
    and only for their share inside ``[since_ms, now_ms)``.

    Raises:
        StorageError: the root, a state file, a sealed file or the gap log cannot be read, or
            the gap log or a state file is invalid.
        ConfigError: no symbol to check (no ``symbols`` and no state file naming any).
    """
    require_root(root)
    states = read_states(root)
    expected = _expected_symbols(states, limits)
    if not expected:
        raise ConfigError(
            f"no symbols to check: no state file under {root} names any (has the recorder "
            "run yet?); pass the symbols to expect"
        )
    newest = _newest_events(root, states, expected)
    scan = scan_gap_log(root, since_ms=limits.since_ms, until_ms=limits.now_ms)
    missed_by, gap_counts = _missed_in_window(scan.gaps, expected, limits)
    healths: list[SymbolHealth] = []
    problems: list[CheckProblem] = []
    for symbol in expected:
        event_time = newest.get(symbol)
        health = SymbolHealth(
            symbol=symbol,
            newest_event_ms=event_time,
            age_ms=None if event_time is None else limits.now_ms - event_time,
            missed=sum(missed_by[symbol].values()),
            missed_by_cause=missed_by[symbol],
            gaps=gap_counts[symbol],
        )
        healths.append(health)
        problems.extend(_symbol_problems(health, limits))
    total = sum(health.missed for health in healths)
    if limits.max_missed_total is not None and total > limits.max_missed_total:
        all_causes: dict[GapCause, int] = {}
        for by_cause in missed_by.values():
            for cause, count in by_cause.items():
                all_causes[cause] = all_causes.get(cause, 0) + count
        problems.append(
            CheckProblem(
                ProblemKind.MISSED_TOTAL,
                None,
                f"all symbols: {_plural(total, 'missed update')} since "
                f"{format_utc_ms(limits.since_ms)} ({_cause_text(all_causes)}), over the limit "
                f"of {limits.max_missed_total}",
            )
        )
    return CheckReport(limits, tuple(healths), total, tuple(problems), tuple(scan.torn))


def _cause_text(by_cause: Mapping[GapCause, int]) -> str:
    return ", ".join(f"{cause.value} {count}" for cause, count in sorted(by_cause.items()))


# -- verify ----------------------------------------------------------------------------------


class FindingKind(enum.StrEnum):
    """What ``verify`` can find."""

    STRAY_PARQUET = "stray_parquet"
    """A ``.parquet`` file outside ``date=*/symbol=*/``: DuckDB's ``**`` glob would read it."""
    BAD_PARTITION = "bad_partition"
    """A data file in a directory whose name is not a valid ``date=``/``symbol=`` value."""
    UNREADABLE = "unreadable"
    """The footer or the data of a file cannot be read (truncated, corrupt)."""
    SCHEMA_MISMATCH = "schema_mismatch"
    """The columns are not the recorder's schema."""
    METADATA_MISMATCH = "metadata_mismatch"
    """The file's key-value metadata does not name its partition."""
    UNSORTED = "unsorted"
    """Rows are not sorted by ``event_time``."""
    DUPLICATE = "duplicate"
    """An event (symbol, ``event_time``) appears more than once."""
    WRONG_DATE = "wrong_date"
    """Rows whose ``event_time`` is not on the partition's UTC date."""
    UNLOGGED_GAP = "unlogged_gap"
    """A gap in the data that no gap log record covers."""
    GAP_FILLED = "gap_filled"
    """A logged gap now has data inside it (backfill, another instance): a notice only."""


NOTICE_KINDS: frozenset[FindingKind] = frozenset({FindingKind.GAP_FILLED})
"""Findings that are reported but do not fail ``verify``."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing ``verify`` found.

    Attributes:
        kind: what it is.
        message: one line for a human.
        path: the file or directory concerned, when there is one.
        symbol: the symbol concerned, when there is one.
    """

    kind: FindingKind
    message: str
    path: Path | None = None
    symbol: str | None = None

    @property
    def is_problem(self) -> bool:
        """Whether it fails ``verify`` (everything but notices)."""
        return self.kind not in NOTICE_KINDS


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of ``verify``.

    Attributes:
        date: the day verified; ``None``: every day.
        files: data files read.
        rows: rows read.
        partitions: symbol-day partitions read.
        data_gaps: gaps recomputed from the data.
        logged_gaps: distinct gaps in the gap log within the scope.
        findings: problems and notices, in discovery order.
        torn_lines: incomplete last lines of the gap log.
    """

    date: dt.date | None
    files: int
    rows: int
    partitions: int
    data_gaps: int
    logged_gaps: int
    findings: tuple[Finding, ...]
    torn_lines: tuple[TornLine, ...] = ()

    @property
    def problems(self) -> int:
        """Findings that fail ``verify``."""
        return sum(finding.is_problem for finding in self.findings)

    @property
    def exit_code(self) -> ExitCode:
        """``OK`` without problems (notices allowed), ``PROBLEMS`` otherwise."""
        return ExitCode.PROBLEMS if self.problems else ExitCode.OK

    def render_text(self) -> list[str]:
        """One line per finding, then a summary line."""
        lines = [
            f"{'problem' if finding.is_problem else 'notice'}: {finding.kind.value}: "
            f"{finding.message}"
            for finding in self.findings
        ]
        notices = len(self.findings) - self.problems
        scope = f" of {self.date.isoformat()}" if self.date is not None else ""
        verdict = "OK" if not self.problems else "FAILED"
        lines.append(
            f"{verdict}: verified {_plural(self.files, 'file')}{scope} in "
            f"{_plural(self.partitions, 'partition')} ({_plural(self.rows, 'row')}), "
            f"{_plural(self.data_gaps, 'gap')} in the data, "
            f"{_plural(self.logged_gaps, 'logged gap')}: "
            f"{_plural(self.problems, 'problem')}, {_plural(notices, 'notice')}"
        )
        return lines

    def to_document(self) -> dict[str, object]:
        """The machine-readable report (``--format json``)."""
        return {
            "status": "ok" if not self.problems else "problems",
            "exit_code": int(self.exit_code),
            "date": None if self.date is None else self.date.isoformat(),
            "files": self.files,
            "rows": self.rows,
            "partitions": self.partitions,
            "data_gaps": self.data_gaps,
            "logged_gaps": self.logged_gaps,
            "problems": self.problems,
            "findings": [
                {
                    "kind": finding.kind.value,
                    "severity": "problem" if finding.is_problem else "notice",
                    "symbol": finding.symbol,
                    "path": None if finding.path is None else str(finding.path),
                    "message": finding.message,
                }
                for finding in self.findings
            ],
            "warnings": [_torn_line_text(line) for line in self.torn_lines],
        }


@dataclass(frozen=True, slots=True)
class _Hole:
    """Two consecutive events of a symbol in the data, far enough apart to matter."""

    from_ms: int
    to_ms: int


@dataclass(slots=True)
class _SymbolData:
    """What the data says about one symbol, accumulated day by day."""

    first_ms: int | None = None
    last_ms: int | None = None
    holes: list[_Hole] = field(default_factory=list)


@dataclass(slots=True)
class _Verifier:
    root: Path
    interval_ms: int
    findings: list[Finding] = field(default_factory=list)
    files: int = 0
    rows: int = 0
    partitions: int = 0
    data_gaps: int = 0

    def find(
        self,
        kind: FindingKind,
        message: str,
        path: Path | None = None,
        symbol: str | None = None,
    ) -> None:
        self.findings.append(Finding(kind, message, path, symbol))

    def discover(self, date: dt.date | None) -> dict[str, list[tuple[dt.date, list[Path]]]]:
        """Walk the root (or one day) for data files; report strays and bad partitions."""
        partitions: dict[str, dict[dt.date, list[Path]]] = {}
        top = self.root if date is None else self.root / f"{DATE_KEY}={date.isoformat()}"
        if not top.is_dir():
            return {}
        for directory, dir_names, file_names in os.walk(top, onerror=_raise):
            dir_names.sort()
            here = Path(directory)
            for name in sorted(file_names):
                if not name.endswith(DATA_SUFFIX):
                    continue
                path = here / name
                placement = self._placement(path)
                if placement is None:
                    continue
                day, symbol = placement
                partitions.setdefault(symbol, {}).setdefault(day, []).append(path)
        return {symbol: sorted(days.items()) for symbol, days in sorted(partitions.items())}

    def _placement(self, path: Path) -> tuple[dt.date, str] | None:
        relative = path.relative_to(self.root).parts
        hidden = any(part.startswith((".", "_")) for part in relative)
        if len(relative) != 3 or hidden:
            self.find(
                FindingKind.STRAY_PARQUET,
                f"{path} ends in {DATA_SUFFIX} outside the date=*/symbol=* partitions: "
                "DuckDB's **/*.parquet glob reads it as data",
                path,
            )
            return None
        date_name, symbol_name, _ = relative
        day = _partition_date(date_name)
        symbol = _partition_value(symbol_name, SYMBOL_KEY)
        if day is None or symbol is None or not is_valid_symbol(symbol):
            self.find(
                FindingKind.BAD_PARTITION,
                f"{path} lies in {date_name}/{symbol_name}, which is not a valid "
                "date=YYYY-MM-DD/symbol=<SYMBOL> partition",
                path,
            )
            return None
        return day, symbol

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
            self.find(FindingKind.UNREADABLE, f"{path} cannot be read: {exc}", path, symbol)
            return None
        self.rows += table.num_rows
        if not schema.equals(DATA_SCHEMA, check_metadata=False):
            self.find(
                FindingKind.SCHEMA_MISMATCH,
                f"{path} does not have the recorder schema: {_schema_difference(schema)}",
                path,
                symbol,
            )
        self._check_metadata(path, metadata, day, symbol)
        index = schema.get_field_index(_EVENT_TIME)
        if index < 0 or not pa.types.is_timestamp(schema.field(index).type):
            return None
        times = _event_times(table.column(index))
        if len(times) > 1 and not pc.all(pc.less_equal(times[:-1], times[1:])).as_py():
            self.find(
                FindingKind.UNSORTED, f"{path}: rows are not sorted by event_time", path, symbol
            )
        start = day_start_ms(day)
        outside = pc.sum(
            pc.or_(pc.less(times, start), pc.greater_equal(times, start + MS_PER_DAY))
        ).as_py()
        if outside:
            self.find(
                FindingKind.WRONG_DATE,
                f"{path}: {_plural(outside, 'row')} with an event_time not on {day.isoformat()} "
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
                self.find(
                    FindingKind.METADATA_MISMATCH,
                    f"{path}: key-value metadata {key!r} is missing",
                    path,
                    symbol,
                )
            elif found.decode(errors="replace") != value:
                self.find(
                    FindingKind.METADATA_MISMATCH,
                    f"{path}: key-value metadata {key!r} is "
                    f"{found.decode(errors='replace')!r}, but the partition is {value!r}",
                    path,
                    symbol,
                )

    def verify_partition(
        self, symbol: str, day: dt.date, paths: list[Path], hole_ms: int, data: _SymbolData
    ) -> None:
        """Check one symbol-day and extend the symbol's holes with it."""
        self.partitions += 1
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
            self.find(
                FindingKind.DUPLICATE,
                f"{symbol} on {day.isoformat()}: {_plural(len(repeats), 'duplicate event')} "
                f"(first at {format_utc_ms(first)}) in {', '.join(involved)}",
                paths[0].parent,
                symbol,
            )
            ordered = pc.unique(ordered)
        self._extend_holes(ordered, hole_ms, data)

    def _extend_holes(self, ordered: pa.Array, hole_ms: int, data: _SymbolData) -> None:
        if data.last_ms is not None:
            ordered = pa.concat_arrays([pa.array([data.last_ms], pa.int64()), ordered])
        elif data.first_ms is None:
            data.first_ms = ordered[0].as_py()
        if len(ordered) > 1:
            deltas = pc.subtract(ordered[1:], ordered[:-1])
            for position in pc.indices_nonzero(pc.greater_equal(deltas, hole_ms)).to_pylist():
                data.holes.append(_Hole(ordered[position].as_py(), ordered[position + 1].as_py()))
        data.last_ms = ordered[-1].as_py()

    def compare_with_log(self, symbol: str, data: _SymbolData, logged: list[Gap]) -> None:
        """Report data gaps no logged gap covers, and logged gaps the data contradicts."""
        logged = sorted(logged, key=lambda gap: (gap.from_ms, gap.to_ms))
        starts = [gap.from_ms for gap in logged]
        reach: list[int] = []
        for gap in logged:
            reach.append(max(gap.to_ms, reach[-1]) if reach else gap.to_ms)
        for hole in data.holes:
            missed = missed_updates(hole.from_ms, hole.to_ms, self.interval_ms)
            if missed < 1:
                continue
            self.data_gaps += 1
            index = bisect.bisect_right(starts, hole.from_ms) - 1
            if index < 0 or reach[index] < hole.to_ms:
                self.find(
                    FindingKind.UNLOGGED_GAP,
                    f"{symbol}: gap in the data {format_utc_ms(hole.from_ms)} -> "
                    f"{format_utc_ms(hole.to_ms)} ({_plural(missed, 'missed update')}) is not "
                    "in the gap log",
                    symbol=symbol,
                )
        holes = sorted(data.holes, key=lambda hole: hole.from_ms)
        hole_starts = [hole.from_ms for hole in holes]
        hole_reach: list[int] = []
        for hole in holes:
            hole_reach.append(max(hole.to_ms, hole_reach[-1]) if hole_reach else hole.to_ms)
        for gap in logged:
            if _contradicted(gap, data, hole_starts, hole_reach):
                self.find(
                    FindingKind.GAP_FILLED,
                    f"{symbol}: logged gap {format_utc_ms(gap.from_ms)} -> "
                    f"{format_utc_ms(gap.to_ms)} ({gap.cause.value}, "
                    f"{_plural(gap.missed, 'missed update')}) has data inside it now (filled "
                    "later, or recorded by another instance)",
                    symbol=symbol,
                )


def _contradicted(
    gap: Gap, data: _SymbolData, hole_starts: list[int], hole_reach: list[int]
) -> bool:
    """Tell whether the data holds an event strictly between ``gap.from_ms`` and ``to_ms``."""
    if data.first_ms is None or data.last_ms is None:
        return False
    if gap.to_ms <= data.first_ms or gap.from_ms >= data.last_ms:
        return False
    index = bisect.bisect_right(hole_starts, gap.from_ms) - 1
    return index < 0 or hole_reach[index] < gap.to_ms


def _raise(error: OSError) -> None:
    raise error


def _schema_difference(actual: pa.Schema) -> str:
    expected = {f.name: f for f in DATA_SCHEMA}
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
    if not parts and actual.names != DATA_SCHEMA.names:
        parts.append(f"columns in order {actual.names}, expected {DATA_SCHEMA.names}")
    return "; ".join(parts) or "differs"


def run_verify(
    root: Path, date: dt.date | None = None, interval_ms: int = DEFAULT_INTERVAL_MS
) -> VerifyReport:
    """Read every sealed data file under ``root`` (or of one day) and check it.

    Per file: footer and data readable; schema equal to the recorder's
    (:data:`recorder.storage.schema.DATA_SCHEMA`); key-value metadata naming the file's partition;
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
    verifier = _Verifier(root, interval_ms)
    try:
        by_symbol = verifier.discover(date)
    except OSError as exc:
        raise StorageError(f"cannot list the dataset under {root}: {exc}") from exc
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
    for symbol, days in by_symbol.items():
        symbol_logged = logged_by_symbol.get(symbol, [])
        # Holes as short as the shortest logged gap, so that a logged gap counts as confirmed
        # even if it was logged under another interval.
        hole_ms = min([gap_span_ms, *(gap.to_ms - gap.from_ms for gap in symbol_logged)])
        data = _SymbolData()
        for day, paths in days:
            verifier.verify_partition(symbol, day, paths, max(hole_ms, 1), data)
        verifier.compare_with_log(symbol, data, symbol_logged)
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
