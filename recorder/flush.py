"""One flush's storage writes, in the order that keeps the gap log honest; blocking I/O.

Each flush writes, in this order: the gap records, then the events (write-ahead log), then the
state file with the newest *durable* ``E`` per symbol, then it takes back what the publisher
sealed and hands it the partitions now due. When the gap records cannot be made durable, the
flush's events are held out of the log (``write_ahead(..., hold=True)``) until a flush whose
gap records succeed. A crash can therefore leave a logged gap whose closing event is lost (the
restart gap then overlaps it), but never durable data whose gap is unlogged, nor a state that
claims events the dataset does not have: a gap can be over-reported, never lost.

Memory: the Arrow bytes held (rows waiting to be published, and rows waiting to be logged while
storage refuses writes) stay within ``[storage] buffer_budget``. The writer seals partitions
early above the share of it the service gives it; when an outage outlasts the rest, the oldest
rows not yet durable are dropped, counted per symbol and logged as gaps of cause ``storage``
(:mod:`recorder.gaps.storage_drops`), each written before the event that closes it is logged.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from recorder.clock import Clock
from recorder.errors import StorageError
from recorder.event_columns import EventColumns
from recorder.gaps.detector import Gap
from recorder.gaps.log import GapLog
from recorder.gaps.state import write_state
from recorder.gaps.storage_drops import StorageDrops
from recorder.ingest.pipeline import FlushBatch
from recorder.model import Rejection
from recorder.settings import Settings
from recorder.storage.held_rows import SymbolRows
from recorder.storage.publisher import SealedFile
from recorder.storage.quarantine import QuarantineLog
from recorder.storage.seal_jobs import SealJob, SealResult
from recorder.storage.writer import DatasetWriter

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class FlushOutcome:
    """What the storage writes of one flush produced.

    Attributes:
        sealed: the Parquet files whose publication this flush took back.
        unstorable: events the writer refused, as rejections for the quarantine.
        failure: the first storage step that failed, or ``None`` when all succeeded.
        durable: the rows this flush made durable in the write-ahead log, per symbol.
        dropped: the rows given up because the outage outlasted the budget, per symbol.
        storage_gaps: the ``storage`` gaps this flush logged.
        seal_jobs: the partitions due, for the publisher.
    """

    sealed: list[SealedFile]
    unstorable: list[Rejection]
    failure: StorageError | None
    durable: Mapping[str, SymbolRows]
    dropped: Mapping[str, SymbolRows] = field(default_factory=dict)
    storage_gaps: list[Gap] = field(default_factory=list)
    seal_jobs: list[SealJob] = field(default_factory=list)


class StorageFlush:
    """The storage side of every flush; call from one thread at a time.

    Args:
        settings: the effective settings (root, budget, symbols, gap interval).
        instance_id: this recorder's instance id, for the state file.
        writer: the opened dataset writer.
        gap_log: the gap log.
        quarantine: the quarantine.
        clock: wall time for ``detected_at`` of storage gaps.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        instance_id: str,
        writer: DatasetWriter,
        gap_log: GapLog,
        quarantine: QuarantineLog,
        clock: Clock,
    ) -> None:
        self._settings = settings
        self._instance_id = instance_id
        # The symbols the state file names as recorded; the service replaces the tuple (one
        # assignment, safe beside the flush thread) when symbols = "all" resolves or changes.
        self.recorded_symbols = settings.source.listed_symbols
        self._writer = writer
        self._gap_log = gap_log
        self._quarantine = quarantine
        self._clock = clock
        self.drops = StorageDrops(settings.gaps.interval_ms)

    def restore(self, last_durable: Mapping[str, int]) -> None:
        """Start from the newest durable ``E`` per symbol that recovery restored."""
        self.drops = StorageDrops(self._settings.gaps.interval_ms, last_durable)

    def write(self, batch: FlushBatch, results: list[SealResult], *, seal: bool) -> FlushOutcome:
        """Write one flush, in the order the module docstring explains.

        Args:
            batch: what the pipeline accumulated.
            results: what the publisher finished since the last flush.
            seal: publish everything now, in this thread (the final flush).
        """
        failures: list[StorageError] = []

        def run_storage_step(step: Callable[[], _T]) -> _T | None:
            # A failed step is remembered, not raised: the later steps still run, and the
            # first failure is the flush's.
            try:
                return step()
            except StorageError as exc:
                failures.append(exc)
                return None

        writer = self._writer
        self._quarantine.add(batch.rejections)
        self._gap_log.append(batch.gaps)
        storage_gaps = self._close_storage_holes(batch.events)
        self._gap_log.append(storage_gaps)
        gaps_durable = run_storage_step(self._gap_log.flush) is not None
        # Without their gap records the events must not become durable: they are held.
        unstorable = run_storage_step(
            lambda: writer.write_ahead(batch.events, hold=not gaps_durable)
        )
        self._quarantine.add(unstorable or [])
        durable = writer.take_durable()
        for symbol, rows in durable.items():
            self.drops.durable(symbol, rows.last_ms)
        dropped = self._drop_over_budget()
        if durable:
            state = self.drops.last_durable
            root, symbols = self._settings.storage.root, self.recorded_symbols
            run_storage_step(lambda: write_state(root, self._instance_id, state, symbols))
        sealed = run_storage_step(lambda: writer.finish_seals(results)) or []
        jobs: list[SealJob] = []
        if seal:
            sealed += run_storage_step(writer.close) or []
        else:
            jobs = run_storage_step(writer.take_seal_jobs) or []
        run_storage_step(self._quarantine.flush)
        return FlushOutcome(
            sealed,
            unstorable or [],
            failures[0] if failures else None,
            durable,
            dropped,
            storage_gaps,
            jobs,
        )

    def _close_storage_holes(self, events: EventColumns) -> list[Gap]:
        """The ``storage`` gaps that held rows (or ``events``) are about to close."""
        holes = self.drops.open_holes
        if not holes:
            return []
        closing = self._writer.first_pending_after(holes)
        for symbol, event_time in zip(events.symbol, events.event_time, strict=True):
            start = holes.get(symbol)
            if start is not None and event_time > start:
                closing.setdefault(symbol, event_time)
        now_us = self._clock.wall_us()
        gaps = [self.drops.close(symbol, to_ms, now_us=now_us) for symbol, to_ms in closing.items()]
        return [gap for gap in gaps if gap is not None]

    def _drop_over_budget(self) -> dict[str, SymbolRows]:
        """Give up the oldest rows not yet durable beyond the budget's room for them."""
        writer = self._writer
        room = max(0, self._settings.storage.buffer_budget - writer.buffered_bytes)
        if writer.pending_bytes <= room:
            return {}
        dropped = writer.drop_oldest_pending(room, self.drops.protected)
        for symbol, rows in dropped.items():
            self.drops.dropped(symbol, rows.rows, rows.first_ms)
        return dropped
