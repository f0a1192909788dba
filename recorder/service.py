"""The one wiring point: builds the recorder from one Settings object and runs it.

::

    MarketSource ──queue──► EventPipeline ──(flush tick)──► DatasetWriter ─► Parquet
         (I/O)      bounded    (sans-IO)                      (worker thread)
                                                    └────────► QuarantineLog

Three supervised tasks share one TaskGroup: the source (websockets), the consumer (feeds the
pipeline) and the flush scheduler (every ``flush_interval``: make buffered events durable in the
write-ahead log, publish due Parquet files). Blocking file I/O runs in a worker thread, one call
at a time, so the event loop keeps answering pings while a file is fsynced.

On stop the source is cancelled first (no more reading), what is already queued is drained into
the pipeline, and a final flush and seal runs under ``stop_timeout``. Whatever that deadline cuts
off is still in the write-ahead log and is published by the next start.
"""

import asyncio
import random
import secrets
from dataclasses import dataclass

from recorder.clock import Clock, SystemClock
from recorder.errors import StorageError
from recorder.logs import get_logger
from recorder.model import MiniTicker, Rejection
from recorder.pipeline import EventPipeline
from recorder.quarantine import QuarantineLog
from recorder.settings import Settings
from recorder.source import MarketSource, StreamItem
from recorder.writer import DatasetWriter

log = get_logger(__name__)


@dataclass(slots=True)
class FlushHealth:
    """The outcome of the most recent flush, for logs, metrics and health checks."""

    ok: bool = True
    consecutive_failures: int = 0
    last_error: str = ""
    files_published: int = 0


class RecorderService:
    """The recorder daemon, built from ``settings``.

    Args:
        settings: the effective settings.
        clock: monotonic time for scheduling, wall time for ``receive_time``.
        rng: randomness for reconnect jitter (seeded in tests).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.instance_id = settings.service.instance_id or secrets.token_hex(4)
        storage = settings.storage
        self.queue: asyncio.Queue[StreamItem] = asyncio.Queue(settings.service.queue_size)
        self.source = MarketSource(settings.source, self.clock, self.queue, rng)
        self.pipeline = EventPipeline(
            frozenset(settings.source.symbols), settings.source.max_frame_bytes
        )
        self.writer = DatasetWriter(
            storage.root,
            instance_id=self.instance_id,
            max_file_age=storage.max_file_age,
            max_file_bytes=storage.max_file_bytes,
            day_grace_ms=round(storage.day_grace * 1000),
            clock=self.clock,
        )
        self.quarantine = QuarantineLog(storage.root, self.instance_id)
        self.health = FlushHealth()
        self._io_lock = asyncio.Lock()

    async def run(self, stop: asyncio.Event) -> None:
        """Record until ``stop`` is set, then flush and seal; raise if a task fails."""
        report = await asyncio.to_thread(self.writer.open)
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
                for task in (*tasks, stopping):
                    task.cancel()
        finally:
            await self._final_flush()
        if not self.health.ok:
            msg = f"the final flush failed: {self.health.last_error or 'deadline exceeded'}"
            raise StorageError(msg)

    async def _consume(self) -> None:
        while True:
            self.pipeline.feed(await self.queue.get())

    async def _flush_periodically(self) -> None:
        interval = self.settings.storage.flush_interval
        next_at = self.clock.monotonic() + interval
        while True:
            await asyncio.sleep(max(0.0, next_at - self.clock.monotonic()))
            await self.flush(seal=False)
            # Ticks keep their phase; after a slow flush, skip missed ticks instead of
            # running them back to back.
            next_at = max(next_at + interval, self.clock.monotonic())

    async def flush(self, *, seal: bool) -> None:
        """Make everything buffered durable, then publish due files (all files if ``seal``)."""
        taken = self.pipeline.take()
        async with self._io_lock:
            try:
                await asyncio.to_thread(self._write, taken.events, taken.rejections, seal=seal)
            except StorageError as exc:
                self._flush_failed(exc)
            else:
                if not self.health.ok:
                    log.info("flush recovered", after_failures=self.health.consecutive_failures)
                self.health.ok = True
                self.health.consecutive_failures = 0

    def _write(self, events: list[MiniTicker], rejections: list[Rejection], *, seal: bool) -> None:
        # Rejections enter the quarantine's buffer first: if the write-ahead log fails below,
        # they are still flushed by a later call.
        self.quarantine.add(rejections)
        self.quarantine.add(self.writer.write_ahead(events))
        self.quarantine.flush()
        sealed = self.writer.close() if seal else self.writer.seal_due()
        self.health.files_published += len(sealed)

    def _flush_failed(self, exc: StorageError) -> None:
        health = self.health
        health.ok = False
        health.consecutive_failures += 1
        health.last_error = str(exc)
        # One error line when the trouble starts, then one a minute: a full disk must be loud
        # without flooding the journal.
        if health.consecutive_failures == 1 or health.consecutive_failures % 60 == 0:
            log.error(
                "flush failed; events stay buffered and will be retried",
                error=str(exc),
                consecutive_failures=health.consecutive_failures,
                not_yet_durable_rows=self.writer.pending_rows,
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
            log.error(
                "final flush exceeded the stop deadline; the write-ahead log keeps the rest",
                stop_timeout=deadline,
            )
            self.health.ok = False
        log.info(
            "recorder stopped",
            events=self.pipeline.counters.events,
            duplicates=self.pipeline.counters.duplicates,
            rejected=self.pipeline.counters.rejections,
            files_published=self.health.files_published,
            flush_ok=self.health.ok,
        )
