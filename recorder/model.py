"""The domain values that flow through the recorder: frozen, slotted, no behaviour."""

import enum
from dataclasses import dataclass
from typing import Final, NamedTuple

DECIMAL_PRECISION: Final = 38
"""Total significant digits of the dataset's decimal columns (Arrow ``decimal128``)."""
DECIMAL_SCALE: Final = 18
"""Fractional digits of the dataset's decimal columns."""
DECIMAL_INTEGER_DIGITS: Final = DECIMAL_PRECISION - DECIMAL_SCALE
"""Integer digits that fit beside :data:`DECIMAL_SCALE` fractional digits."""


@dataclass(frozen=True, slots=True)
class MiniTicker:
    """One ``24hrMiniTicker`` event of one symbol, as received.

    Decimal fields keep the exact string the exchange sent; they become exact Arrow decimals
    in a batch, never floats.

    Attributes:
        symbol: the contract, upper-case as in the payload's ``s`` (``"BTCUSDT"``).
        event_time: ``E``, milliseconds since the epoch, UTC.
        close: ``c``.
        open: ``o``.
        high: ``h``.
        low: ``l``.
        volume: ``v``, base asset volume.
        quote_volume: ``q``, quote asset volume.
        receive_time: local wall clock when the frame arrived, microseconds since the epoch.
        pair: ``ps`` when present.
        contract_type: ``st`` when present (1 = USDⓈ-M, 2 = COIN-M).
    """

    symbol: str
    event_time: int
    close: str
    open: str
    high: str
    low: str
    volume: str
    quote_volume: str
    receive_time: int
    pair: str | None = None
    contract_type: int | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    """A frame, or one item of an array frame, that must not enter the dataset.

    Attributes:
        raw: the offending text as received (decoded leniently if it was not UTF-8).
        reason: why it was rejected, short and machine-groupable first (``"not_json: ..."``).
        receive_time: local wall clock when the frame arrived, microseconds since the epoch.
        connection_id: the connection that delivered it, when known.
        raw_size: bytes of the offending text as received, of which ``raw`` may be only a
            prefix; ``None`` when ``raw`` is all of it and nobody measured it.
        raw_sha256: SHA-256 (hex) of those bytes, so that a cut frame can still be matched.
    """

    raw: str
    reason: str
    receive_time: int
    connection_id: str | None = None
    raw_size: int | None = None
    raw_sha256: str | None = None


class ReceivedFrame(NamedTuple):
    """One websocket data frame exactly as it arrived, before decoding.

    A named tuple, not a frozen dataclass like the others: one is made per frame, and a
    frozen dataclass costs about three times as much to make.

    Attributes:
        data: the frame payload (text frames arrive as ``str``, binary frames as ``bytes``).
        receive_time: local wall clock at arrival, microseconds since the epoch.
        connection_id: the connection that delivered it.
    """

    data: str | bytes
    receive_time: int
    connection_id: str


class ConnectionChange(enum.Enum):
    """What happened to a connection; the gap detector reads these beside the frames."""

    OPENED = "opened"
    """The handshake completed; nothing delivered yet."""
    FIRST_DATA = "first_data"
    """The connection delivered its first frame."""
    PROBE_ANSWERED = "probe_answered"
    """The connection answered a silence check's probe: alive, whatever data it delivers."""
    QUIET_CONFIRMED = "quiet_confirmed"
    """A silence check found the connection alive and its symbols quiet: it is kept."""
    STREAMS_CHANGED = "streams_changed"
    """A ``SUBSCRIBE`` or ``UNSUBSCRIBE`` was confirmed: the connection carries ``symbols`` now."""
    STALLED = "stalled"
    """The watchdog found the connection open but silent, and is replacing it."""
    DROPPED = "dropped"
    """The connection ended without being asked to (peer closed, network error, dead peer)."""
    RETIRED = "retired"
    """A planned close: its replacement was already delivering (lifetime handover, stop)."""


CONNECTION_ENDS: Final = frozenset(
    {ConnectionChange.DROPPED, ConnectionChange.STALLED, ConnectionChange.RETIRED}
)
"""The changes after which a connection delivers nothing more."""


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """A change in one connection's state, in stream order with the frames it delivered.

    Attributes:
        change: what happened.
        connection_id: which connection (``"<shard>.<serial>"``).
        symbols: the symbols the connection carries.
        monotonic: monotonic seconds when it happened.
        wall_us: wall clock when it happened, microseconds since the epoch.
        reason: a human detail (close code, error, watchdog verdict).
    """

    change: ConnectionChange
    connection_id: str
    symbols: tuple[str, ...]
    monotonic: float
    wall_us: int
    reason: str = ""


def reason_code(reason: str) -> str:
    """Return the machine-groupable part of a rejection reason (before ``": "``).

    >>> reason_code("wrong_type:c: Expected `str`, got `float` - at `$.c`")
    'wrong_type:c'
    >>> reason_code("not_json")
    'not_json'
    """
    return reason.partition(": ")[0]
