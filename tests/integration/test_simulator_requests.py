"""What ``/_sim/status`` and ``/_sim/connections`` report of a client's own traffic.

The judge of a recorder's control messages and REST polling is the server: requests counted by
method and their peak per second on each connection, connections open and ever opened, REST
requests by path.
"""

import asyncio

import aiohttp
import pytest
from aiohttp import WSMsgType

from recorder.simulate import SimulatedExchange, SimulatorConfig

pytestmark = pytest.mark.integration

CONFIG = SimulatorConfig(symbols=("BTCUSDT", "ETHUSDT", "SOLUSDT"), speed=50, seed=9)


async def replies(ws: aiohttp.ClientWebSocketResponse, count: int) -> None:
    """Read frames until ``count`` request replies (frames with an ``id``) have come."""
    seen = 0
    while seen < count:
        message = await ws.receive(timeout=5)
        assert message.type is WSMsgType.TEXT, message
        seen += '"id"' in message.data and '"stream"' not in message.data


@pytest.mark.asyncio
async def test_requests_are_counted_by_method_with_their_peak_per_second(
    http: aiohttp.ClientSession,
) -> None:
    async with SimulatedExchange(CONFIG) as exchange:
        url = f"{exchange.base_url}/stream?streams=btcusdt@miniTicker"
        async with http.ws_connect(url) as first, http.ws_connect(url):
            for text in (
                '{"method":"SUBSCRIBE","params":["ethusdt@miniTicker"],"id":1}',
                '{"method":"UNSUBSCRIBE","params":["ethusdt@miniTicker"],"id":2}',
                '{"method":"LIST_SUBSCRIPTIONS","id":3}',
                "not a request",
            ):
                await first.send_str(text)
            await replies(first, 4)
            await first.ping()  # a ping is no request
            await asyncio.sleep(0.05)
            async with http.get(f"{exchange.rest_url}/_sim/connections") as response:
                one, two = (await response.json())["connections"]
            async with http.get(f"{exchange.rest_url}/_sim/status") as response:
                status = await response.json()
        assert one["requests"] == {
            "SUBSCRIBE": 1,
            "UNSUBSCRIBE": 1,
            "LIST_SUBSCRIPTIONS": 1,
            "invalid": 1,
        }
        assert one["request_peak_per_second"] == 4
        methods = [method for _, method in one["latest_requests"]]
        assert methods == ["SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "invalid"]
        assert all(at_ms >= one["opened_at_ms"] for at_ms, _ in one["latest_requests"])
        assert (two["requests"], two["request_peak_per_second"]) == ({}, 0)
        assert (status["connections_open"], status["connections_opened"]) == (2, 2)
        for _ in range(100):  # the server forgets a connection once its close handshake ends
            async with http.get(f"{exchange.rest_url}/_sim/status") as response:
                after = await response.json()
            if after["connections_open"] == 0:
                break
            await asyncio.sleep(0.02)
        assert (after["connections_open"], after["connections_opened"]) == (0, 2)


@pytest.mark.asyncio
async def test_rest_requests_are_counted_by_path(http: aiohttp.ClientSession) -> None:
    async with SimulatedExchange(CONFIG) as exchange:
        for path in ("exchangeInfo", "exchangeInfo", "ping"):
            async with http.get(f"{exchange.rest_url}/fapi/v1/{path}") as response:
                assert response.status == 200
        async with http.get(f"{exchange.rest_url}/_sim/status") as response:
            status = await response.json()
    assert status["rest_requests"] == {"/fapi/v1/exchangeInfo": 2, "/fapi/v1/ping": 1}
