r"""Websocket frames in, typed ``24hrMiniTicker`` events or reasoned rejections out (sans-IO).

A frame takes one of these forms; all decode the same way:

* combined, as served under ``/market/stream?streams=...`` (the default source)::

    {"stream":"btcusdt@miniTicker","data":{"e":"24hrMiniTicker","E":1654791723970,
     "s":"BTCUSDT","c":"30180.00","o":"30463.50","h":"30691.90","l":"29900.00",
     "v":"315252.128","q":"9537613226.33"}}

* raw, the payload alone: ``{"e":"24hrMiniTicker","E":1654791723970,"s":"BTCUSDT",...}``;
* the all-market array ``[{...},{...}]``, raw or combined as
  ``{"stream":"!miniTicker@arr","data":[...]}``: each bad item becomes one rejection (whose
  ``raw`` is that item's text, not the whole array) and the good items still decode;
* a reply to a method call (``{"result":null,"id":1}``,
  ``{"error":{"code":2,"msg":"Invalid request"},"id":3}``): neither an event nor a rejection,
  returned as :class:`ControlReply`.

A payload may also carry ``"ps"`` (pair) and ``"st"`` (contract type, 1 = USDⓈ-M,
2 = COIN-M, as an integer or a digit string); any other extra field is ignored.

Nothing that arrives is trusted. A rejection's ``raw`` is the offending text, cut to
:data:`MAX_RAW_BYTES` (the reason then says so, with the original size). Its ``reason``
starts with a short code that groups well in metrics (:func:`reason_code`), followed by
``": "`` and a human detail:

=========================  =================================================================
code                       meaning
=========================  =================================================================
``too_large``              the frame exceeds ``max_frame_bytes``; it is not parsed
``not_utf8``               the frame is not valid UTF-8
``not_json``               the frame is not one JSON document
``not_object``             the frame, its ``data`` or an array item is not a JSON object
``missing_field:<f>``      required field ``<f>`` is absent
``wrong_type:<f>``         field ``<f>`` has the wrong JSON type (a number where Binance sends
                           a string, ``E`` as a string, ``st`` out of range...)
``not_decimal:<f>``        field ``<f>`` is a string but not ``digits[.digits]``
``inexact_decimal:<f>``    field ``<f>`` does not fit ``decimal128(38, 18)`` exactly
``bad_event_time``         ``E`` is outside [2017-01-01, 2100-01-01)
``wrong_event_type``       ``e`` is not ``"24hrMiniTicker"``
``unsafe_symbol``          ``s`` fails :func:`recorder.symbols.is_valid_symbol`
``unsubscribed_symbol``    ``s`` is not one of the subscribed symbols
``stream_mismatch``        the combined frame's stream name does not belong to the payload
=========================  =================================================================

Decimal strings are kept as received: they become exact Arrow ``decimal128(38, 18)`` values
later, so a value that would need rounding is rejected here (``inexact_decimal``) rather than
stored wrong. Leading integer zeros and trailing fractional zeros do not count against the 20
integer and 18 fractional digits, because dropping them changes nothing; but the literal, from
its first non-zero digit to its last digit, must stay within 38 digits, because Arrow's
string-to-decimal cast parses it as written and overflows beyond that. Every accepted string
therefore casts exactly with ``pyarrow.array(texts).cast(pyarrow.decimal128(38, 18))``.

Speed: a valid combined frame costs one typed msgspec decode and a handful of comparisons and
regular-expression matches. Anything unusual (a raw payload, a control reply, any rejection)
is decoded again on a slower path that keeps each array item's original text for the
quarantine; only that path produces rejections, so the two paths cannot disagree about a
reason.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from recorder.model import (
    DECIMAL_INTEGER_DIGITS,
    DECIMAL_PRECISION,
    DECIMAL_SCALE,
    MiniTicker,
    Rejection,
)
from recorder.symbols import ALL_MARKET_STREAM, is_valid_symbol, stream_name

EVENT_TYPE: Final = "24hrMiniTicker"
"""The only event type (``e``) this decoder accepts."""

MIN_EVENT_TIME_MS: Final = 1_483_228_800_000
"""2017-01-01T00:00:00Z: ``E`` before this is not a real Binance futures event."""
MAX_EVENT_TIME_MS: Final = 4_102_444_800_000
"""2100-01-01T00:00:00Z (exclusive): ``E`` at or after this is garbage, not a future."""

MAX_CONTRACT_TYPE: Final = 127
"""Largest ``st`` accepted; fits every Arrow integer type the dataset schema may choose."""

DEFAULT_MAX_FRAME_BYTES: Final = 1 << 20
"""Frames larger than this (in UTF-8 bytes) are rejected without being parsed."""
MAX_RAW_BYTES: Final = 64 * 1024
"""A rejection keeps at most this many bytes of the offending text."""

_DETAIL_CHARS: Final = 80
"""Values quoted in a reason's detail are cut to this many characters."""

# Possessive quantifiers keep matching linear even for a megabyte of zeros. Leading integer
# zeros and trailing fractional zeros are free; what remains must fit the decimal type.
_EXACT_DECIMAL: Final = re.compile(
    rf"""
    (?: 0*+ [1-9] [0-9]{{0,{DECIMAL_INTEGER_DIGITS - 1}}}+  # up to 20 significant digits
      | 0++ )                                               # or a zero integer part
    (?: \. (?=[0-9])                                        # a fraction has a digit
        (?: [0-9]{{0,{DECIMAL_SCALE - 1}}} [1-9] )?         # up to 18 significant digits
        0*+ )?
    """,
    re.VERBOSE,
)
# [0-9], never \d: str patterns match every script's digits with \d, and "١٢٣" is no price.
_PLAIN_DECIMAL: Final = re.compile(r"[0-9]++(?:\.[0-9]++)?")
_ASCII_DIGITS: Final = re.compile(r"[0-9]{1,9}")

_MISSING_FIELD: Final = re.compile(r"Object missing required field `([^`]*)`")
_AT_FIELD: Final = re.compile(r" - at `\$\.(\w+)")


# ---------------------------------------------------------------------------------------------
# Public values


@dataclass(frozen=True, slots=True)
class ControlError:
    """The ``error`` member of a method reply.

    Attributes:
        code: the exchange's error code.
        msg: the exchange's explanation.
    """

    code: int
    msg: str


@dataclass(frozen=True, slots=True)
class ControlReply:
    """A reply to a SUBSCRIBE, UNSUBSCRIBE or LIST_SUBSCRIPTIONS call.

    Attributes:
        id: the ``id`` of the call it answers, as the exchange echoed it.
        result: the ``result`` member as decoded JSON (``None`` for a successful SUBSCRIBE,
            a list of stream names for LIST_SUBSCRIPTIONS).
        error: the ``error`` member when the call failed.
    """

    id: int | str | None
    result: Any
    error: ControlError | None


@dataclass(frozen=True, slots=True)
class Decoded:
    """Everything one frame contained.

    Attributes:
        events: the accepted events, in frame order.
        rejections: what must go to quarantine; one per bad array item, else at most one.
        control: the method reply, when the frame was one.
    """

    events: tuple[MiniTicker, ...] = ()
    rejections: tuple[Rejection, ...] = ()
    control: ControlReply | None = None


def is_exact_decimal(text: str) -> bool:
    """Tell whether ``text`` is ``digits[.digits]`` and fits ``decimal128(38, 18)`` exactly.

    Leading and trailing zeros are free, as long as the literal from its first non-zero
    digit to its end has at most :data:`DECIMAL_PRECISION` digits (what Arrow's cast from
    string can parse).

    >>> is_exact_decimal("30180.00"), is_exact_decimal("0.1000000000000000000000")
    (True, True)
    >>> is_exact_decimal("0.1234567890123456789"), is_exact_decimal("1e5")
    (False, False)
    """
    if _EXACT_DECIMAL.fullmatch(text) is None:
        return False
    # A literal of at most 38 characters cannot exceed 38 written digits: skip the count.
    return len(text) <= DECIMAL_PRECISION or _written_digits(text) <= DECIMAL_PRECISION


def _written_digits(text: str) -> int:
    """Count the digits of a decimal literal from its first non-zero digit to its end."""
    return len(text.replace(".", "", 1).lstrip("0"))


# ---------------------------------------------------------------------------------------------
# Wire shapes


class _PayloadWire(msgspec.Struct, frozen=True, gc=False):
    """A ``24hrMiniTicker`` payload as sent; msgspec checks the JSON types."""

    event_type: str = msgspec.field(name="e")
    event_time: int = msgspec.field(name="E")
    symbol: str = msgspec.field(name="s")
    close: str = msgspec.field(name="c")
    open: str = msgspec.field(name="o")
    high: str = msgspec.field(name="h")
    low: str = msgspec.field(name="l")
    volume: str = msgspec.field(name="v")
    quote_volume: str = msgspec.field(name="q")
    pair: str | None = msgspec.field(default=None, name="ps")
    contract_type: int | str | None = msgspec.field(default=None, name="st")


class _CombinedWire(msgspec.Struct, frozen=True, gc=False):
    """A combined-stream frame with a typed payload: the fast path."""

    stream: str
    data: _PayloadWire | list[_PayloadWire]


class _ControlErrorWire(msgspec.Struct, frozen=True, gc=False):
    code: int
    msg: str


class _ControlWire(msgspec.Struct, frozen=True):
    id: int | str | None = None
    result: Any = None
    error: _ControlErrorWire | None = None


_FAST: Final = msgspec.json.Decoder(_CombinedWire | list[_PayloadWire])
_PAYLOAD: Final = msgspec.json.Decoder(_PayloadWire)
_SHAPE: Final = msgspec.json.Decoder(dict[str, msgspec.Raw] | list[msgspec.Raw])
_STRING: Final = msgspec.json.Decoder(str)
_CONTROL: Final = msgspec.json.Decoder(_ControlWire)

# The JSON keys of the decimal fields, in the order _check passes their values.
_DECIMAL_FIELDS: Final = ("c", "o", "h", "l", "v", "q")


# ---------------------------------------------------------------------------------------------
# Decoding


def decode_frame(
    frame: str | bytes,
    *,
    receive_time: int,
    subscribed: frozenset[str] | None,
    connection_id: str | None = None,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
) -> Decoded:
    """Decode one websocket frame into events, rejections or a control reply.

    >>> frame = (
    ...     '{"stream":"btcusdt@miniTicker","data":{"e":"24hrMiniTicker","E":1654791723970,'
    ...     '"s":"BTCUSDT","c":"30180.00","o":"30463.50","h":"30691.90","l":"29900.00",'
    ...     '"v":"315252.128","q":"9537613226.33"}}'
    ... )
    >>> decoded = decode_frame(frame, receive_time=1654791724000123, subscribed=None)
    >>> decoded.events[0].close, decoded.events[0].event_time, decoded.rejections
    ('30180.00', 1654791723970, ())
    >>> bad = decode_frame(frame, receive_time=0, subscribed=frozenset({"ETHUSDT"}))
    >>> bad.rejections[0].reason.partition(": ")[0]
    'unsubscribed_symbol'

    Args:
        frame: the frame as received; text frames as ``str``, binary frames as ``bytes``.
        receive_time: local wall clock at arrival, microseconds since the epoch; copied into
            every event and rejection.
        subscribed: the symbols (as in the payload's ``s``, e.g. ``"BTCUSDT"``) whose events
            are wanted, or ``None`` to accept every valid symbol (all-market recording).
        connection_id: the connection that delivered the frame, copied into rejections.
        max_frame_bytes: frames longer than this many UTF-8 bytes are rejected unparsed.

    Returns:
        The accepted events, the rejections and the control reply found in the frame. Never
        raises for bad input: everything wrong with a frame is a rejection.
    """
    size = _oversize(frame, max_frame_bytes)
    if size is not None:
        reason = f"too_large: {size} bytes exceeds the {max_frame_bytes}-byte limit"
        return Decoded(rejections=(_reject(frame, reason, receive_time, connection_id),))
    if isinstance(frame, bytes) and not frame.isascii():
        # msgspec does not check the UTF-8 of fields it skips, so check it here.
        try:
            frame.decode("utf-8")
        except UnicodeDecodeError as exc:
            reason = f"not_utf8: {exc}"
            return Decoded(rejections=(_reject(frame, reason, receive_time, connection_id),))
    try:
        wire = _FAST.decode(frame)
    except (msgspec.DecodeError, UnicodeError):
        pass  # the slow path below says exactly what is wrong
    else:
        events = _accept_all(wire, receive_time, subscribed)
        if events is not None:
            return Decoded(events=events)
    return _SlowPath(frame, receive_time, subscribed, connection_id).decode()


class FrameDecoder:
    """:func:`decode_frame` with the per-connection settings bound once.

    Args:
        subscribed: see :func:`decode_frame`.
        max_frame_bytes: see :func:`decode_frame`.
    """

    __slots__ = ("max_frame_bytes", "subscribed")

    def __init__(
        self,
        subscribed: frozenset[str] | None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        self.subscribed = subscribed
        self.max_frame_bytes = max_frame_bytes

    def decode(
        self, frame: str | bytes, *, receive_time: int, connection_id: str | None = None
    ) -> Decoded:
        """Decode one frame; see :func:`decode_frame`."""
        return decode_frame(
            frame,
            receive_time=receive_time,
            subscribed=self.subscribed,
            connection_id=connection_id,
            max_frame_bytes=self.max_frame_bytes,
        )


def _oversize(frame: str | bytes, limit: int) -> int | None:
    """Return the frame's UTF-8 size when it exceeds ``limit``, else ``None``."""
    if isinstance(frame, str) and not frame.isascii():
        if len(frame) * 4 <= limit:  # UTF-8 spends at most 4 bytes on a code point
            return None
        size = len(frame.encode("utf-8", "surrogatepass"))
    else:
        size = len(frame)
    return size if size > limit else None


def _accept_all(
    wire: _CombinedWire | list[_PayloadWire], receive_time: int, subscribed: frozenset[str] | None
) -> tuple[MiniTicker, ...] | None:
    """Return the events of a schema-valid frame, or ``None`` if anything must be rejected."""
    if isinstance(wire, list):
        payloads, stream = wire, None
    elif isinstance(wire.data, list):
        if wire.stream != ALL_MARKET_STREAM:
            return None
        payloads, stream = wire.data, None
    else:
        payloads, stream = [wire.data], wire.stream
    events = []
    for payload in payloads:
        checked = _check(payload, stream, subscribed, receive_time)
        if isinstance(checked, str):
            return None
        events.append(checked)
    return tuple(events)


def _check(
    payload: _PayloadWire,
    stream: str | None,
    subscribed: frozenset[str] | None,
    receive_time: int,
) -> MiniTicker | str:
    """Return the event of a schema-valid payload, or the reason to reject it.

    Args:
        payload: the typed payload.
        stream: the combined frame's stream name when it must name this payload's symbol.
        subscribed: see :func:`decode_frame`.
        receive_time: see :func:`decode_frame`.
    """
    problem = _identity_problem(payload, stream, subscribed)
    if problem is not None:
        return problem
    decimals = (
        payload.close,
        payload.open,
        payload.high,
        payload.low,
        payload.volume,
        payload.quote_volume,
    )
    if not all(map(is_exact_decimal, decimals)):
        return _decimal_reason(decimals)
    contract_type = payload.contract_type
    if contract_type is not None:
        if isinstance(contract_type, str):
            if _ASCII_DIGITS.fullmatch(contract_type) is None:
                return f"wrong_type:st: {_quote(contract_type)} is not an integer"
            contract_type = int(contract_type)
        if not 0 <= contract_type <= MAX_CONTRACT_TYPE:
            return f"wrong_type:st: {contract_type} is outside 0..{MAX_CONTRACT_TYPE}"
    return MiniTicker(
        symbol=payload.symbol,
        event_time=payload.event_time,
        close=payload.close,
        open=payload.open,
        high=payload.high,
        low=payload.low,
        volume=payload.volume,
        quote_volume=payload.quote_volume,
        receive_time=receive_time,
        pair=payload.pair,
        contract_type=contract_type,
    )


def _identity_problem(
    payload: _PayloadWire, stream: str | None, subscribed: frozenset[str] | None
) -> str | None:
    """Return why the payload is not a wanted miniTicker of a safe symbol, if it is not."""
    if payload.event_type != EVENT_TYPE:
        return f"wrong_event_type: {_quote(payload.event_type)} is not {EVENT_TYPE!r}"
    if not MIN_EVENT_TIME_MS <= payload.event_time < MAX_EVENT_TIME_MS:
        return _bad_event_time(payload.event_time)
    symbol = payload.symbol
    if not is_valid_symbol(symbol):
        return f"unsafe_symbol: {_quote(symbol)}"
    if stream is not None and stream != stream_name(symbol):
        return f"stream_mismatch: stream {_quote(stream)} carries symbol {symbol!r}"
    if subscribed is not None and symbol not in subscribed:
        return f"unsubscribed_symbol: {symbol!r}"
    return None


def _bad_event_time(event_time: int) -> str:
    # A thousand-digit E would make a useless detail; say which side it fell off instead.
    shown = str(event_time) if abs(event_time) < 10**20 else ("huge" if event_time > 0 else "-huge")
    return f"bad_event_time: E={shown} is outside [2017-01-01, 2100-01-01)"


def _decimal_reason(decimals: Iterable[str]) -> str:
    """Say which of the payload's decimal strings fails, and how."""
    for field, text in zip(_DECIMAL_FIELDS, decimals, strict=True):
        if is_exact_decimal(text):
            continue
        if _PLAIN_DECIMAL.fullmatch(text) is None:
            return f"not_decimal:{field}: {_quote(text)} is not digits[.digits]"
        whole, _, fraction = text.partition(".")
        return (
            f"inexact_decimal:{field}: {_quote(text)} has {len(whole.lstrip('0'))} integer, "
            f"{len(fraction.rstrip('0'))} fractional and {_written_digits(text)} written "
            f"significant digits; decimal128({DECIMAL_PRECISION}, {DECIMAL_SCALE}) takes at "
            f"most {DECIMAL_INTEGER_DIGITS}, {DECIMAL_SCALE} and {DECIMAL_PRECISION}"
        )
    msg = "no decimal field fails its check"
    raise AssertionError(msg)


def _schema_reason(error: msgspec.ValidationError) -> str:
    """Turn msgspec's verdict on a payload, wrapper or reply into a reason."""
    message = str(error)
    missing = _MISSING_FIELD.match(message)
    if missing is not None:
        return f"missing_field:{missing[1]}: {message}"
    field = _AT_FIELD.search(message)
    if field is None:
        # The only error msgspec reports at the document's root is its JSON type.
        return f"not_object: {message}"
    if field[1] == "E" and "out of range" in message:
        return f"bad_event_time: {message}"
    return f"wrong_type:{field[1]}: {message}"


def _quote(value: str) -> str:
    """Return ``repr(value)``, cut short enough for a log line."""
    if len(value) > _DETAIL_CHARS:
        return f"{value[:_DETAIL_CHARS]!r}... ({len(value)} characters)"
    return repr(value)


def _reject(
    raw: str | bytes, reason: str, receive_time: int, connection_id: str | None
) -> Rejection:
    """Build a rejection keeping at most :data:`MAX_RAW_BYTES` of the offending text."""
    # backslashreplace keeps what is not UTF-8 visible and exact (\xff, a lone \udcff) for
    # whoever reads the quarantine, where U+FFFD would hide it.
    data = raw.encode("utf-8", "backslashreplace") if isinstance(raw, str) else raw
    if len(data) > MAX_RAW_BYTES:
        reason = f"{reason} (raw truncated to {MAX_RAW_BYTES} of {len(data)} bytes)"
        end = MAX_RAW_BYTES
        while end > MAX_RAW_BYTES - 3 and data[end] & 0xC0 == 0x80:
            end -= 1  # do not cut a multi-byte character in half
        data = data[:end]
    text = data.decode("utf-8", "backslashreplace")
    return Rejection(
        raw=text, reason=reason, receive_time=receive_time, connection_id=connection_id
    )


class _SlowPath:
    """Decode a frame the fast path did not accept, item by item, keeping raw texts."""

    __slots__ = ("connection_id", "events", "frame", "receive_time", "rejections", "subscribed")

    def __init__(
        self,
        frame: str | bytes,
        receive_time: int,
        subscribed: frozenset[str] | None,
        connection_id: str | None,
    ) -> None:
        self.frame = frame
        self.receive_time = receive_time
        self.subscribed = subscribed
        self.connection_id = connection_id
        self.events: list[MiniTicker] = []
        self.rejections: list[Rejection] = []

    def decode(self) -> Decoded:
        """Return what the frame holds, with a reason for everything rejected."""
        frame = self.frame
        try:
            shape = _SHAPE.decode(frame)
        except msgspec.ValidationError as exc:
            return self._only(frame, f"not_object: {exc}")
        except msgspec.DecodeError as exc:
            return self._only(frame, f"not_json: {exc}")
        except UnicodeError as exc:
            # Only a str with lone surrogates gets here: no UTF-8 encoding exists for it.
            return self._only(frame, f"not_utf8: {exc}")
        if isinstance(shape, list):
            self._items(shape)
        elif "stream" in shape:
            self._combined(shape)
        elif "id" in shape and ("result" in shape or "error" in shape):
            return self._control()
        else:
            self._payload(frame, None)
        return Decoded(tuple(self.events), tuple(self.rejections))

    def _only(self, raw: str | bytes, reason: str) -> Decoded:
        return Decoded(rejections=(_reject(raw, reason, self.receive_time, self.connection_id),))

    def _combined(self, wrapper: dict[str, msgspec.Raw]) -> None:
        frame = self.frame
        try:
            stream = _STRING.decode(wrapper["stream"])
        except msgspec.ValidationError as exc:
            self._add_rejection(frame, f"wrong_type:stream: {exc}")
            return
        data = wrapper.get("data")
        if data is None:
            self._add_rejection(frame, "missing_field:data: a combined frame needs data")
            return
        try:
            shape = _SHAPE.decode(data)
        except msgspec.ValidationError as exc:
            self._add_rejection(frame, f"not_object: data: {exc}")
            return
        if isinstance(shape, dict):
            self._payload(data, stream, raw=frame)
        elif stream == ALL_MARKET_STREAM:
            self._items(shape)
        else:
            reason = f"stream_mismatch: stream {_quote(stream)} carries an array"
            self._add_rejection(frame, reason)

    def _items(self, items: list[msgspec.Raw]) -> None:
        for item in items:
            # Each item is its own raw text: one bad ticker must not drag its neighbours, or
            # the whole second's array, into the quarantine.
            self._payload(item, None)

    def _payload(
        self,
        payload: str | bytes | msgspec.Raw,
        stream: str | None,
        raw: str | bytes | None = None,
    ) -> None:
        try:
            wire = _PAYLOAD.decode(payload)
        except msgspec.ValidationError as exc:
            checked: MiniTicker | str = _schema_reason(exc)
        else:
            checked = _check(wire, stream, self.subscribed, self.receive_time)
        if isinstance(checked, MiniTicker):
            self.events.append(checked)
        elif raw is not None:
            self._add_rejection(raw, checked)
        else:
            self._add_rejection(payload if isinstance(payload, str) else bytes(payload), checked)

    def _control(self) -> Decoded:
        try:
            reply = _CONTROL.decode(self.frame)
        except msgspec.ValidationError as exc:
            return self._only(self.frame, _schema_reason(exc))
        error = reply.error
        return Decoded(
            control=ControlReply(
                id=reply.id,
                result=reply.result,
                error=None if error is None else ControlError(code=error.code, msg=error.msg),
            )
        )

    def _add_rejection(self, raw: str | bytes, reason: str) -> None:
        self.rejections.append(_reject(raw, reason, self.receive_time, self.connection_id))
