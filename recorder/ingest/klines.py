r"""One-minute candles from a ``GET /fapi/v1/klines`` answer, read as hostile input (sans-IO).

Binance answers an array of rows, each an array in this order (a real answer, cut to one row)::

    [[1714557600000,"63850.10","63872.00","63811.30","63840.00","412.337",1714557659999,
      "26324115.61560",7012,"201.501","12864338.52200","0"]]

open time, open, high, low, close, base volume, close time, quote volume, trades, taker buy
base and quote volumes, and an ignored field. Only the first eight are read. Every price and
volume must be an exact decimal that fits the dataset's ``decimal128(38, 18)``
(:func:`~recorder.ingest.decimals.is_exact_decimal`), every time an integer, each candle one
minute from open to close time, and the rows in strictly increasing open time; anything else
makes the whole answer unusable (:class:`~recorder.errors.KlinesError`): a rebuilt row is
only as good as every candle it is computed from.
"""

from dataclasses import dataclass
from typing import Any, Final

import msgspec

from recorder.errors import KlinesError
from recorder.exchange_limits import KLINES_MAX_LIMIT
from recorder.ingest.decimals import is_exact_decimal

MINUTE_MS: Final = 60_000
MAX_KLINES: Final = KLINES_MAX_LIMIT
"""The most candles Binance returns for one request."""
MAX_KLINES_BYTES: Final = 1 << 20
"""A full answer of 1,500 rows is about 200 kB; anything over this is refused unread."""

_ROWS: Final = msgspec.json.Decoder(list[list[Any]])


@dataclass(frozen=True, slots=True)
class Candle:
    """One one-minute candle, prices and volumes as exact decimal strings.

    Attributes:
        open_time: when the minute starts, ms since the epoch (a multiple of 60,000).
        open: the first trade's price in the minute.
        high: the highest price.
        low: the lowest price.
        close: the last trade's price.
        volume: base asset volume traded in the minute.
        quote_volume: quote asset volume traded in the minute.
    """

    open_time: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    quote_volume: str


def _integer(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise KlinesError(f"klines {what} is {value!r}: expected an integer", "shape")
    return value


def _decimal(value: object, what: str) -> str:
    if not isinstance(value, str) or not is_exact_decimal(value):
        msg = f"klines {what} is {value!r}: expected an exact decimal string"
        raise KlinesError(msg, "inexact")
    return value


def parse_klines(body: bytes) -> list[Candle]:
    """Read the one-minute candles of a ``klines`` body.

    >>> parse_klines(
    ...     b'[[1714557600000,"63850.10","63872.00","63811.30","63840.00","412.337",'
    ...     b'1714557659999,"26324115.61560",7012,"201.501","12864338.52200","0"]]'
    ... )[0].close
    '63840.00'

    Raises:
        KlinesError: the body is too large, not JSON, not rows of candles, holds a value that
            is not an exact decimal, a candle that is not one minute, more than
            :data:`MAX_KLINES` rows, or rows out of order.
    """
    if len(body) > MAX_KLINES_BYTES:
        raise KlinesError(f"klines answer of {len(body)} bytes", "too_large")
    try:
        rows = _ROWS.decode(body)
    except msgspec.ValidationError as exc:
        raise KlinesError(f"klines answer is not an array of rows: {exc}", "shape") from None
    except msgspec.DecodeError as exc:
        raise KlinesError(f"klines answer is not JSON: {exc}", "malformed") from None
    except RecursionError:
        raise KlinesError("klines answer is nested too deeply", "malformed") from None
    if len(rows) > MAX_KLINES:
        raise KlinesError(f"klines answer of {len(rows)} rows, over {MAX_KLINES}", "too_large")
    candles: list[Candle] = []
    for number, row in enumerate(rows):
        where = f"row {number}"
        if len(row) < 8:
            raise KlinesError(f"klines {where} has {len(row)} fields, expected 12", "shape")
        open_time = _integer(row[0], f"{where} open time")
        close_time = _integer(row[6], f"{where} close time")
        if open_time % MINUTE_MS or close_time != open_time + MINUTE_MS - 1:
            msg = f"klines {where} spans {open_time}..{close_time}: not one whole minute"
            raise KlinesError(msg, "shape")
        if candles and open_time <= candles[-1].open_time:
            raise KlinesError(f"klines {where} is not after the row before it", "unordered")
        candles.append(
            Candle(
                open_time,
                open=_decimal(row[1], f"{where} open"),
                high=_decimal(row[2], f"{where} high"),
                low=_decimal(row[3], f"{where} low"),
                close=_decimal(row[4], f"{where} close"),
                volume=_decimal(row[5], f"{where} volume"),
                quote_volume=_decimal(row[7], f"{where} quote volume"),
            )
        )
    return candles
