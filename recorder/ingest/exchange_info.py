"""The contracts of an ``exchangeInfo`` answer, sans-IO, read as hostile input.

``GET /fapi/v1/exchangeInfo`` answers with one object whose ``symbols`` list describes every
contract (Binance sends some 40 keys per contract; only three matter here)::

    {"timezone": "UTC", "serverTime": 1767225600000, "rateLimits": [...], "assets": [...],
     "symbols": [{"symbol": "BTCUSDT", "pair": "BTCUSDT", "contractType": "PERPETUAL",
                  "deliveryDate": 4133404800000, "onboardDate": 1569398400000,
                  "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT", ...},
                 {"symbol": "BTCUSDT_260327", "contractType": "CURRENT_QUARTER",
                  "status": "TRADING", ...}]}

The answer comes from the network, so nothing in it is trusted: a body over
:data:`MAX_EXCHANGE_INFO_BYTES`, text that is not JSON (or is cut short), a top level that is
not an object or has no ``symbols`` list, or more than :data:`MAX_CONTRACTS` entries is an
:class:`~recorder.errors.ExchangeInfoError`. One entry that is not an object, lacks a field,
has a wrong type, names a symbol :func:`~recorder.symbols.is_valid_symbol` refuses, or repeats
a symbol (compared as stream names, which are lower-case) is skipped and counted, never fatal.
Unknown fields and unknown statuses or contract types are ignored, not errors. Nesting deeper
than msgspec decodes (about 1,000 levels) anywhere makes the answer malformed.
"""

from dataclasses import dataclass
from typing import Final

import msgspec

from recorder.errors import ExchangeInfoError
from recorder.symbols import is_valid_symbol, stream_name

MAX_EXCHANGE_INFO_BYTES: Final = 32 * 1024 * 1024
"""The largest answer read (Binance's is about 2 MB for some 600 contracts)."""
MAX_CONTRACTS: Final = 20_000
"""The most contracts an answer may list; more is not a plausible exchange."""
TRADING: Final = "TRADING"
"""The ``status`` of a contract that trades, and ticks."""


class _Document(msgspec.Struct):
    symbols: list[msgspec.Raw]


class _Entry(msgspec.Struct):
    symbol: str
    status: str
    contract_type: str = msgspec.field(name="contractType")


_DOCUMENT_DECODER: Final = msgspec.json.Decoder(_Document)
_ENTRY_DECODER: Final = msgspec.json.Decoder(_Entry)


@dataclass(frozen=True, slots=True)
class Contract:
    """One contract as ``exchangeInfo`` lists it.

    Attributes:
        symbol: the symbol, valid as a partition name.
        status: ``TRADING``, ``PENDING_TRADING``, ``SETTLING``, ``DELISTED``... as sent.
        contract_type: ``PERPETUAL``, ``CURRENT_QUARTER``... as sent.
    """

    symbol: str
    status: str
    contract_type: str


@dataclass(frozen=True, slots=True)
class ExchangeInfo:
    """The usable part of one ``exchangeInfo`` answer.

    Attributes:
        contracts: the valid entries, each symbol once, in the answer's order.
        skipped: entries left out (not an object, a field missing or of a wrong type, an
            invalid or repeated symbol).
    """

    contracts: tuple[Contract, ...]
    skipped: int

    def trading(self, contract_types: tuple[str, ...]) -> tuple[str, ...]:
        """The symbols with status ``TRADING`` and a type in ``contract_types``, in order.

        >>> info = parse_exchange_info(
        ...     b'{"symbols": [{"symbol": "BTCUSDT", "status": "TRADING", "contractType": '
        ...     b'"PERPETUAL"}, {"symbol": "OLDUSDT", "status": "SETTLING", "contractType": '
        ...     b'"PERPETUAL"}]}'
        ... )
        >>> info.trading(("PERPETUAL",))
        ('BTCUSDT',)
        """
        wanted = frozenset(contract_types)
        return tuple(
            contract.symbol
            for contract in self.contracts
            if contract.status == TRADING and contract.contract_type in wanted
        )


def parse_exchange_info(body: bytes) -> ExchangeInfo:
    """Read the contracts of an ``exchangeInfo`` body (see the module docstring for a payload).

    Args:
        body: the HTTP body, as received.

    Returns:
        The valid contracts and how many entries were skipped.

    Raises:
        ExchangeInfoError: the body is too large, not JSON, not an object with a ``symbols``
            list, or lists more than :data:`MAX_CONTRACTS` entries.

    >>> parse_exchange_info(
    ...     b'{"symbols": [{"symbol": "BTCUSDT", "status": "TRADING", "contractType": '
    ...     b'"PERPETUAL", "pair": "BTCUSDT"}, {"symbol": "../x", "status": "TRADING"}]}'
    ... )
    ExchangeInfo(contracts=(Contract(symbol='BTCUSDT', status='TRADING', contract_type='PERPETUAL'),), skipped=1)
    """  # noqa: E501 - a doctest's output is one line
    if len(body) > MAX_EXCHANGE_INFO_BYTES:
        msg = f"exchangeInfo answer of {len(body)} bytes, over {MAX_EXCHANGE_INFO_BYTES}"
        raise ExchangeInfoError(msg, "too_large")
    try:
        document = _DOCUMENT_DECODER.decode(body)
    except msgspec.ValidationError as exc:
        raise ExchangeInfoError(
            f"exchangeInfo answer has no 'symbols' list: {exc}", "shape"
        ) from None
    except msgspec.DecodeError as exc:
        raise ExchangeInfoError(f"exchangeInfo answer is not JSON: {exc}", "malformed") from None
    except RecursionError:
        # msgspec gives up on deep nesting (about 1,000 levels) this way, even in skipped fields.
        msg = "exchangeInfo answer is nested too deeply"
        raise ExchangeInfoError(msg, "malformed") from None
    if len(document.symbols) > MAX_CONTRACTS:
        msg = f"exchangeInfo lists {len(document.symbols)} contracts, over {MAX_CONTRACTS}"
        raise ExchangeInfoError(msg, "too_large")
    contracts: list[Contract] = []
    streams: set[str] = set()
    skipped = 0
    for raw in document.symbols:
        try:
            entry = _ENTRY_DECODER.decode(raw)
        except (msgspec.DecodeError, RecursionError):  # also a wrong type or a missing field
            skipped += 1
            continue
        stream = stream_name(entry.symbol)
        if not is_valid_symbol(entry.symbol) or stream in streams:
            skipped += 1
            continue
        streams.add(stream)
        contracts.append(Contract(entry.symbol, entry.status, entry.contract_type))
    return ExchangeInfo(tuple(contracts), skipped)
