"""The REST client against the simulated exchange: exchangeInfo, weights and typed failures."""

import aiohttp
import pytest

from recorder.errors import ExchangeInfoError, RateLimitedError, RestError
from recorder.ingest.rest import RestClient
from recorder.simulate import Fault, FaultKind, SimulatedExchange, SimulatorConfig
from recorder.simulate.faults import RestFailure

pytestmark = pytest.mark.integration

CONFIG = SimulatorConfig(symbols=("BTCUSDT", "币安人生USDT", "BTCUSDT_260327"), seed=2)


def rest_fail(
    reply: RestFailure, *, retry_after: float | None = None, duration: float | None = None
) -> Fault:
    return Fault(FaultKind.REST_FAIL, reply=reply, retry_after=retry_after, duration=duration)


@pytest.mark.asyncio
async def test_exchange_info_lists_the_contracts_and_the_weight_used(
    http: aiohttp.ClientSession,
) -> None:
    async with SimulatedExchange(CONFIG) as exchange:
        exchange.set_contract_status("NEWUSDT", "PENDING_TRADING")
        client = RestClient(http, exchange.rest_url, timeout=5)
        info = await client.exchange_info()
    assert [(c.symbol, c.status, c.contract_type) for c in info.contracts] == [
        ("BTCUSDT", "TRADING", "PERPETUAL"),
        ("币安人生USDT", "TRADING", "PERPETUAL"),
        ("BTCUSDT_260327", "TRADING", "CURRENT_QUARTER"),
        ("NEWUSDT", "PENDING_TRADING", "PERPETUAL"),
    ]
    assert info.skipped == 0
    assert client.used_weight is not None
    assert client.used_weight >= 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("fault", "error", "reason", "retry_after"),
    [
        (rest_fail(RestFailure.HTTP_500), RestError, "http_500", None),
        (rest_fail(RestFailure.HTTP_429, retry_after=7), RateLimitedError, "rate_limited", 7.0),
        (rest_fail(RestFailure.HTTP_429), RateLimitedError, "rate_limited", None),
        (rest_fail(RestFailure.HTTP_418, retry_after=120), RateLimitedError, "banned", 120.0),
        (rest_fail(RestFailure.SLOW, duration=5), RestError, "timeout", None),
        (rest_fail(RestFailure.MALFORMED), ExchangeInfoError, "malformed", None),
        (rest_fail(RestFailure.TRUNCATED), ExchangeInfoError, "malformed", None),
    ],
)
async def test_each_failure_is_a_typed_error(
    http: aiohttp.ClientSession,
    fault: Fault,
    error: type[Exception],
    reason: str,
    retry_after: float | None,
) -> None:
    async with SimulatedExchange(CONFIG) as exchange:
        client = RestClient(http, exchange.rest_url, timeout=0.5)
        exchange.inject(fault)
        with pytest.raises(error) as caught:
            await client.exchange_info()
        assert getattr(caught.value, "reason", None) == reason
        if isinstance(caught.value, RateLimitedError):
            assert caught.value.retry_after == retry_after
        # The fault was for one request: the next one is answered.
        assert len((await client.exchange_info()).contracts) == len(CONFIG.symbols)


@pytest.mark.asyncio
async def test_an_empty_list_is_an_answer_with_no_contract(http: aiohttp.ClientSession) -> None:
    async with SimulatedExchange(CONFIG) as exchange:
        exchange.inject(rest_fail(RestFailure.EMPTY))
        info = await RestClient(http, exchange.rest_url, timeout=5).exchange_info()
    assert info.contracts == ()


@pytest.mark.asyncio
async def test_no_server_is_a_connection_error(http: aiohttp.ClientSession) -> None:
    async with SimulatedExchange(CONFIG) as exchange:
        url = exchange.rest_url
    with pytest.raises(RestError) as caught:
        await RestClient(http, url, timeout=5).exchange_info()
    assert caught.value.reason == "connection"
    assert isinstance(caught.value, ConnectionError)
