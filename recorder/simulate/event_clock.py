"""The simulated exchange's sense of time: the event clock that ticks the market, and wall time.

The event clock ticks every ``interval_ms / speed`` real milliseconds, scheduled from the loop's
monotonic time (never accumulated, so it never drifts), and hands each tick's events to whoever
publishes them. Simulated time (``E``) is ``start_ms`` plus real time since the clock started
times ``speed``; protocol times (pings, lifetimes, stalls) stay on the loop's monotonic clock.
"""

import asyncio
import datetime as dt
import math
import time
from collections.abc import Callable

from recorder.simulate.market import MarketGenerator, TickBatch

_NOT_STARTED = "the simulated exchange is not started"


def wall_ms() -> int:
    """Return the wall clock in ms since the epoch (handshakes, fired faults, ``start_ms``)."""
    return time.time_ns() // 1_000_000


def format_server_time(ms: int) -> str:
    """Render ms since the epoch as ISO-8601 UTC with milliseconds (for diagnostics).

    >>> format_server_time(1714557600123)
    '2024-05-01T10:00:00.123+00:00'
    """
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).isoformat(timespec="milliseconds")


def tick_due(origin: float, tick: int, interval_ms: int, speed: float) -> float:
    """When tick ``tick`` is due on the real monotonic clock that started at ``origin``.

    Computed from the tick number, never accumulated, so time spent generating one tick never
    pushes the next one later. Tick ``n`` is due when its whole interval has elapsed in
    simulated time, so its events (``E`` within the interval) are never in the future.

    >>> tick_due(100.0, 0, 2_000, 10.0), tick_due(100.0, 9, 2_000, 10.0)
    (100.2, 102.0)
    """
    return origin + (tick + 1) * interval_ms / 1000 / speed


class EventClock:
    """Ticks a market generator on schedule and tells simulated and monotonic time.

    Its life follows the exchange's: :meth:`set_market` when a start begins, :meth:`start` once
    listening, :meth:`run` as the clock's task, :meth:`stop` when the exchange has stopped.

    Args:
        interval_ms: simulated milliseconds between two ticks.
        speed: how much faster than real time the event clock runs.
    """

    def __init__(self, interval_ms: int, speed: float) -> None:
        self.interval_ms = interval_ms
        self.speed = speed
        self._generator: MarketGenerator | None = None
        self._ticked: asyncio.Condition | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._origin = 0.0

    @property
    def generator(self) -> MarketGenerator:
        """The market being ticked; available once a start began.

        Raises:
            RuntimeError: the exchange was never started.
        """
        if self._generator is None:
            raise RuntimeError(_NOT_STARTED)
        return self._generator

    @property
    def start_ms(self) -> int:
        """``E`` of tick 0 before jitter, in ms since the epoch."""
        return self.generator.start_ms

    @property
    def ticks(self) -> int:
        """How many ticks have been generated and published."""
        return self.generator.next_tick

    def set_market(self, generator: MarketGenerator) -> None:
        """Tick ``generator`` from now on (a start begins)."""
        self._generator = generator
        self._ticked = asyncio.Condition()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Count simulated time from ``loop``'s monotonic time now."""
        self._loop = loop
        self._origin = loop.time()

    def stop(self) -> None:
        """Stop telling time: :meth:`require_loop` raises until the next :meth:`start`."""
        self._loop = None

    def require_loop(self) -> asyncio.AbstractEventLoop:
        """Return the loop the exchange runs on.

        Raises:
            RuntimeError: the exchange is not started.
        """
        if self._loop is None:
            raise RuntimeError(_NOT_STARTED)
        return self._loop

    def monotonic(self) -> float:
        """The loop's monotonic time, in seconds (what protocol deadlines and faults use)."""
        return self.require_loop().time()

    def simulated_now_ms(self) -> int:
        """The event clock now: ``start_ms`` plus real time since start times ``speed``."""
        elapsed = self.monotonic() - self._origin
        return self.start_ms + math.floor(elapsed * self.speed * 1000)

    async def sleep_until(self, simulated_ms: int) -> None:
        """Return once the event clock reads ``simulated_ms`` (at once if it already does)."""
        loop = self.require_loop()
        due = self._origin + (simulated_ms - self.start_ms) / 1000 / self.speed
        await asyncio.sleep(max(0.0, due - loop.time()))

    async def wait_for_ticks(self, count: int) -> None:
        """Return once at least ``count`` ticks have been published.

        Raises:
            RuntimeError: the exchange was never started.
        """
        ticked = self._ticked
        if ticked is None:
            raise RuntimeError(_NOT_STARTED)
        async with ticked:
            await ticked.wait_for(lambda: self.ticks >= count)

    async def run(self, publish: Callable[[TickBatch], None]) -> None:
        """Tick forever: each tick's batch goes to ``publish`` when it is due, then waiters wake."""
        loop = self.require_loop()
        generator = self.generator
        while True:
            due = tick_due(self._origin, generator.next_tick, self.interval_ms, self.speed)
            # A tick already due still yields once, so a clock that fell behind catches up
            # without starving the connections.
            await asyncio.sleep(max(0.0, due - loop.time()))
            publish(generator.step())
            ticked = self._ticked
            if ticked is not None:
                async with ticked:
                    ticked.notify_all()
