"""One ``24hrMiniTicker`` payload: its wire shape, and the checks that make it an event or a reason.

A payload is the JSON object Binance sends per symbol, alone or inside a combined frame or an
all-market array (:mod:`recorder.ingest.decode` unwraps those)::

    {"e":"24hrMiniTicker","E":1654791723970,"s":"BTCUSDT","c":"30180.00","o":"30463.50",
     "h":"30691.90","l":"29900.00","v":"315252.128","q":"9537613226.33"}

It may also carry ``"ps"`` (pair) and ``"st"`` (contract type, 1 = USDⓈ-M, 2 = COIN-M, as an
integer or a digit string); any other extra field is ignored. msgspec checks the JSON types;
:func:`check_payload` checks the values: the event type, a sane ``E``, a safe and wanted
symbol, exact decimals and the contract type's range.
"""

import re
from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Annotated, Any, Final, Literal, get_args

import msgspec
from msgspec.structs import astuple

from recorder.event_columns import COLUMN_NAMES, EventColumns, stored_contract_type
from recorder.ingest.decimals import is_exact_decimal
from recorder.ingest.rejections import bad_event_time_reason, decimal_reason, quote
from recorder.model import MiniTicker
from recorder.symbols import (
    all_known_valid,
    is_known_valid_symbol,
    is_valid_symbol,
    stream_name,
)

EventType = Literal["24hrMiniTicker"]
"""The only event type (``e``) this decoder accepts, as a type for msgspec to check."""
EVENT_TYPE: Final[str] = get_args(EventType)[0]
"""The only event type (``e``) this decoder accepts."""

MIN_EVENT_TIME_MS: Final = 1_483_228_800_000
"""2017-01-01T00:00:00Z: ``E`` before this is not a real Binance futures event."""
MAX_EVENT_TIME_MS: Final = 4_102_444_800_000
"""2100-01-01T00:00:00Z (exclusive): ``E`` at or after this is garbage, not a future."""

MAX_CONTRACT_TYPE: Final = 127
"""Largest ``st`` accepted; fits every Arrow integer type the dataset schema may choose."""

_ASCII_DIGITS: Final = re.compile(r"[0-9]{1,9}")

# The JSON keys of the decimal fields, in the order check_payload passes their values.
_DECIMAL_FIELDS: Final = ("c", "o", "h", "l", "v", "q")


class PayloadWire(msgspec.Struct, frozen=True, gc=False):
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


def check_payload(
    payload: PayloadWire,
    stream: str | None,
    subscribed: frozenset[str] | None,
    receive_time: int,
) -> MiniTicker | str:
    """Return the event of a schema-valid payload, or the reason to reject it.

    >>> payload = msgspec.json.decode(
    ...     '{"e":"24hrMiniTicker","E":1654791723970,"s":"BTCUSDT","c":"30180.00",'
    ...     '"o":"30463.50","h":"30691.90","l":"29900.00","v":"315252.128","q":"9537613226.33"}',
    ...     type=PayloadWire,
    ... )
    >>> check_payload(payload, "btcusdt@miniTicker", None, receive_time=1).close
    '30180.00'
    >>> check_payload(payload, "ethusdt@miniTicker", None, receive_time=1)
    "stream_mismatch: stream 'ethusdt@miniTicker' carries symbol 'BTCUSDT'"

    Args:
        payload: the typed payload.
        stream: the combined frame's stream name when it must name this payload's symbol.
        subscribed: the symbols (as in the payload's ``s``) whose events are wanted, or
            ``None`` to accept every valid symbol.
        receive_time: local wall clock at arrival, microseconds since the epoch; copied into
            the event.
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
        return decimal_reason(zip(_DECIMAL_FIELDS, decimals, strict=True))
    problem = _contract_type_problem(payload.contract_type)
    return problem if problem is not None else to_event(payload, receive_time)


def to_event(payload: PayloadWire, receive_time: int) -> MiniTicker:
    """The event of a payload that passed every check, a checked digit-string ``st`` an integer."""
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
        contract_type=stored_contract_type(payload.contract_type),
    )


class ScreenedPayloadWire(PayloadWire, frozen=True, gc=False):
    """A payload as the hot path decodes it: msgspec checks the event type and ``E``'s range too.

    Those two checks cost nothing in msgspec's C and a Python comparison per event outside it.
    A payload that fails them fails the decode, and the slow path, which decodes
    :class:`PayloadWire`, says why (:func:`check_payload`).

    >>> msgspec.json.decode('{"e":"24hrTicker","E":1654791723970,"s":"BTCUSDT","c":"1","o":"1",'
    ...     '"h":"1","l":"1","v":"1","q":"1"}', type=ScreenedPayloadWire)
    Traceback (most recent call last):
    msgspec.ValidationError: Invalid enum value '24hrTicker' - at `$.e`
    """

    event_type: EventType = msgspec.field(name="e")
    event_time: Annotated[int, msgspec.Meta(ge=MIN_EVENT_TIME_MS, lt=MAX_EVENT_TIME_MS)] = (
        msgspec.field(name="E")
    )


def vouch_payload(
    payload: ScreenedPayloadWire, stream: str | None, subscribed: frozenset[str] | None
) -> bool:
    """Whether a payload passes every check but its decimals, which a batch judges at once.

    The hot path's side of :func:`check_payload`, which says *why* for a payload refused here;
    the type checked the event type and ``E``.
    """
    kind = payload.contract_type
    return (
        (subscribed is None or payload.symbol in subscribed)
        # The stream is not remembered: a hostile server could make every one new and long.
        and is_known_valid_symbol(payload.symbol)
        and (stream is None or stream == stream_name(payload.symbol))
        and (kind is None or _contract_type_problem(kind) is None)
    )


def vouch_items(
    items: "PayloadColumns", subscribed: frozenset[str] | None
) -> list[PayloadWire] | None:
    """The recorded items of an all-market array that passes every check but its decimals.

    The items are :class:`ScreenedPayloadWire` (their event type and ``E`` checked). ``None``
    when any item fails a check: the caller reads the array item by item. Each check runs over
    a whole column at once (the distinct symbols and contract types), which is what makes a
    600-item array cheap.
    """
    if not items.rows:
        return []
    symbols = set(items.symbol)
    kinds = set(items.contract_type)
    kinds.discard(None)
    if not (
        all_known_valid(symbols) and all(_contract_type_problem(kind) is None for kind in kinds)
    ):
        return None
    payloads = items.payloads
    if subscribed is None or symbols <= subscribed:
        return list(payloads)
    return [payload for payload in payloads if payload.symbol in subscribed]


class PayloadColumns:
    """Payloads as columns, transposed in one C pass (msgspec's ``astuple`` and ``zip``).

    The all-market array's checks run on these columns (:func:`vouch_items`), the hot path
    judges a run's decimals on :attr:`decimals` and, when every payload is kept, appends the
    columns to the flush's :class:`~recorder.event_columns.EventColumns` as they are: no
    attribute read per field and event.

    >>> payload = PayloadWire("24hrMiniTicker", 1, "BTCUSDT", "1", "2", "3", "0.5", "9", "9")
    >>> columns = PayloadColumns.concat([PayloadColumns([payload]), PayloadColumns([payload])])
    >>> columns.rows, columns.symbol, columns.decimals[3]
    (2, ('BTCUSDT', 'BTCUSDT'), ('0.5', '0.5'))
    """

    __slots__ = ("_columns", "decimals", "payloads", "rows")

    def __init__(self, payloads: Sequence[PayloadWire]) -> None:
        fields = PayloadWire.__struct_fields__
        transposed = zip(*map(astuple, payloads), strict=True) if payloads else [()] * len(fields)
        self._set(payloads, dict(zip(fields, transposed, strict=True)))

    def _set(self, payloads: Sequence[PayloadWire], columns: Mapping[str, Sequence[Any]]) -> None:
        self.payloads = payloads
        """The payloads, in order."""
        self.rows = len(payloads)
        self._columns = columns
        self.decimals: list[Sequence[str]] = [columns[name] for name in _DECIMAL_COLUMNS]
        """The six decimal columns, for :func:`~recorder.ingest.decimals.inexact_rows`."""

    @classmethod
    def concat(cls, parts: Sequence["PayloadColumns"]) -> "PayloadColumns":
        """The payloads of ``parts``, in order, as columns: a run's frames taken together."""
        if len(parts) == 1:
            return parts[0]
        joined = cls.__new__(cls)
        payloads = [payload for part in parts for payload in part.payloads]
        columns = {
            name: tuple(chain.from_iterable(part._columns[name] for part in parts))
            for name in PayloadWire.__struct_fields__
        }
        joined._set(payloads, columns)
        return joined

    def __len__(self) -> int:
        return self.rows

    @property
    def symbol(self) -> Sequence[str]:
        """The ``s`` of every payload."""
        return self._columns["symbol"]

    @property
    def contract_type(self) -> Sequence[int | str | None]:
        """The ``st`` of every payload, as sent."""
        return self._columns["contract_type"]

    def extend_events(self, events: EventColumns, receive_times: Sequence[int]) -> None:
        """Append every payload to ``events``, each with its arrival time."""
        columns = self._columns
        for name in PAYLOAD_COLUMNS:
            getattr(events, name).extend(columns[name])
        events.receive_time.extend(receive_times)
        kinds = columns["contract_type"]
        if str in set(map(type, kinds)):
            kinds = tuple(map(stored_contract_type, kinds))
        events.contract_type.extend(kinds)


_DECIMAL_COLUMNS: Final = ("close", "open", "high", "low", "volume", "quote_volume")

PAYLOAD_COLUMNS: Final = tuple(
    name for name in COLUMN_NAMES if name not in {"receive_time", "contract_type"}
)
"""The columns of an event a payload gives as it is."""


def _contract_type_problem(contract_type: int | str | None) -> str | None:
    if contract_type is None:
        return None
    if isinstance(contract_type, str):
        if _ASCII_DIGITS.fullmatch(contract_type) is None:
            return f"wrong_type:st: {quote(contract_type)} is not an integer"
        contract_type = int(contract_type)
    if not 0 <= contract_type <= MAX_CONTRACT_TYPE:
        return f"wrong_type:st: {contract_type} is outside 0..{MAX_CONTRACT_TYPE}"
    return None


def _identity_problem(
    payload: PayloadWire, stream: str | None, subscribed: frozenset[str] | None
) -> str | None:
    """Return why the payload is not a wanted miniTicker of a safe symbol, if it is not."""
    if payload.event_type != EVENT_TYPE:
        return f"wrong_event_type: {quote(payload.event_type)} is not {EVENT_TYPE!r}"
    if not MIN_EVENT_TIME_MS <= payload.event_time < MAX_EVENT_TIME_MS:
        return bad_event_time_reason(payload.event_time)
    symbol = payload.symbol
    if not is_valid_symbol(symbol):
        return f"unsafe_symbol: {quote(symbol)}"
    if stream is not None and stream != stream_name(symbol):
        return f"stream_mismatch: stream {quote(stream)} carries symbol {symbol!r}"
    if subscribed is not None and symbol not in subscribed:
        return f"unsubscribed_symbol: {symbol!r}"
    return None
