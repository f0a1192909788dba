"""Hostile frames (issue 9): nothing a server sends makes the decoder raise or flood.

Each case becomes events or one rejection with a reason, whatever its depth, size, width or
bytes; the property-based tests below try far more shapes than the named cases.
"""

import hashlib
import json
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sample_payload import PAYLOAD, combined_frame

from recorder.ingest.decode import Decoded, decode_failure, decode_frame
from recorder.ingest.nesting import MAX_NESTING, cut_deep_nesting
from recorder.ingest.rejections import MAX_RAW_BYTES
from recorder.model import MiniTicker, Rejection, reason_code

RECEIVED = 1_654_791_724_000_123
SUBSCRIBED = frozenset({"BTCUSDT"})
MIB = 1 << 20
# Every reason code the decoder may give (recorder.ingest.rejections lists them).
CODES = {
    "too_large",
    "too_deep",
    "not_utf8",
    "not_json",
    "not_object",
    "bad_event_time",
    "wrong_event_type",
    "unsafe_symbol",
    "unsubscribed_symbol",
    "stream_mismatch",
}
CODE_PREFIXES = ("missing_field:", "wrong_type:", "not_decimal:", "inexact_decimal:")


def decode(frame: str | bytes, **options: Any) -> Decoded:
    return decode_frame(
        frame, receive_time=RECEIVED, subscribed=SUBSCRIBED, connection_id="0.1", **options
    )


def base_event() -> MiniTicker:
    (event,) = decode(combined_frame(PAYLOAD)).events
    return event


def with_extra(extra: str) -> str:
    """A valid combined frame whose payload carries ``"x": <extra>`` (raw JSON) last."""
    return combined_frame(PAYLOAD)[:-2] + f', "x": {extra}}}}}'


def only_rejection(decoded: Decoded) -> Rejection:
    assert decoded.events == ()
    assert decoded.control is None
    assert len(decoded.rejections) == 1
    return decoded.rejections[0]


def assert_kept_as_received(rejection: Rejection, frame: str | bytes) -> None:
    """The rejection describes the whole frame: a prefix of it, its size and its hash."""
    data = frame.encode() if isinstance(frame, str) else frame
    assert rejection.raw_size == len(data)
    assert rejection.raw_sha256 == hashlib.sha256(data).hexdigest()
    kept = rejection.raw.encode()
    assert len(kept) <= MAX_RAW_BYTES
    assert data.startswith(kept)


def nested(depth: int, inner: str = "") -> str:
    return "[" * depth + inner + "]" * depth


# --- named cases ------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 1_000, 50_000, 500_000])
def test_nested_frame_is_one_too_deep_rejection(depth: int) -> None:
    # The frame: msgspec raised RecursionError, which ended the service.
    frame = f'{{"stream": "btcusdt@miniTicker", "data": {nested(depth)}}}'
    rejection = only_rejection(decode(frame))
    assert reason_code(rejection.reason) in {"too_deep", "stream_mismatch"}
    assert_kept_as_received(rejection, frame)
    top_level = nested(depth)
    assert reason_code(only_rejection(decode(top_level)).reason) in {"too_deep", "not_object"}


@pytest.mark.parametrize("depth", [1_000, 50_000, 100_000])
@pytest.mark.parametrize("as_bytes", [False, True])
def test_valid_ticker_with_a_deeply_nested_unknown_field_is_recorded(
    depth: int, as_bytes: bool
) -> None:
    extras = [
        nested(depth),
        '{"a": ' * depth + "1" + "}" * depth,
        '[{"k": "]]]}}}", "v": [' * (depth // 4) + "0" + "]}]" * (depth // 4),
    ]
    for extra in extras:
        text = with_extra(extra)
        decoded = decode(text.encode() if as_bytes else text)
        assert decoded.rejections == ()
        assert decoded.events == (base_event(),)


def test_deep_value_in_a_field_that_is_read_keeps_that_fields_reason() -> None:
    frame = combined_frame({**PAYLOAD, "c": 0})
    frame = frame.replace('"c": 0', f'"c": {nested(10_000)}')
    rejection = only_rejection(decode(frame))
    assert reason_code(rejection.reason) == "wrong_type:c"
    assert f"nested deeper than {MAX_NESTING} levels cut" in rejection.reason
    assert_kept_as_received(rejection, frame)


def test_deep_frame_with_unbalanced_brackets_is_too_deep() -> None:
    for frame in (with_extra("[" * 10_000), with_extra(nested(5_000) + "]]")):
        assert reason_code(only_rejection(decode(frame)).reason) == "too_deep"


@pytest.mark.parametrize(
    "frame",
    [
        "[" + ",".join(["0"] * (MIB // 2 - 1)) + "]",  # the 1 MiB flood: 524,287 items
        json.dumps([PAYLOAD] * 4000),  # valid items, but no array is subscribed
        json.dumps({"stream": "!miniTicker@arr", "data": [0] * 300_000}),
        json.dumps({"stream": "btcusdt@miniTicker", "data": [0] * 300_000}),
    ],
    ids=["zeros", "tickers", "all_market_stream", "symbol_stream"],
)
def test_array_flood_is_one_rejection_not_one_per_item(frame: str) -> None:
    rejection = only_rejection(decode(frame))
    assert reason_code(rejection.reason) in {"not_object", "stream_mismatch"}
    assert_kept_as_received(rejection, frame)
    assert f"raw truncated to {MAX_RAW_BYTES} of {len(frame)} bytes" in rejection.reason


def test_all_market_mode_reads_array_items_and_rejects_the_frame_once() -> None:
    frame = json.dumps([PAYLOAD, 0, {**PAYLOAD, "E": 1654791725970}])
    decoded = decode(frame, all_market=True)
    assert [event.event_time for event in decoded.events] == [1654791723970, 1654791725970]
    (rejection,) = decoded.rejections
    assert reason_code(rejection.reason) == "not_object"
    assert rejection.reason.endswith("(1 of 3 items rejected)")
    assert_kept_as_received(rejection, frame)


def test_all_market_flood_is_one_rejection() -> None:
    frame = "[" + ",".join(["0"] * (MIB // 2 - 1)) + "]"
    rejection = only_rejection(decode(frame, all_market=True))
    assert rejection.reason.startswith("not_object: ")
    assert f"({MIB // 2 - 1} of {MIB // 2 - 1} items rejected)" in rejection.reason
    assert_kept_as_received(rejection, frame)


@pytest.mark.parametrize("keys", [5_000, 50_000])
def test_wide_object_is_one_rejection_or_an_event(keys: int) -> None:
    wide = {f"k{i}": i for i in range(keys)}
    frame = json.dumps({"stream": "btcusdt@miniTicker", "data": wide})
    rejection = only_rejection(decode(frame))
    assert reason_code(rejection.reason) == "missing_field:e"
    assert_kept_as_received(rejection, frame)
    assert reason_code(only_rejection(decode(json.dumps(wide))).reason) == "missing_field:e"
    # The same thousands of keys beside a valid payload are unknown fields: ignored.
    valid = combined_frame({**wide, **PAYLOAD})
    assert decode(valid).events == (base_event(),)
    # Thousands of repeated keys: the last one of each name wins, as in every JSON reader.
    repeated = json.dumps(PAYLOAD)[:-1] + ', "c": "1"' * keys + ', "c": "30180.00"}'
    assert decode(repeated).events == (base_event(),)


@pytest.mark.parametrize(
    "frame",
    [
        with_extra('"\xff"').encode("latin-1"),
        with_extra('"ok"').encode() + b"\xc3",
        with_extra(nested(10_000, '"\xed\xa0\x80"')).encode("latin-1"),  # a UTF-8 surrogate
        b"\xff" * MIB,
    ],
    ids=["in_a_string", "cut_character", "deep_surrogate", "megabyte"],
)
def test_invalid_utf8_in_a_binary_frame_is_one_rejection(frame: bytes) -> None:
    rejection = only_rejection(decode(frame))
    assert reason_code(rejection.reason) == "not_utf8"
    assert rejection.raw_size == len(frame)
    assert rejection.raw_sha256 == hashlib.sha256(frame).hexdigest()
    # backslashreplace: the bad bytes stay visible (\xff), never hidden as U+FFFD.
    assert "\ufffd" not in rejection.raw
    assert len(rejection.raw) <= 4 * MAX_RAW_BYTES


def test_decode_failure_quarantines_the_frame_with_the_error() -> None:
    decoded = decode_failure(
        b"\x00frame", ValueError("boom"), receive_time=RECEIVED, connection_id="0.2"
    )
    rejection = only_rejection(decoded)
    assert rejection.reason == "decode_failed: ValueError: 'boom'"
    assert (rejection.receive_time, rejection.connection_id) == (RECEIVED, "0.2")
    assert_kept_as_received(rejection, b"\x00frame")


# --- properties -------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)


def assert_well_formed(decoded: Decoded, frame: str | bytes, *, all_market: bool = False) -> None:
    """Events or at most one rejection with a known code, describing the frame as received.

    In all-market mode the good items of an array decode beside the one rejection.
    """
    assert len(decoded.rejections) <= 1
    assert all_market or not (decoded.events and decoded.rejections)
    for rejection in decoded.rejections:
        code = reason_code(rejection.reason)
        assert code in CODES or code.startswith(CODE_PREFIXES), rejection.reason
        # At most MAX_RAW_BYTES of the frame, each byte not UTF-8 kept as 4 characters (\xff).
        assert len(rejection.raw) <= 4 * MAX_RAW_BYTES
        assert rejection.raw_size is not None
        assert rejection.raw_sha256 is not None
    for event in decoded.events:
        assert event.symbol == "BTCUSDT"


@given(st.binary(max_size=4096))
def test_any_bytes_decode_to_events_or_one_rejection(frame: bytes) -> None:
    assert_well_formed(decode(frame), frame)


@given(st.text(max_size=2048))
def test_any_text_decodes_to_events_or_one_rejection(frame: str) -> None:
    assert_well_formed(decode(frame), frame)


@given(json_values)
def test_any_json_document_decodes_to_events_or_one_rejection(value: object) -> None:
    frame = json.dumps(value)
    assert_well_formed(decode(frame), frame)
    wrapped = json.dumps({"stream": "btcusdt@miniTicker", "data": value})
    assert_well_formed(decode(wrapped), wrapped)


@given(st.lists(json_values | st.just(PAYLOAD), max_size=8))
def test_any_all_market_array_decodes_to_events_and_at_most_one_rejection(
    items: list[object],
) -> None:
    for frame in (
        json.dumps(items),
        json.dumps({"stream": "!miniTicker@arr", "data": items}),
    ):
        decoded = decode(frame, all_market=True)
        assert_well_formed(decoded, frame, all_market=True)
        good = sum(1 for item in items if item == PAYLOAD)
        assert len(decoded.events) == good
        if decoded.rejections:
            assert_kept_as_received(decoded.rejections[0], frame)
            assert f"of {len(items)} items rejected)" in decoded.rejections[0].reason


@given(json_values, st.integers(0, 3_000), st.sampled_from(["[", '{"k":']), st.booleans())
def test_any_unknown_extra_field_at_any_depth_is_recorded(
    value: object, depth: int, opener: str, as_bytes: bool
) -> None:
    closer = "]" if opener == "[" else "}"
    text = with_extra(opener * depth + json.dumps(value) + closer * depth)
    decoded = decode(text.encode() if as_bytes else text)
    assert decoded.rejections == ()
    assert decoded.events == (base_event(),)


@given(
    st.lists(st.sampled_from(["[", "]", "{", "}", '"', "\\", ",", "0", ":", '"[{"']), max_size=300),
    st.booleans(),
)
def test_any_bracket_soup_with_a_ticker_mark_never_raises(tokens: list[str], deep: bool) -> None:
    soup = "".join(tokens)
    frame = with_extra(("[" * 2000 if deep else "") + soup)
    assert_well_formed(decode(frame), frame)
    assert_well_formed(decode(frame.encode()), frame.encode())


@given(json_values, st.integers(1, 12))
def test_cutting_deep_nesting_keeps_a_valid_document_valid(value: object, limit: int) -> None:
    text = json.dumps(value)
    cut = cut_deep_nesting(text, max_nesting=limit)
    assert cut is not None
    assert depth_of(msgspec.json.decode(cut)) <= limit + 1
    assert cut_deep_nesting(text.encode(), max_nesting=limit) == cut.encode()
    if depth_of(value) <= limit:
        assert cut == text


def depth_of(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    return 0
