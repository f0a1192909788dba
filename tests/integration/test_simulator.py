"""The simulated exchange over real loopback sockets, with a real aiohttp client."""

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import WSMsgType
from yarl import URL

from recorder.errors import ConfigError
from recorder.simulate import (
    Fault,
    FaultKind,
    SimulatedExchange,
    SimulatorConfig,
    serve,
)
from recorder.simulate.history import MINUTE_MS, WINDOW_MINUTES
from recorder.simulate.protocol import stream_symbol

pytestmark = pytest.mark.integration

FAST = SimulatorConfig(speed=100, activity=1.0, seed=3)
"""A tick every 20 ms, every symbol changing in every tick."""
RECEIVE_TIMEOUT = 5.0


@pytest_asyncio.fixture
async def exchange() -> AsyncIterator[SimulatedExchange]:
    async with SimulatedExchange(FAST) as running:
        yield running


async def next_text(ws: aiohttp.ClientWebSocketResponse) -> str:
    message = await ws.receive(timeout=RECEIVE_TIMEOUT)
    assert message.type is WSMsgType.TEXT, message
    text: str = message.data
    return text


async def next_json(ws: aiohttp.ClientWebSocketResponse) -> object:
    return json.loads(await next_text(ws))


async def texts_until(
    ws: aiohttp.ClientWebSocketResponse, done: Callable[[str], bool], limit: int = 2_000
) -> list[str]:
    """Receive text frames up to and including the first for which ``done`` is true."""
    texts = []
    for _ in range(limit):
        texts.append(await next_text(ws))
        if done(texts[-1]):
            return texts
    pytest.fail(f"no matching frame in {limit} frames")


def is_reply(request_id: int) -> Callable[[str], bool]:
    def check(text: str) -> bool:
        with contextlib.suppress(ValueError):
            document = json.loads(text)
            return isinstance(document, dict) and document.get("id") == request_id
        return False

    return check


async def only_connection(exchange: SimulatedExchange) -> str:
    [info] = exchange.connections()
    return info.connection_id


async def assert_silent_for_ticks(
    exchange: SimulatedExchange, ws: aiohttp.ClientWebSocketResponse, ticks: int, request_id: int
) -> None:
    """After ``ticks`` more ticks, the next frame is the reply to a probe: nothing came before."""
    await exchange.wait_for_ticks(exchange.ticks + ticks)
    await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": request_id})
    document = await next_json(ws)
    assert isinstance(document, dict)
    assert document.get("id") == request_id, document


# Streams -------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_combined_path_wraps_the_subscribed_symbols_only(
    exchange: SimulatedExchange, http: aiohttp.ClientSession
) -> None:
    url = f"{exchange.base_url}/stream?streams=btcusdt@miniTicker/ethusdt@miniTicker"
    async with http.ws_connect(url) as ws:
        connection_id = await only_connection(exchange)
        frames = [await next_json(ws) for _ in range(10)]
    truth = {
        (record.symbol, record.event_time): record.payload
        for record in exchange.events()
        if connection_id in record.delivered_to
    }
    streams = set()
    for frame in frames:
        assert isinstance(frame, dict)
        streams.add(frame["stream"])
        data = frame["data"]
        assert data["s"] == stream_symbol(frame["stream"])
        assert truth[data["s"], data["E"]] == data
    assert streams == {"btcusdt@miniTicker", "ethusdt@miniTicker"}


@pytest.mark.asyncio
async def test_raw_path_sends_bare_payloads(
    exchange: SimulatedExchange, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(f"{exchange.base_url}/ws/btcusdt_260327@miniTicker") as ws:
        payloads = [await next_json(ws) for _ in range(3)]
    for payload in payloads:
        assert isinstance(payload, dict)
        assert payload["e"] == "24hrMiniTicker"
        assert payload["s"] == "BTCUSDT_260327"
    times = [payload["E"] for payload in payloads if isinstance(payload, dict)]
    assert times == sorted(times)
    assert len(set(times)) == 3


@pytest.mark.asyncio
async def test_non_ascii_symbol_percent_encoded_in_the_url(
    exchange: SimulatedExchange, http: aiohttp.ClientSession
) -> None:
    url = URL(f"{exchange.base_url}/stream").with_query(streams="币安人生usdt@miniTicker")
    assert "%E5%B8%81" in str(url)
    async with http.ws_connect(url) as ws:
        frame = await next_json(ws)
    assert isinstance(frame, dict)
    assert frame["stream"] == "币安人生usdt@miniTicker"
    assert frame["data"]["s"] == "币安人生USDT"


@pytest.mark.asyncio
async def test_subscribe_list_unsubscribe_on_an_empty_connection(
    exchange: SimulatedExchange, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(f"{exchange.base_url}/ws") as ws:
        await ws.send_json({"method": "SUBSCRIBE", "params": ["ethusdt@miniTicker"], "id": 1})
        assert await next_json(ws) == {"result": None, "id": 1}
        payload = await next_json(ws)
        assert isinstance(payload, dict)
        assert payload["s"] == "ETHUSDT"
        await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 2})
        texts = await texts_until(ws, is_reply(2))
        assert json.loads(texts[-1]) == {"result": ["ethusdt@miniTicker"], "id": 2}
        await ws.send_json({"method": "UNSUBSCRIBE", "params": ["ethusdt@miniTicker"], "id": 3})
        texts = await texts_until(ws, is_reply(3))
        assert json.loads(texts[-1]) == {"result": None, "id": 3}
        await assert_silent_for_ticks(exchange, ws, 5, request_id=4)


@pytest.mark.asyncio
async def test_combined_property_switches_the_framing(
    exchange: SimulatedExchange, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(f"{exchange.base_url}/stream") as ws:
        await ws.send_json({"method": "GET_PROPERTY", "params": ["combined"], "id": 1})
        assert await next_json(ws) == {"result": True, "id": 1}
        await ws.send_json({"method": "SET_PROPERTY", "params": ["combined", False], "id": 2})
        assert await next_json(ws) == {"result": None, "id": 2}
        await ws.send_json({"method": "SUBSCRIBE", "params": ["btcusdt@miniTicker"], "id": 3})
        assert await next_json(ws) == {"result": None, "id": 3}
        payload = await next_json(ws)
    assert isinstance(payload, dict)
    assert payload["s"] == "BTCUSDT"
    assert "stream" not in payload


@pytest.mark.asyncio
async def test_bad_requests_get_binance_errors(
    exchange: SimulatedExchange, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(f"{exchange.base_url}/ws") as ws:
        await ws.send_str("{oops")
        invalid_json = await next_json(ws)
        await ws.send_json({"method": "SUBSCRIB", "params": [], "id": 7})
        unknown = await next_json(ws)
    assert isinstance(invalid_json, dict)
    assert invalid_json["error"]["code"] == 3
    assert invalid_json["id"] is None
    assert isinstance(unknown, dict)
    assert unknown["error"]["code"] == 2
    assert unknown["error"]["msg"].startswith("Invalid request: unknown variant `SUBSCRIB`")
    assert unknown["id"] == 7


@pytest.mark.parametrize(
    ("path", "interval_ms", "jitter_ms"),
    [
        ("/ws/!miniTicker@arr", 2_000, 150),
        ("/stream?streams=!miniTicker@arr", 2_000, 150),
        ("/stream?streams=!miniTicker@arr", 300, 250),
        ("/stream?streams=!miniTicker@arr", 1_500, 1_400),
    ],
)
@pytest.mark.asyncio
async def test_all_market_stream_sends_each_second_s_tickers_once_a_second(
    http: aiohttp.ClientSession, path: str, interval_ms: int, jitter_ms: int
) -> None:
    config = replace(
        FAST,
        activity=None,
        quiet_symbols=("ETHUSDT",),
        quiet_activity=0.1,
        interval_ms=interval_ms,
        jitter_ms=jitter_ms,
        speed=100 * interval_ms / 2_000,
    )
    async with SimulatedExchange(config) as exchange:
        async with http.ws_connect(exchange.base_url + path) as ws:
            connection_id = await only_connection(exchange)
            frames = [await next_json(ws) for _ in range(12)]
        events = exchange.events()
        start_ms = exchange.start_ms
    by_second: dict[int, set[tuple[str, int]]] = {}
    for record in events:
        by_second.setdefault((record.event_time - start_ms) // 1_000, set()).add(
            (record.symbol, record.event_time)
        )
    arrays: list[list[dict[str, object]]] = []
    for frame in frames:
        if isinstance(frame, dict):
            assert frame["stream"] == "!miniTicker@arr"
        array = frame["data"] if isinstance(frame, dict) else frame
        assert isinstance(array, list)
        arrays.append(array)
    truth = {(record.symbol, record.event_time): record for record in events}
    received = []
    paces = []
    for index, array in enumerate(arrays):
        items = [(str(item["s"]), int(str(item["E"]))) for item in array]
        assert all(truth[key].payload == item for key, item in zip(items, array, strict=True))
        assert all(connection_id in truth[key].delivered_to for key in items)
        received.extend(items)
        found = {(event_time - start_ms) // 1_000 for _, event_time in items}
        assert len(found) <= 1, found  # one second per array
        if found:
            [second] = found
            assert set(items) == by_second[second]  # all of that second's events
            paces.append(second - index)
    # One array per second, empty seconds included: an array's index keeps pace with its second.
    assert len(set(paces)) == 1, paces
    assert len(received) == len(set(received))  # every event once
    if jitter_ms < 1_000 and interval_ms == 2_000:
        assert [] in arrays  # a second without a tick still gets its array
    assert len({len(array) for array in arrays}) > 1  # not every symbol changes every second


@pytest.mark.parametrize(
    "path",
    [
        "/stream?streams=btcusdt@miniTicker",
        "/ws/btcusdt@miniTicker",
        "/ws",
        "/stream",
        "/public/stream?streams=btcusdt@miniTicker",
        "/private/ws/btcusdt@miniTicker",
    ],
)
@pytest.mark.asyncio
async def test_unrouted_paths_accept_and_subscribe_but_deliver_nothing(
    exchange: SimulatedExchange, http: aiohttp.ClientSession, path: str
) -> None:
    url = exchange.rest_url.replace("http", "ws") + path
    async with http.ws_connect(url) as ws:
        await ws.send_json({"method": "SUBSCRIBE", "params": ["ethusdt@miniTicker"], "id": 1})
        assert await next_json(ws) == {"result": None, "id": 1}
        await assert_silent_for_ticks(exchange, ws, 5, request_id=2)
        [info] = exchange.connections()
    assert not info.routed
    assert info.events_delivered == 0
    assert exchange.events(connection_id=info.connection_id) == []


@pytest.mark.asyncio
async def test_unknown_streams_are_accepted_and_deliver_nothing(
    exchange: SimulatedExchange, http: aiohttp.ClientSession
) -> None:
    url = f"{exchange.base_url}/stream?streams=btcusdt@aggTrade/nosuchusdt@miniTicker"
    async with http.ws_connect(url) as ws:
        await assert_silent_for_ticks(exchange, ws, 5, request_id=1)


@pytest.mark.asyncio
async def test_too_many_streams_in_the_url_is_refused(http: aiohttp.ClientSession) -> None:
    async with SimulatedExchange(replace(FAST, max_streams=2)) as exchange:
        streams = "/".join(f"s{i}usdt@miniTicker" for i in range(3))
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{exchange.base_url}/stream?streams={streams}")
        assert refused.value.status == 400
        async with http.ws_connect(f"{exchange.base_url}/ws/a@miniTicker") as ws:
            await ws.send_json({"method": "SUBSCRIBE", "params": ["b@x", "c@x"], "id": 5})
            answer = await next_json(ws)
    assert isinstance(answer, dict)
    assert answer["error"]["code"] == 2
    assert answer["id"] == 5


@pytest.mark.asyncio
async def test_a_plain_http_request_on_a_stream_path_is_rejected(
    exchange: SimulatedExchange, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{exchange.rest_url}/market/ws/btcusdt@miniTicker") as response:
        assert response.status == 400


# Connection rules ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_server_pings_and_counts_echoed_pongs(http: aiohttp.ClientSession) -> None:
    config = replace(FAST, ping_interval=0.05, pong_timeout=0.5, activity=0.0)
    async with (
        SimulatedExchange(config) as exchange,
        http.ws_connect(f"{exchange.base_url}/ws", autoping=False) as ws,
    ):
        for _ in range(3):
            ping = await ws.receive(timeout=RECEIVE_TIMEOUT)
            assert ping.type is WSMsgType.PING
            await ws.pong(ping.data)
        await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 1})
        while (message := await ws.receive(timeout=RECEIVE_TIMEOUT)).type is WSMsgType.PING:
            await ws.pong(message.data)
        assert message.type is WSMsgType.TEXT
        assert json.loads(message.data) == {"result": [], "id": 1}


@pytest.mark.asyncio
async def test_a_client_that_never_pongs_is_dropped(http: aiohttp.ClientSession) -> None:
    config = replace(FAST, ping_interval=0.05, pong_timeout=0.2, activity=0.0)
    async with (
        SimulatedExchange(config) as exchange,
        http.ws_connect(f"{exchange.base_url}/ws", autoping=False) as ws,
    ):
        while (message := await ws.receive(timeout=RECEIVE_TIMEOUT)).type is WSMsgType.PING:
            pass  # never answered
    assert message.type is WSMsgType.CLOSE
    assert message.data == aiohttp.WSCloseCode.POLICY_VIOLATION
    assert message.extra == "pong timeout"


@pytest.mark.asyncio
async def test_client_pings_are_answered(
    exchange: SimulatedExchange, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(f"{exchange.base_url}/ws", autoping=False) as ws:
        await ws.ping(b"are you there")
        pong = await ws.receive(timeout=RECEIVE_TIMEOUT)
    assert pong.type is WSMsgType.PONG
    assert pong.data == b"are you there"


@pytest.mark.asyncio
async def test_the_server_closes_a_connection_at_its_lifetime(http: aiohttp.ClientSession) -> None:
    async with SimulatedExchange(replace(FAST, lifetime=0.3)) as exchange:
        url = f"{exchange.base_url}/ws/btcusdt@miniTicker"
        async with http.ws_connect(url) as ws:
            while (message := await ws.receive(timeout=RECEIVE_TIMEOUT)).type is WSMsgType.TEXT:
                pass
    assert message.type is WSMsgType.CLOSE
    assert message.data == aiohttp.WSCloseCode.GOING_AWAY
    assert message.extra == "connection lifetime reached"


@pytest.mark.asyncio
async def test_more_than_ten_messages_a_second_closes_the_connection(
    exchange: SimulatedExchange, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(f"{exchange.base_url}/ws") as ws:
        for request_id in range(11):
            await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": request_id})
        replies = []
        while (message := await ws.receive(timeout=RECEIVE_TIMEOUT)).type is WSMsgType.TEXT:
            replies.append(json.loads(message.data))
    assert replies == [{"result": [], "id": request_id} for request_id in range(10)]
    assert message.type is WSMsgType.CLOSE
    assert message.data == aiohttp.WSCloseCode.POLICY_VIOLATION


@pytest.mark.asyncio
async def test_stop_closes_open_connections_with_going_away(http: aiohttp.ClientSession) -> None:
    exchange = SimulatedExchange(FAST)
    await exchange.start()
    try:
        ws = await http.ws_connect(f"{exchange.base_url}/ws/btcusdt@miniTicker")
        await next_text(ws)
    finally:
        await exchange.stop()
    while (message := await ws.receive(timeout=RECEIVE_TIMEOUT)).type is WSMsgType.TEXT:
        pass
    assert message.type is WSMsgType.CLOSE
    assert message.data == aiohttp.WSCloseCode.GOING_AWAY
    await ws.close()


# Faults --------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_drop_aborts_without_a_close_frame(
    exchange: SimulatedExchange, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(f"{exchange.base_url}/ws/btcusdt@miniTicker") as ws:
        await next_text(ws)
        exchange.inject(Fault(FaultKind.DROP))
        while (message := await ws.receive(timeout=RECEIVE_TIMEOUT)).type is WSMsgType.TEXT:
            pass
    assert message.type in {WSMsgType.CLOSED, WSMsgType.ERROR}
    assert [record.fault.kind for record in exchange.fault_log()] == [FaultKind.DROP]


@pytest.mark.asyncio
async def test_close_sends_a_close_frame(
    exchange: SimulatedExchange, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(f"{exchange.base_url}/ws/btcusdt@miniTicker") as ws:
        await next_text(ws)
        exchange.inject(Fault(FaultKind.CLOSE))
        while (message := await ws.receive(timeout=RECEIVE_TIMEOUT)).type is WSMsgType.TEXT:
            pass
    assert message.type is WSMsgType.CLOSE
    assert message.data == aiohttp.WSCloseCode.GOING_AWAY


@pytest.mark.asyncio
async def test_a_fault_aimed_at_one_connection_spares_the_others(
    exchange: SimulatedExchange, http: aiohttp.ClientSession
) -> None:
    url = f"{exchange.base_url}/ws/btcusdt@miniTicker"
    async with http.ws_connect(url) as first, http.ws_connect(url) as second:
        ids = [info.connection_id for info in exchange.connections()]
        exchange.inject(Fault(FaultKind.DROP, connection_id=ids[0]))
        while (await first.receive(timeout=RECEIVE_TIMEOUT)).type is WSMsgType.TEXT:
            pass
        await next_text(second)
        await next_text(second)
        assert [info.connection_id for info in exchange.connections()] == ids[1:]


@pytest.mark.asyncio
async def test_stall_withholds_data_but_keeps_answering(
    exchange: SimulatedExchange, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(f"{exchange.base_url}/ws/btcusdt@miniTicker", autoping=False) as ws:
        connection_id = await only_connection(exchange)
        await next_text(ws)
        exchange.inject(Fault(FaultKind.STALL))
        stalled_from = exchange.ticks
        await assert_silent_for_ticks(exchange, ws, 5, request_id=1)
        await ws.ping(b"still there?")
        pong = await ws.receive(timeout=RECEIVE_TIMEOUT)
        assert pong.type is WSMsgType.PONG
        assert [info.stalled for info in exchange.connections()] == [True]
    withheld = [r for r in exchange.events("BTCUSDT") if connection_id in r.withheld_from]
    assert len(withheld) >= 5
    assert all(r.tick >= stalled_from for r in withheld)
    assert all(connection_id not in r.delivered_to for r in withheld)


@pytest.mark.asyncio
async def test_a_stall_with_a_duration_ends(
    exchange: SimulatedExchange, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(f"{exchange.base_url}/ws/btcusdt@miniTicker") as ws:
        connection_id = await only_connection(exchange)
        await next_text(ws)
        exchange.inject(Fault(FaultKind.STALL, duration=0.2))
        withheld_tick = None
        while withheld_tick is None:
            payload = json.loads(await next_text(ws))
            records = exchange.events("BTCUSDT", connection_id)
            withheld = [r.tick for r in records if connection_id in r.withheld_from]
            if withheld and records[-1].event_time == payload["E"]:
                withheld_tick = max(withheld)
    later = exchange.events("BTCUSDT", connection_id)[-1]
    assert later.tick > withheld_tick
    assert later.delivered_to == (connection_id,)


@pytest.mark.asyncio
async def test_blackhole_answers_nothing_until_it_ends(
    exchange: SimulatedExchange, http: aiohttp.ClientSession
) -> None:
    url = f"{exchange.base_url}/ws/btcusdt@miniTicker"
    async with http.ws_connect(url, autoping=False) as ws:
        connection_id = await only_connection(exchange)
        exchange.inject(Fault(FaultKind.BLACKHOLE, duration=0.3))
        await ws.ping(b"first")
        await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 1})
        await exchange.wait_for_ticks(exchange.ticks + 20)  # 0.4 s: the blackhole is over
        await ws.ping(b"second")
        seen = []
        while (message := await ws.receive(timeout=RECEIVE_TIMEOUT)).type is not WSMsgType.PONG:
            seen.append(message)
    assert message.data == b"second"
    assert all(not is_reply(1)(m.data) for m in seen if m.type is WSMsgType.TEXT)
    records = exchange.events("BTCUSDT", connection_id)
    assert any(connection_id in r.withheld_from for r in records)


@pytest.mark.parametrize(
    ("kind", "check"),
    [
        (FaultKind.GARBAGE, "garbage"),
        (FaultKind.HOSTILE_SYMBOL, "hostile"),
        (FaultKind.UNSUBSCRIBED, "unsubscribed"),
    ],
)
@pytest.mark.asyncio
async def test_bad_frames_arrive_among_good_ones(
    exchange: SimulatedExchange, http: aiohttp.ClientSession, kind: FaultKind, check: str
) -> None:
    url = f"{exchange.base_url}/stream?streams=btcusdt@miniTicker"
    async with http.ws_connect(url) as ws:
        await next_text(ws)
        exchange.inject(Fault(kind))

        def is_bad(text: str) -> bool:
            try:
                frame = json.loads(text)
            except ValueError:
                return check == "garbage"
            symbol = frame["data"]["s"]
            if check == "hostile":
                return bool(symbol == "../../x" and frame["stream"] == "../../x@miniTicker")
            return bool(symbol != "BTCUSDT" and frame["stream"] == symbol.lower() + "@miniTicker")

        texts = await texts_until(ws, is_bad, limit=50)
    [record] = exchange.fault_log()
    assert record.samples == (texts[-1][:200],)


@pytest.mark.asyncio
async def test_bad_field_frames_cycle_through_variants(
    exchange: SimulatedExchange, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(f"{exchange.base_url}/ws/btcusdt@miniTicker") as ws:
        await next_text(ws)
        exchange.inject(Fault(FaultKind.BAD_FIELD, count=4))
        bad: list[dict[str, object]] = []
        while len(bad) < 4:
            payload = json.loads(await next_text(ws))
            if any(
                payload[key] in {"abc", "x", "NaN"} or isinstance(payload[key], float)
                for key in ("c", "E", "o", "l")
            ):
                bad.append(payload)
    assert [p["c"] for p in bad].count("abc") == 1
    assert [p["E"] for p in bad].count("x") == 1
    assert sum(isinstance(p["o"], float) for p in bad) == 1
    assert [p["l"] for p in bad].count("NaN") == 1


@pytest.mark.asyncio
async def test_future_time_frame_carries_a_valid_event_ten_years_ahead(
    exchange: SimulatedExchange, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(f"{exchange.base_url}/ws/btcusdt@miniTicker") as ws:
        before = json.loads(await next_text(ws))
        exchange.inject(Fault(FaultKind.FUTURE_TIME))
        texts = await texts_until(
            ws, lambda text: json.loads(text)["E"] > before["E"] + 365 * 86_400_000, limit=50
        )
    future = json.loads(texts[-1])
    assert future["s"] == "BTCUSDT"
    lead = 3650 * 86_400_000
    assert before["E"] + lead <= future["E"] <= exchange.simulated_now_ms() + lead


@pytest.mark.asyncio
async def test_huge_frame(exchange: SimulatedExchange, http: aiohttp.ClientSession) -> None:
    url = f"{exchange.base_url}/ws/btcusdt@miniTicker"
    async with http.ws_connect(url, max_msg_size=8 * 1024 * 1024) as ws:
        exchange.inject(Fault(FaultKind.HUGE, size=2 * 1024 * 1024))
        texts = await texts_until(ws, lambda text: len(text) > 1024 * 1024, limit=50)
    payload = json.loads(texts[-1])
    assert payload["s"] == "BTCUSDT"
    assert len(texts[-1]) >= 2 * 1024 * 1024


@pytest.mark.parametrize(("status", "retry_after"), [(503, None), (429, 2.0)])
@pytest.mark.asyncio
async def test_refuse_the_next_handshakes(
    exchange: SimulatedExchange, http: aiohttp.ClientSession, status: int, retry_after: float | None
) -> None:
    exchange.inject(Fault(FaultKind.REFUSE, count=2, status=status, retry_after=retry_after))
    url = f"{exchange.base_url}/ws/btcusdt@miniTicker"
    for _ in range(2):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url)
        assert refused.value.status == status
        headers = refused.value.headers
        assert headers is not None
        assert headers.get("Retry-After") == (None if retry_after is None else "2")
    async with http.ws_connect(url) as ws:
        await next_text(ws)


@pytest.mark.asyncio
async def test_faults_over_http(exchange: SimulatedExchange, http: aiohttp.ClientSession) -> None:
    url = f"{exchange.base_url}/ws/btcusdt@miniTicker"
    async with http.ws_connect(url) as ws:
        await next_text(ws)
        faults_url = f"{exchange.rest_url}/_sim/faults"
        async with http.post(faults_url, json={"spec": "garbage,refuse"}) as response:
            assert response.status == 202
            accepted = await response.json()
        assert [fault["kind"] for fault in accepted["accepted"]] == ["garbage", "refuse"]
        await texts_until(ws, lambda text: text.startswith("}{"), limit=50)
        async with http.post(faults_url, json={"kind": "close"}) as response:
            assert response.status == 202
        while (await ws.receive(timeout=RECEIVE_TIMEOUT)).type is WSMsgType.TEXT:
            pass
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await http.ws_connect(url)
    async with http.post(faults_url, json={"kind": "melt"}) as response:
        assert response.status == 400
        assert "melt" in (await response.json())["error"]
    async with http.post(faults_url, data=b"{nope") as response:
        assert response.status == 400
    async with http.get(faults_url) as response:
        log = await response.json()
    assert [entry["fault"]["kind"] for entry in log["faults"]] == ["garbage", "refuse", "close"]


@pytest.mark.asyncio
async def test_a_delayed_fault_fires_later(
    exchange: SimulatedExchange, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(f"{exchange.base_url}/ws/btcusdt@miniTicker") as ws:
        exchange.inject(Fault(FaultKind.CLOSE, at=0.1))
        assert exchange.fault_log() == []
        frames = 0
        while (await ws.receive(timeout=RECEIVE_TIMEOUT)).type is WSMsgType.TEXT:
            frames += 1
    assert frames >= 1
    assert [record.fault.kind for record in exchange.fault_log()] == [FaultKind.CLOSE]


# Ground truth and REST over HTTP ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_ground_truth_over_http(
    exchange: SimulatedExchange, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(f"{exchange.base_url}/ws/币安人生usdt@miniTicker") as ws:
        await next_text(ws)
        async with http.get(f"{exchange.rest_url}/_sim/connections") as response:
            connections = (await response.json())["connections"]
    [connection] = connections
    assert connection["path"] == "/market/ws/币安人生usdt@miniTicker"
    assert connection["streams"] == ["币安人生usdt@miniTicker"]
    assert connection["routed"] is True
    assert connection["events_delivered"] >= 1
    events_url = URL(f"{exchange.rest_url}/_sim/events").with_query(symbol="币安人生USDT")
    async with http.get(events_url) as response:
        body = await response.json()
    assert body["start_ms"] == exchange.start_ms
    assert {event["symbol"] for event in body["events"]} == {"币安人生USDT"}
    assert connection["id"] in body["events"][0]["delivered_to"]
    async with http.get(f"{exchange.rest_url}/_sim/status") as response:
        status = await response.json()
    assert status["ticks"] >= 1
    assert status["simulated_now_ms"] >= exchange.start_ms


@pytest.mark.asyncio
async def test_rest_exchange_info_and_weight_header(
    exchange: SimulatedExchange, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{exchange.rest_url}/fapi/v1/exchangeInfo") as response:
        assert response.status == 200
        first_weight = int(response.headers["X-MBX-USED-WEIGHT-1M"])
        body = await response.json()
    async with http.get(f"{exchange.rest_url}/fapi/v1/ticker/24hr") as response:
        assert int(response.headers["X-MBX-USED-WEIGHT-1M"]) in {first_weight + 40, 40}
    assert [entry["symbol"] for entry in body["symbols"]] == list(FAST.symbols)
    assert {entry["status"] for entry in body["symbols"]} == {"TRADING"}


@pytest.mark.asyncio
async def test_rest_weight_limit_answers_429_with_retry_after(http: aiohttp.ClientSession) -> None:
    async with SimulatedExchange(replace(FAST, rest_weight_limit=39)) as exchange:
        async with http.get(f"{exchange.rest_url}/fapi/v1/ticker/24hr") as response:
            assert response.status == 429  # all symbols weigh 40
            assert 1 <= int(response.headers["Retry-After"]) <= 60
            assert (await response.json())["code"] == -1003
        params = {"symbol": "BTCUSDT"}
        async with http.get(f"{exchange.rest_url}/fapi/v1/ticker/24hr", params=params) as response:
            assert response.status == 200
            assert response.headers["X-MBX-USED-WEIGHT-1M"] == "1"  # the refusal cost nothing


async def get_json(http: aiohttp.ClientSession, url: str, **params: str) -> Any:
    async with http.get(url, params=params) as response:
        assert response.status == 200, await response.text()
        return await response.json()


@pytest.mark.asyncio
async def test_rest_klines_agree_with_the_streamed_events(
    exchange: SimulatedExchange, http: aiohttp.ClientSession
) -> None:
    await exchange.wait_for_ticks(4 * 30)  # 4 simulated minutes, a tick every 2 s
    # The ledger first: every minute before its last event's is then whole in the klines.
    ledger = await get_json(http, f"{exchange.rest_url}/_sim/events", symbol="BTCUSDT")
    events = ledger["events"]
    day_before = exchange.start_ms // MINUTE_MS * MINUTE_MS - WINDOW_MINUTES * MINUTE_MS
    url = f"{exchange.rest_url}/fapi/v1/klines"
    rows = await get_json(
        http, url, symbol="BTCUSDT", interval="1m", startTime=str(day_before), limit="1500"
    )
    assert rows[0][0] == day_before
    assert all(len(row) == 12 for row in rows)
    opens = [row[0] for row in rows]
    last_of_minute = {event["E"] // MINUTE_MS * MINUTE_MS: event for event in events}
    complete = [
        minute for minute in last_of_minute if minute < events[-1]["E"] // MINUTE_MS * MINUTE_MS
    ]
    assert len(complete) >= 3
    for minute in complete:
        payload = last_of_minute[minute]["payload"]
        end = opens.index(minute) + 1
        window = rows[end - WINDOW_MINUTES : end]
        assert payload["c"] == window[-1][4]
        assert payload["o"] == window[0][1]
        assert Decimal(payload["h"]) == max(Decimal(row[2]) for row in window)
        assert Decimal(payload["l"]) == min(Decimal(row[3]) for row in window)
        assert Decimal(payload["v"]) == sum(Decimal(row[5]) for row in window)
        assert Decimal(payload["q"]) == sum(Decimal(row[7]) for row in window)
        streamed = [e for e in events if e["E"] // MINUTE_MS * MINUTE_MS == minute]
        assert window[-1][8] == len(streamed)
    recent = await get_json(http, url, symbol="BTCUSDT", interval="1m")
    assert len(recent) == 500  # the default limit, the newest candles
    assert recent[-1][0] >= events[-1]["E"] // MINUTE_MS * MINUTE_MS
    ticker = await get_json(http, f"{exchange.rest_url}/fapi/v1/ticker/24hr", symbol="BTCUSDT")
    assert ticker["symbol"] == "BTCUSDT"
    async with http.get(
        url, params={"symbol": "BTCUSDT", "interval": "1m", "limit": "1501"}
    ) as response:
        assert response.status == 400
        assert (await response.json())["code"] == -1130


# The command-line entry point --------------------------------------------------------------------


@pytest.mark.asyncio
async def test_serve_announces_the_port_and_stops_on_request(
    http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    stdout = io.StringIO()
    monkeypatch.setattr("sys.stdout", stdout)
    stop = asyncio.Event()
    server = asyncio.create_task(serve(FAST, "close@0.2s", stop))
    for _ in range(500):
        if stdout.getvalue().endswith("\n"):
            break
        await asyncio.sleep(0.01)
    announcement = json.loads(stdout.getvalue())
    assert announcement["event"] == "listening"
    assert announcement["url"] == f"ws://127.0.0.1:{announcement['port']}/market"
    async with http.ws_connect(announcement["url"] + "/ws/btcusdt@miniTicker") as ws:
        while (message := await ws.receive(timeout=RECEIVE_TIMEOUT)).type is WSMsgType.TEXT:
            pass
        assert message.type is WSMsgType.CLOSE  # the scheduled fault
    stop.set()
    await asyncio.wait_for(server, timeout=RECEIVE_TIMEOUT)


@pytest.mark.asyncio
async def test_serve_rejects_a_bad_fault_spec_before_listening() -> None:
    with pytest.raises(ConfigError, match="explode"):
        await serve(FAST, "explode@1s", asyncio.Event())
