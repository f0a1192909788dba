"""What each flush tells operators: the flush's metrics, its health, and the rare log lines.

The service calls :meth:`FlushReports.record` after every flush and
:meth:`FlushReports.clock_offset` with the pipeline's newest offset; readiness, the publisher's
queue and the gauges of what the writer holds stay with the service, which owns those.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from recorder.flush import FlushOutcome
from recorder.ingest.event_times import ClockOffsetAlarm, ClockOffsetChange
from recorder.ops.logs import get_logger
from recorder.ops.metrics import RecorderMetrics
from recorder.storage.held_rows import SymbolRows

log = get_logger(__name__)

FAILURE_LOG_EVERY = 60
"""After the first failed flush (or flush that dropped events), one log line per this many."""


@dataclass(slots=True)
class FlushHealth:
    """The outcome of the most recent flush, for logs, metrics and health checks."""

    ok: bool = True
    consecutive_failures: int = 0
    last_error: str = ""
    files_published: int = 0


class FlushReports:
    """Turns flush outcomes into metrics, :class:`FlushHealth` and log lines.

    Args:
        metrics: the recorder's metrics.
        buffer_budget: the storage memory budget in bytes, named in the drop warning and
            exported as ``recorder_buffer_budget_bytes``.
    """

    def __init__(self, metrics: RecorderMetrics, buffer_budget: int) -> None:
        self.metrics = metrics
        self.health = FlushHealth()
        self._buffer_budget = buffer_budget
        metrics.set_buffer_budget(buffer_budget)
        self._drop_flushes = 0
        self._clock_alarm = ClockOffsetAlarm()

    def record(self, outcome: FlushOutcome, *, not_yet_durable_rows: int) -> bool:
        """Count one flush's outcome; return whether it succeeded.

        Args:
            outcome: what the flush's storage writes produced.
            not_yet_durable_rows: rows still waiting for the write-ahead log, for the error line.
        """
        metrics = self.metrics
        for symbol, rows in outcome.durable.items():
            metrics.events_written(symbol, rows.rows)
        for gap in outcome.storage_gaps:
            metrics.gap_detected(gap.cause.value, gap.missed)
        self._report_drops(outcome.dropped)
        if outcome.sealed:
            metrics.files_published(len(outcome.sealed))
            metrics.bytes_written(sum(sealed.size_bytes for sealed in outcome.sealed))
            self.health.files_published += len(outcome.sealed)
        health = self.health
        if outcome.failure is None:
            if not health.ok:
                log.info("flush recovered", after_failures=health.consecutive_failures)
            health.ok = True
            health.consecutive_failures = 0
            return True
        health.ok = False
        health.consecutive_failures += 1
        health.last_error = str(outcome.failure)
        # One error line when the trouble starts, then one a minute: a full disk must be loud
        # without flooding the journal.
        if health.consecutive_failures % FAILURE_LOG_EVERY == 1:
            log.error(
                "flush failed; events stay buffered and will be retried",
                error=str(outcome.failure),
                consecutive_failures=health.consecutive_failures,
                not_yet_durable_rows=not_yet_durable_rows,
            )
        return False

    def clock_offset(self, offset_ms: int | None, now: float) -> None:
        """Report the local clock minus the newest accepted ``E`` (``None``: no event yet)."""
        if offset_ms is None:
            return
        self.metrics.set_clock_offset(offset_ms)
        change = self._clock_alarm.observe(offset_ms, now)
        if change is ClockOffsetChange.FAR:
            # Events are still judged against the newest accepted E as well (event_times).
            log.warning(
                "the local clock is far from the exchange's event times",
                clock_offset_s=offset_ms / 1000,
            )
        elif change is ClockOffsetChange.BACK:
            log.info(
                "the local clock agrees with the exchange again", clock_offset_s=offset_ms / 1000
            )

    def _report_drops(self, dropped: Mapping[str, SymbolRows]) -> None:
        if not dropped:
            return
        for symbol, rows in dropped.items():
            self.metrics.events_dropped(symbol, rows.rows)
        self._drop_flushes += 1
        # Once when it starts, then once a minute of flushes that dropped.
        if self._drop_flushes % FAILURE_LOG_EVERY == 1:
            log.warning(
                "storage outage outlasts the memory budget: dropping the oldest events not yet "
                "durable, logged as gaps of cause storage",
                events_dropped=sum(rows.rows for rows in dropped.values()),
                symbols=len(dropped),
                buffer_budget=self._buffer_budget,
            )
