"""Faults the simulated exchange injects on request, and the grammar that names them.

A fault spec is a comma-separated list of faults (whitespace around items is ignored)::

    spec    = fault *("," fault)
    fault   = KIND ["@" TIME] ["+" TIME] ["*" COUNT] *(";" OPTION)
    TIME    = NUMBER ["ms" | "s" | "m" | "h"]        (no unit: seconds)
    OPTION  = "conn=" ID | "status=" (503 | 429) | "retry_after=" TIME | "size=" SIZE
            | "reply=" REPLY
    REPLY   = "500" | "429" | "418" | "malformed" | "truncated" | "empty" | "slow"
    SIZE    = INTEGER ["B" | "KiB" | "MiB"]

``@TIME`` is the delay before the fault fires, counted from when it is submitted (for the
command line: from start). ``+TIME`` is how long a ``stall`` or ``blackhole`` lasts (absent:
until the connection ends), or how long ``slow_start`` holds a new connection's data back
(absent: 5 s). ``*COUNT`` is how many frames a frame fault sends, or how many handshakes ``refuse``
refuses or ``slow_start`` slows. ``conn=`` aims at one connection id (``c3``); without it a fault
hits every connection open when it fires. Examples::

    drop@10s,stall@20s+15s,garbage@5s
    refuse*3;status=429;retry_after=2s
    huge@1s;size=3MiB;conn=c1
    rest_fail*2;reply=429;retry_after=3s

Kinds: ``drop`` (abort TCP, no close frame), ``close`` (close frame), ``stall`` (no data,
pings still answered), ``deaf`` (requests such as ``SUBSCRIBE`` get no reply and change
nothing, for +TIME or until the connection ends; data and pings go on), ``blackhole``
(nothing at all, pings unanswered: a dead peer),
``garbage`` (a non-JSON frame), ``bad_field`` (a wrong type or a non-numeric number),
``future_time`` (a valid event of the connection's first symbol with ``E`` ten years ahead),
``hostile_symbol`` (``"s": "../../x"``), ``unsubscribed`` (a symbol the connection did not
subscribe), ``huge`` (a frame of ``size`` bytes), ``refuse`` (HTTP 503, or 429 with
``Retry-After``, for the next COUNT handshakes), ``slow_start`` (the next COUNT connections
opened hold their data back for +TIME, then send it all, late but complete; replies to requests
are not held), ``rest_fail`` (the next COUNT REST requests fail as ``reply`` says: HTTP 500, 429
or 418 with ``Retry-After`` when ``retry_after`` is given, ``malformed`` (a 200 whose body is
not JSON), ``truncated`` (a 200 whose JSON is cut in the middle), ``empty`` (an
``exchangeInfo`` listing no contract; other endpoints answer normally) or ``slow`` (the answer
held back for +TIME, default 60 s)).

Hostile frames, each within the recorder's default 1 MiB frame limit: ``nested`` (a combined
frame whose data is 50,000 nested arrays, about 100 KB), ``deep_extra`` (a *valid* payload
with an unknown field nested 50,000 levels deep: the recorder must record it),
``array_flood`` (a top-level JSON array of 524,287 zeros, just under 1 MiB), ``wide`` (a
combined frame whose data is an object of 20,000 unknown keys) and ``bad_bytes`` (a *binary*
frame: a valid payload whose extra field holds bytes that are not UTF-8).
"""

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypedDict

from recorder.errors import ConfigError
from recorder.settings.units import parse_duration, parse_size
from recorder.simulate.countdown import Countdown

DEFAULT_HUGE_SIZE = 3 * 1024 * 1024
DEFAULT_REFUSE_STATUS = 503
DEFAULT_SLOW_START = 5.0
"""Seconds a ``slow_start`` without ``+TIME`` holds a new connection's data back."""
REFUSE_STATUSES = (503, 429)
HOSTILE_SYMBOL = "../../x"
FUTURE_TIME_LEAD_MS = 3650 * 86_400_000
"""How far ahead of the event clock a ``future_time`` event is stamped: ten years."""
UNLISTED_SYMBOL = "UNSUBSCRIBEDUSDT"
"""Used by ``unsubscribed`` when the connection subscribed every listed symbol."""


class FaultKind(enum.StrEnum):
    """What a fault does."""

    DROP = "drop"
    CLOSE = "close"
    STALL = "stall"
    BLACKHOLE = "blackhole"
    GARBAGE = "garbage"
    BAD_FIELD = "bad_field"
    FUTURE_TIME = "future_time"
    HOSTILE_SYMBOL = "hostile_symbol"
    UNSUBSCRIBED = "unsubscribed"
    HUGE = "huge"
    NESTED = "nested"
    DEEP_EXTRA = "deep_extra"
    ARRAY_FLOOD = "array_flood"
    WIDE = "wide"
    BAD_BYTES = "bad_bytes"
    REFUSE = "refuse"
    SLOW_START = "slow_start"
    REST_FAIL = "rest_fail"
    DEAF = "deaf"


class RestFailure(enum.StrEnum):
    """How a ``rest_fail`` fault answers a REST request."""

    HTTP_500 = "500"
    HTTP_429 = "429"
    HTTP_418 = "418"
    MALFORMED = "malformed"
    TRUNCATED = "truncated"
    EMPTY = "empty"
    SLOW = "slow"


TIMED_KINDS = frozenset(
    {
        FaultKind.STALL,
        FaultKind.BLACKHOLE,
        FaultKind.SLOW_START,
        FaultKind.REST_FAIL,
        FaultKind.DEAF,
    }
)
"""Kinds that last (``+TIME``)."""
HANDSHAKE_KINDS = frozenset({FaultKind.REFUSE, FaultKind.SLOW_START})
"""Kinds that act on the next handshakes (``*COUNT`` of them), not on open connections."""
REQUEST_KINDS = frozenset({FaultKind.REST_FAIL})
"""Kinds that act on the next REST requests (``*COUNT`` of them)."""
DEFAULT_SLOW_REST = 60.0
"""Seconds a ``rest_fail`` with ``reply=slow`` and no ``+TIME`` holds its answer back."""
FRAME_KINDS = frozenset(
    {
        FaultKind.GARBAGE,
        FaultKind.BAD_FIELD,
        FaultKind.FUTURE_TIME,
        FaultKind.HOSTILE_SYMBOL,
        FaultKind.UNSUBSCRIBED,
        FaultKind.HUGE,
        FaultKind.NESTED,
        FaultKind.DEEP_EXTRA,
        FaultKind.ARRAY_FLOOD,
        FaultKind.WIDE,
        FaultKind.BAD_BYTES,
    }
)
"""Kinds that send bad frames (``*COUNT`` of them)."""

HOSTILE_DATA_KINDS = frozenset(
    {FaultKind.NESTED, FaultKind.DEEP_EXTRA, FaultKind.WIDE, FaultKind.BAD_BYTES}
)
"""Frame kinds whose data part :func:`hostile_data` builds, framed as the connection wants."""
HOSTILE_DEPTH = 50_000
"""Levels of nesting in ``nested`` and ``deep_extra`` frames (msgspec gives up near 1,000)."""
FLOOD_ITEMS = 524_287
"""Items of an ``array_flood`` frame: ``[0,0,...]`` of 1 MiB - 1 byte."""
WIDE_KEYS = 20_000
"""Keys of a ``wide`` frame's object."""
INVALID_UTF8_BYTES = b"\xff\xfe\xc3("
"""Bytes of a ``bad_bytes`` frame that no UTF-8 decoder accepts."""


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault to inject.

    Attributes:
        kind: what it does.
        at: seconds after submission when it fires.
        duration: seconds a ``stall`` or ``blackhole`` lasts (``None``: until the connection
            ends), or a ``slow_start`` holds data back (``None``: :data:`DEFAULT_SLOW_START`).
        count: frames sent (frame kinds), handshakes refused (``refuse``) or connections slowed
            (``slow_start``).
        connection_id: the one connection it hits; ``None`` hits all open ones.
        status: HTTP status of a ``refuse``: 503 or 429.
        retry_after: seconds announced in ``Retry-After`` by a ``refuse`` (whole seconds, rounded
            up); ``None`` sends no header.
        size: bytes of a ``huge`` frame.
        reply: how a ``rest_fail`` answers (``None``: HTTP 500).
    """

    kind: FaultKind
    at: float = 0.0
    duration: float | None = None
    count: int = 1
    connection_id: str | None = None
    status: int = DEFAULT_REFUSE_STATUS
    retry_after: float | None = None
    size: int = DEFAULT_HUGE_SIZE
    reply: RestFailure | None = None

    def __post_init__(self) -> None:
        where = f"fault {self.kind.value}"
        if not math.isfinite(self.at) or self.at < 0:
            raise ConfigError(f"{where}: at={self.at!r}: expected seconds of 0 or more")
        if self.duration is not None:
            if self.kind not in TIMED_KINDS:
                raise ConfigError(
                    f"{where}: a duration applies only to stall, blackhole, slow_start, "
                    "rest_fail and deaf"
                )
            if not math.isfinite(self.duration) or self.duration <= 0:
                raise ConfigError(f"{where}: duration={self.duration!r}: expected seconds above 0")
        if self.count < 1:
            raise ConfigError(f"{where}: count={self.count!r}: expected 1 or more")
        if self.count != 1 and self.kind not in FRAME_KINDS | HANDSHAKE_KINDS | REQUEST_KINDS:
            raise ConfigError(
                f"{where}: a count applies only to frame faults, refuse, slow_start and rest_fail"
            )
        if self.status not in REFUSE_STATUSES:
            raise ConfigError(f"{where}: status={self.status!r}: expected 503 or 429")
        if self.retry_after is not None and (
            not math.isfinite(self.retry_after) or self.retry_after < 0
        ):
            raise ConfigError(f"{where}: retry_after={self.retry_after!r}: expected seconds >= 0")
        if self.size < 1:
            raise ConfigError(f"{where}: size={self.size!r}: expected bytes above 0")
        if self.kind in HANDSHAKE_KINDS and self.connection_id is not None:
            raise ConfigError(
                f"{where}: {self.kind.value} applies to new handshakes, not to a connection"
            )
        if self.kind in REQUEST_KINDS and self.connection_id is not None:
            raise ConfigError(
                f"{where}: {self.kind.value} applies to new requests, not to a connection"
            )
        if self.reply is not None and self.kind is not FaultKind.REST_FAIL:
            raise ConfigError(f"{where}: a reply applies only to rest_fail")

    def to_json(self) -> dict[str, object]:
        """Describe the fault as the JSON object ``POST /_sim/faults`` accepts."""
        return {
            "kind": self.kind.value,
            "at": self.at,
            "duration": self.duration,
            "count": self.count,
            "connection": self.connection_id,
            "status": self.status,
            "retry_after": self.retry_after,
            "size": self.size,
            "reply": None if self.reply is None else self.reply.value,
        }


_TIME = r"\d+(?:\.\d+)?(?:ms|s|m|h)?"
_FAULT = re.compile(
    rf"(?P<kind>[a-z_]+)(?:@(?P<at>{_TIME}))?(?:\+(?P<duration>{_TIME}))?(?:\*(?P<count>\d+))?"
    r"(?P<options>(?:;[^;]*)*)"
)


def parse_fault_spec(spec: str) -> tuple[Fault, ...]:
    """Parse a fault spec such as ``"drop@10s,stall@20s+15s,garbage@5s"``.

    See the module documentation for the grammar. An empty spec means no fault.

    Raises:
        ConfigError: naming the item that is not a valid fault and why.
    """
    faults = []
    for raw in spec.split(","):
        item = raw.strip()
        if not item and not spec.strip():
            continue
        faults.append(_parse_fault(item))
    return tuple(faults)


class _FaultFields(TypedDict, total=False):
    at: float
    duration: float | None
    count: int
    connection_id: str | None
    status: int
    retry_after: float | None
    size: int
    reply: RestFailure | None


def _parse_fault(item: str) -> Fault:
    match = _FAULT.fullmatch(item)
    if match is None:
        raise ConfigError(
            f"fault {item!r}: expected KIND[@TIME][+TIME][*COUNT][;key=value...],"
            " e.g. 'stall@20s+15s'"
        )
    try:
        kind = FaultKind(match["kind"])
    except ValueError:
        kinds = ", ".join(kind.value for kind in FaultKind)
        raise ConfigError(
            f"fault {item!r}: unknown kind {match['kind']!r}; one of {kinds}"
        ) from None
    fields: _FaultFields = {}
    if match["at"]:
        fields["at"] = parse_duration(match["at"])
    if match["duration"]:
        fields["duration"] = parse_duration(match["duration"])
    if match["count"]:
        fields["count"] = int(match["count"])
    for option in filter(None, match["options"].split(";")):
        key, separator, value = option.partition("=")
        if not separator or not value:
            raise ConfigError(f"fault {item!r}: option {option!r}: expected key=value")
        _option(fields, item, key.strip(), value.strip())
    try:
        return Fault(kind, **fields)
    except ConfigError as exc:
        raise ConfigError(f"fault {item!r}: {exc}") from None


def _option(fields: _FaultFields, item: str, key: str, value: str) -> None:
    if key == "conn":
        fields["connection_id"] = value
    elif key == "status":
        if not value.isdigit():
            raise ConfigError(f"fault {item!r}: status={value!r}: expected 503 or 429")
        fields["status"] = int(value)
    elif key == "retry_after":
        fields["retry_after"] = parse_duration(value)
    elif key == "size":
        fields["size"] = parse_size(value)
    elif key == "reply":
        fields["reply"] = _rest_failure(f"fault {item!r}: reply", value)
    else:
        raise ConfigError(
            f"fault {item!r}: unknown option {key!r}; one of conn, status, retry_after, size, reply"
        )


def _rest_failure(where: str, value: object) -> RestFailure:
    try:
        return RestFailure(str(value))
    except ValueError:
        replies = ", ".join(reply.value for reply in RestFailure)
        raise ConfigError(f"{where}={value!r}: expected one of {replies}") from None


def format_fault(fault: Fault) -> str:
    """Write a fault in spec grammar; :func:`parse_fault_spec` reads it back unchanged.

    >>> format_fault(Fault(FaultKind.STALL, at=20.0, duration=15.0))
    'stall@20s+15s'
    """
    text = fault.kind.value
    if fault.at:
        text += f"@{fault.at:g}s"
    if fault.duration is not None:
        text += f"+{fault.duration:g}s"
    if fault.count != 1:
        text += f"*{fault.count}"
    if fault.connection_id is not None:
        text += f";conn={fault.connection_id}"
    if fault.status != DEFAULT_REFUSE_STATUS:
        text += f";status={fault.status}"
    if fault.retry_after is not None:
        text += f";retry_after={fault.retry_after:g}s"
    if fault.size != DEFAULT_HUGE_SIZE:
        text += f";size={fault.size}B"
    if fault.reply is not None:
        text += f";reply={fault.reply.value}"
    return text


_JSON_KEYS = (
    "kind",
    "at",
    "duration",
    "count",
    "connection",
    "status",
    "retry_after",
    "size",
    "reply",
)


def fault_from_json(document: object) -> tuple[Fault, ...]:
    """Read the body of ``POST /_sim/faults``.

    Accepted: ``{"spec": "drop@1s,..."}``, one fault object
    ``{"kind": "stall", "at": 0, "duration": 5, "connection": "c1"}`` (times in seconds; see
    :meth:`Fault.to_json` for every key), or a list of fault objects.

    Raises:
        ConfigError: naming what is wrong with the document.
    """
    if isinstance(document, list):
        return tuple(fault for item in document for fault in fault_from_json(item))
    if not isinstance(document, Mapping):
        raise ConfigError("faults: expected an object, a list of objects, or {'spec': '...'}")
    if "spec" in document:
        spec = document["spec"]
        if not isinstance(spec, str) or len(document) != 1:
            raise ConfigError("faults: 'spec' must be the only key and hold a string")
        return parse_fault_spec(spec)
    unknown = sorted(set(document) - set(_JSON_KEYS))
    if unknown:
        raise ConfigError(f"faults: unknown keys {unknown}; expected {list(_JSON_KEYS)}")
    if "kind" not in document:
        raise ConfigError("faults: missing 'kind'")
    return (Fault(_json_kind(document["kind"]), **_json_fields(document)),)


def _json_fields(document: Mapping[str, object]) -> _FaultFields:
    fields: _FaultFields = {}
    if "at" in document:
        fields["at"] = _json_seconds("at", document["at"])
    if document.get("duration") is not None:
        fields["duration"] = _json_seconds("duration", document["duration"])
    if "count" in document:
        fields["count"] = _json_integer("count", document["count"])
    if document.get("connection") is not None:
        connection = document["connection"]
        if not isinstance(connection, str):
            raise ConfigError(f"faults: connection={connection!r}: expected a connection id")
        fields["connection_id"] = connection
    if "status" in document:
        fields["status"] = _json_integer("status", document["status"])
    if document.get("retry_after") is not None:
        fields["retry_after"] = _json_seconds("retry_after", document["retry_after"])
    if "size" in document:
        fields["size"] = _json_integer("size", document["size"])
    if document.get("reply") is not None:
        fields["reply"] = _rest_failure("faults: reply", document["reply"])
    return fields


def _json_kind(value: object) -> FaultKind:
    try:
        return FaultKind(str(value))
    except ValueError:
        kinds = ", ".join(kind.value for kind in FaultKind)
        raise ConfigError(f"faults: kind={value!r}: expected one of {kinds}") from None


def _json_number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _json_seconds(key: str, value: object) -> float:
    number = _json_number(value)
    if number is None:
        raise ConfigError(f"faults: {key}={value!r}: expected a number of seconds")
    return number


def _json_integer(key: str, value: object) -> int:
    number = _json_number(value)
    if number is None or not number.is_integer():
        raise ConfigError(f"faults: {key}={value!r}: expected an integer")
    return int(number)


@dataclass(frozen=True, slots=True)
class Refusal:
    """How to refuse one websocket handshake.

    Attributes:
        status: 503 or 429.
        retry_after: whole seconds for ``Retry-After``, or ``None`` for no header.
    """

    status: int
    retry_after: int | None


class HandshakeGate:
    """Counts down the handshakes that ``refuse`` faults still have to refuse, in order."""

    def __init__(self) -> None:
        self._refusals: Countdown[Refusal] = Countdown()

    def arm(self, fault: Fault) -> None:
        """Refuse the next ``fault.count`` handshakes (after those already armed)."""
        retry_after = None if fault.retry_after is None else math.ceil(fault.retry_after)
        self._refusals.arm(Refusal(fault.status, retry_after), fault.count)

    def admit(self) -> Refusal | None:
        """Decide one handshake: ``None`` to accept it, else how to refuse it."""
        return self._refusals.take()

    @property
    def pending(self) -> int:
        """How many handshakes will still be refused."""
        return self._refusals.pending
