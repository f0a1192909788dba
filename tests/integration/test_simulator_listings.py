"""The simulated exchange's listing schedule and clock endpoints, over real loopback sockets."""

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import WSMsgType

from recorder.simulate import SimulatedExchange, SimulatorConfig

pytestmark = pytest.mark.integration

FAST = SimulatorConfig(symbols=("BTCUSDT", "ETHUSDT"), speed=100, activity=1.0, seed=3)
RECEIVE_TIMEOUT = 5.0


@pytest_asyncio.fixture
async def exchange() -> AsyncIterator[SimulatedExchange]:
    async with SimulatedExchange(FAST) as running:
        yield running


async def get_json(http: aiohttp.ClientSession, url: str) -> object:
    async with http.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def change_listing(
    http: aiohttp.ClientSession, exchange: SimulatedExchange, body: object
) -> tuple[int, object]:
    async with http.post(f"{exchange.rest_url}/_sim/listings", json=body) as response:
        return response.status, await response.json()


async def statuses(http: aiohttp.ClientSession, exchange: SimulatedExchange) -> dict[str, str]:
    info = await get_json(http, f"{exchange.rest_url}/fapi/v1/exchangeInfo")
    assert isinstance(info, dict)
    return {entry["symbol"]: entry["status"] for entry in info["symbols"]}


async def next_frame(ws: aiohttp.ClientWebSocketResponse) -> dict[str, object]:
    message = await ws.receive(timeout=RECEIVE_TIMEOUT)
    assert message.type is WSMsgType.TEXT, message
    frame: dict[str, object] = json.loads(message.data)
    return frame


@pytest.mark.asyncio
async def test_ping_and_time_answer_as_binance_does(
    exchange: SimulatedExchange, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{exchange.rest_url}/fapi/v1/ping") as response:
        assert response.status == 200
        assert await response.json() == {}
        ping_weight = int(response.headers["X-MBX-USED-WEIGHT-1M"])
    before = exchange.simulated_now_ms()
    async with http.get(f"{exchange.rest_url}/fapi/v1/time") as response:
        assert response.status == 200
        body = await response.json()
        time_weight = int(response.headers["X-MBX-USED-WEIGHT-1M"])
    assert list(body) == ["serverTime"]
    assert before <= body["serverTime"] <= exchange.simulated_now_ms()
    assert time_weight in {ping_weight + 1, 1}  # 1 when a new minute began in between


@pytest.mark.asyncio
async def test_a_listing_moves_through_its_statuses_in_exchange_info(
    exchange: SimulatedExchange, http: aiohttp.ClientSession
) -> None:
    status, body = await change_listing(
        http, exchange, {"symbol": "NEWUSDT", "status": "PENDING_TRADING"}
    )
    assert status == 200
    assert isinstance(body, dict)
    assert body["contract"]["status"] == "PENDING_TRADING"
    assert await statuses(http, exchange) == {
        "BTCUSDT": "TRADING",
        "ETHUSDT": "TRADING",
        "NEWUSDT": "PENDING_TRADING",
    }
    for step in ("TRADING", "SETTLING"):
        await change_listing(http, exchange, {"symbol": "NEWUSDT", "status": step})
        assert (await statuses(http, exchange))["NEWUSDT"] == step
    assert await change_listing(http, exchange, {"symbol": "NEWUSDT", "status": "DELISTED"}) == (
        200,
        {"contract": None},
    )
    assert "NEWUSDT" not in await statuses(http, exchange)
    listings = await get_json(http, f"{exchange.rest_url}/_sim/listings")
    assert isinstance(listings, dict)
    assert [entry["symbol"] for entry in listings["contracts"]] == ["BTCUSDT", "ETHUSDT"]


@pytest.mark.parametrize(
    "body",
    [
        {"symbol": "NEWUSDT", "status": "OPEN"},
        {"symbol": "newusdt", "status": "TRADING"},
        {"symbol": "NEWUSDT", "status": "DELISTED"},
        {"symbol": "NEWUSDT"},
        ["NEWUSDT", "TRADING"],
    ],
)
@pytest.mark.asyncio
async def test_a_bad_listing_change_is_refused_and_changes_nothing(
    exchange: SimulatedExchange, http: aiohttp.ClientSession, body: object
) -> None:
    status, answer = await change_listing(http, exchange, body)
    assert status == 400
    assert isinstance(answer, dict)
    assert answer["error"]
    assert await statuses(http, exchange) == {"BTCUSDT": "TRADING", "ETHUSDT": "TRADING"}


@pytest.mark.asyncio
async def test_only_a_trading_contract_s_stream_delivers(
    exchange: SimulatedExchange, http: aiohttp.ClientSession
) -> None:
    exchange.set_contract_status("NEWUSDT", "PENDING_TRADING")
    url = f"{exchange.base_url}/stream?streams=newusdt@miniTicker"
    async with http.ws_connect(url) as ws:
        [info] = exchange.connections()
        await exchange.wait_for_ticks(exchange.ticks + 5)
        await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": "probe"})
        assert await next_frame(ws) == {"result": ["newusdt@miniTicker"], "id": "probe"}
        exchange.set_contract_status("NEWUSDT", "TRADING")
        frame = await next_frame(ws)
        exchange.set_contract_status("NEWUSDT", "SETTLING")
        # Frames of ticks generated before the change may still be on their way.
        settled_at = exchange.ticks
        await exchange.wait_for_ticks(settled_at + 5)
        await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 2})
        while (late := await next_frame(ws)).get("id") != 2:
            assert isinstance(late["data"], dict)
            assert late["data"]["s"] == "NEWUSDT"
    assert frame["stream"] == "newusdt@miniTicker"
    data = frame["data"]
    assert isinstance(data, dict)
    [record, *_] = exchange.events("NEWUSDT")
    assert data == record.payload
    assert info.connection_id in record.delivered_to
    assert all(record.tick < settled_at for record in exchange.events("NEWUSDT"))
