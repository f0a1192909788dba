"""The silence check's probe reply is recognised in any frame, and nothing from the network
makes the recogniser raise."""

import json

from hypothesis import given
from hypothesis import strategies as st

from recorder.ingest.connection import MAX_PROBE_REPLY_BYTES, is_probe_reply, probe_request

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


def test_the_reply_of_binance_and_of_the_simulator_is_recognised() -> None:
    assert json.loads(probe_request(3)) == {"method": "LIST_SUBSCRIPTIONS", "id": 3}
    assert is_probe_reply('{"result":["btcusdt@miniTicker"],"id":3}', 3)
    assert is_probe_reply(b'{"id": 3, "result": []}', 3)
    assert is_probe_reply('{"error":{"code":2,"msg":"Invalid request"},"id":3}', 3)


def test_data_and_other_replies_are_not_the_reply() -> None:
    data = '{"stream":"btcusdt@miniTicker","data":{"e":"24hrMiniTicker","E":1,"s":"BTCUSDT"}}'
    assert not is_probe_reply(data, 3)
    assert not is_probe_reply('{"result":null,"id":4}', 3)
    assert not is_probe_reply('{"result":null,"id":true}', 1)  # bool is no request id
    assert not is_probe_reply('{"id":3}', 3)
    assert not is_probe_reply('[{"result":null,"id":3}]', 3)


def test_deep_nesting_invalid_utf8_and_oversized_frames_are_not_the_reply() -> None:
    assert not is_probe_reply("[" * 50_000 + "]" * 50_000 + '"id"', 3)
    assert not is_probe_reply('{"id":3,"result":"' + "x" * 50_000 + '"}' + "[" * 20_000, 3)
    assert not is_probe_reply(b'{"id":3,"result":"\xff\xfe"}', 3)
    padded = '{"result":null,"id":3,"pad":"' + "x" * MAX_PROBE_REPLY_BYTES + '"}'
    assert not is_probe_reply(padded, 3)


@given(st.binary(max_size=2048) | st.text(max_size=2048), st.integers(0, 2**64))
def test_any_frame_is_judged_without_raising(data: bytes | str, request_id: int) -> None:
    assert is_probe_reply(data, request_id) in {True, False}


@given(_JSON, st.integers(0, 2**32))
def test_a_json_document_is_the_reply_only_with_its_id_and_a_result_or_error(
    document: object, request_id: int
) -> None:
    expected = (
        isinstance(document, dict)
        and type(document.get("id")) is int
        and document["id"] == request_id
        and ("result" in document or "error" in document)
    )
    assert is_probe_reply(json.dumps(document), request_id) is expected


@given(_JSON, st.integers(0, 2**32))
def test_a_reply_with_any_result_is_recognised(result: object, request_id: int) -> None:
    reply = json.dumps({"result": result, "id": request_id})
    assert is_probe_reply(reply, request_id) is (len(reply.encode()) <= MAX_PROBE_REPLY_BYTES)
