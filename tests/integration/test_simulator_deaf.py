"""The ``deaf`` fault: a connection that ignores requests while its data goes on."""

import json

import aiohttp
import pytest
from aiohttp import WSMsgType

from recorder.simulate import Fault, FaultKind, SimulatedExchange, SimulatorConfig
from recorder.simulate.faults import parse_fault_spec

pytestmark = pytest.mark.integration

CONFIG = SimulatorConfig(symbols=("BTCUSDT", "ETHUSDT"), speed=50, activity=1.0, seed=5)


def test_deaf_is_a_timed_connection_fault() -> None:
    assert parse_fault_spec("deaf@1s+2s;conn=c1") == (
        Fault(FaultKind.DEAF, at=1.0, duration=2.0, connection_id="c1"),
    )


@pytest.mark.asyncio
async def test_a_deaf_connection_answers_nothing_and_keeps_delivering(
    http: aiohttp.ClientSession,
) -> None:
    async with SimulatedExchange(CONFIG) as exchange:
        url = f"{exchange.base_url}/stream?streams=btcusdt@miniTicker"
        async with http.ws_connect(url) as ws:
            exchange.inject(Fault(FaultKind.DEAF, duration=1.0))
            await ws.send_str('{"method":"SUBSCRIBE","params":["ethusdt@miniTicker"],"id":1}')
            # Ask again every fifth data frame (within the message rate limit) until answered.
            request_id, data_frames = 1, 0
            while True:
                message = await ws.receive(timeout=5)
                assert message.type is WSMsgType.TEXT, message
                frame = json.loads(message.data)
                if "stream" in frame:
                    data_frames += 1
                    if data_frames % 5 == 0:
                        request_id += 1
                        await ws.send_str(f'{{"method":"LIST_SUBSCRIPTIONS","id":{request_id}}}')
                    continue
                break
    # Data went on while deaf; the SUBSCRIBE and the first questions got no answer and
    # changed nothing; the first answer came once the fault was over.
    assert data_frames >= 5
    assert frame["id"] >= 3  # the SUBSCRIBE and at least one question went unanswered
    assert frame["result"] == ["btcusdt@miniTicker"]
