"""Binance's official USDⓈ-M futures SDK judges the simulated exchange, over loopback.

What the SDK sends and how it reads the answers is Binance's code, not ours: if it parses the
simulator's REST answers into its models and its streams client gets and parses events, the
simulator speaks Binance closely enough for a client nobody here wrote. The SDK's REST client
is synchronous (``requests``), so its calls run in a thread while the exchange serves on the
test's loop.

The SDK never fails a bad answer loudly: a REST body that does not fit its model is parsed
again with the model's strict types removed (for good: the SDK relaxes the class in place), or
handed back raw, with a warning; a stream payload that does not parse is logged and reported as
a connection ``error``. So each test checks the types of what came back and that the SDK
logged no warning and reported no error.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import aiohttp
import pytest
import pytest_asyncio
from binance_common.configuration import ConfigurationRestAPI, ConfigurationWebSocketStreams
from binance_common.models import ApiResponse
from binance_sdk_derivatives_trading_usds_futures.derivatives_trading_usds_futures import (
    DerivativesTradingUsdsFutures,
)
from binance_sdk_derivatives_trading_usds_futures.rest_api.models import (
    CheckServerTimeResponse,
    ExchangeInformationResponse,
    KlineCandlestickDataIntervalEnum,
    Ticker24hrPriceChangeStatisticsResponse,
    Ticker24hrPriceChangeStatisticsResponse1,
)
from binance_sdk_derivatives_trading_usds_futures.websocket_streams.models import (
    AllMarketMiniTickersStreamResponse,
    IndividualSymbolMiniTickerStreamResponse,
)
from binance_sdk_derivatives_trading_usds_futures.websocket_streams.websocket_streams import (
    DerivativesTradingUsdsFuturesWebSocketStreams,
)
from pydantic import BaseModel

from recorder.simulate import SimulatedExchange, SimulatorConfig
from recorder.simulate.history import MINUTE_MS, WINDOW_MINUTES
from recorder.simulate.ledger import EventRecord

pytestmark = pytest.mark.integration

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

CONFIG = SimulatorConfig(
    symbols=("BTCUSDT", "ETHUSDT", "币安人生USDT", "BTCUSDT_260327"),
    speed=20,
    activity=1.0,
    seed=11,
)
"""A tick every 100 ms, every symbol changing in every tick; a non-ASCII and a dated contract."""
RECEIVE_TIMEOUT = 10.0
"""Seconds to wait for what the SDK hands over (it waits 0.5 s before each subscription)."""
STREAM_FIELDS = ("e", "E", "s", "c", "o", "h", "l", "v", "q")


@pytest_asyncio.fixture
async def exchange() -> AsyncIterator[SimulatedExchange]:
    async with SimulatedExchange(CONFIG) as running:
        yield running


@pytest.fixture
def client(exchange: SimulatedExchange) -> DerivativesTradingUsdsFutures:
    # The SDK appends /stream, and opens /market/stream, /public/stream and /private/stream.
    streams_url = exchange.rest_url.replace("http://", "ws://", 1)
    return DerivativesTradingUsdsFutures(
        config_rest_api=ConfigurationRestAPI(base_path=exchange.rest_url, retries=0),
        config_ws_streams=ConfigurationWebSocketStreams(stream_url=streams_url),
    )


@pytest.fixture
def sdk_complaints(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """What the SDK logged at WARNING or above; the SDK logs on the root logger."""
    complaints: list[str] = []
    with caplog.at_level(logging.WARNING):
        yield complaints
        complaints.extend(
            record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING
        )


class StreamsClient:
    """The SDK's streams client, connected, with every connection error it reported."""

    def __init__(self, streams: DerivativesTradingUsdsFuturesWebSocketStreams) -> None:
        self.streams = streams
        self.errors: list[object] = []
        streams.on_connection("error", self.errors.append)


@pytest_asyncio.fixture
async def streams(client: DerivativesTradingUsdsFutures) -> AsyncIterator[StreamsClient]:
    sdk = client.websocket_streams
    await sdk.create_connection()  # type: ignore[no-untyped-call]  # the SDK leaves it untyped
    assert [connection.url_path for connection in sdk.connections] == [
        "market",
        "public",
        "private",
    ]
    connected = StreamsClient(sdk)
    try:
        yield connected
    finally:
        await sdk.close_connection()
    assert connected.errors == []


def collector(into: asyncio.Queue[Any]) -> Callable[[Any], None]:
    return into.put_nowait


async def next_message(queue: asyncio.Queue[T]) -> T:
    return await asyncio.wait_for(queue.get(), timeout=RECEIVE_TIMEOUT)


async def list_subscriptions(streams: StreamsClient) -> dict[str, object]:
    """Ask the market connection; the SDK matches the reply by the UUID it sent as the id."""
    reply = await asyncio.wait_for(streams.streams.list_subscribe(), timeout=RECEIVE_TIMEOUT)
    assert isinstance(reply, dict), reply
    return reply


async def call_rest(call: Callable[[], ApiResponse[M]], model: type[M]) -> tuple[M, ApiResponse[M]]:
    """Call the SDK's blocking REST method in a thread; its answer must be a ``model``."""
    response = await asyncio.to_thread(call)
    data = response.data()
    assert isinstance(data, model), data
    return data, response


def unset_fields(model: BaseModel) -> list[str]:
    return [name for name in type(model).model_fields if getattr(model, name) is None]


def assert_is_the_ledger_s(
    message: IndividualSymbolMiniTickerStreamResponse, truth: dict[tuple[str, int], EventRecord]
) -> EventRecord:
    assert isinstance(message, IndividualSymbolMiniTickerStreamResponse)
    assert message.e == "24hrMiniTicker"
    assert isinstance(message.s, str)
    assert isinstance(message.E, int)
    record = truth[message.s, message.E]
    payload = record.payload
    assert {field: getattr(message, field) for field in STREAM_FIELDS} == {
        field: payload[field] for field in STREAM_FIELDS
    }
    assert (message.ps, message.st) == (payload.get("ps"), payload.get("st"))
    return record


def ledger(exchange: SimulatedExchange) -> dict[tuple[str, int], EventRecord]:
    return {(record.symbol, record.event_time): record for record in exchange.events()}


# REST ----------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_exchange_information_parses_whole_into_the_sdk_model(
    exchange: SimulatedExchange, client: DerivativesTradingUsdsFutures, sdk_complaints: list[str]
) -> None:
    before = exchange.simulated_now_ms()
    info, response = await call_rest(
        client.rest_api.exchange_information, ExchangeInformationResponse
    )
    assert unset_fields(info) == []
    assert info.additional_properties == {"futuresType": "U_MARGINED"}
    assert info.timezone == "UTC"
    assert info.server_time is not None
    assert before <= info.server_time <= exchange.simulated_now_ms()
    assert info.rate_limits is not None
    assert info.rate_limits[0].rate_limit_type == "REQUEST_WEIGHT"
    assert info.rate_limits[0].limit == CONFIG.rest_weight_limit
    assert all(unset_fields(limit) == [] for limit in info.rate_limits)
    assert info.assets is not None
    assert [asset.asset for asset in info.assets] == ["USDT"]
    assert all(unset_fields(asset) == [] for asset in info.assets)
    assert info.symbols is not None
    assert [entry.symbol for entry in info.symbols] == list(CONFIG.symbols)
    profiles = exchange.generator.profiles
    for entry in info.symbols:
        assert unset_fields(entry) == [], entry.symbol
        assert entry.additional_properties == {"maxMoveOrderLimit": 10_000}
        assert entry.status == "TRADING"
        assert entry.symbol is not None
        assert entry.price_precision == profiles[entry.symbol].price.price_decimals
        assert entry.filters is not None
        assert all(item.filter_type for item in entry.filters)
    dated = info.symbols[3]
    assert (dated.contract_type, dated.pair, dated.delivery_date) == (
        "CURRENT_QUARTER",
        "BTCUSDT",
        1_774_598_400_000,
    )
    assert (info.symbols[2].base_asset, info.symbols[2].quote_asset) == ("币安人生", "USDT")
    [weight] = response.rate_limits
    assert (weight.rateLimitType, weight.interval, weight.intervalNum) == (
        "REQUEST_WEIGHT",
        "MINUTE",
        1,
    )
    assert weight.count >= 1
    assert sdk_complaints == []


@pytest.mark.asyncio
async def test_server_time_and_connectivity(
    exchange: SimulatedExchange, client: DerivativesTradingUsdsFutures, sdk_complaints: list[str]
) -> None:
    before = exchange.simulated_now_ms()
    server_time, _ = await call_rest(client.rest_api.check_server_time, CheckServerTimeResponse)
    assert server_time.server_time is not None
    assert before <= server_time.server_time <= exchange.simulated_now_ms()
    assert server_time.additional_properties == {}
    ping = await asyncio.to_thread(client.rest_api.test_connectivity)
    assert ping.status == 200
    assert ping.data() == {}
    assert sdk_complaints == []


@pytest.mark.asyncio
async def test_klines_and_the_24h_ticker_parse_and_agree_with_the_stream(
    exchange: SimulatedExchange, client: DerivativesTradingUsdsFutures, sdk_complaints: list[str]
) -> None:
    rest = client.rest_api
    day_before = exchange.start_ms // MINUTE_MS * MINUTE_MS - WINDOW_MINUTES * MINUTE_MS
    one_minute = KlineCandlestickDataIntervalEnum.INTERVAL_1m
    await exchange.wait_for_ticks(1)
    response = await asyncio.to_thread(
        rest.kline_candlestick_data, "BTCUSDT", one_minute, start_time=day_before, limit=1_500
    )
    # The SDK's model of a kline is Binance's bare array: it hands the rows over as they are.
    rows = response.data()
    assert isinstance(rows, list)
    assert len(rows) >= WINDOW_MINUTES + 1
    assert rows[0][0] == day_before
    kinds = [int, str, str, str, str, str, int, str, int, str, str, str]
    assert all([type(value) for value in row] == kinds for row in rows)
    assert [row[0] for row in rows] == list(range(day_before, rows[-1][0] + 1, MINUTE_MS))
    await exchange.wait_for_ticks(exchange.ticks + 1)
    ticker = (
        await asyncio.to_thread(rest.ticker24hr_price_change_statistics, symbol="BTCUSDT")
    ).data()
    assert isinstance(ticker, Ticker24hrPriceChangeStatisticsResponse)
    body = ticker.actual_instance
    assert isinstance(body, Ticker24hrPriceChangeStatisticsResponse1)
    assert unset_fields(body) == []
    assert body.additional_properties == {}
    last = exchange.events("BTCUSDT")[-1]
    if body.close_time == last.event_time:  # no tick between the answer and the ledger
        payload = last.payload
        assert (body.last_price, body.open_price, body.high_price, body.low_price) == (
            payload["c"],
            payload["o"],
            payload["h"],
            payload["l"],
        )
        assert (body.volume, body.quote_volume) == (payload["v"], payload["q"])
    assert sdk_complaints == []


# Streams -------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_streams_client_subscribes_with_uuid_ids_and_parses_every_event(
    exchange: SimulatedExchange, streams: StreamsClient, sdk_complaints: list[str]
) -> None:
    received: asyncio.Queue[IndividualSymbolMiniTickerStreamResponse] = asyncio.Queue()
    for symbol in ("btcusdt", "币安人生usdt"):
        handle = await streams.streams.individual_symbol_mini_ticker_stream(symbol=symbol)
        handle.on("message", collector(received))
    reply = await list_subscriptions(streams)
    assert reply["result"] == ["btcusdt@miniTicker", "币安人生usdt@miniTicker"]
    assert isinstance(reply["id"], str)  # a UUID, echoed as sent
    messages = [await next_message(received) for _ in range(20)]
    truth = ledger(exchange)
    records = [assert_is_the_ledger_s(message, truth) for message in messages]
    assert {record.symbol for record in records} == {"BTCUSDT", "币安人生USDT"}
    [market, *_] = exchange.connections()
    assert all(market.connection_id in record.delivered_to for record in records)
    assert sdk_complaints == []


@pytest.mark.asyncio
async def test_streams_client_reads_the_all_market_array_each_second(
    exchange: SimulatedExchange, streams: StreamsClient, sdk_complaints: list[str]
) -> None:
    arrays: asyncio.Queue[list[AllMarketMiniTickersStreamResponse]] = asyncio.Queue()
    handle = await streams.streams.all_market_mini_tickers_stream()
    handle.on("message", collector(arrays))
    received = [await next_message(arrays) for _ in range(6)]
    truth = ledger(exchange)
    paces = []
    for index, array in enumerate(received):
        assert isinstance(array, list)
        assert all(isinstance(item, AllMarketMiniTickersStreamResponse) for item in array)
        seconds = set()
        for item in array:
            assert item.s is not None
            assert item.E is not None
            assert item.c == truth[item.s, item.E].payload["c"]
            seconds.add((item.E - exchange.start_ms) // 1_000)
        if array:
            assert {item.s for item in array} == set(CONFIG.symbols)  # activity 1: all change
            [second] = seconds
            paces.append(second - index)
    # One array a second; a tick every 2 simulated seconds leaves every other one empty.
    assert len(set(paces)) == 1, paces
    assert [] in received
    assert sdk_complaints == []


# Listings ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_scheduled_listing_shows_in_the_sdk_s_model_and_trades_only_when_trading(
    exchange: SimulatedExchange,
    client: DerivativesTradingUsdsFutures,
    streams: StreamsClient,
    sdk_complaints: list[str],
) -> None:
    async def schedule(status: str) -> None:
        body = {"symbol": "NEWUSDT", "status": status}
        async with http.post(f"{exchange.rest_url}/_sim/listings", json=body) as response:
            assert response.status == 200, await response.text()

    async def sdk_statuses() -> dict[str, str | None]:
        info, _ = await call_rest(client.rest_api.exchange_information, ExchangeInformationResponse)
        assert info.symbols is not None
        assert all(unset_fields(entry) == [] for entry in info.symbols)
        return {str(entry.symbol): entry.status for entry in info.symbols}

    received: asyncio.Queue[IndividualSymbolMiniTickerStreamResponse] = asyncio.Queue()
    async with aiohttp.ClientSession() as http:
        await schedule("PENDING_TRADING")
        assert (await sdk_statuses())["NEWUSDT"] == "PENDING_TRADING"
        handle = await streams.streams.individual_symbol_mini_ticker_stream(symbol="newusdt")
        handle.on("message", collector(received))
        await exchange.wait_for_ticks(exchange.ticks + 5)
        # The reply goes out after every frame queued before it: none was a NEWUSDT event.
        assert (await list_subscriptions(streams))["result"] == ["newusdt@miniTicker"]
        assert received.empty()
        await schedule("TRADING")
        assert (await sdk_statuses())["NEWUSDT"] == "TRADING"
        record = assert_is_the_ledger_s(await next_message(received), ledger(exchange))
        assert record.symbol == "NEWUSDT"
        await schedule("SETTLING")
        assert (await sdk_statuses())["NEWUSDT"] == "SETTLING"
        await schedule("DELISTED")
        assert list(await sdk_statuses()) == list(CONFIG.symbols)
    assert sdk_complaints == []
