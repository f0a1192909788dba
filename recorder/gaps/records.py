"""A gap as a gap log record: the JSON object of one line, and back.

A record, one JSON object per line (UTF-8)::

    {"symbol": "BTCUSDT", "from": "2024-05-01T10:00:00.000Z", "to": "2024-05-01T10:00:10.000Z",
     "from_ms": 1714557600000, "to_ms": 1714557610000, "missed": 4, "cause": "disconnect",
     "detected_at": "2024-05-01T10:00:10.123456Z", "connection_id": "0.3",
     "instance_id": "host-a"}

``from_ms``/``to_ms`` are the exchange event times ``E`` around the gap; ``from``/``to`` repeat
them in ISO-8601 UTC for humans; ``detected_at`` is the recorder's wall clock. A gap is
identified by its :data:`RecordKey`, ``(symbol, from_ms, to_ms)``.
"""

import json
from collections.abc import Mapping

from recorder.clock import format_utc_ms, format_utc_us, parse_utc_us
from recorder.gaps.detector import Gap, GapCause

RecordKey = tuple[str, int, int]
"""``(symbol, from_ms, to_ms)``."""


class GapRecordError(ValueError):
    """A gap log line is not a valid gap record; the message says which field and why."""


def gap_to_record(gap: Gap, instance_id: str | None = None) -> dict[str, object]:
    """Return the gap log record of ``gap``.

    Args:
        gap: the gap.
        instance_id: the instance to name when the gap does not name one itself.
    """
    return {
        "symbol": gap.symbol,
        "from": format_utc_ms(gap.from_ms),
        "to": format_utc_ms(gap.to_ms),
        "from_ms": gap.from_ms,
        "to_ms": gap.to_ms,
        "missed": gap.missed,
        "cause": gap.cause.value,
        "detected_at": format_utc_us(gap.detected_at),
        "connection_id": gap.connection_id,
        "instance_id": gap.instance_id if gap.instance_id is not None else instance_id,
    }


def gap_to_line(gap: Gap, instance_id: str) -> bytes:
    """Return the record of ``gap`` as one compact UTF-8 JSON line, newline included.

    Args:
        gap: the gap.
        instance_id: the instance to name when the gap does not name one itself.
    """
    record = gap_to_record(gap, instance_id)
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def _required_int(record: Mapping[str, object], name: str) -> int:
    value = record.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise GapRecordError(f"{name!r} is {value!r}: expected an integer")
    return value


def _optional_str(record: Mapping[str, object], name: str) -> str | None:
    value = record.get(name)
    if value is not None and not isinstance(value, str):
        raise GapRecordError(f"{name!r} is {value!r}: expected a string or null")
    return value


def gap_from_record(record: object) -> Gap:
    """Build a :class:`Gap` from a gap log record (the inverse of :func:`gap_to_record`).

    Raises:
        GapRecordError: a field is missing or has the wrong type or value.
        ValueError: ``detected_at`` is not an ISO-8601 timestamp.
    """
    if not isinstance(record, Mapping):
        raise GapRecordError(f"expected a JSON object, got {type(record).__name__}")
    symbol = record.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        raise GapRecordError(f"'symbol' is {symbol!r}: expected a non-empty string")
    cause = record.get("cause")
    if cause not in GapCause.__members__.values():
        expected = ", ".join(GapCause)
        raise GapRecordError(f"'cause' is {cause!r}: expected one of {expected}")
    detected_at = record.get("detected_at")
    if not isinstance(detected_at, str):
        raise GapRecordError(f"'detected_at' is {detected_at!r}: expected an ISO-8601 timestamp")
    from_ms = _required_int(record, "from_ms")
    to_ms = _required_int(record, "to_ms")
    if to_ms <= from_ms:
        raise GapRecordError(f"'to_ms' {to_ms} is not after 'from_ms' {from_ms}")
    missed = _required_int(record, "missed")
    if missed < 1:
        raise GapRecordError(f"'missed' is {missed}: expected at least 1")
    return Gap(
        symbol=symbol,
        from_ms=from_ms,
        to_ms=to_ms,
        missed=missed,
        cause=GapCause(str(cause)),
        detected_at=parse_utc_us(detected_at),
        connection_id=_optional_str(record, "connection_id"),
        instance_id=_optional_str(record, "instance_id"),
    )
