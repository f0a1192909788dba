r"""Websocket frames in, typed ``24hrMiniTicker`` events or reasoned rejections out (sans-IO).

A frame takes one of these forms; all decode the same way:

* combined, as served under ``/market/stream?streams=...`` (the default source)::

    {"stream":"btcusdt@miniTicker","data":{"e":"24hrMiniTicker","E":1654791723970,
     "s":"BTCUSDT","c":"30180.00","o":"30463.50","h":"30691.90","l":"29900.00",
     "v":"315252.128","q":"9537613226.33"}}

* raw, the payload alone: ``{"e":"24hrMiniTicker","E":1654791723970,"s":"BTCUSDT",...}``;
* the all-market array ``[{...},{...}]``, raw or combined as
  ``{"stream":"!miniTicker@arr","data":[...]}``, only with ``all_market=True``: an item of a
  valid contract not in ``subscribed`` is skipped and counted (:attr:`Decoded.not_recorded`),
  the good items decode, and the bad ones make *one* rejection of the whole frame (its
  ``raw`` the frame, cut to size as any; its reason the first bad item's and how many were
  bad: ``not_decimal:c: ... (3 of 540 items rejected)``; see
  :mod:`recorder.ingest.market_array`). Otherwise an
  array frame is one rejection, found without reading its items: a megabyte of ``[0,0,...]``
  costs about a millisecond (mostly the SHA-256 the quarantine keeps of it) and one record,
  never half a million;
* a reply to a method call (``{"result":null,"id":1}``,
  ``{"error":{"code":2,"msg":"Invalid request"},"id":3}``): neither an event nor a rejection,
  returned as :class:`ControlReply`.

Each payload is checked by :func:`recorder.ingest.payload.check_payload` (which also says what
extra fields it may carry). Nothing that arrives is trusted: everything wrong with a frame
becomes a :class:`~recorder.model.Rejection` whose ``reason`` starts with a code
(:mod:`recorder.ingest.rejections` lists them and cuts ``raw`` to size). Decimal strings are
kept as received once :func:`~recorder.ingest.decimals.is_exact_decimal` has checked that they
fit the dataset's ``decimal128(38, 18)`` exactly.

Nothing raises, whatever the bytes: a frame nested too deep for msgspec (which recurses per
level) is decoded again from a copy cut by :func:`~recorder.ingest.nesting.cut_deep_nesting`,
so a valid payload with a deep unknown field is still an event and anything else is one
``too_deep`` rejection.

Two paths, one verdict. The hot path (:func:`~recorder.ingest.screen.screen_frame`) is one typed
msgspec decode and the checks that vouch for a frame's payloads, all but their decimals, which
the caller judges for a whole batch at once (:func:`~recorder.ingest.decimals.inexact_rows`);
:func:`decode_frame` is that for one frame. Anything the hot path cannot vouch for (a raw
payload, a control reply, any rejection) is decoded again by :func:`decode_slowly`, which reads
each array item on its own and is the only path that makes rejections, so the two cannot
disagree about a reason (``tests/unit/ingest/test_hot_path.py`` holds them to it).
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

import msgspec

from recorder.ingest.decimals import inexact_rows
from recorder.ingest.market_array import items_reason, read_items
from recorder.ingest.nesting import MAX_NESTING, cut_deep_nesting
from recorder.ingest.payload import (
    EVENT_TYPE,
    PayloadColumns,
    PayloadWire,
    check_payload,
    to_event,
)
from recorder.ingest.rejections import build_rejection, quote, schema_reason
from recorder.ingest.screen import DEFAULT_MAX_FRAME_BYTES, oversize, screen_frame
from recorder.model import MiniTicker, Rejection
from recorder.symbols import ALL_MARKET_STREAM

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
        rejections: what must go to quarantine: at most one, whatever the frame holds.
        control: the method reply, when the frame was one.
        not_recorded: valid items of an all-market array whose contract is not in
            ``subscribed``: skipped, legitimate data of contracts not recorded.
    """

    events: tuple[MiniTicker, ...] = ()
    rejections: tuple[Rejection, ...] = ()
    control: ControlReply | None = None
    not_recorded: int = 0


# ---------------------------------------------------------------------------------------------
# Wire shapes


class _ControlErrorWire(msgspec.Struct, frozen=True, gc=False):
    code: int
    msg: str


class _ControlWire(msgspec.Struct, frozen=True):
    id: int | str | None = None
    result: Any = None
    error: _ControlErrorWire | None = None


_PAYLOAD: Final = msgspec.json.Decoder(PayloadWire)
_SHAPE_ALL_MARKET: Final = msgspec.json.Decoder(dict[str, msgspec.Raw] | list[msgspec.Raw])
# An object only: an array fails at its first byte, before msgspec reads any item.
_SHAPE: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])
_TICKER_MARK: Final = EVENT_TYPE.encode()
_STRING: Final = msgspec.json.Decoder(str)
_CONTROL: Final = msgspec.json.Decoder(_ControlWire)


# ---------------------------------------------------------------------------------------------
# Decoding


def decode_frame(
    frame: str | bytes,
    *,
    receive_time: int,
    subscribed: frozenset[str] | None,
    connection_id: str | None = None,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    all_market: bool = False,
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
            are wanted, or ``None`` to accept every valid symbol. Another symbol's payload is
            an ``unsubscribed_symbol`` rejection, an all-market array item of one is skipped.
        connection_id: the connection that delivered the frame, copied into rejections.
        max_frame_bytes: frames longer than this many UTF-8 bytes are rejected unparsed.
        all_market: read array frames item by item (the all-market ``!miniTicker@arr``
            stream), skipping the items of symbols not subscribed; when off, an array frame is
            one rejection and its items are never read.

    Returns:
        The accepted events, the rejection and the control reply found in the frame. Never
        raises for bad input, at any size or depth: everything wrong with a frame is one
        rejection.
    """
    screened = screen_frame(
        frame, subscribed=subscribed, max_frame_bytes=max_frame_bytes, all_market=all_market
    )
    if screened is not None:
        items, recorded = (
            (PayloadColumns([screened]), [screened])
            if isinstance(screened, PayloadWire)
            else screened
        )
        if not inexact_rows(items.decimals):
            events = tuple(to_event(payload, receive_time) for payload in recorded)
            return Decoded(events=events, not_recorded=items.rows - len(recorded))
    return decode_slowly(
        frame,
        receive_time=receive_time,
        subscribed=subscribed,
        connection_id=connection_id,
        max_frame_bytes=max_frame_bytes,
        all_market=all_market,
    )


def decode_slowly(
    frame: str | bytes,
    *,
    receive_time: int,
    subscribed: frozenset[str] | None,
    connection_id: str | None = None,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    all_market: bool = False,
) -> Decoded:
    """Decode a frame item by item, with a reason for everything wrong: the reference path.

    :func:`decode_frame` without the hot path; the arguments are the same. Every rejection
    comes from here, so the two paths cannot disagree about a reason.
    """
    size = oversize(frame, max_frame_bytes)
    if size is not None:
        reason = f"too_large: {size} bytes exceeds the {max_frame_bytes}-byte limit"
        return Decoded(rejections=(build_rejection(frame, reason, receive_time, connection_id),))
    if isinstance(frame, bytes) and not frame.isascii():
        # msgspec does not check the UTF-8 of fields it skips, so check it here.
        try:
            frame.decode("utf-8")
        except UnicodeDecodeError as exc:
            reason = f"not_utf8: {exc}"
            return Decoded(
                rejections=(build_rejection(frame, reason, receive_time, connection_id),)
            )
    try:
        return _decode(frame, receive_time, subscribed, connection_id, all_market)
    except RecursionError:
        decode = partial(
            _decode,
            receive_time=receive_time,
            subscribed=subscribed,
            connection_id=connection_id,
            all_market=all_market,
        )
        return _decode_deep(frame, decode, receive_time, connection_id)


def decode_failure(
    frame: str | bytes, error: Exception, *, receive_time: int, connection_id: str | None
) -> Decoded:
    """Quarantine a frame whose decoding raised: the last line, for a bug never seen yet.

    Args:
        frame: the frame as received.
        error: what :func:`decode_frame` raised.
        receive_time: see :func:`decode_frame`.
        connection_id: see :func:`decode_frame`.
    """
    reason = f"decode_failed: {type(error).__name__}: {quote(str(error))}"
    return Decoded(rejections=(build_rejection(frame, reason, receive_time, connection_id),))


def _decode(
    frame: str | bytes,
    receive_time: int,
    subscribed: frozenset[str] | None,
    connection_id: str | None,
    all_market: bool,
) -> Decoded:
    """Decode a frame of an allowed size and valid UTF-8; msgspec may raise RecursionError."""
    return _SlowPath(frame, receive_time, subscribed, connection_id, all_market).decode()


def _decode_deep(
    frame: str | bytes,
    decode: Callable[[str | bytes], Decoded],
    receive_time: int,
    connection_id: str | None,
) -> Decoded:
    """Decode a frame too deep for msgspec from a copy with its deep containers emptied.

    Args:
        frame: the frame as received.
        decode: :func:`_decode` with the frame's other arguments bound.
        receive_time: see :func:`decode_frame`.
        connection_id: see :func:`decode_frame`.
    """
    # Without the event type anywhere in it, no event can come of the frame: spare the scan.
    if isinstance(frame, bytes):
        shallow: str | bytes | None = cut_deep_nesting(frame) if _TICKER_MARK in frame else None
    else:
        shallow = cut_deep_nesting(frame) if EVENT_TYPE in frame else None
    depth = f"nested deeper than {MAX_NESTING} levels"
    too_deep = Decoded(
        rejections=(build_rejection(frame, f"too_deep: {depth}", receive_time, connection_id),)
    )
    if shallow is None:
        return too_deep
    try:
        decoded = decode(shallow)
    except RecursionError:
        return too_deep  # not at MAX_NESTING levels; the promise is never to raise all the same
    if not decoded.rejections:
        return decoded
    # The quarantine keeps the frame as received, never the cut copy: one record for it all.
    reason = f"{decoded.rejections[0].reason} (read with what is {depth} cut)"
    rejection = build_rejection(frame, reason, receive_time, connection_id)
    return Decoded(decoded.events, (rejection,), decoded.control, decoded.not_recorded)


class _SlowPath:
    """Decode a frame the fast path did not accept, item by item, keeping raw texts."""

    __slots__ = (
        "all_market",
        "connection_id",
        "events",
        "frame",
        "not_recorded",
        "receive_time",
        "rejections",
        "shape",
        "subscribed",
    )

    def __init__(
        self,
        frame: str | bytes,
        receive_time: int,
        subscribed: frozenset[str] | None,
        connection_id: str | None,
        all_market: bool,
    ) -> None:
        self.frame = frame
        self.all_market = all_market
        self.shape = _SHAPE_ALL_MARKET if all_market else _SHAPE
        self.receive_time = receive_time
        self.subscribed = subscribed
        self.connection_id = connection_id
        self.events: list[MiniTicker] = []
        self.rejections: list[Rejection] = []
        self.not_recorded = 0

    def decode(self) -> Decoded:
        """Return what the frame holds, with a reason for everything rejected."""
        frame = self.frame
        try:
            shape = self.shape.decode(frame)
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
        return Decoded(tuple(self.events), tuple(self.rejections), None, self.not_recorded)

    def _only(self, raw: str | bytes, reason: str) -> Decoded:
        return Decoded(
            rejections=(build_rejection(raw, reason, self.receive_time, self.connection_id),)
        )

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
            shape = self.shape.decode(data)
        except msgspec.ValidationError as exc:
            if bytes(memoryview(data)[:1]) == b"[":
                shape = []  # outside all-market mode, an array whose items are not read
            else:
                self._add_rejection(frame, f"not_object: data: {exc}")
                return
        if isinstance(shape, dict):
            self._payload(data, stream, raw=frame)
        elif stream == ALL_MARKET_STREAM and self.all_market:
            self._items(shape)
        else:
            reason = f"stream_mismatch: stream {quote(stream)} carries an array"
            self._add_rejection(frame, reason)

    def _items(self, items: list[msgspec.Raw]) -> None:
        # One bad ticker must not drag its neighbours into the quarantine, nor make a record
        # of its own: a hostile array of half a million items is one record, the frame.
        read = read_items(items, self.subscribed, self.receive_time)
        self.events.extend(read.events)
        self.not_recorded += read.not_recorded
        reason = items_reason(read, len(items))
        if reason is not None:
            self._add_rejection(self.frame, reason)

    def _check(
        self,
        payload: str | bytes | msgspec.Raw,
        stream: str | None,
        subscribed: frozenset[str] | None,
    ) -> MiniTicker | str:
        """The event of one payload, or the reason to reject it."""
        try:
            wire = _PAYLOAD.decode(payload)
        except msgspec.ValidationError as exc:
            return schema_reason(exc)
        return check_payload(wire, stream, subscribed, self.receive_time)

    def _payload(
        self,
        payload: str | bytes | msgspec.Raw,
        stream: str | None,
        raw: str | bytes | None = None,
    ) -> None:
        checked = self._check(payload, stream, self.subscribed)
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
            return self._only(self.frame, schema_reason(exc))
        error = reply.error
        return Decoded(
            control=ControlReply(
                id=reply.id,
                result=reply.result,
                error=None if error is None else ControlError(code=error.code, msg=error.msg),
            )
        )

    def _add_rejection(self, raw: str | bytes, reason: str) -> None:
        self.rejections.append(build_rejection(raw, reason, self.receive_time, self.connection_id))
