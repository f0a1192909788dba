import json

import pytest
from sample_payload import PAYLOAD

from recorder.errors import ConfigError
from recorder.simulate.fault_frames import (
    bad_field_payload,
    future_time_payload,
    garbage_text,
    hostile_payload,
    huge_payload,
)
from recorder.simulate.faults import (
    DEFAULT_HUGE_SIZE,
    FUTURE_TIME_LEAD_MS,
    HOSTILE_SYMBOL,
    Fault,
    FaultKind,
    HandshakeGate,
    Refusal,
    fault_from_json,
    format_fault,
    parse_fault_spec,
)

TEMPLATE: dict[str, str | int] = {**PAYLOAD, "E": 1_780_000_000_000, "ps": "BTCUSDT", "st": 1}


def test_the_documented_example() -> None:
    assert parse_fault_spec("drop@10s,stall@20s+15s,garbage@5s") == (
        Fault(FaultKind.DROP, at=10.0),
        Fault(FaultKind.STALL, at=20.0, duration=15.0),
        Fault(FaultKind.GARBAGE, at=5.0),
    )


def test_every_kind_parses_bare() -> None:
    faults = parse_fault_spec(",".join(kind.value for kind in FaultKind))
    assert [fault.kind for fault in faults] == list(FaultKind)
    assert all(fault.at == 0 for fault in faults)


def test_counts_and_options() -> None:
    assert parse_fault_spec("refuse*3;status=429;retry_after=2s") == (
        Fault(FaultKind.REFUSE, count=3, status=429, retry_after=2.0),
    )
    assert parse_fault_spec(" huge@1s;size=3MiB;conn=c1 , bad_field*4 ") == (
        Fault(FaultKind.HUGE, at=1.0, size=3 * 1024 * 1024, connection_id="c1"),
        Fault(FaultKind.BAD_FIELD, count=4),
    )


def test_slow_start_takes_a_hold_time_and_a_count_of_handshakes() -> None:
    assert parse_fault_spec("slow_start@1s+3s*2") == (
        Fault(FaultKind.SLOW_START, at=1.0, duration=3.0, count=2),
    )


def test_empty_spec_means_no_fault() -> None:
    assert parse_fault_spec("") == ()
    assert parse_fault_spec("  ") == ()


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("explode@1s", "unknown kind 'explode'"),
        ("drop@soon", "expected KIND"),
        ("drop+5s", "duration applies only to stall, blackhole, slow_start, rest_fail and deaf"),
        ("slow_start;conn=c1", "slow_start applies to new handshakes"),
        ("stall*2", "count applies only"),
        ("refuse;status=404", "expected 503 or 429"),
        ("refuse;status=abc", "expected 503 or 429"),
        ("refuse;conn=c1", "refuse applies to new handshakes"),
        ("garbage;colour=red", "unknown option 'colour'"),
        ("garbage;conn", "expected key=value"),
        ("huge;size=3XB", "'3XB' is not valid"),
        ("stall+0s", "duration=0.0"),
        ("garbage*0", "count=0"),
        ("drop,,close", "fault ''"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint.replace("*", r"\*")):
        parse_fault_spec(spec)


@pytest.mark.parametrize(
    "fault",
    [
        Fault(FaultKind.DROP),
        Fault(FaultKind.CLOSE, at=0.25, connection_id="c12"),
        Fault(FaultKind.STALL, at=20.0, duration=15.0),
        Fault(FaultKind.BLACKHOLE, at=1.0),
        Fault(FaultKind.BAD_FIELD, count=4),
        Fault(FaultKind.HUGE, size=1234),
        Fault(FaultKind.REFUSE, count=2, status=429, retry_after=3.0),
        Fault(FaultKind.SLOW_START, at=1.0, duration=2.5, count=3),
    ],
)
def test_format_and_parse_round_trip(fault: Fault) -> None:
    assert parse_fault_spec(format_fault(fault)) == (fault,)


def test_json_object() -> None:
    document = {"kind": "stall", "at": 0, "duration": 5, "connection": "c1"}
    assert fault_from_json(document) == (Fault(FaultKind.STALL, duration=5.0, connection_id="c1"),)


def test_json_spec_and_lists() -> None:
    assert fault_from_json([{"spec": "drop@1s"}, {"kind": "refuse", "count": 2}]) == (
        Fault(FaultKind.DROP, at=1.0),
        Fault(FaultKind.REFUSE, count=2),
    )


def test_json_round_trip() -> None:
    fault = Fault(FaultKind.REFUSE, at=1.0, count=3, status=429, retry_after=2.0)
    assert fault_from_json(json.loads(json.dumps(fault.to_json()))) == (fault,)


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        ("drop", "expected an object"),
        ({"at": 1}, "missing 'kind'"),
        ({"kind": "melt"}, "kind='melt'"),
        ({"kind": "drop", "when": 1}, "unknown keys"),
        ({"kind": "drop", "at": "soon"}, "expected a number of seconds"),
        ({"kind": "garbage", "count": 1.5}, "expected an integer"),
        ({"kind": "garbage", "count": True}, "expected an integer"),
        ({"kind": "drop", "connection": 3}, "expected a connection id"),
        ({"spec": 5}, "'spec' must be the only key"),
        ({"spec": "drop", "kind": "close"}, "'spec' must be the only key"),
    ],
)
def test_bad_json_says_what_is_wrong(document: object, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        fault_from_json(document)


def test_gate_refuses_the_armed_number_of_handshakes_in_order() -> None:
    gate = HandshakeGate()
    assert gate.admit() is None
    gate.arm(Fault(FaultKind.REFUSE, count=2))
    gate.arm(Fault(FaultKind.REFUSE, status=429, retry_after=1.2))
    assert gate.pending == 3
    assert gate.admit() == Refusal(503, None)
    assert gate.admit() == Refusal(503, None)
    assert gate.admit() == Refusal(429, 2)
    assert gate.admit() is None
    assert gate.pending == 0


def test_garbage_is_not_json() -> None:
    with pytest.raises(json.JSONDecodeError):
        json.loads(garbage_text(1))


def test_bad_field_variants_cycle() -> None:
    broken = [bad_field_payload(TEMPLATE, serial) for serial in range(4)]
    assert broken[0]["c"] == "abc"
    assert broken[1]["E"] == "x"
    assert broken[2]["o"] == 1.5
    assert broken[3]["l"] == "NaN"
    assert bad_field_payload(TEMPLATE, 4) == broken[0]
    for payload in broken:
        assert sum(payload[key] != TEMPLATE[key] for key in TEMPLATE) == 1


def test_future_time_is_a_valid_event_ten_years_ahead() -> None:
    payload = future_time_payload(TEMPLATE)
    assert payload["E"] == int(TEMPLATE["E"]) + FUTURE_TIME_LEAD_MS
    assert FUTURE_TIME_LEAD_MS == 3650 * 86_400_000
    assert {key: value for key, value in payload.items() if key != "E"} == {
        key: value for key, value in TEMPLATE.items() if key != "E"
    }
    assert parse_fault_spec("future_time@2s*2;conn=c1") == (
        Fault(FaultKind.FUTURE_TIME, at=2.0, count=2, connection_id="c1"),
    )


def test_hostile_symbol() -> None:
    payload = hostile_payload(TEMPLATE)
    assert payload["s"] == HOSTILE_SYMBOL
    assert "ps" not in payload
    assert payload["c"] == TEMPLATE["c"]


@pytest.mark.parametrize("size", [1024, DEFAULT_HUGE_SIZE])
def test_huge_payload_is_about_the_size_asked(size: int) -> None:
    text = json.dumps(huge_payload(TEMPLATE, size), separators=(",", ":"))
    assert size <= len(text) <= size + 16
    assert json.loads(text)["s"] == "BTCUSDT"
