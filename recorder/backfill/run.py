"""One ``recorder backfill`` run: the open gaps of a window, their klines, their rows, published.

For each open gap (logged, not yet resolved, of the chosen causes and symbols) of the window:

1. the whole minutes strictly inside it (:func:`~recorder.backfill.rebuild.minutes_inside`);
   a gap with none has nothing one-minute candles can rebuild and stays open; a minute that a
   gap filled before holds (redundant instances log overlapping gaps) keeps its one row;
2. the candles those minutes need, the trailing day included, fetched once per symbol and
   span (:class:`~recorder.backfill.fetch.CandleFetcher`: paced, 429s waited out, retried);
3. one row per minute (:func:`~recorder.backfill.rebuild.rebuild`); a gap any of whose
   minutes cannot be rebuilt is reported and left as it is, nothing of it published;
4. its rows published, one file per UTC day of the gap, with ``source = backfill``, through the
   recorder's own write-aside, fsync and rename
   (:func:`~recorder.storage.publisher.publish_partition`), under a name derived from the gap
   (``backfill-<from_ms>-<to_ms>.parquet``), so that a rerun after a crash finds the file
   already there instead of writing the rows twice;
5. then, once every file of it is durable, its resolution record
   (:func:`~recorder.gaps.resolutions.append_resolutions`): a rerun skips the gap.

Symbols are done ``concurrency`` at a time; one weight budget paces them all. The run holds
the root's maintenance lock, so no ``compact`` or ``migrate`` rewrites a partition meanwhile.
A 418 stops the run (:class:`~recorder.backfill.fetch.BannedError`); gaps done by then stay
done.
"""

import asyncio
import datetime as dt
import enum
import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from recorder.backfill.fetch import BannedError, CandleFetcher
from recorder.backfill.pacing import WeightPacer
from recorder.backfill.rebuild import candle_spans, minutes_inside, rebuild
from recorder.clock import Clock, event_date
from recorder.errors import KlinesError, RestError, StorageError
from recorder.gaps.detector import Gap, GapCause
from recorder.gaps.resolutions import Resolution, append_resolutions, read_resolutions
from recorder.gaps.scan import distinct_gaps, scan_gap_log
from recorder.ingest.klines import Candle
from recorder.ingest.rest import RestClient
from recorder.model import MiniTicker
from recorder.storage.locking import exclusive_root_lock
from recorder.storage.paths import PartitionKey, require_root
from recorder.storage.publisher import publish_partition
from recorder.storage.root_schema import root_schema_version
from recorder.storage.schema import (
    FIRST_SCHEMA_VERSION,
    SOURCE_BACKFILL,
    build_wal_batch,
    data_columns,
)
from recorder.storage.sealing import SealReason

BACKFILL_WRITER = "backfill"
"""The writer named in resolution records and their file names."""

DEFAULT_BACKFILL_CAUSES: frozenset[GapCause] = frozenset(
    {GapCause.DISCONNECT, GapCause.STALL, GapCause.RESTART, GapCause.STORAGE}
)
"""Causes filled by default: a ``quiet`` gap is the exchange's silence, nothing was lost."""


class GapState(enum.StrEnum):
    """What a run did with one gap."""

    FILLED = "filled"
    WOULD_FILL = "would_fill"
    NOTHING_INSIDE = "nothing_inside"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class GapOutcome:
    """One gap of the run.

    Attributes:
        gap: the gap.
        state: what was done.
        rows: rows published (or, in a dry run, whole minutes inside it).
        why: why it failed.
    """

    gap: Gap
    state: GapState
    rows: int = 0
    why: str | None = None


@dataclass(slots=True)
class BackfillReport:
    """What a run did.

    Attributes:
        outcomes: one per open gap of the window, in time order.
        requests: klines requests sent.
        retries: requests sent again.
        rate_limited: 429 answers waited out.
        waited: seconds spent waiting for the weight budget or ``Retry-After``.
        already_resolved: gaps of the window resolved by an earlier run.
        banned: set when a 418 stopped the run.
    """

    outcomes: list[GapOutcome] = field(default_factory=list)
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    waited: float = 0.0
    already_resolved: int = 0
    banned: str | None = None

    def count(self, state: GapState) -> int:
        """Gaps in ``state``."""
        return sum(1 for outcome in self.outcomes if outcome.state is state)

    @property
    def rows(self) -> int:
        """Rows published (or, in a dry run, to publish)."""
        return sum(outcome.rows for outcome in self.outcomes)

    @property
    def exit_code(self) -> int:
        """0 every gap filled that could be, 1 some could not, 2 stopped by a ban."""
        if self.banned is not None:
            return 2
        return 1 if self.count(GapState.FAILED) else 0


GapHook = Callable[[GapOutcome], None]
"""Called once per gap when it is done (a progress bar)."""


def open_gaps(
    root_gaps: Iterable[Gap],
    resolved: Iterable[tuple[str, int, int]],
    causes: frozenset[GapCause],
    symbols: frozenset[str] | None,
) -> tuple[list[Gap], int]:
    """The distinct gaps to fill, oldest first, and how many were resolved already."""
    done = set(resolved)
    wanted = [
        gap
        for gap in distinct_gaps(root_gaps)
        if gap.cause in causes and (symbols is None or gap.symbol in symbols)
    ]
    fresh = [gap for gap in wanted if gap.key not in done]
    fresh.sort(key=lambda gap: (gap.from_ms, gap.symbol, gap.to_ms))
    return fresh, len(wanted) - len(fresh)


def backfill_file_name(gap: Gap) -> str:
    """The name of a gap's file in each partition it fills: the same on every rerun."""
    return f"backfill-{gap.from_ms}-{gap.to_ms}.parquet"


@dataclass(slots=True)
class _Run:
    root: Path
    fetcher: CandleFetcher | None
    clock: Clock
    report: BackfillReport
    on_gap: GapHook | None

    def done(self, outcome: GapOutcome) -> None:
        self.report.outcomes.append(outcome)
        if self.on_gap is not None:
            self.on_gap(outcome)


async def run_backfill(
    root: Path,
    *,
    rest_url: str,
    request_timeout: float,
    clock: Clock,
    since_ms: int | None = None,
    until_ms: int | None = None,
    symbols: frozenset[str] | None = None,
    causes: frozenset[GapCause] = DEFAULT_BACKFILL_CAUSES,
    dry_run: bool = False,
    concurrency: int = 4,
    pacer: WeightPacer | None = None,
    rng: random.Random | None = None,
    on_gap: GapHook | None = None,
    on_start: Callable[[int], None] | None = None,
) -> BackfillReport:
    """Fill the open gaps of ``[since_ms, until_ms)`` under ``root`` (see the module docstring).

    Raises:
        StorageError: the backfill cannot run: the root is missing or unreadable, of schema
            version 1 (``recorder migrate`` first), its gap log invalid, or a ``compact`` or
            ``migrate`` holds it.
    """
    require_root(root)
    with exclusive_root_lock(root, "backfill"):
        if not dry_run and root_schema_version(root) == FIRST_SCHEMA_VERSION:
            msg = (
                f"{root} holds files of schema version 1, which cannot mark backfilled rows: "
                "run `recorder migrate` first"
            )
            raise StorageError(msg)
        scan = scan_gap_log(root, since_ms, until_ms)
        resolved = read_resolutions(root)
        gaps, already = open_gaps(scan.gaps, resolved, causes, symbols)
        filled = filled_minutes(resolved)
        report = BackfillReport(already_resolved=already)
        if on_start is not None:
            on_start(len(gaps))
        by_symbol: dict[str, list[Gap]] = defaultdict(list)
        for gap in gaps:
            by_symbol[gap.symbol].append(gap)
        pacer = pacer or WeightPacer()
        async with aiohttp.ClientSession() as session:
            fetcher = CandleFetcher(
                RestClient(session, rest_url, timeout=request_timeout),
                pacer,
                clock,
                rng or random.Random(),  # noqa: S311 - jitter, not cryptography
            )
            run = _Run(root, None if dry_run else fetcher, clock, report, on_gap)
            slots = asyncio.Semaphore(concurrency)
            try:
                async with asyncio.TaskGroup() as tg:
                    for symbol, symbol_gaps in by_symbol.items():
                        tg.create_task(
                            _fill_symbol(run, slots, symbol, symbol_gaps, filled[symbol])
                        )
            except* BannedError as group:
                report.banned = str(group.exceptions[0])
        report.requests, report.retries = fetcher.requests, fetcher.retries
        report.rate_limited, report.waited = pacer.rate_limited, pacer.waited
        report.outcomes.sort(key=lambda outcome: (outcome.gap.from_ms, outcome.gap.symbol))
        return report


def filled_minutes(resolved: Iterable[tuple[str, int, int]]) -> defaultdict[str, set[int]]:
    """The minutes of each symbol that resolved gaps hold: they have their row already.

    Redundant instances that lost the same outage log overlapping gaps, each from its own last
    event; a minute inside several of them gets one row, from the first gap filled.
    """
    filled: defaultdict[str, set[int]] = defaultdict(set)
    for symbol, from_ms, to_ms in resolved:
        filled[symbol].update(minutes_inside(from_ms, to_ms))
    return filled


async def _fill_symbol(
    run: _Run, slots: asyncio.Semaphore, symbol: str, gaps: list[Gap], filled: set[int]
) -> None:
    """Fill one symbol's gaps, oldest first, sharing the candles they have in common.

    ``filled`` holds the minutes that have their row already; each gap filled adds its own.
    """
    async with slots:
        candles: dict[int, Candle] = {}
        fetched: list[tuple[int, int]] = []
        for gap in gaps:
            inside = minutes_inside(gap.from_ms, gap.to_ms)
            if not inside:
                run.done(GapOutcome(gap, GapState.NOTHING_INSIDE))
                continue
            minutes = [minute for minute in inside if minute not in filled]
            if run.fetcher is None:
                filled.update(minutes)
                run.done(GapOutcome(gap, GapState.WOULD_FILL, len(minutes)))
                continue
            try:
                await _fetch_spans(run.fetcher, symbol, minutes, candles, fetched)
            except (RestError, KlinesError) as exc:
                run.done(GapOutcome(gap, GapState.FAILED, why=f"klines could not be read: {exc}"))
                continue
            rebuilt = rebuild(symbol, minutes, candles, read_at_us=run.clock.wall_us())
            if rebuilt.missing:
                minute, reason = rebuilt.missing[0]
                why = (
                    f"{len(rebuilt.missing)} of {len(minutes)} minutes cannot be rebuilt "
                    f"(first: the minute opening {minute} ms: {reason})"
                )
                run.done(GapOutcome(gap, GapState.FAILED, why=why))
                continue
            try:
                await asyncio.to_thread(_publish, run.root, gap, rebuilt.rows, run.clock)
            except (OSError, ValueError) as exc:
                run.done(GapOutcome(gap, GapState.FAILED, why=f"not published: {exc}"))
                continue
            filled.update(minutes)
            run.done(GapOutcome(gap, GapState.FILLED, len(rebuilt.rows)))


async def _fetch_spans(
    fetcher: CandleFetcher,
    symbol: str,
    minutes: Sequence[int],
    candles: dict[int, Candle],
    fetched: list[tuple[int, int]],
) -> None:
    """Fetch the spans ``minutes`` need that no earlier request of this symbol covered."""
    for first, last in candle_spans(minutes):
        if any(start <= first and last <= end for start, end in fetched):
            continue
        for candle in await fetcher.fetch(symbol, first, last):
            candles[candle.open_time] = candle
        fetched.append((first, last))


def _publish(root: Path, gap: Gap, rows: Sequence[MiniTicker], clock: Clock) -> None:
    """Publish a gap's rows, one file per UTC day, then record its resolution.

    Raises:
        OSError: a file or the resolution could not be written (what was published stays, and
            a rerun finds it under the same name).
        ValueError: a row does not fit the dataset (the rebuild checks this first).
    """
    by_day: dict[dt.date, list[MiniTicker]] = defaultdict(list)
    for row in rows:
        by_day[event_date(row.event_time)].append(row)
    for day, day_rows in sorted(by_day.items()):
        publish_partition(
            root,
            PartitionKey(day, gap.symbol),
            [data_columns(build_wal_batch(day_rows))],
            backfill_file_name(gap),
            SealReason.BACKFILL,
            source=SOURCE_BACKFILL,
        )
    resolution = Resolution(gap.key, len(rows), SOURCE_BACKFILL, clock.wall_us(), BACKFILL_WRITER)
    append_resolutions(root, BACKFILL_WRITER, [resolution])
