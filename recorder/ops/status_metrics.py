"""The series a status view needs besides the counters: gaps of the last hour, and the limits.

A counter of gaps since the start cannot say how many came in the last hour without a history
of scrapes, which ``recorder status`` (a fresh process) does not have. :class:`GapHour` keeps a
rolling hour of gap counts in the daemon, in one bucket per minute (at most 61 buckets whatever
a reconnect storm logs), and :class:`StatusMetrics` exports it as
``recorder_gaps_last_hour{cause}``, with ``recorder_buffer_budget_bytes`` and
``recorder_stall_timeout_seconds``: what buffered bytes are judged against, and where a quiet
symbol becomes a silent one.

:class:`~recorder.ops.metrics.RecorderMetrics` registers it in its registry and feeds it every
gap record it counts; all of it runs on the event loop, like the scrapes.
"""

import math
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric

from recorder.clock import Clock

__all__ = ["HOUR_SECONDS", "GapHour", "StatusMetrics"]

HOUR_SECONDS: Final = 3600.0
"""The window of ``recorder_gaps_last_hour``."""

_BUCKET_SECONDS: Final = 60.0


class GapHour:
    """Gap counts by cause over the last hour, to the minute; sans-IO.

    Args:
        causes: causes reported even when none happened (at zero).

    >>> hour = GapHour(("stall",))
    >>> hour.add("stall", now=0.0); hour.add("disconnect", now=30.0)
    >>> hour.counts(now=600.0)
    {'stall': 1, 'disconnect': 1}
    >>> hour.counts(now=3700.0)
    {'stall': 0}
    """

    def __init__(self, causes: Iterable[str] = ()) -> None:
        self._causes = tuple(causes)
        # (minute number, counts by cause), oldest first.
        self._buckets: deque[tuple[int, dict[str, int]]] = deque()

    def add(self, cause: str, *, now: float, count: int = 1) -> None:
        """Count ``count`` gaps of ``cause`` at ``now`` (monotonic seconds)."""
        minute = math.floor(now / _BUCKET_SECONDS)
        if not self._buckets or self._buckets[-1][0] != minute:
            self._buckets.append((minute, {}))
            self._expire(now)
        counts = self._buckets[-1][1]
        counts[cause] = counts.get(cause, 0) + count

    def counts(self, *, now: float) -> dict[str, int]:
        """The gaps of the last hour before ``now``, by cause, the given causes first."""
        self._expire(now)
        total = dict.fromkeys(self._causes, 0)
        for _, counts in self._buckets:
            for cause, count in counts.items():
                total[cause] = total.get(cause, 0) + count
        return total

    def _expire(self, now: float) -> None:
        # A bucket is kept while any of its minute is within the hour: counts err on the side
        # of a minute too many rather than dropping a gap early.
        oldest = math.floor((now - HOUR_SECONDS) / _BUCKET_SECONDS)
        while self._buckets and self._buckets[0][0] < oldest:
            self._buckets.popleft()


class StatusMetrics:
    """Exports the gaps of the last hour and the limits a status view judges against.

    Args:
        registry: the recorder's registry.
        clock: its monotonic time ages the gaps.
        causes: the gap causes reported from the start, at zero.
    """

    def __init__(self, registry: CollectorRegistry, clock: Clock, causes: Iterable[str]) -> None:
        self._clock = clock
        self._hour = GapHour(causes)
        registry.register(self)
        self._buffer_budget = Gauge(
            "recorder_buffer_budget_bytes",
            "[storage] buffer_budget: the Arrow bytes recorder_buffered_bytes may reach before "
            "the oldest events not yet durable are dropped.",
            registry=registry,
        )
        self._stall_timeout = Gauge(
            "recorder_stall_timeout_seconds",
            "[source] stall_timeout: silence after which a connection gets a silence check; a "
            "symbol whose last event is older is shown as silent by recorder status.",
            registry=registry,
        )

    def gap(self, cause: str) -> None:
        """Count one gap record of ``cause`` now."""
        self._hour.add(cause, now=self._clock.monotonic())

    def set_limits(self, *, buffer_budget: int, stall_timeout: float) -> None:
        """Export the settings that the status figures are judged against."""
        self.set_buffer_budget(buffer_budget)
        self._stall_timeout.set(stall_timeout)

    def set_buffer_budget(self, size_bytes: int) -> None:
        """Export ``[storage] buffer_budget`` (the memory alert and the status view read it)."""
        self._buffer_budget.set(size_bytes)

    def gaps_last_hour(self) -> Mapping[str, int]:
        """The gap records of the last hour, by cause."""
        return self._hour.counts(now=self._clock.monotonic())

    def describe(self) -> Iterable[Metric]:
        """Name the family (without samples) so the registry can reject duplicates."""
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        """Return the gaps of the last hour, computed now."""
        family = self._family()
        for cause, count in self.gaps_last_hour().items():
            family.add_metric([cause], count)
        return [family]

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "recorder_gaps_last_hour",
            "Gap records appended in the last hour (to the minute), by cause.",
            labels=["cause"],
        )
