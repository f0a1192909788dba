"""The simulator's hostile frame faults (issue 9) build the frames they are documented to."""

import json

import pytest
from sample_payload import PAYLOAD

from recorder.ingest.screen import DEFAULT_MAX_FRAME_BYTES
from recorder.simulate.fault_frames import (
    array_flood_text,
    hostile_data,
)
from recorder.simulate.faults import (
    FLOOD_ITEMS,
    FRAME_KINDS,
    HOSTILE_DATA_KINDS,
    HOSTILE_DEPTH,
    INVALID_UTF8_BYTES,
    WIDE_KEYS,
    Fault,
    FaultKind,
    parse_fault_spec,
)


def test_hostile_kinds_parse_and_send_frames() -> None:
    spec = "nested*3,deep_extra,array_flood@1s,wide;conn=c1,bad_bytes*2"
    assert parse_fault_spec(spec) == (
        Fault(FaultKind.NESTED, count=3),
        Fault(FaultKind.DEEP_EXTRA),
        Fault(FaultKind.ARRAY_FLOOD, at=1.0),
        Fault(FaultKind.WIDE, connection_id="c1"),
        Fault(FaultKind.BAD_BYTES, count=2),
    )
    assert HOSTILE_DATA_KINDS | {FaultKind.ARRAY_FLOOD} <= FRAME_KINDS


def test_array_flood_is_the_issues_megabyte_of_zeros_within_the_frame_limit() -> None:
    text = array_flood_text()
    assert json.loads(text) == [0] * FLOOD_ITEMS
    assert DEFAULT_MAX_FRAME_BYTES - 8 < len(text) <= DEFAULT_MAX_FRAME_BYTES


def test_nested_is_deeper_than_any_recursive_decoder_reads() -> None:
    data = hostile_data(FaultKind.NESTED, PAYLOAD)
    assert data == "[" * HOSTILE_DEPTH + "]" * HOSTILE_DEPTH
    with pytest.raises(RecursionError):
        json.loads(data)


def test_deep_extra_is_a_valid_payload_with_one_deep_unknown_field() -> None:
    data = hostile_data(FaultKind.DEEP_EXTRA, PAYLOAD)
    assert isinstance(data, str)
    head, _, tail = data.partition(',"x":')
    assert json.loads(head + "}") == PAYLOAD
    assert tail == "[" * HOSTILE_DEPTH + "]" * HOSTILE_DEPTH + "}"
    assert len(data) < DEFAULT_MAX_FRAME_BYTES


def test_wide_is_an_object_of_thousands_of_unknown_keys() -> None:
    data = hostile_data(FaultKind.WIDE, PAYLOAD)
    assert isinstance(data, str)
    wide = json.loads(data)
    assert len(wide) == WIDE_KEYS
    assert not set(wide) & set(PAYLOAD)


def test_bad_bytes_is_a_payload_that_is_not_utf8() -> None:
    data = hostile_data(FaultKind.BAD_BYTES, PAYLOAD)
    assert isinstance(data, bytes)
    assert INVALID_UTF8_BYTES in data
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    assert json.loads(data.replace(INVALID_UTF8_BYTES, b"")) == {**PAYLOAD, "x": ""}
