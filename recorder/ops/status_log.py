"""The daemon's periodic ``status`` line: one of the service's supervised tasks.

Every ``[service] status_interval`` (default 5 min) :class:`StatusReporter` reads the recorder's
own registry, makes it a :class:`~recorder.ops.status.StatusSnapshot` and logs it: one
``status`` event with the figures as fields in the JSON log, or, when the log is rendered for a
person (a terminal), a compact line every :data:`TERMINAL_INTERVAL` (or ``status_interval`` if
that is shorter). ``status_interval = 0`` disables both.

Reading the registry costs a few microseconds per symbol, on the event loop, and nothing here
awaits anything but its sleep, so the loop is never held. A failure to build or log the line
is a bug of this module, never a reason to stop recording: it is logged once with its
traceback, and the following lines are tried again (silently while they keep failing).
"""

import asyncio
from typing import Final

from recorder.clock import Clock
from recorder.ops.logs import get_logger, renders_console
from recorder.ops.metrics import RecorderMetrics
from recorder.ops.status import StatusSnapshot, StatusTracker, read_metrics
from recorder.settings import Settings

__all__ = ["TERMINAL_INTERVAL", "StatusReporter"]

log = get_logger(__name__)

TERMINAL_INTERVAL: Final = 10.0
"""Seconds between two compact status lines on a terminal: someone is watching."""

_US_PER_SECOND: Final = 1_000_000


class StatusReporter:
    """Logs the recorder's status every so often; exports the limits it is judged against.

    Args:
        settings: the effective settings (``status_interval``, ``stall_timeout``,
            ``buffer_budget``, the log format).
        metrics: the recorder's metrics, read at each line.
        clock: ages the last flush and times the event rate.
        console: whether lines are for a person (compact, more often); by default, whether
            the log is rendered for a terminal.
    """

    def __init__(
        self,
        settings: Settings,
        metrics: RecorderMetrics,
        clock: Clock,
        *,
        console: bool | None = None,
    ) -> None:
        self._metrics = metrics
        self._clock = clock
        metrics.status.set_limits(
            buffer_budget=settings.storage.buffer_budget,
            stall_timeout=settings.source.stall_timeout,
        )
        self._tracker = StatusTracker(settings.source.stall_timeout)
        self.console = renders_console(settings.log.format) if console is None else console
        interval = settings.service.status_interval
        self.interval = min(interval, TERMINAL_INTERVAL) if self.console and interval else interval
        self._failed = False

    def snapshot(self) -> StatusSnapshot:
        """The status now, the event rate since the previous snapshot."""
        return self._tracker.observe(
            read_metrics(self._metrics.registry.collect()),
            wall=self._clock.wall_us() / _US_PER_SECOND,
            monotonic=self._clock.monotonic(),
        )

    def report(self) -> None:
        """Log one status line now; a failure is logged (once), never raised."""
        try:
            snapshot = self.snapshot()
            if self.console:
                log.info(f"status: {snapshot.summary()}")
            else:
                log.info("status", **snapshot.log_fields())
        # Whatever it is, a bug here must never stop the recording.
        except Exception:
            if not self._failed:
                self._failed = True
                log.exception("the status line failed; recording goes on without it")

    async def run(self) -> None:
        """Log a line every :attr:`interval` until cancelled; idle when disabled."""
        if not self.interval:
            # A supervised task that returns stops the service: wait for the cancellation.
            await asyncio.get_running_loop().create_future()
        # The first line's rate is measured from here, not from the previous start.
        self._baseline()
        while True:
            await asyncio.sleep(self.interval)
            self.report()

    def _baseline(self) -> None:
        try:
            self.snapshot()
        except Exception:  # as in report(): logged once, never raised
            self._failed = True
            log.exception("the status line failed; recording goes on without it")
