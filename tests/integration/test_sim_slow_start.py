"""The simulator's ``slow_start`` fault: a new connection's data comes late, none of it lost,
while requests are answered at once; connections opened later start normally."""

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import WSMsgType

from recorder.simulate import Fault, FaultKind, SimulatedExchange, SimulatorConfig

pytestmark = pytest.mark.integration

STREAM = "btcusdt@miniTicker"


@pytest_asyncio.fixture
async def exchange() -> AsyncIterator[SimulatedExchange]:
    config = SimulatorConfig(symbols=("BTCUSDT",), speed=100, activity=1.0, seed=9)
    async with SimulatedExchange(config) as running:
        yield running


async def _frames(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[dict[str, object]]:
    frames = []
    for _ in range(count):
        message = await ws.receive(timeout=5)
        assert message.type is WSMsgType.TEXT, message
        frames.append(json.loads(message.data))
    return frames


@pytest.mark.asyncio
async def test_slow_start_holds_data_back_then_sends_all_of_it_in_order(
    exchange: SimulatedExchange,
) -> None:
    exchange.inject(Fault(FaultKind.SLOW_START, duration=0.5))
    url = f"{exchange.base_url}/stream?streams={STREAM}"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        [info] = exchange.connections()
        assert info.held
        opened_at_tick = exchange.ticks
        await ws.send_str('{"method":"LIST_SUBSCRIPTIONS","id":1}')
        # The reply overtakes every held frame: requests are answered at once.
        [reply] = await _frames(ws, 1)
        assert reply == {"result": [STREAM], "id": 1}
        frames = await _frames(ws, 40)  # 0.5 s is 25 ticks: past the hold
        assert not exchange.connections()[0].held
        delivered = [e.event_time for e in exchange.events("BTCUSDT", info.connection_id)]
        assert [frame["data"]["E"] for frame in frames] == delivered[:40]  # type: ignore[index]
        # Nothing published while held was lost: the first tick after the handshake came first.
        first = exchange.events("BTCUSDT", info.connection_id)[0]
        assert first.tick <= opened_at_tick + 1
        assert not any(e.withheld_from for e in exchange.events("BTCUSDT"))

        # The fault slowed one handshake only: the next connection is not held.
        async with http.ws_connect(url):
            assert [c.held for c in exchange.connections()] == [False, False]
