"""The one wiring point: builds the recorder from one Settings object and runs it.

::

    MarketSource ──queue──► EventPipeline ──(flush tick)──► GapLog, DatasetWriter, QuarantineLog
       (I/O)      bounded   decode, dedup,                  (one worker thread at a time)
                            GapDetector (sans-IO)

Supervised tasks share one TaskGroup: the source (websockets), the consumer (feeds the
pipeline), the flush scheduler (every ``flush_interval``: make buffered events durable in the
write-ahead log, log gaps, persist state, publish due Parquet files) and the metrics endpoint.
Blocking file I/O runs in a worker thread, one call at a time, so the event loop keeps answering
pings while files are fsynced.

Each flush writes, in this order: the gap records, then the events (write-ahead log), then the
state file with the newest ``E`` per symbol. When the gap records cannot be made durable, the
flush logs no events and writes no state: the events wait in memory for a flush whose gap
records succeed. A crash can therefore leave a logged gap whose closing event is lost (the
restart gap then overlaps it), but never durable data whose gap is unlogged, nor a state that
claims events the dataset does not have: a gap can be over-reported, never lost.

On stop the source is cancelled first (no more reading), what is already queued is drained into
the pipeline, and a final flush and seal runs; ``stop_timeout`` is the time it is expected to
take (a warning says when it took longer: a file write cannot be interrupted half-way, and the
service manager's own stop timeout is the hard bound). Whatever a SIGKILL cuts off is in the
write-ahead log and is published by the next start.
"""

import asyncio
import functools
import random
import secrets
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from recorder.clock import Clock, SystemClock
from recorder.errors import StorageError
from recorder.gaps.detector import GapDetector
from recorder.gaps.log import GapLog
from recorder.gaps.state import merged_last_event_times, write_state
from recorder.ingest.pipeline import EventPipeline, FlushBatch
from recorder.ingest.source import MarketSource, StreamItem
from recorder.model import MiniTicker, Rejection
from recorder.ops.http import MetricsServer
from recorder.ops.logs import get_logger
from recorder.ops.metrics import RecorderMetrics
from recorder.ops.notify import SystemdNotifier
from recorder.settings import Settings
from recorder.storage.publisher import SealedFile
from recorder.storage.quarantine import QuarantineLog
from recorder.storage.recovery import RecoveryReport
from recorder.storage.writer import DatasetWriter

log = get_logger(__name__)

SEAL_SHARE_OF_FLUSH = 0.25
"""The share of each flush interval that publishing due files may take (the writer's budget)."""
_T = TypeVar("_T")


@dataclass(slots=True)
class FlushHealth:
    """The outcome of the most recent flush, for logs, metrics and health checks."""

    ok: bool = True
    consecutive_failures: int = 0
    last_error: str = ""
    files_published: int = 0


@dataclass(frozen=True, slots=True)
class _FlushOutcome:
    """What the storage writes of one flush produced.

    Attributes:
        sealed: the Parquet files published by this flush.
        durable_events: the events this flush made durable in the write-ahead log.
        unstorable: events the writer refused, as rejections for the quarantine.
        failure: the first storage step that failed, or ``None`` when all succeeded.
    """

    sealed: list[SealedFile]
    unstorable: list[Rejection]
    failure: StorageError | None
    durable_events: Sequence[MiniTicker]


def restored_event_times(persisted: Mapping[str, int], report: RecoveryReport) -> dict[str, int]:
    """Merge the persisted newest ``E`` per symbol with what crash recovery just published.

    The state file is written after the write-ahead log, so recovered rows can be newer.
    """
    merged = dict(persisted)
    for sealed in report.files_published:
        merged[sealed.symbol] = max(merged.get(sealed.symbol, 0), sealed.last_event_ms)
    return merged


class RecorderService:
    """The recorder daemon, built from ``settings``.

    Args:
        settings: the effective settings.
        clock: monotonic time for scheduling, wall time for ``receive_time``.
        rng: randomness for reconnect jitter (seeded in tests).
        environ: the process environment, for the systemd notification socket.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.instance_id = settings.service.instance_id or secrets.token_hex(4)
        storage = settings.storage
        self.metrics = RecorderMetrics(clock=self.clock)
        self.metrics.track_symbols(settings.source.symbols)
        self.notifier = SystemdNotifier(environ)
        self.queue: asyncio.Queue[StreamItem] = asyncio.Queue(settings.service.queue_size)
        self.source = MarketSource(settings.source, self.clock, self.queue, rng)
        self.writer = DatasetWriter(
            storage.root,
            instance_id=self.instance_id,
            max_file_age=storage.max_file_age,
            max_file_bytes=storage.max_file_bytes,
            day_grace_ms=round(storage.day_grace * 1000),
            clock=self.clock,
            # A quarter of each flush interval for publication: an hourly rotation or a day
            # end is spread over many flushes and never holds up the next write-ahead flush.
            seal_budget=storage.flush_interval * SEAL_SHARE_OF_FLUSH,
            buffer_budget=storage.buffer_budget,
        )
        self.quarantine = QuarantineLog(storage.root, self.instance_id)
        self.gap_log = GapLog(storage.root, self.instance_id)
        # Replaced in run() once recovery has restored the newest E per symbol; this one lets
        # health() answer (unhealthy: nothing delivered) before the start completes.
        self.pipeline = self._build_pipeline({})
        self.flush_health = FlushHealth()
        self.metrics_server: MetricsServer | None = None
        if settings.metrics.address:
            self.metrics_server = MetricsServer(
                self.metrics, self, settings.metrics.host, settings.metrics.port
            )
        self._io_lock = asyncio.Lock()
        # Events of flushes whose gap records failed; only the flush thread touches them.
        self._awaiting_gap_log: list[MiniTicker] = []
        self._ready = False

    def _build_pipeline(self, restored: Mapping[str, int]) -> EventPipeline:
        return EventPipeline(
            frozenset(self.settings.source.symbols),
            self.settings.source.max_frame_bytes,
            GapDetector(self.settings.gaps.interval_ms, restored),
            self.metrics,
        )

    def health(self) -> tuple[bool, Mapping[str, object]]:
        """Healthy when every shard has a connection delivering data and the last flush worked.

        A connection counts as delivering when its newest frame is younger than half the stall
        timeout: the health check turns red before the watchdog replaces a stalled connection.
        """
        now_us = self.clock.wall_us()
        fresh_us = self.settings.source.stall_timeout / 2 * 1_000_000
        delivering = [
            connection_id
            for connection_id, state in self.pipeline.connections.items()
            if state.last_frame_us is not None and now_us - state.last_frame_us <= fresh_us
        ]
        expected = len(self.source.shards)
        reasons = []
        if len(delivering) < expected:
            reasons.append(
                f"{expected - len(delivering)} of {expected} connections delivered no data in "
                f"the last {fresh_us / 1_000_000:g}s"
            )
        if not self.flush_health.ok:
            reasons.append(f"the last flush failed: {self.flush_health.last_error}")
        details: dict[str, object] = {
            "instance_id": self.instance_id,
            "connections_expected": expected,
            "connections_delivering": sorted(delivering),
            "last_flush_ok": self.flush_health.ok,
            "reasons": reasons,
        }
        return not reasons, details

    async def run(self, stop: asyncio.Event) -> None:
        """Record until ``stop`` is set, then flush and seal; raise if a task fails."""
        async with asyncio.TaskGroup() as tg:
            # Recovery can take a while after a long outage: keep systemd's watchdog fed.
            feeding = tg.create_task(self.notifier.keep_watchdog_fed(), name="watchdog")
            report = await asyncio.to_thread(self.writer.open)
            feeding.cancel()
        persisted = await asyncio.to_thread(
            merged_last_event_times,
            self.settings.storage.root,
            self.settings.source.symbols,
            skip_invalid=True,
        )
        self.pipeline = self._build_pipeline(restored_event_times(persisted, report))
        log.info(
            "recorder started",
            instance_id=self.instance_id,
            root=str(self.settings.storage.root),
            url=self.settings.source.url,
            symbols=len(self.settings.source.symbols),
            connections=len(self.source.shards),
            instances_recovered=len(report.instances_recovered),
            segments_replayed=report.segments_replayed,
            files_recovered=len(report.files_published),
            rows_recovered=report.rows_published,
            recovery_problems=list(report.problems),
        )
        if self.metrics_server is not None:
            await self.metrics_server.start()
            log.info(
                "metrics listening",
                address=f"{self.metrics_server.host}:{self.metrics_server.port}",
            )
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(self.source.run(), name="source"),
                    tg.create_task(self._consume(), name="consumer"),
                    tg.create_task(self._flush_periodically(), name="flush scheduler"),
                ]
                stopping = tg.create_task(stop.wait(), name="stop")
                await asyncio.wait([*tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
                log.info("stopping")
                self.notifier.stopping()
                for task in (*tasks, stopping):
                    task.cancel()
        finally:
            await self._final_flush()
            if self.metrics_server is not None:
                await self.metrics_server.stop()
        if not self.flush_health.ok:
            msg = f"the final flush failed: {self.flush_health.last_error or 'deadline exceeded'}"
            raise StorageError(msg)

    async def _consume(self) -> None:
        while True:
            item = await self.queue.get()
            self.pipeline.feed(item)

    async def _flush_periodically(self) -> None:
        interval = self.settings.storage.flush_interval
        next_at = self.clock.monotonic() + interval
        watchdog_every = self.notifier.watchdog_interval()
        watchdog_sent = -float("inf")
        while True:
            await asyncio.sleep(max(0.0, next_at - self.clock.monotonic()))
            await self.flush(seal=False)
            # The flush loop running is what vouches for liveness, whatever the disk says: a
            # restart would throw away what is buffered while a full disk refuses writes.
            now = self.clock.monotonic()
            if watchdog_every is not None and now - watchdog_sent >= watchdog_every:
                self.notifier.watchdog()
                watchdog_sent = now
            # Ticks keep their phase; after a slow flush, skip missed ticks instead of
            # running them back to back.
            next_at = max(next_at + interval, self.clock.monotonic())

    async def flush(self, *, seal: bool) -> None:
        """Make everything buffered durable, then publish due files (all files if ``seal``)."""
        async with self._io_lock:
            # The batch is taken under the lock: a flush cancelled while waiting for it must
            # not drop events.
            batch = self.pipeline.take()
            started = self.clock.monotonic()
            storage_writes = asyncio.get_running_loop().run_in_executor(
                None, functools.partial(self._write_batch, batch, seal=seal)
            )
            try:
                outcome = await asyncio.shield(storage_writes)
            except asyncio.CancelledError:
                # A thread cannot be interrupted: hold the lock until it is done, so that the
                # final flush never runs beside it (the writer is not thread-safe).
                self._record_flush(await storage_writes)
                raise
            self.metrics.observe_flush(self.clock.monotonic() - started, outcome.failure is None)
        self._record_flush(outcome)

    def _write_batch(self, batch: FlushBatch, *, seal: bool) -> _FlushOutcome:
        """Blocking I/O of one flush, in the order the module docstring explains."""
        failures: list[StorageError] = []

        def run_storage_step(step: Callable[[], _T]) -> _T | None:
            # A failed step is remembered, not raised: the later steps still run, and the
            # first failure is the flush's.
            try:
                return step()
            except StorageError as exc:
                failures.append(exc)
                return None

        self.quarantine.add(batch.rejections)
        self.gap_log.append(batch.gaps)
        events = [*self._awaiting_gap_log, *batch.events]
        run_storage_step(self.gap_log.flush)
        if failures:
            # The events that close the pending gaps must not outlive them in a crash.
            self._awaiting_gap_log = events
            unstorable = None
        else:
            self._awaiting_gap_log = []
            unstorable = run_storage_step(lambda: self.writer.write_ahead(events))
        sealed: list[SealedFile] = []
        if unstorable is not None:  # the events are durable
            self.quarantine.add(unstorable)
            run_storage_step(
                lambda: write_state(
                    self.settings.storage.root,
                    self.instance_id,
                    batch.last_event_times,
                    self.settings.source.symbols,
                )
            )
            sealed = run_storage_step(self.writer.close if seal else self.writer.seal_due) or []
        run_storage_step(self.quarantine.flush)
        return _FlushOutcome(
            sealed,
            unstorable or [],
            failures[0] if failures else None,
            events if unstorable is not None else [],
        )

    @property
    def buffered_rows(self) -> int:
        """Events received but not yet published: buffered, not yet logged, or awaiting gaps."""
        return self.writer.buffered_rows + self.writer.pending_rows + len(self._awaiting_gap_log)

    def _record_flush(self, outcome: _FlushOutcome) -> None:
        """Move the metrics, the flush health and readiness after one flush."""
        metrics = self.metrics
        self.pipeline.count_rejections(outcome.unstorable)
        for symbol, count in Counter(event.symbol for event in outcome.durable_events).items():
            metrics.events_written(symbol, count)
        if outcome.sealed:
            metrics.files_published(len(outcome.sealed))
            metrics.bytes_written(sum(sealed.size_bytes for sealed in outcome.sealed))
            self.flush_health.files_published += len(outcome.sealed)
        metrics.set_buffered_rows(self.buffered_rows)
        metrics.set_wal_size(self.writer.wal_bytes)
        health = self.flush_health
        if outcome.failure is None:
            if not self._ready and outcome.durable_events:
                # Ready means recording: connected, and the first events durable on disk.
                self._ready = True
                self.notifier.ready("recording")
                log.info("ready", events_durable=len(outcome.durable_events))
            if not health.ok:
                log.info("flush recovered", after_failures=health.consecutive_failures)
            health.ok = True
            health.consecutive_failures = 0
            return
        health.ok = False
        health.consecutive_failures += 1
        health.last_error = str(outcome.failure)
        # One error line when the trouble starts, then one a minute: a full disk must be loud
        # without flooding the journal.
        if health.consecutive_failures == 1 or health.consecutive_failures % 60 == 0:
            log.error(
                "flush failed; events stay buffered and will be retried",
                error=str(outcome.failure),
                consecutive_failures=health.consecutive_failures,
                not_yet_durable_rows=self.writer.pending_rows + len(self._awaiting_gap_log),
            )

    def _drain_queue(self) -> None:
        while not self.queue.empty():
            self.pipeline.feed(self.queue.get_nowait())

    async def _final_flush(self) -> None:
        self._drain_queue()
        deadline = self.settings.service.stop_timeout
        try:
            async with asyncio.timeout(deadline):
                await self.flush(seal=True)
        except TimeoutError:
            # The flush thread cannot be interrupted; it completed (see flush) and its outcome
            # is in flush_health. Say that the stop took longer than planned.
            log.warning("final flush took longer than stop_timeout", stop_timeout=deadline)
        counters = self.pipeline.counters
        log.info(
            "recorder stopped",
            events=counters.events,
            duplicates=counters.duplicates,
            rejected=counters.rejections,
            gaps=counters.gaps,
            missed=counters.missed,
            files_published=self.flush_health.files_published,
            flush_ok=self.flush_health.ok,
        )
