"""What ``recorder check`` computes: the health of a recording from its gap log and state files.

Cheap enough to run every minute: it reads the gap log for the window, the state files, and
only the footers of the newest sealed files of each symbol. A symbol is unhealthy when it missed
more updates than allowed over the window (or all symbols together did), or when its newest
event is older than allowed or nowhere at all.
"""

import enum
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from recorder.clock import MS_PER_DAY, format_utc_ms
from recorder.errors import ConfigError
from recorder.gaps.detector import Gap, GapCause
from recorder.gaps.resolutions import read_resolutions
from recorder.gaps.scan import TornLine, distinct_gaps, scan_gap_log
from recorder.gaps.state import InstanceState, merge_last_event_times, read_states
from recorder.reports.read import (
    MS_PER_SECOND,
    ExitCode,
    newest_sealed_event_times,
    plural,
    torn_line_warning,
)
from recorder.settings.units import format_duration
from recorder.storage.paths import require_root

DEFAULT_CHECK_CAUSES: frozenset[GapCause] = frozenset(
    {GapCause.DISCONNECT, GapCause.STALL, GapCause.RESTART, GapCause.STORAGE}
)
"""Causes counted by ``check`` by default: ``quiet`` is the exchange's silence, not a loss."""


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
        include_resolved: count gaps ``recorder backfill`` resolved too (by default only
            open gaps count).
    """

    now_ms: int
    since_ms: int
    max_missed: int = 0
    max_missed_total: int | None = None
    max_age_ms: int = 15 * 60 * MS_PER_SECOND
    symbols: tuple[str, ...] | None = None
    causes: frozenset[GapCause] = DEFAULT_CHECK_CAUSES
    include_resolved: bool = False


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
    FUTURE = "future"
    """A symbol's newest event time is implausibly far ahead of the check's clock: ignored."""


FUTURE_TOLERANCE_MS = MS_PER_DAY
"""How far ahead of the check's clock a newest ``E`` may be and still count: the default of
``[source] max_event_time_skew``, beyond which the recorder quarantines an event. Further
ahead is a wrong clock, or a state file or data file written before the recorder quarantined
implausible event times: counting it would keep the symbol from ever reading as stale."""


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
            f"OK: {plural(len(self.symbols), 'symbol')}, "
            f"{plural(self.missed_total, 'missed update')} ({causes}) since "
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
                "max_age_seconds": limits.max_age_ms / MS_PER_SECOND,
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
                    "age_seconds": None if health.age_ms is None else health.age_ms / MS_PER_SECOND,
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
            "warnings": [torn_line_warning(line) for line in self.torn_lines],
        }


def _expected_symbols(states: Sequence[InstanceState], limits: CheckLimits) -> tuple[str, ...]:
    if limits.symbols is not None:
        return tuple(sorted(set(limits.symbols)))
    return tuple(sorted({symbol for state in states for symbol in state.symbols}))


def _newest_event_times(
    root: Path, states: Sequence[InstanceState], expected: Sequence[str], now_ms: int
) -> tuple[dict[str, int], dict[str, int]]:
    """Return the newest ``E`` of each expected symbol over the sealed data and the states.

    Returns:
        The newest plausible ``E`` per symbol, and the newest ignored as too far ahead of
        ``now_ms`` (:data:`FUTURE_TOLERANCE_MS`).
    """
    newest: dict[str, int] = {}
    ignored: dict[str, int] = {}
    sources = (newest_sealed_event_times(root, expected), merge_last_event_times(states, expected))
    for source in sources:
        for symbol, event_time in source.items():
            kept = ignored if event_time > now_ms + FUTURE_TOLERANCE_MS else newest
            kept[symbol] = max(event_time, kept.get(symbol, event_time))
    return newest, ignored


def _missed_by_symbol(
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
            f"{symbol}: {plural(health.missed, 'missed update')} since "
            f"{format_utc_ms(limits.since_ms)} "
            f"({_missed_by_cause_text(health.missed_by_cause)}), over the limit of "
            f"{limits.max_missed} per symbol",
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

    Expected symbols are ``limits.symbols``, else every symbol named in a state file: those
    of the instances that run or may run again, since ``recorder retire`` deletes the file of
    an instance that will not (and a restart reuses its instance's file). A
    symbol's newest event is the newest over the state files and the sealed data. Gaps count
    once however many instances logged them, only open ones (unless ``include_resolved``),
    only for expected symbols and counted causes,
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
    newest, ignored = _newest_event_times(root, states, expected, limits.now_ms)
    scan = scan_gap_log(root, since_ms=limits.since_ms, until_ms=limits.now_ms)
    resolved = {} if limits.include_resolved else read_resolutions(root)
    counted = [gap for gap in scan.gaps if gap.key not in resolved]
    missed_by, gap_counts = _missed_by_symbol(counted, expected, limits)
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
        if symbol in ignored:
            problems.append(_future_problem(symbol, ignored[symbol], limits))
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
                f"all symbols: {plural(total, 'missed update')} since "
                f"{format_utc_ms(limits.since_ms)} ({_missed_by_cause_text(all_causes)}), over "
                f"the limit of {limits.max_missed_total}",
            )
        )
    return CheckReport(limits, tuple(healths), total, tuple(problems), tuple(scan.torn))


def _future_problem(symbol: str, event_time: int, limits: CheckLimits) -> CheckProblem:
    return CheckProblem(
        ProblemKind.FUTURE,
        symbol,
        f"{symbol}: newest event time {format_utc_ms(event_time)} is "
        f"{_age_text(event_time - limits.now_ms)} ahead of the check's clock; ignored (a wrong "
        "clock, or a state or data file written before implausible event times were "
        "quarantined)",
    )


def _missed_by_cause_text(by_cause: Mapping[GapCause, int]) -> str:
    return ", ".join(f"{cause.value} {count}" for cause, count in sorted(by_cause.items()))


def _age_text(age_ms: int) -> str:
    return format_duration(max(age_ms, 0) // MS_PER_SECOND)
