import doctest
import json
from pathlib import Path
from typing import Any

import pytest
from sample_payload import PAYLOAD

import recorder.ingest.decode
from recorder.ingest.decimals import is_exact_decimal
from recorder.ingest.decode import (
    ControlError,
    ControlReply,
    Decoded,
    decode_frame,
)
from recorder.ingest.payload import MAX_EVENT_TIME_MS, MIN_EVENT_TIME_MS
from recorder.ingest.rejections import MAX_RAW_BYTES
from recorder.model import MiniTicker, Rejection, reason_code

SAMPLES = Path(__file__).parents[2] / "fixtures" / "miniticker.jsonl"
RECEIVED = 1_654_791_724_000_123
DECIMAL_FIELDS = ("c", "o", "h", "l", "v", "q")
REQUIRED_FIELDS = ("e", "E", "s", *DECIMAL_FIELDS)
DROP = object()  # marks a payload key to leave out


def payload(**changes: object) -> dict[str, object]:
    """A valid BTCUSDT payload (the captured combined sample) with keys changed or dropped."""
    base: dict[str, object] = dict(PAYLOAD)
    base.update(changes)
    return {key: value for key, value in base.items() if value is not DROP}


def combined(data: object, stream: str | None = None) -> str:
    if stream is None:
        assert isinstance(data, dict)
        stream = str(data["s"]).lower() + "@miniTicker"
    return json.dumps({"stream": stream, "data": data}, ensure_ascii=False)


def decode(frame: str | bytes, subscribed: frozenset[str] | None = None, **options: Any) -> Decoded:
    return decode_frame(
        frame, receive_time=RECEIVED, subscribed=subscribed, connection_id="0.1", **options
    )


def only_event(decoded: Decoded) -> MiniTicker:
    assert decoded.rejections == ()
    assert decoded.control is None
    assert len(decoded.events) == 1
    return decoded.events[0]


def only_rejection(decoded: Decoded) -> Rejection:
    assert decoded.events == ()
    assert decoded.control is None
    assert len(decoded.rejections) == 1
    return decoded.rejections[0]


def rejected_code(
    frame: str | bytes, subscribed: frozenset[str] | None = None, **options: Any
) -> str:
    return reason_code(only_rejection(decode(frame, subscribed, **options)).reason)


def load_samples() -> list[tuple[str, str]]:
    lines = SAMPLES.read_text(encoding="utf-8").splitlines()
    return [(sample["source"], sample["frame"]) for sample in map(json.loads, lines)]


def sample_payloads() -> list[dict[str, Any]]:
    payloads = []
    for _, frame in load_samples():
        parsed = json.loads(frame)
        payloads.append(parsed.get("data", parsed))
    return payloads


# --- the captured samples ---------------------------------------------------------------------


@pytest.mark.parametrize(("source", "frame"), load_samples(), ids=lambda v: str(v)[:40])
def test_captured_sample_frames(source: str, frame: str) -> None:
    data = json.loads(frame)
    data = data.get("data", data)
    decoded = decode(frame)
    if data["E"] < MIN_EVENT_TIME_MS:
        # The documentation example carries E=123456789 (1970): not a real event.
        assert "documentation" in source
        assert reason_code(only_rejection(decoded).reason) == "bad_event_time"
        return
    assert only_event(decoded) == MiniTicker(
        symbol=data["s"],
        event_time=data["E"],
        close=data["c"],
        open=data["o"],
        high=data["h"],
        low=data["l"],
        volume=data["v"],
        quote_volume=data["q"],
        receive_time=RECEIVED,
    )


def test_captured_samples_include_the_documentation_example_and_three_real_frames() -> None:
    outcomes = [len(decode(frame).events) for _, frame in load_samples()]
    assert outcomes == [1, 1, 1, 0]


def test_all_forms_of_one_payload_decode_to_the_same_event() -> None:
    data = payload()
    expected = only_event(decode(json.dumps(data)))
    forms: list[str | bytes] = [
        combined(data),
        combined(data).encode(),
        json.dumps(data, indent=2),
    ]
    for frame in forms:
        assert only_event(decode(frame)) == expected
        assert only_event(decode(frame, all_market=True)) == expected
    for frame in (json.dumps([data]), combined([data], stream="!miniTicker@arr")):
        assert only_event(decode(frame, all_market=True)) == expected
    assert expected.symbol == "BTCUSDT"
    assert expected.close == "30180.00"
    assert expected.event_time == 1654791723970
    assert expected.receive_time == RECEIVED


def test_all_market_array_of_samples_keeps_good_items_in_order() -> None:
    payloads = sample_payloads()
    decoded = decode(combined(payloads, stream="!miniTicker@arr"), all_market=True)
    assert [event.symbol for event in decoded.events] == ["BTCUSDT", "1000LUNCBUSD", "TNBBTC"]
    assert [reason_code(r.reason) for r in decoded.rejections] == ["bad_event_time"]
    assert decoded.rejections[0].reason.endswith(f"(1 of {len(payloads)} items rejected)")
    assert json.loads(decoded.rejections[0].raw)["data"] == payloads


def test_an_array_is_read_item_by_item_only_in_all_market_mode() -> None:
    array = json.dumps([payload(s="ETHUSDT")])
    assert decode_frame(array, receive_time=1, subscribed=None, all_market=True).events
    assert decode_frame(array, receive_time=1, subscribed=None).rejections


def test_docstring_examples_hold() -> None:
    results = doctest.testmod(recorder.ingest.decode)
    assert results.attempted >= 5
    assert results.failed == 0


# --- decimals ---------------------------------------------------------------------------------

ACCEPTED_DECIMALS = [
    "0",
    "1",
    "30180",
    "6878775288",
    *("1." + "123456789012345678"[:decimals] for decimals in range(1, 19)),
    "0.000000000000000001",
    "0.1234567890123456780",  # 19 decimals, the 19th a zero: exact
    "1." + "0" * 30,  # trailing zeros are exact
    "9" * 20,  # 20 integer digits
    "000" + "9" * 20,  # leading zeros are free
    "0" * 60 + "1",
    "9" * 20 + "." + "9" * 18,  # all 38 digits
    "0." + "0" * 40,
]
NOT_DECIMALS = [
    "1e5",
    "1E5",
    "-1",
    "+1",
    "",
    " 1",
    "1 ",
    "1\n",
    "1.",
    ".5",
    "0x10",
    "NaN",
    "nan",
    "Infinity",
    "\u0661\u0662\u0663",  # Arabic-Indic 123: str.isdigit() says yes
    "\uff11\uff12\uff13",  # full-width 123
    "1,5",
    "1..2",
    "1.2.3",
    "1_000",
    "\u0661.5",
    "1.\u0665",
]
INEXACT_DECIMALS = [
    "0.1234567890123456789",  # 19 significant decimals
    "1.0000000000000000001",
    "1" + "0" * 20,  # 21 integer digits
    "1" * 21,
    "000" + "1" * 21,
    "9" * 20 + "." + "9" * 18 + "0",  # exact, but 39 digits as written: Arrow's cast overflows
    "1." + "0" * 40,
]


@pytest.mark.parametrize("text", ACCEPTED_DECIMALS)
def test_exact_decimals_are_accepted_as_sent(text: str) -> None:
    assert is_exact_decimal(text)
    event = only_event(decode(combined(payload(c=text, q=text))))
    assert event.close == text
    assert event.quote_volume == text


@pytest.mark.parametrize("text", NOT_DECIMALS)
def test_malformed_decimals_are_rejected(text: str) -> None:
    assert not is_exact_decimal(text)
    rejection = only_rejection(decode(combined(payload(c=text))))
    assert reason_code(rejection.reason) == "not_decimal:c"


@pytest.mark.parametrize("text", INEXACT_DECIMALS)
def test_decimals_that_do_not_fit_are_rejected_never_rounded(text: str) -> None:
    assert not is_exact_decimal(text)
    rejection = only_rejection(decode(combined(payload(h=text))))
    assert reason_code(rejection.reason) == "inexact_decimal:h"
    assert "decimal128(38, 18)" in rejection.reason


@pytest.mark.parametrize("field", DECIMAL_FIELDS)
def test_every_decimal_field_is_checked(field: str) -> None:
    assert rejected_code(combined(payload(**{field: "1e5"}))) == f"not_decimal:{field}"
    assert rejected_code(combined(payload(**{field: "1" * 21}))) == f"inexact_decimal:{field}"
    assert rejected_code(combined(payload(**{field: 30180.0}))) == f"wrong_type:{field}"


def test_first_failing_decimal_field_is_named() -> None:
    assert rejected_code(combined(payload(l="x", o="1" * 30))) == "inexact_decimal:o"


@pytest.mark.parametrize("value", [30180.0, 30180, None, True, ["1"], {"v": "1"}])
def test_json_numbers_and_other_types_are_wrong_type(value: object) -> None:
    assert rejected_code(combined(payload(c=value))) == "wrong_type:c"


# --- event type, time, optional fields ---------------------------------------------------------


@pytest.mark.parametrize(
    ("event_time", "accepted"),
    [
        (MIN_EVENT_TIME_MS, True),
        (1654791723970, True),
        (MAX_EVENT_TIME_MS - 1, True),
        (MIN_EVENT_TIME_MS - 1, False),
        (MAX_EVENT_TIME_MS, False),
        (0, False),
        (-1, False),
        (123456789, False),
        (1654791723970 * 1000, False),  # microseconds by mistake
        (10**30, False),
        (-(10**30), False),
    ],
)
def test_event_time_must_be_in_a_sane_range(event_time: int, accepted: bool) -> None:
    decoded = decode(combined(payload(E=event_time)))
    if accepted:
        assert only_event(decoded).event_time == event_time
    else:
        assert reason_code(only_rejection(decoded).reason) == "bad_event_time"


def test_event_time_with_thousands_of_digits_is_a_bad_event_time() -> None:
    frame = combined(payload()).replace("1654791723970", "9" * 5000)
    assert rejected_code(frame) == "bad_event_time"


@pytest.mark.parametrize("value", ["1654791723970", 1654791723970.0, 1654791723970.5, True, None])
def test_event_time_must_be_an_integer(value: object) -> None:
    assert rejected_code(combined(payload(E=value))) == "wrong_type:E"


@pytest.mark.parametrize(
    ("value", "code"),
    [("24hrTicker", "wrong_event_type"), ("", "wrong_event_type"), (1, "wrong_type:e")],
)
def test_event_type_must_be_mini_ticker(value: object, code: str) -> None:
    assert rejected_code(combined(payload(e=value))) == code


@pytest.mark.parametrize("field", REQUIRED_FIELDS)
def test_each_missing_field_is_named(field: str) -> None:
    data = payload(**{field: DROP})
    assert rejected_code(json.dumps(data)) == f"missing_field:{field}"
    assert rejected_code(combined(data, stream="btcusdt@miniTicker")) == f"missing_field:{field}"


def test_unknown_fields_are_ignored() -> None:
    data = payload(x={"nested": [1, None, "\u0000"]}, Z=None, ps2=5, u=1.5e300, big=10**40)
    event = only_event(decode(combined(data)))
    assert event == only_event(decode(combined(payload())))


@pytest.mark.parametrize(
    ("changes", "pair", "contract_type"),
    [
        ({}, None, None),
        ({"ps": "BTCUSDT", "st": 1}, "BTCUSDT", 1),
        ({"ps": "BTCUSD", "st": 2}, "BTCUSD", 2),
        ({"st": "2"}, None, 2),
        ({"st": "1"}, None, 1),
        ({"ps": None, "st": None}, None, None),
        ({"ps": "币安人生USDT"}, "币安人生USDT", None),
    ],
)
def test_pair_and_contract_type_when_present(
    changes: dict[str, object], pair: str | None, contract_type: int | None
) -> None:
    event = only_event(decode(combined(payload(**changes))))
    assert event.pair == pair
    assert event.contract_type == contract_type


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"ps": 5}, "wrong_type:ps"),
        ({"ps": ["BTCUSDT"]}, "wrong_type:ps"),
        ({"st": True}, "wrong_type:st"),
        ({"st": 1.5}, "wrong_type:st"),
        ({"st": 1.0}, "wrong_type:st"),
        ({"st": []}, "wrong_type:st"),
        ({"st": "x"}, "wrong_type:st"),
        ({"st": "1.0"}, "wrong_type:st"),
        ({"st": "-1"}, "wrong_type:st"),
        ({"st": " 1"}, "wrong_type:st"),
        ({"st": ""}, "wrong_type:st"),
        ({"st": "\u0661"}, "wrong_type:st"),  # Arabic-Indic 1
        ({"st": -1}, "wrong_type:st"),
        ({"st": 128}, "wrong_type:st"),
        ({"st": 10**30}, "wrong_type:st"),
        ({"st": "9" * 40}, "wrong_type:st"),
    ],
)
def test_pair_and_contract_type_of_the_wrong_type_are_rejected(
    changes: dict[str, object], code: str
) -> None:
    assert rejected_code(combined(payload(**changes))) == code


# --- symbols and streams -----------------------------------------------------------------------

HOSTILE_SYMBOLS = [
    "../../x",
    "a/b",
    "a\\b",
    ".",
    "..",
    "BTC\x00",
    "%2e%2e",
    "",
    "_BTC",
    "BTC USDT",
    "symbol=BTC",
    "BTC\u200bUSDT",  # zero-width space
    "BTC\nUSDT",
    "A" * 65,
    "e\u0301USDT",  # not NFC
]


@pytest.mark.parametrize("symbol", HOSTILE_SYMBOLS)
def test_hostile_symbols_are_unsafe(symbol: str) -> None:
    for frame in (
        combined(payload(s=symbol)),  # the stream name is built from the symbol: it matches
        json.dumps(payload(s=symbol)),
        json.dumps([payload(s=symbol)]),
    ):
        assert rejected_code(frame, all_market=True) == "unsafe_symbol"
        assert rejected_code(frame, frozenset({symbol}), all_market=True) == "unsafe_symbol"


@pytest.mark.parametrize("symbol", ["币安人生USDT", "BTCUSDT_260327", "1000LUNCBUSD"])
def test_unusual_but_valid_symbols_decode(symbol: str) -> None:
    event = only_event(decode(combined(payload(s=symbol)), frozenset({symbol})))
    assert event.symbol == symbol


def test_unsubscribed_symbols_are_rejected() -> None:
    frame = combined(payload())
    assert rejected_code(frame, frozenset({"ETHUSDT"})) == "unsubscribed_symbol"
    assert rejected_code(frame, frozenset()) == "unsubscribed_symbol"
    assert rejected_code(frame, frozenset({"btcusdt"})) == "unsubscribed_symbol"
    assert only_event(decode(frame, frozenset({"BTCUSDT", "ETHUSDT"}))).symbol == "BTCUSDT"
    assert only_event(decode(frame, None)).symbol == "BTCUSDT"


@pytest.mark.parametrize(
    ("stream", "data"),
    [
        ("ethusdt@miniTicker", payload()),
        ("BTCUSDT@miniTicker", payload()),
        ("btcusdt@ticker", payload()),
        ("btcusdt@miniticker", payload()),
        ("", payload()),
        ("!miniTicker@arr", payload()),
        ("btcusdt@miniTicker", [payload()]),
        ("!ticker@arr", [payload()]),
    ],
)
def test_stream_must_match_payload(stream: str, data: object) -> None:
    rejection = only_rejection(decode(combined(data, stream=stream)))
    assert reason_code(rejection.reason) == "stream_mismatch"


# --- arrays ------------------------------------------------------------------------------------


def test_array_with_a_mix_is_one_rejection_for_its_bad_items() -> None:
    items: list[object] = [
        payload(),
        5,
        payload(s="ETHUSDT", c=DROP),
        payload(s="ETHUSDT", E=1654791723971),
        payload(s="../x"),
        payload(s="XRPUSDT"),
        "text",
        payload(s="SOLUSDT", v=1.5),
    ]
    subscribed = frozenset({"BTCUSDT", "ETHUSDT", "../x", "SOLUSDT"})
    for frame in (json.dumps(items), combined(items, stream="!miniTicker@arr")):
        decoded = decode(frame, subscribed, all_market=True)
        assert [(e.symbol, e.event_time) for e in decoded.events] == [
            ("BTCUSDT", 1654791723970),
            ("ETHUSDT", 1654791723971),
        ]
        # XRPUSDT is valid but not recorded: skipped and counted, not quarantined.
        assert decoded.not_recorded == 1
        # One record for the frame (never one per item): the first bad item's reason, the
        # count of bad items, and the frame as received.
        (rejection,) = decoded.rejections
        assert reason_code(rejection.reason) == "not_object"
        assert rejection.reason.endswith("(5 of 8 items rejected)")
        assert rejection.raw == frame
        assert (rejection.connection_id, rejection.receive_time) == ("0.1", RECEIVED)


def test_all_market_items_of_symbols_not_recorded_are_skipped_and_counted() -> None:
    items = [payload(), payload(s="XRPUSDT"), payload(s="BTCUSDT_260327"), payload(s="ETHUSDT")]
    for frame in (json.dumps(items), combined(items, stream="!miniTicker@arr")):
        decoded = decode(frame, frozenset({"BTCUSDT", "ETHUSDT"}), all_market=True)
        assert [event.symbol for event in decoded.events] == ["BTCUSDT", "ETHUSDT"]
        assert decoded.rejections == ()
        assert decoded.not_recorded == 2
        everything = decode(frame, None, all_market=True)
        assert (len(everything.events), everything.not_recorded) == (4, 0)


def test_all_market_item_not_recorded_with_a_hostile_value_is_still_rejected() -> None:
    items = [payload(), payload(s="XRPUSDT", c="1e9"), payload(s="../x")]
    decoded = decode(json.dumps(items), frozenset({"BTCUSDT"}), all_market=True)
    assert [event.symbol for event in decoded.events] == ["BTCUSDT"]
    (rejection,) = decoded.rejections
    assert reason_code(rejection.reason) == "not_decimal:c"
    assert rejection.reason.endswith("(2 of 3 items rejected)")
    assert decoded.not_recorded == 0


def test_huge_all_market_array_of_bad_items_is_one_record_cut_to_size() -> None:
    items = [payload(c="x")] * 3000 + [payload()]
    frame = combined(items, stream="!miniTicker@arr")
    decoded = decode(frame, all_market=True)
    assert [event.symbol for event in decoded.events] == ["BTCUSDT"]
    (rejection,) = decoded.rejections
    assert reason_code(rejection.reason) == "not_decimal:c"
    assert "(3000 of 3001 items rejected)" in rejection.reason
    assert f"raw truncated to {MAX_RAW_BYTES} of {len(frame.encode())} bytes" in rejection.reason
    assert rejection.raw_size == len(frame.encode())


def test_empty_array_is_nothing_in_all_market_mode() -> None:
    assert decode("[]", all_market=True) == Decoded()
    assert decode(combined([], stream="!miniTicker@arr"), all_market=True) == Decoded()


# --- control replies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "reply"),
    [
        ('{"result":null,"id":1}', ControlReply(id=1, result=None, error=None)),
        (
            '{"result":["btcusdt@miniTicker"],"id":"list"}',
            ControlReply(id="list", result=["btcusdt@miniTicker"], error=None),
        ),
        (
            '{"error":{"code":2,"msg":"Invalid request: unknown"},"id":3}',
            ControlReply(id=3, result=None, error=ControlError(2, "Invalid request: unknown")),
        ),
        (
            '{"id":null,"error":{"code":-1,"msg":"x"}}',
            ControlReply(id=None, result=None, error=ControlError(-1, "x")),
        ),
    ],
)
def test_control_replies_are_neither_events_nor_rejections(frame: str, reply: ControlReply) -> None:
    assert decode(frame) == Decoded(control=reply)
    assert decode(frame.encode()) == Decoded(control=reply)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ('{"error":"bad","id":3}', "wrong_type:error"),
        ('{"error":{"code":"2","msg":"x"},"id":3}', "wrong_type:error"),
        ('{"result":null,"id":[1]}', "wrong_type:id"),
    ],
)
def test_malformed_control_replies_are_rejected(frame: str, code: str) -> None:
    assert rejected_code(frame) == code


# --- frames that are not JSON objects ----------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("", "not_json"),
        ("nope", "not_json"),
        ("{", "not_json"),
        ('{"stream":"btcusdt@miniTicker","data":{', "not_json"),
        ('{"a":1} x', "not_json"),
        ('{"a":1}{"a":2}', "not_json"),
        ('{"E":NaN}', "not_json"),
        ("5", "not_object"),
        ('"text"', "not_object"),
        ("null", "not_object"),
        ("true", "not_object"),
        ('{"stream":"btcusdt@miniTicker","data":5}', "not_object"),
        ('{"stream":"btcusdt@miniTicker","data":null}', "not_object"),
        ('{"stream":"btcusdt@miniTicker"}', "missing_field:data"),
        ('{"stream":5,"data":{}}', "wrong_type:stream"),
        ("{}", "missing_field:e"),
    ],
)
def test_frames_that_are_not_payloads(frame: str, code: str) -> None:
    rejection = only_rejection(decode(frame))
    assert reason_code(rejection.reason) == code
    assert rejection.raw == frame
    assert rejection.reason.startswith(code)


def test_combined_rejection_keeps_the_whole_frame() -> None:
    frame = combined(payload(c=1))
    assert only_rejection(decode(frame)).raw == frame


@pytest.mark.parametrize(
    "frame",
    [
        b"\xff" + combined(payload()).encode(),
        combined(payload()).encode().replace(b"BTCUSDT", b"BTC\xffUSDT"),
        # msgspec skips unknown fields without checking them; the decoder must not.
        combined(payload(x="placeholder")).encode().replace(b"placeholder", b"\xc3\x28"),
        b"\xed\xa0\x80",  # an encoded surrogate
    ],
)
def test_bytes_that_are_not_utf8_are_rejected(frame: bytes) -> None:
    rejection = only_rejection(decode(frame))
    assert reason_code(rejection.reason) == "not_utf8"
    # The offending bytes stay visible in the raw text.
    assert rejection.raw == frame.decode("utf-8", "backslashreplace")


def test_text_with_a_lone_surrogate_is_rejected() -> None:
    frame = combined(payload(x="\udcff"))  # json.dumps escapes it; make it literal
    frame = frame.replace("\\udcff", "\udcff")
    rejection = only_rejection(decode(frame))
    assert reason_code(rejection.reason) == "not_utf8"
    assert "\\udcff" in rejection.raw
    rejection.raw.encode("utf-8")  # the raw text itself is clean


def test_non_ascii_text_and_bytes_decode_alike() -> None:
    frame = combined(payload(s="币安人生USDT", ps="币安人生USDT"))
    assert decode(frame) == decode(frame.encode())
    assert only_event(decode(frame)).pair == "币安人生USDT"


# --- size --------------------------------------------------------------------------------------


def test_frame_at_the_limit_is_read_and_one_byte_over_is_not() -> None:
    frame = combined(payload())
    size = len(frame.encode())
    assert only_event(decode(frame, max_frame_bytes=size)).symbol == "BTCUSDT"
    rejection = only_rejection(decode(frame, max_frame_bytes=size - 1))
    assert reason_code(rejection.reason) == "too_large"
    assert str(size) in rejection.reason
    assert rejection.raw == frame


def test_size_limit_counts_utf8_bytes_not_characters() -> None:
    frame = combined(payload(s="币安人生USDT", ps="币安人生" * 10))
    size = len(frame.encode())
    assert size > len(frame)
    assert only_event(decode(frame, max_frame_bytes=size)).pair == "币安人生" * 10
    assert rejected_code_with_limit(frame, size - 1) == "too_large"
    assert rejected_code_with_limit(frame.encode(), size - 1) == "too_large"


def rejected_code_with_limit(frame: str | bytes, limit: int) -> str:
    return reason_code(only_rejection(decode(frame, max_frame_bytes=limit)).reason)


def test_huge_frame_is_rejected_unread_and_its_raw_truncated() -> None:
    frame = combined(payload(x="9" * 2_000_000))
    rejection = only_rejection(decode(frame))
    assert reason_code(rejection.reason) == "too_large"
    assert f"{len(frame)} bytes" in rejection.reason
    assert f"raw truncated to {MAX_RAW_BYTES} of {len(frame)} bytes" in rejection.reason
    assert rejection.raw == frame[:MAX_RAW_BYTES]


def test_truncated_raw_does_not_split_a_character() -> None:
    frame = '{"x":"' + "币" * 500_000 + '"}'
    rejection = only_rejection(decode(frame))
    raw = rejection.raw.encode()
    assert MAX_RAW_BYTES - 3 < len(raw) <= MAX_RAW_BYTES
    assert rejection.raw == frame[: len(rejection.raw)]


def test_large_allowed_frame_that_is_rejected_keeps_a_truncated_raw() -> None:
    frame = combined(payload(c=1, x="9" * 200_000))
    rejection = only_rejection(decode(frame))
    assert reason_code(rejection.reason) == "wrong_type:c"
    assert len(rejection.raw) == MAX_RAW_BYTES
    assert f"of {len(frame)} bytes" in rejection.reason


# --- reasons -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("not_json: JSON is malformed: invalid character (byte 4)", "not_json"),
        ("missing_field:c: Object missing required field `c`", "missing_field:c"),
        ("unsafe_symbol: '../x'", "unsafe_symbol"),
        ("too_large", "too_large"),
    ],
)
def test_reason_code_is_the_part_before_the_detail(reason: str, code: str) -> None:
    assert reason_code(reason) == code


def test_every_rejection_has_a_detail() -> None:
    frames = [
        "nope",
        "5",
        combined(payload(c="1e5")),
        combined(payload(c="1" * 30)),
        combined(payload(E=0)),
        combined(payload(e="x")),
        combined(payload(s="..")),
        combined(payload(), stream="x"),
        json.dumps(payload(c=DROP)),
    ]
    for frame in frames:
        reason = only_rejection(decode(frame, frozenset({"BTCUSDT"}))).reason
        code, separator, detail = reason.partition(": ")
        assert separator
        assert detail
        assert " " not in code


def test_details_quote_long_values_briefly() -> None:
    reason = only_rejection(decode(combined(payload(e="x" * 10_000)))).reason
    assert len(reason) < 300
