"""The backfill's klines fetcher against the simulated exchange, over a real loopback socket.

Each failure is the simulator's own (``rest_fail`` faults, an unknown symbol); the fetcher's
waits go to a fake ``sleep`` that records them and moves a manual clock on, so the backoff and
the ``Retry-After`` pauses are read exactly and cost no time.
"""

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
import pytest_asyncio

from recorder.backfill.fetch import (
    ATTEMPTS,
    BACKOFF,
    RATE_LIMITED_ATTEMPTS,
    BannedError,
    CandleFetcher,
)
from recorder.backfill.pacing import DEFAULT_RETRY_AFTER, WeightPacer
from recorder.clock import ManualClock
from recorder.errors import RateLimitedError, RestError
from recorder.ingest.klines import MINUTE_MS
from recorder.ingest.rest import KLINES_PATH, RestClient
from recorder.simulate import SimulatedExchange, SimulatorConfig, parse_fault_spec

pytestmark = pytest.mark.integration

SYMBOL = "BTCUSDT"
MINUTES = 10


@dataclass
class Sleeps:
    """A fake ``sleep``: records each delay and moves the manual clock on by it."""

    clock: ManualClock
    delays: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.clock.advance(seconds)


@dataclass
class Bench:
    """A simulator, a fetcher talking to it, and what the fetcher waited."""

    exchange: SimulatedExchange
    http: aiohttp.ClientSession
    fetcher: CandleFetcher
    pacer: WeightPacer
    sleeps: Sleeps

    def inject(self, spec: str) -> None:
        for fault in parse_fault_spec(spec):
            self.exchange.inject(fault)

    def span(self) -> tuple[int, int]:
        """Ten minutes of the simulator's day of history."""
        last = self.exchange.start_ms // MINUTE_MS * MINUTE_MS - MINUTE_MS
        return last - (MINUTES - 1) * MINUTE_MS, last

    async def klines_requests(self) -> int:
        """Klines requests the simulator received."""
        async with self.http.get(self.exchange.rest_url + "/_sim/status") as response:
            status = await response.json()
        return int(status["rest_requests"].get(KLINES_PATH, 0))


@pytest_asyncio.fixture
async def bench(http: aiohttp.ClientSession) -> AsyncIterator[Bench]:
    clock = ManualClock()
    sleeps = Sleeps(clock)
    pacer = WeightPacer()
    async with SimulatedExchange(SimulatorConfig(symbols=(SYMBOL,), seed=4)) as exchange:
        client = RestClient(http, exchange.rest_url, timeout=5)
        fetcher = CandleFetcher(client, pacer, clock, random.Random(7), sleep=sleeps)
        yield Bench(exchange, http, fetcher, pacer, sleeps)


def assert_backoff(delays: list[float]) -> None:
    """Capped exponential backoff with jitter: try n waits BACKOFF[0] * 2**(n-1), halved at most."""
    for n, delay in enumerate(delays):
        nominal = min(BACKOFF[1], BACKOFF[0] * 2**n)
        assert nominal / 2 <= delay <= nominal, (n, delays)


@pytest.mark.asyncio
async def test_failed_answers_are_retried_with_backoff_until_the_candles_come(
    bench: Bench,
) -> None:
    # As many failures as a request may have, less one: the last try gets the candles.
    bench.inject("rest_fail;reply=500,rest_fail;reply=malformed,rest_fail;reply=truncated")
    first, last = bench.span()
    candles = await bench.fetcher.fetch(SYMBOL, first, last)
    assert [c.open_time for c in candles] == list(range(first, last + 1, MINUTE_MS))
    assert (bench.fetcher.requests, bench.fetcher.retries) == (ATTEMPTS, ATTEMPTS - 1)
    assert await bench.klines_requests() == ATTEMPTS
    assert len(bench.sleeps.delays) == ATTEMPTS - 1
    assert_backoff(bench.sleeps.delays)
    # The server's count of the minute is taken in (X-MBX-USED-WEIGHT-1M).
    assert bench.pacer.used >= 1


@pytest.mark.asyncio
async def test_it_gives_up_after_its_attempts_and_raises_the_last_failure(bench: Bench) -> None:
    bench.inject(f"rest_fail*{ATTEMPTS};reply=500")
    first, last = bench.span()
    with pytest.raises(RestError) as caught:
        await bench.fetcher.fetch(SYMBOL, first, last)
    assert caught.value.reason == "http_500"
    assert bench.fetcher.requests == ATTEMPTS
    assert await bench.klines_requests() == ATTEMPTS
    assert len(bench.sleeps.delays) == ATTEMPTS - 1
    assert_backoff(bench.sleeps.delays)
    # Nothing of it lingers: the next span is one request.
    assert len(await bench.fetcher.fetch(SYMBOL, first, last)) == MINUTES
    assert await bench.klines_requests() == ATTEMPTS + 1


@pytest.mark.asyncio
async def test_a_418_raises_banned_at_once(bench: Bench) -> None:
    bench.inject("rest_fail;reply=418;retry_after=120s")
    first, last = bench.span()
    with pytest.raises(BannedError, match="418"):
        await bench.fetcher.fetch(SYMBOL, first, last)
    assert bench.fetcher.requests == 1
    assert await bench.klines_requests() == 1
    assert bench.sleeps.delays == []


@pytest.mark.asyncio
async def test_a_client_error_other_than_429_or_418_is_not_retried(bench: Bench) -> None:
    first, last = bench.span()
    with pytest.raises(RestError) as caught:
        await bench.fetcher.fetch("NOSUCHUSDT", first, last)  # HTTP 400, -1121 Invalid symbol
    assert not isinstance(caught.value, RateLimitedError)
    assert caught.value.reason == "http_400"
    assert (bench.fetcher.requests, bench.fetcher.retries) == (1, 0)
    assert await bench.klines_requests() == 1
    assert bench.sleeps.delays == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("spec", "pause"), [("rest_fail;reply=429;retry_after=3s", 3.0), ("rest_fail;reply=429", None)]
)
async def test_a_429_is_waited_out_for_retry_after_then_asked_again(
    bench: Bench, spec: str, pause: float | None
) -> None:
    bench.inject(spec)
    first, last = bench.span()
    assert len(await bench.fetcher.fetch(SYMBOL, first, last)) == MINUTES
    expected = DEFAULT_RETRY_AFTER if pause is None else pause
    assert bench.sleeps.delays == [expected]
    assert (bench.pacer.rate_limited, bench.pacer.waited) == (1, expected)
    assert (bench.fetcher.requests, bench.fetcher.retries) == (2, 1)


@pytest.mark.asyncio
async def test_429s_without_end_are_given_up_on(bench: Bench) -> None:
    bench.inject(f"rest_fail*{RATE_LIMITED_ATTEMPTS};reply=429;retry_after=1s")
    first, last = bench.span()
    with pytest.raises(RateLimitedError):
        await bench.fetcher.fetch(SYMBOL, first, last)
    assert await bench.klines_requests() == RATE_LIMITED_ATTEMPTS
    # Each 429 but the last was waited out, and none counted against the failure attempts.
    assert bench.sleeps.delays == [1.0] * (RATE_LIMITED_ATTEMPTS - 1)
    assert bench.pacer.rate_limited == RATE_LIMITED_ATTEMPTS


@pytest.mark.asyncio
async def test_a_retry_after_of_days_fails_the_request_instead_of_sleeping(bench: Bench) -> None:
    bench.inject("rest_fail;reply=429;retry_after=864000s")
    first, last = bench.span()
    with pytest.raises(RateLimitedError, match="Retry-After over"):
        await bench.fetcher.fetch(SYMBOL, first, last)
    assert bench.sleeps.delays == []
    assert await bench.klines_requests() == 1
