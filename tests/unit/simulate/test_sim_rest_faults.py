"""``rest_fail`` faults: their grammar, the gate that counts requests down, the answers built."""

import json

import pytest

from recorder.errors import ConfigError
from recorder.simulate.faults import (
    DEFAULT_SLOW_REST,
    Fault,
    FaultKind,
    RestFailure,
    fault_from_json,
    format_fault,
    parse_fault_spec,
)
from recorder.simulate.rest import RestReply
from recorder.simulate.rest_faults import MALFORMED_BODY, RestFaultGate, failed_answer

NORMAL = RestReply(200, {"timezone": "UTC", "symbols": [{"symbol": "BTCUSDT"}]}, 1)
ENCODED = json.dumps(NORMAL.body).encode()


@pytest.mark.parametrize(
    ("spec", "fault"),
    [
        ("rest_fail", Fault(FaultKind.REST_FAIL)),
        (
            "rest_fail*2;reply=429;retry_after=3s",
            Fault(FaultKind.REST_FAIL, count=2, reply=RestFailure.HTTP_429, retry_after=3.0),
        ),
        (
            "rest_fail@1s+5s;reply=slow",
            Fault(FaultKind.REST_FAIL, at=1.0, duration=5.0, reply=RestFailure.SLOW),
        ),
        ("rest_fail;reply=truncated", Fault(FaultKind.REST_FAIL, reply=RestFailure.TRUNCATED)),
    ],
)
def test_rest_fail_specs_parse_and_format_back(spec: str, fault: Fault) -> None:
    assert parse_fault_spec(spec) == (fault,)
    assert parse_fault_spec(format_fault(fault)) == (fault,)
    assert fault_from_json(fault.to_json()) == (fault,)


@pytest.mark.parametrize(
    ("spec", "detail"),
    [
        ("rest_fail;reply=404", "expected one of 500, 429, 418"),
        ("drop;reply=500", "a reply applies only to rest_fail"),
        ("drop;reply=slow", "a reply applies only to rest_fail"),
        ("rest_fail;conn=c1", "applies to new requests, not to a connection"),
    ],
)
def test_bad_rest_fail_specs_are_refused(spec: str, detail: str) -> None:
    with pytest.raises(ConfigError, match=detail):
        parse_fault_spec(spec)


def test_a_bad_reply_in_json_is_refused() -> None:
    with pytest.raises(ConfigError, match="faults: reply='nope'"):
        fault_from_json({"kind": "rest_fail", "reply": "nope"})


def test_the_gate_fails_the_next_requests_in_order() -> None:
    gate = RestFaultGate()
    assert gate.take() is None
    first = Fault(FaultKind.REST_FAIL, count=2)
    second = Fault(FaultKind.REST_FAIL, reply=RestFailure.EMPTY)
    gate.arm(first)
    gate.arm(second)
    assert gate.pending == 3
    assert [gate.take(), gate.take(), gate.take(), gate.take()] == [first, first, second, None]
    assert gate.pending == 0


@pytest.mark.parametrize(
    ("reply", "status"),
    [(RestFailure.HTTP_500, 500), (RestFailure.HTTP_429, 429), (RestFailure.HTTP_418, 418)],
)
def test_error_replies_carry_binance_errors(reply: RestFailure, status: int) -> None:
    answer = failed_answer(Fault(FaultKind.REST_FAIL, reply=reply), NORMAL, ENCODED)
    assert answer.reply.status == status
    assert isinstance(answer.reply.body, dict)
    assert set(answer.reply.body) == {"code", "msg"}
    assert answer.raw is None
    assert answer.headers == {}


@pytest.mark.parametrize("reply", [RestFailure.HTTP_429, RestFailure.HTTP_418])
def test_refusals_announce_retry_after_in_whole_seconds(reply: RestFailure) -> None:
    fault = Fault(FaultKind.REST_FAIL, reply=reply, retry_after=1.2)
    assert failed_answer(fault, NORMAL, ENCODED).headers == {"Retry-After": "2"}


def test_malformed_and_truncated_bodies_are_not_json() -> None:
    malformed = failed_answer(
        Fault(FaultKind.REST_FAIL, reply=RestFailure.MALFORMED), NORMAL, ENCODED
    )
    truncated = failed_answer(
        Fault(FaultKind.REST_FAIL, reply=RestFailure.TRUNCATED), NORMAL, ENCODED
    )
    assert malformed.raw == MALFORMED_BODY
    assert truncated.raw is not None
    assert ENCODED.startswith(truncated.raw)
    assert 0 < len(truncated.raw) < len(ENCODED)
    for answer in (malformed, truncated):
        assert answer.reply.status == 200
        with pytest.raises(json.JSONDecodeError):
            json.loads(answer.raw or b"")


def test_empty_lists_no_contract_and_keeps_the_rest() -> None:
    answer = failed_answer(Fault(FaultKind.REST_FAIL, reply=RestFailure.EMPTY), NORMAL, ENCODED)
    assert answer.reply.body == {"timezone": "UTC", "symbols": []}
    other = RestReply(200, {"serverTime": 1}, 1)
    assert (
        failed_answer(Fault(FaultKind.REST_FAIL, reply=RestFailure.EMPTY), other, b"").reply
        == other
    )


def test_slow_holds_the_normal_answer_back() -> None:
    default = failed_answer(Fault(FaultKind.REST_FAIL, reply=RestFailure.SLOW), NORMAL, ENCODED)
    held = failed_answer(
        Fault(FaultKind.REST_FAIL, reply=RestFailure.SLOW, duration=2.0), NORMAL, ENCODED
    )
    assert (default.reply, default.delay) == (NORMAL, DEFAULT_SLOW_REST)
    assert (held.reply, held.delay) == (NORMAL, 2.0)
