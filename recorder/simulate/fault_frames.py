"""The frames the simulator's frame faults send: what each kind of bad or hostile frame holds.

The kinds themselves, their grammar and their parameters are :mod:`recorder.simulate.faults`.
"""

from collections.abc import Mapping

from recorder.simulate.faults import (
    FLOOD_ITEMS,
    FUTURE_TIME_LEAD_MS,
    HOSTILE_DEPTH,
    HOSTILE_SYMBOL,
    INVALID_UTF8_BYTES,
    WIDE_KEYS,
    FaultKind,
)
from recorder.simulate.market import encode_json

BAD_FIELD_VARIANTS: tuple[tuple[str, object], ...] = (
    ("c", "abc"),
    ("E", "x"),
    ("o", 1.5),
    ("l", "NaN"),
)
"""``bad_field`` frames cycle through these: a non-numeric decimal, a string time, a JSON number
where a string belongs, and a ``NaN`` that ``decimal.Decimal`` would accept."""


def garbage_text(serial: int) -> str:
    """A text frame that is not JSON."""
    return f'}}{{"stream": garbage #{serial} <not json>'


def bad_field_payload(template: Mapping[str, str | int], serial: int) -> dict[str, object]:
    """A valid payload with one field of the wrong type or not a number (variant by serial)."""
    key, value = BAD_FIELD_VARIANTS[serial % len(BAD_FIELD_VARIANTS)]
    payload: dict[str, object] = dict(template)
    payload[key] = value
    return payload


def future_time_payload(template: Mapping[str, str | int]) -> dict[str, object]:
    """A valid payload whose ``E`` is :data:`FUTURE_TIME_LEAD_MS` ahead of the template's."""
    payload: dict[str, object] = dict(template)
    payload["E"] = int(template["E"]) + FUTURE_TIME_LEAD_MS
    return payload


def hostile_payload(template: Mapping[str, str | int]) -> dict[str, object]:
    """A valid payload whose symbol tries to climb out of a directory."""
    payload: dict[str, object] = dict(template)
    payload["s"] = HOSTILE_SYMBOL
    payload.pop("ps", None)
    return payload


def huge_payload(template: Mapping[str, str | int], size: int) -> dict[str, object]:
    """A valid payload padded with an extra field so that its JSON is about ``size`` bytes."""
    payload: dict[str, object] = dict(template)
    overhead = len(encode_json(payload)) + len(',"pad":""')
    payload["pad"] = "x" * max(0, size - overhead)
    return payload


def nested_data(depth: int = HOSTILE_DEPTH) -> str:
    """JSON of ``depth`` nested arrays: ``[[[...]]]``."""
    return "[" * depth + "]" * depth


def deep_extra_payload(template: Mapping[str, str | int], depth: int = HOSTILE_DEPTH) -> str:
    """JSON of a valid payload carrying an unknown field nested ``depth`` levels deep."""
    return encode_json(dict(template))[:-1] + f',"x":{nested_data(depth)}}}'


def array_flood_text(items: int = FLOOD_ITEMS) -> str:
    """A top-level JSON array of ``items`` zeros."""
    return "[" + ",".join(["0"] * items) + "]"


def wide_data(keys: int = WIDE_KEYS) -> str:
    """JSON of an object with ``keys`` keys, none of them a payload field."""
    return "{" + ",".join(f'"k{i}":{i}' for i in range(keys)) + "}"


def bad_bytes_payload(template: Mapping[str, str | int]) -> bytes:
    """A valid payload whose extra field holds bytes that are not UTF-8."""
    return encode_json(dict(template))[:-1].encode() + b',"x":"' + INVALID_UTF8_BYTES + b'"}'


def hostile_data(kind: FaultKind, template: Mapping[str, str | int]) -> str | bytes:
    """The data part of a frame of one of :data:`HOSTILE_DATA_KINDS`.

    Args:
        kind: the fault kind.
        template: a valid payload of the connection's symbol, for the kinds that carry one.
    """
    if kind is FaultKind.NESTED:
        return nested_data()
    if kind is FaultKind.WIDE:
        return wide_data()
    if kind is FaultKind.DEEP_EXTRA:
        return deep_extra_payload(template)
    return bad_bytes_payload(template)
