"""The klines a backfill needs, fetched politely: paced by weight, 429s waited out, retries.

:class:`CandleFetcher` asks :class:`~recorder.ingest.rest.RestClient` for one span of
one-minute candles at a time, each request first cleared by the shared
:class:`~recorder.backfill.pacing.WeightPacer` (so concurrent symbols share one budget).
A connection error, a timeout, an HTTP 5xx or an unusable answer is retried with capped
exponential backoff and jitter, :data:`ATTEMPTS` times in all; a 429 pauses every request
until ``Retry-After`` has passed (at most :data:`MAX_RETRY_AFTER`; a longer one fails the request)
and is retried too; a 418 (the IP is banned) raises
:class:`BannedError` at once, and the run stops.
"""

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Final

from recorder.backfill.pacing import WeightPacer
from recorder.clock import Clock
from recorder.errors import KlinesError, RateLimitedError, RecorderError, RestError
from recorder.exchange_limits import klines_weight
from recorder.ingest.klines import MINUTE_MS, Candle
from recorder.ingest.rest import RestClient

ATTEMPTS: Final = 4
"""Tries of one request before its gaps are reported as not filled."""
RATE_LIMITED_ATTEMPTS: Final = 10
"""429s tolerated for one request (each waited out) before giving up on it."""
MAX_RETRY_AFTER: Final = 900.0
"""The longest ``Retry-After`` waited out; a longer one (a hostile or broken answer) gives up on
the request instead of sleeping for days."""
BACKOFF: Final = (0.5, 8.0)
"""First and largest delay between two tries, in seconds (jittered)."""

Sleep = Callable[[float], Awaitable[None]]


class BannedError(RecorderError, ConnectionError):
    """The exchange answered HTTP 418: this IP is banned; nothing more may be sent."""


class CandleFetcher:
    """Fetches spans of one-minute candles for the backfill.

    Args:
        client: the REST client.
        pacer: the weight budget shared by every request of the run.
        clock: the wall clock (the exchange's minutes).
        rng: jitter for the backoff.
        sleep: how to wait (``asyncio.sleep``).
    """

    def __init__(
        self,
        client: RestClient,
        pacer: WeightPacer,
        clock: Clock,
        rng: random.Random,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._client = client
        self._pacer = pacer
        self._clock = clock
        self._rng = rng
        self._sleep = sleep
        self.requests = 0
        """Requests sent."""
        self.retries = 0
        """Requests sent again after a failure."""

    def _now(self) -> float:
        return self._clock.wall_us() / 1_000_000

    async def _cleared(self, weight: int) -> None:
        while (wait := self._pacer.delay(weight, self._now())) > 0:
            await self._sleep(wait)

    async def fetch(self, symbol: str, first_ms: int, last_ms: int) -> list[Candle]:
        """The candles of ``symbol`` opening from ``first_ms`` to ``last_ms`` (one request's worth).

        Raises:
            BannedError: HTTP 418.
            RestError, KlinesError: every attempt failed; the last failure.
        """
        weight = klines_weight((last_ms - first_ms) // MINUTE_MS + 1)
        failures = refusals = 0
        while True:
            await self._cleared(weight)
            self.requests += 1
            try:
                candles = await self._client.klines(symbol, first_ms, last_ms)
            except RateLimitedError as exc:
                self._pacer.observe(self._client.used_weight, self._now())
                if exc.reason == "banned":
                    raise BannedError(f"the exchange banned this IP (HTTP 418): {exc}") from exc
                refusals += 1
                if exc.retry_after is not None and exc.retry_after > MAX_RETRY_AFTER:
                    msg = f"{exc}: Retry-After over the {MAX_RETRY_AFTER:g}s a backfill waits"
                    raise RateLimitedError(msg, exc.reason, exc.retry_after) from exc
                # Every other request of the run waits too: the limit is the IP's.
                self._pacer.refused(exc.retry_after, self._now())
                if refusals >= RATE_LIMITED_ATTEMPTS:
                    raise
            except (RestError, KlinesError) as exc:
                failures += 1
                if failures >= ATTEMPTS or not _worth_retrying(exc):
                    raise
                delay = min(BACKOFF[1], BACKOFF[0] * 2 ** (failures - 1))
                await self._sleep(delay * self._rng.uniform(0.5, 1.0))
            else:
                self._pacer.observe(self._client.used_weight, self._now())
                return candles
            self.retries += 1


def _worth_retrying(error: RestError | KlinesError) -> bool:
    """An HTTP 4xx other than 429/418 is the request's fault: asking again changes nothing."""
    reason = error.reason
    return not (reason.startswith("http_4"))
