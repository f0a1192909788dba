"""The one wiring point: builds the recorder from one Settings object and runs it.

::

    MarketSource ──queue──► EventPipeline ──(flush tick)──► GapLog, DatasetWriter, QuarantineLog
       (I/O)      bounded   decode, dedup,                  (flush thread)
                            GapDetector (sans-IO)                │ due partitions (SealJobs)
                                                                 ▼
                                                        publisher (its own thread)

Supervised tasks share one TaskGroup: the source (websockets), the consumer (feeds the
pipeline), the flush scheduler (every ``flush_interval``: log gaps, make buffered events durable
in the write-ahead log, persist state, hand due partitions to the publisher), the publisher
(writes sealed Parquet files one at a time in a thread of its own, so that publication, the
hourly rotation and the day end never hold up the flush), the status line
(:mod:`recorder.ops.status_log`) and the metrics endpoint. The flush's blocking file I/O runs
in a worker thread, one flush at a time, so the event loop keeps answering pings while files
are fsynced.

The order of one flush's writes, and the memory budget, are :mod:`recorder.flush`'s.

On stop the source is cancelled first (no more reading), what is already queued is drained into
the pipeline, the publisher finishes the file it is writing, a final flush makes everything
durable in the write-ahead log, and a final seal publishes it. ``stop_timeout``, counted from
the stop, bounds all of it: a thread cannot be interrupted, so when the deadline passes the
service stops waiting for the file or the flush in progress and says so
(:attr:`RecorderService.abandoned`); the command line then exits without joining that thread.
What is not published by then is in the write-ahead log, like whatever a SIGKILL cuts off, and
the next start publishes it. A stop during start-up recovery ends the recovery after the file
it is writing and leaves the rest in the log, too.
"""

import asyncio
import dataclasses
import functools
import random
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from recorder.clock import Clock, SystemClock
from recorder.errors import StorageError
from recorder.flush import FlushOutcome, StorageFlush
from recorder.flush_reports import FlushReports
from recorder.gaps.detector import GapDetector
from recorder.gaps.log import GapLog
from recorder.gaps.state import merged_last_event_times
from recorder.health import recorder_health
from recorder.ingest.event_times import EventTimeGuard, quorum_for, screen_restored
from recorder.ingest.market_connection import StreamItem
from recorder.ingest.pipeline import EventPipeline
from recorder.ingest.shards import MarketSource
from recorder.instance import default_instance_id
from recorder.ops.http import MetricsServer
from recorder.ops.logs import get_logger
from recorder.ops.metrics import RecorderMetrics
from recorder.ops.notify import SystemdNotifier
from recorder.ops.status_log import StatusReporter
from recorder.recorded_symbols import RecordedSymbols
from recorder.reload import SettingsReload
from recorder.settings import Settings
from recorder.storage.budgets import WriterBudgets
from recorder.storage.locking import InstanceLock, claim_instance
from recorder.storage.quarantine import QuarantineLog
from recorder.storage.recovery import RecoveryReport
from recorder.storage.seal_jobs import SealJob, SealResult
from recorder.storage.writer import DatasetWriter

log = get_logger(__name__)

_T = TypeVar("_T")

SEAL_REST_RATIO = 1.0
"""After publishing a file, the publisher rests this many times as long as the file took: a
rotation or a day end then uses at most half of a core and is spread over time, and the flush
and the event loop keep theirs."""


class RecorderService:
    """The recorder daemon, built from ``settings``.

    Args:
        settings: the effective settings.
        clock: monotonic time for scheduling, wall time for ``receive_time``.
        rng: randomness for reconnect jitter (seeded in tests).
        environ: the process environment, for the systemd notification socket.

    Without a configured ``instance_id`` the service claims the first free id of the host's
    series (:func:`~recorder.storage.locking.claim_instance`) here, holding its lock: a
    restart reuses the files of the instance it was, a second recorder beside it gets its own.

    Raises:
        StorageError: no instance id can be claimed (the root cannot be used).
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
        storage = settings.storage
        self._claimed: InstanceLock | None = None
        if settings.service.instance_id is None:
            self.instance_id, self._claimed = claim_instance(storage.root, default_instance_id())
        else:
            self.instance_id = settings.service.instance_id
        self.metrics = RecorderMetrics(clock=self.clock)
        self.metrics.track_symbols(settings.source.listed_symbols)
        self.notifier = SystemdNotifier(environ)
        self.queue: asyncio.Queue[StreamItem] = asyncio.Queue(settings.service.queue_size)
        self._rng = rng
        # symbols = "all": the list exchangeInfo gives replaces it in run(), before connecting.
        jitter = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.symbols = RecordedSymbols(settings.source, self.clock, self.metrics, jitter)
        self.reload = SettingsReload(settings, self.symbols, self.metrics)
        """Where the command line hands a SIGHUP (:meth:`SettingsReload.request`)."""
        self.source = MarketSource(settings.source, self.clock, self.queue, rng)
        budgets = WriterBudgets.of(storage.buffer_budget)
        self.writer = DatasetWriter(
            storage.root,
            instance_id=self.instance_id,
            max_file_age=storage.max_file_age,
            max_file_bytes=storage.max_file_bytes,
            day_grace_ms=round(storage.day_grace * 1000),
            clock=self.clock,
            buffer_budget=budgets.seal,
            publish_budget=budgets.publish,
        )
        self.quarantine = QuarantineLog(
            storage.root,
            self.instance_id,
            max_day_bytes=storage.quarantine_max_day_bytes,
            metrics=self.metrics,
        )
        self.gap_log = GapLog(storage.root, self.instance_id)
        # Replaced in run() once recovery has restored the newest E per symbol; this one lets
        # health() answer (unhealthy: nothing delivered) before the start completes.
        self.pipeline = self._build_pipeline({})
        self.reports = FlushReports(self.metrics, settings.storage.buffer_budget)
        self.flush_health = self.reports.health
        self.status = StatusReporter(settings, self.metrics, self.clock)
        self.metrics_server: MetricsServer | None = None
        if settings.metrics.address:
            self.metrics_server = MetricsServer(
                self.metrics, self, settings.metrics.host, settings.metrics.port
            )
        self._io_lock = asyncio.Lock()
        # One thread of its own: a long publication never waits for, or delays, a flush.
        self._publisher_thread = ThreadPoolExecutor(1, thread_name_prefix="recorder-publisher")
        # Not the loop's default executor: asyncio.run joins that one without a deadline, and a
        # flush abandoned at stop_timeout must not hold the exit.
        self._flush_thread = ThreadPoolExecutor(1, thread_name_prefix="recorder-flush")
        self._stop_deadline: float | None = None
        # Set when the stop gave up on a storage thread at stop_timeout: the process must then
        # exit without joining it (what it did not finish is in the write-ahead log).
        self.abandoned = False
        # At most one job per partition is in flight, so this queue is bounded by them.
        self._seal_jobs: asyncio.Queue[SealJob] = asyncio.Queue()
        # Results waiting for the next flush, which logs their SEALED records.
        self._seal_results: list[SealResult] = []
        self.storage_flush = StorageFlush(
            settings,
            instance_id=self.instance_id,
            writer=self.writer,
            gap_log=self.gap_log,
            quarantine=self.quarantine,
            clock=self.clock,
        )
        self._ready = False

    @property
    def _max_event_time_skew_ms(self) -> int:
        return round(self.settings.source.max_event_time_skew * 1000)

    def _build_pipeline(self, restored: Mapping[str, int]) -> EventPipeline:
        source = self.settings.source
        return EventPipeline(
            frozenset(source.listed_symbols),
            source.max_frame_bytes,
            GapDetector(self.settings.gaps.interval_ms, restored, all_market=source.all_market),
            self.metrics,
            event_times=EventTimeGuard(
                self._max_event_time_skew_ms,
                restored,
                quorum_for(len(source.listed_symbols)),
            ),
            all_market=source.all_market,
        )

    def health(self) -> tuple[bool, Mapping[str, object]]:
        """Healthy when every shard delivers and the last flush worked (:mod:`recorder.health`)."""
        return recorder_health(
            source=self.settings.source,
            connections=self.pipeline.connections,
            expected=len(self.source.shards),
            flush=self.flush_health,
            instance_id=self.instance_id,
            now_us=self.clock.wall_us(),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Record until ``stop`` is set, then flush and seal; raise if a task fails.

        A stop during start-up recovery ends it early: the rest stays in the write-ahead log.
        """
        stop_requested = threading.Event()
        async with asyncio.TaskGroup() as tg:
            # Recovery can take a while after a long outage: keep systemd's watchdog fed.
            feeding = tg.create_task(self.notifier.keep_watchdog_fed(), name="watchdog")
            # The recovery thread cannot await the stop: it reads a thread-safe copy of it (set
            # on cancellation too, which comes only once recovery is over).
            relaying = tg.create_task(stop.wait(), name="stop relay")
            relaying.add_done_callback(lambda _: stop_requested.set())
            claimed, self._claimed = self._claimed, None
            report = await asyncio.to_thread(
                self.writer.open, claimed=claimed, should_stop=stop_requested.is_set
            )
            feeding.cancel()
            relaying.cancel()
        if report.interrupted:
            await self._stop_during_recovery(report)
            return
        if self.settings.source.records_all and not await self._resolve_all(stop):
            return
        persisted = await asyncio.to_thread(
            merged_last_event_times,
            self.settings.storage.root,
            self.settings.source.listed_symbols,
            skip_invalid=True,
        )
        # An older version may have persisted (or logged) a far-future E: never restore it.
        restored, implausible = screen_restored(
            report.restored_event_times(persisted),
            self.clock.wall_us() // 1000,
            self._max_event_time_skew_ms,
        )
        if implausible:
            log.warning("restored event times ignored: implausibly far ahead", symbols=implausible)
        self.pipeline = self._build_pipeline(restored)
        self.storage_flush.restore(restored)
        self.symbols.attach(self.pipeline, self.source, self.storage_flush)
        log.info(
            "recorder started",
            instance_id=self.instance_id,
            root=str(self.settings.storage.root),
            url=self.settings.source.url,
            symbols=len(self.settings.source.listed_symbols),
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
                    tg.create_task(self._publish_continuously(), name="publisher"),
                    tg.create_task(self.symbols.run(), name="recorded symbols"),
                    tg.create_task(self.reload.run(), name="settings reload"),
                    tg.create_task(self.status.run(), name="status"),
                ]
                stopping = tg.create_task(stop.wait(), name="stop")
                await asyncio.wait([*tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
                log.info("stopping")
                self._stop_deadline = self.clock.monotonic() + self.settings.service.stop_timeout
                self.notifier.stopping()
                for task in (*tasks, stopping):
                    task.cancel()
        finally:
            if self._stop_deadline is None:  # a task failed before the stop
                self._stop_deadline = self.clock.monotonic() + self.settings.service.stop_timeout
            await self._final_flush()
            self._publisher_thread.shutdown(wait=not self.abandoned)
            self._flush_thread.shutdown(wait=not self.abandoned)
            if self.metrics_server is not None:
                await self.metrics_server.stop()
        if not self.flush_health.ok:
            msg = f"the final flush failed: {self.flush_health.last_error or 'deadline exceeded'}"
            raise StorageError(msg)

    async def _resolve_all(self, stop: asyncio.Event) -> bool:
        """Replace ``symbols = "all"`` by exchangeInfo's list; ``False`` when stopped first.

        Stopped first, or no contract to record (raised), the writer recovery opened is closed.
        """
        try:
            symbols = await self.symbols.first(stop)
        finally:
            if not self.symbols.symbols:
                await asyncio.to_thread(self.writer.close)
        if symbols is None:
            log.info("recorder stopped before exchangeInfo answered", instance_id=self.instance_id)
            return False
        source = dataclasses.replace(self.settings.source, symbols=symbols)
        self.settings = dataclasses.replace(self.settings, source=source)
        self.source = MarketSource(source, self.clock, self.queue, self._rng)
        self.storage_flush.recorded_symbols = symbols
        return True

    async def _stop_during_recovery(self, report: RecoveryReport) -> None:
        """Close the writer opened by an interrupted recovery; the log keeps the rest."""
        await asyncio.to_thread(self.writer.close)
        log.info(
            "recorder stopped during start-up recovery; the next start publishes the rest",
            instance_id=self.instance_id,
            segments_replayed=report.segments_replayed,
            files_recovered=len(report.files_published),
            rows_recovered=report.rows_published,
        )

    def _stop_time_left(self) -> float:
        """Seconds until ``stop_timeout`` runs out; infinite before the stop."""
        if self._stop_deadline is None:
            return float("inf")
        return max(0.0, self._stop_deadline - self.clock.monotonic())

    async def _wait_for_thread(self, work: "asyncio.Future[_T]") -> "_T | None":
        """The result of ``work``, a storage thread, or ``None`` once the stop's time is up.

        Before the stop this waits as long as it takes. A thread given up on keeps running
        and still uses the writer: :attr:`abandoned` is set so that nothing else touches it.
        """
        left = self._stop_time_left()
        done, _ = await asyncio.wait({work}, timeout=None if left == float("inf") else left)
        if done:
            return work.result()
        self.abandoned = True
        return None

    async def _consume(self) -> None:
        # Whatever waits in the queue is fed as one batch: decoded and counted together, at
        # the real pace one frame, under load up to the queue's size.
        queue = self.queue
        while True:
            items = [await queue.get()]
            items.extend(queue.get_nowait() for _ in range(queue.qsize()))
            self.pipeline.feed_all(items)

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

    async def _publish_continuously(self) -> None:
        """Publish the jobs the flushes hand over, one at a time, in the publisher thread."""
        loop = asyncio.get_running_loop()
        while True:
            job = await self._seal_jobs.get()
            started = self.clock.monotonic()
            publishing = loop.run_in_executor(self._publisher_thread, self.writer.publish, job)
            try:
                result = await asyncio.shield(publishing)
            except asyncio.CancelledError:
                # The file may be in place already: its result must reach the writer, unless
                # stop_timeout runs out first (recovery then finds the file by its name).
                finished = await self._wait_for_thread(publishing)
                if finished is not None:
                    self._seal_results.append(finished)
                raise
            self._seal_results.append(result)
            elapsed = self.clock.monotonic() - started
            self.metrics.observe_seal(elapsed)
            await asyncio.sleep(elapsed * SEAL_REST_RATIO)

    async def flush(self, *, seal: bool) -> None:
        """Make everything buffered durable and hand due partitions to the publisher.

        With ``seal`` (the final flush; the publisher must have stopped), publish everything
        in this flush instead.
        """
        async with self._io_lock:
            # The batch is taken under the lock: a flush cancelled while waiting for it must
            # not drop events.
            batch = self.pipeline.take()
            results, self._seal_results = self._seal_results, []
            started = self.clock.monotonic()
            storage_writes = asyncio.get_running_loop().run_in_executor(
                self._flush_thread,
                functools.partial(self.storage_flush.write, batch, results, seal=seal),
            )
            try:
                outcome = await asyncio.shield(storage_writes)
            except asyncio.CancelledError:
                # A thread cannot be interrupted: hold the lock until it is done, so that the
                # final flush never runs beside it (the writer is not thread-safe); at
                # stop_timeout, give up on it instead, and the final flush does not run.
                finished = await self._wait_for_thread(storage_writes)
                if finished is not None:
                    self._record_flush(finished)
                raise
            self.metrics.observe_flush(self.clock.monotonic() - started, outcome.failure is None)
        self._record_flush(outcome)

    @property
    def buffered_rows(self) -> int:
        """Events received but not yet published: buffered, being sealed or not yet logged."""
        return self.writer.buffered_rows + self.writer.pending_rows

    def _record_flush(self, outcome: FlushOutcome) -> None:
        """Move the metrics, the flush health and readiness after one flush."""
        for job in outcome.seal_jobs:
            self._seal_jobs.put_nowait(job)
        self.pipeline.count_rejections(outcome.unstorable)
        succeeded = self.reports.record(outcome, not_yet_durable_rows=self.writer.pending_rows)
        metrics = self.metrics
        metrics.set_buffered_rows(self.buffered_rows)
        metrics.set_buffered_bytes(self.writer.buffered_bytes + self.writer.pending_bytes)
        metrics.set_spilled_bytes(self.writer.spilled_bytes)
        metrics.set_wal_size(self.writer.wal_bytes)
        self.reports.clock_offset(self.pipeline.clock_offset_ms, self.clock.monotonic())
        if succeeded and not self._ready and outcome.durable:
            # Ready means recording: connected, and the first events durable on disk.
            self._ready = True
            self.notifier.ready("recording")
            events_durable = sum(rows.rows for rows in outcome.durable.values())
            log.info("ready", events_durable=events_durable)

    def _drain_queue(self) -> None:
        queue = self.queue
        self.pipeline.feed_all([queue.get_nowait() for _ in range(queue.qsize())])

    async def _final_flush(self) -> None:
        """Make everything durable, then seal it, within what is left of ``stop_timeout``.

        Durability comes first, in a flush of its own: when the seal is cut short, every
        received event is in the write-ahead log already.
        """
        self._drain_queue()
        self.pipeline.settle()
        try:
            async with asyncio.timeout(self._stop_time_left()):
                if not self.abandoned:
                    await self.flush(seal=False)
                # A publication given up on still runs: the seal must not run beside it.
                if not self.abandoned:
                    await self.flush(seal=True)
        except TimeoutError:
            self.abandoned = True
        if self.abandoned:
            log.warning(
                "stop_timeout passed before everything was published; the rest stays in the "
                "write-ahead log and the next start publishes it",
                stop_timeout=self.settings.service.stop_timeout,
                unpublished_rows=self.buffered_rows,
            )
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
