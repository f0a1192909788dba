"""How fast ``recorder backfill`` may ask the REST API (sans-IO): weight, 429s and bans.

Binance counts request weight per IP and per minute (2,400 on USDⓈ-M futures) and reports
what is used in ``X-MBX-USED-WEIGHT-1M``, the recorders on the same IP included. A request
over the limit gets HTTP 429 with ``Retry-After``; an IP that keeps sending after 429s gets
418 and a ban. :class:`WeightPacer` keeps the backfill well inside: it spends at most
``limit * (1 - headroom)`` a minute, takes the server's own count as soon as an answer tells
it, and after a 429 sends nothing at all until ``Retry-After`` has passed. A 418 is the
caller's to stop on.

Times are wall-clock seconds: the exchange's minutes are wall-clock minutes.
"""

import math
from typing import Final

from recorder.exchange_limits import REST_WEIGHT_LIMIT

HEADROOM: Final = 0.25
"""Share of the limit left to everything else on the IP (the recorders' exchangeInfo)."""
DEFAULT_RETRY_AFTER: Final = 60.0
"""Seconds to wait after a 429 that names no ``Retry-After``."""
MINUTE: Final = 60.0


class WeightPacer:
    """The request weight spent this minute, and how long the next request must wait.

    Args:
        limit: the exchange's weight per minute.
        headroom: the share of ``limit`` never spent here.
    """

    def __init__(self, limit: int = REST_WEIGHT_LIMIT, headroom: float = HEADROOM) -> None:
        self.budget = max(1, math.floor(limit * (1 - headroom)))
        self._minute = -1
        self._used = 0
        self._paused_until = 0.0
        self.rate_limited = 0
        """429 answers seen."""
        self.waited = 0.0
        """Seconds of waiting asked for so far (weight and ``Retry-After``)."""

    def _roll(self, now: float) -> None:
        minute = math.floor(now / MINUTE)
        if minute != self._minute:
            self._minute, self._used = minute, 0

    def delay(self, weight: int, now: float) -> float:
        """Seconds to wait before a request of ``weight``; 0 when it may go now (then spent)."""
        self._roll(now)
        if now < self._paused_until:
            wait = self._paused_until - now
        elif self._used + weight > self.budget and self._used > 0:
            wait = (self._minute + 1) * MINUTE - now + 0.5  # into the next minute, safely
        else:
            self._used += weight
            return 0.0
        self.waited += wait
        return wait

    def observe(self, used_weight: int | None, now: float) -> None:
        """Take the server's count of this minute (``X-MBX-USED-WEIGHT-1M``) when it is higher."""
        self._roll(now)
        if used_weight is not None:
            self._used = max(self._used, used_weight)

    def refused(self, retry_after: float | None, now: float) -> None:
        """A 429: nothing goes out until ``retry_after`` seconds from ``now`` have passed."""
        self.rate_limited += 1
        pause = DEFAULT_RETRY_AFTER if retry_after is None else retry_after
        self._paused_until = max(self._paused_until, now + pause)

    @property
    def used(self) -> int:
        """Weight counted in the current minute."""
        return self._used
