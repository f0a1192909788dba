import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorder.simulate.protocol import (
    MAX_INTEGER_ID,
    MethodCall,
    ProtocolError,
    Route,
    StreamSession,
    array_json,
    parse_method_call,
    route_request,
    stream_symbol,
)


@pytest.mark.parametrize(
    ("path", "query", "expected"),
    [
        (
            "/market/stream",
            "btcusdt@miniTicker/ethusdt@miniTicker",
            Route(
                "/market/stream",
                routed=True,
                combined=True,
                streams=("btcusdt@miniTicker", "ethusdt@miniTicker"),
            ),
        ),
        ("/market/stream", None, Route("/market/stream", routed=True, combined=True, streams=())),
        (
            "/market/ws/!miniTicker@arr",
            None,
            Route(
                "/market/ws/!miniTicker@arr",
                routed=True,
                combined=False,
                streams=("!miniTicker@arr",),
            ),
        ),
        ("/market/ws", None, Route("/market/ws", routed=True, combined=False, streams=())),
        (
            "/stream",
            "btcusdt@miniTicker",
            Route("/stream", routed=False, combined=True, streams=("btcusdt@miniTicker",)),
        ),
        (
            "/ws/btcusdt@miniTicker",
            None,
            Route(
                "/ws/btcusdt@miniTicker",
                routed=False,
                combined=False,
                streams=("btcusdt@miniTicker",),
            ),
        ),
        ("/ws", None, Route("/ws", routed=False, combined=False, streams=())),
        (
            "/public/stream",
            "btcusdt@bookTicker",
            Route("/public/stream", routed=False, combined=True, streams=("btcusdt@bookTicker",)),
        ),
        ("/private/ws", None, Route("/private/ws", routed=False, combined=False, streams=())),
    ],
)
def test_routes(path: str, query: str | None, expected: Route) -> None:
    assert route_request(path, query) == expected


def test_raw_path_may_name_several_streams_and_duplicates_collapse() -> None:
    route = route_request("/market/ws/a@miniTicker/b@miniTicker/a@miniTicker", None)
    assert route is not None
    assert route.streams == ("a@miniTicker", "b@miniTicker")


@pytest.mark.parametrize(
    "path",
    ["/", "/api/v3/ping", "/marketing/stream", "/market/streams", "/market/public/stream"],
)
def test_other_paths_are_not_stream_paths(path: str) -> None:
    assert route_request(path, "btcusdt@miniTicker") is None


@pytest.mark.parametrize(
    ("stream", "symbol"),
    [
        ("btcusdt@miniTicker", "BTCUSDT"),
        ("币安人生usdt@miniTicker", "币安人生USDT"),
        ("btcusdt_260327@miniTicker", "BTCUSDT_260327"),
        ("BTCUSDT@miniTicker", None),
        ("btcusdt@miniticker", None),
        ("btcusdt@aggTrade", None),
        ("@miniTicker", None),
        ("!miniTicker@arr", None),
    ],
)
def test_stream_symbol(stream: str, symbol: str | None) -> None:
    assert stream_symbol(stream) == symbol


def test_parse_subscribe() -> None:
    call = parse_method_call('{"method":"SUBSCRIBE","params":["btcusdt@miniTicker"],"id":1}')
    assert call == MethodCall("SUBSCRIBE", ("btcusdt@miniTicker",), 1)


def test_parse_list_without_params() -> None:
    assert parse_method_call('{"method":"LIST_SUBSCRIPTIONS","id":3}') == MethodCall(
        "LIST_SUBSCRIPTIONS", (), 3
    )


@pytest.mark.parametrize(
    ("text", "code", "message", "request_id"),
    [
        ("{not json", 3, r"^Invalid JSON: .* at line 1 column 2$", None),
        ("[1, 2]", 2, r"^Invalid request: invalid type", None),
        ('{"params":[],"id":4}', 2, r"^Invalid request: missing field `method`", 4),
        (
            '{"method":"SUBSCRIBEE","params":[],"id":5}',
            2,
            r"^Invalid request: unknown variant `SUBSCRIBEE`, expected one of `SUBSCRIBE`, "
            r"`UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`",
            5,
        ),
        ('{"method":"SUBSCRIBE","params":[]}', 2, r"request ID must be an unsigned integer", None),
        ('{"method":"SUBSCRIBE","params":[],"id":-1}', 2, r"unsigned integer", None),
        ('{"method":"SUBSCRIBE","params":[],"id":1.5}', 2, r"unsigned integer", None),
        ('{"method":"SUBSCRIBE","params":[],"id":null}', 2, r"unsigned integer", None),
        ('{"method":"SUBSCRIBE","params":[],"id":{}}', 2, r"unsigned integer", None),
        ('{"method":"SUBSCRIBE","params":[],"id":true}', 2, r"unsigned integer", None),
        ('{"method":"SUBSCRIBE","params":[],"id":18446744073709551616}', 2, r"unsigned", None),
        ('{"params":[],"id":"u-1"}', 2, r"^Invalid request: missing field `method`", "u-1"),
        ('{"method":"SUBSCRIBE","params":"x","id":6}', 2, r"expected a sequence", 6),
    ],
)
def test_parse_errors_carry_binance_codes(
    text: str, code: int, message: str, request_id: int | str | None
) -> None:
    error = parse_method_call(text)
    assert isinstance(error, ProtocolError)
    assert error.code == code
    assert error.request_id == request_id
    assert re.search(message, error.msg), error.msg


def session(*streams: str, combined: bool = True, max_streams: int = 200) -> StreamSession:
    return StreamSession(Route("/market/stream", True, combined, streams), max_streams)


def reply(target: StreamSession, request: dict[str, object]) -> dict[str, object]:
    answer: dict[str, object] = json.loads(target.handle(json.dumps(request)))
    return answer


def test_subscribe_list_unsubscribe() -> None:
    target = session("btcusdt@miniTicker")
    assert reply(target, {"method": "SUBSCRIBE", "params": ["ethusdt@miniTicker"], "id": 1}) == {
        "result": None,
        "id": 1,
    }
    assert reply(target, {"method": "LIST_SUBSCRIPTIONS", "id": 2}) == {
        "result": ["btcusdt@miniTicker", "ethusdt@miniTicker"],
        "id": 2,
    }
    assert reply(target, {"method": "UNSUBSCRIBE", "params": ["btcusdt@miniTicker"], "id": 3}) == {
        "result": None,
        "id": 3,
    }
    assert target.streams == ("ethusdt@miniTicker",)
    assert target.symbols == frozenset({"ETHUSDT"})


def test_subscribing_twice_keeps_one_subscription() -> None:
    target = session("btcusdt@miniTicker")
    reply(target, {"method": "SUBSCRIBE", "params": ["btcusdt@miniTicker"] * 2, "id": 1})
    assert target.streams == ("btcusdt@miniTicker",)


def test_unknown_streams_are_accepted_silently() -> None:
    target = session()
    answer = reply(target, {"method": "SUBSCRIBE", "params": ["nosuch@thing"], "id": 1})
    assert answer == {"result": None, "id": 1}
    assert target.streams == ("nosuch@thing",)
    assert target.symbols == frozenset()


def test_unsubscribing_what_was_never_subscribed_is_fine() -> None:
    answer = reply(session(), {"method": "UNSUBSCRIBE", "params": ["x@miniTicker"], "id": 9})
    assert answer == {"result": None, "id": 9}


def test_all_market_subscription() -> None:
    target = session()
    assert not target.all_market
    reply(target, {"method": "SUBSCRIBE", "params": ["!miniTicker@arr"], "id": 1})
    assert target.all_market


def test_subscribe_beyond_the_stream_limit_is_refused_whole() -> None:
    target = session("a@miniTicker", "b@miniTicker", max_streams=3)
    answer = reply(
        target, {"method": "SUBSCRIBE", "params": ["c@miniTicker", "d@miniTicker"], "id": 7}
    )
    assert answer["id"] == 7
    error = answer["error"]
    assert isinstance(error, dict)
    assert error["code"] == 2
    assert "too many streams" in error["msg"]
    assert target.streams == ("a@miniTicker", "b@miniTicker")
    reply(target, {"method": "SUBSCRIBE", "params": ["c@miniTicker", "a@miniTicker"], "id": 8})
    assert len(target.streams) == 3


def test_url_with_too_many_streams_is_refused() -> None:
    with pytest.raises(ValueError, match="at most 2"):
        session("a@miniTicker", "b@miniTicker", "c@miniTicker", max_streams=2)


def test_non_string_stream_is_an_invalid_request() -> None:
    answer = reply(session(), {"method": "SUBSCRIBE", "params": [5], "id": 1})
    assert answer == {
        "error": {"code": 2, "msg": "Invalid request: invalid type: 5, expected a stream name"},
        "id": 1,
    }


def test_combined_property_changes_framing() -> None:
    target = session(combined=True)
    assert reply(target, {"method": "GET_PROPERTY", "params": ["combined"], "id": 1}) == {
        "result": True,
        "id": 1,
    }
    assert target.frame("btcusdt@miniTicker", '{"a":1}') == (
        '{"stream":"btcusdt@miniTicker","data":{"a":1}}'
    )
    assert reply(target, {"method": "SET_PROPERTY", "params": ["combined", False], "id": 2}) == {
        "result": None,
        "id": 2,
    }
    assert target.frame("btcusdt@miniTicker", '{"a":1}') == '{"a":1}'
    assert (
        reply(target, {"method": "GET_PROPERTY", "params": ["combined"], "id": 3})["result"]
        is False
    )


def test_combined_frame_keeps_non_ascii_stream_names() -> None:
    framed = session().frame("币安人生usdt@miniTicker", "{}")
    assert framed == '{"stream":"币安人生usdt@miniTicker","data":{}}'


@pytest.mark.parametrize(
    ("params", "code", "msg"),
    [
        (["speed", True], 0, "Unknown property"),
        (["combined", "yes"], 1, "Invalid value type: expected Boolean"),
        ([5, True], 2, "Invalid request: property name must be a string"),
        ([], 2, "Invalid request: property name must be a string"),
        (["combined", True, 1], 2, "Invalid request: too many parameters"),
    ],
)
def test_set_property_errors(params: list[object], code: int, msg: str) -> None:
    answer = reply(session(), {"method": "SET_PROPERTY", "params": params, "id": 11})
    assert answer == {"error": {"code": code, "msg": msg}, "id": 11}


def test_parse_keeps_a_string_id_a_string() -> None:
    call = parse_method_call('{"method":"SUBSCRIBE","params":[],"id":"7"}')
    assert call == MethodCall("SUBSCRIBE", (), "7")


ACCEPTED_IDS = st.one_of(st.text(), st.integers(min_value=0, max_value=MAX_INTEGER_ID))
REFUSED_IDS = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
    st.integers(max_value=-1),
    st.integers(min_value=MAX_INTEGER_ID + 1),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@given(request_id=ACCEPTED_IDS)
def test_any_string_or_unsigned_id_is_echoed_exactly(request_id: int | str) -> None:
    target = session()
    text = target.handle(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": request_id}))
    answer = json.loads(text)
    assert answer == {"result": [], "id": request_id}
    assert type(answer["id"]) is type(request_id)


@given(request_id=ACCEPTED_IDS)
def test_error_replies_echo_the_id_too(request_id: int | str) -> None:
    request = {"method": "GET_PROPERTY", "params": ["nope"], "id": request_id}
    answer = json.loads(session().handle(json.dumps(request)))
    assert answer == {"error": {"code": 0, "msg": "Unknown property"}, "id": request_id}
    assert type(answer["id"]) is type(request_id)


@given(request_id=REFUSED_IDS)
def test_other_ids_are_refused_as_binance_refuses_them(request_id: object) -> None:
    text = json.dumps({"method": "SUBSCRIBE", "params": [], "id": request_id})
    answer = json.loads(session().handle(text))
    assert answer == {
        "error": {"code": 2, "msg": "Invalid request: request ID must be an unsigned integer"},
        "id": None,
    }


def test_invalid_json_reply_has_null_id() -> None:
    answer = json.loads(session().handle("nope"))
    assert answer["id"] is None
    assert answer["error"]["code"] == 3


def test_array_json() -> None:
    assert array_json(['{"a":1}', '{"b":2}']) == '[{"a":1},{"b":2}]'
    assert array_json([]) == "[]"
