"""What a gap's rebuilt rows are, from one-minute candles (sans-IO).

A logged gap of a symbol runs from ``from_ms`` to ``to_ms``, the event times of the recorded
events around it. Every **whole minute strictly inside** it (its first millisecond after
``from_ms``, its last before ``to_ms``) becomes one row:

* ``event_time``: the minute's last millisecond (``open_time + 59,999``, the candle's close
  time: a miniTicker pushed then would carry these values);
* ``close``: the minute's candle's close;
* ``open``, ``high``, ``low``, ``volume``, ``quote_volume``: the rolling 24 hours ending with
  that minute, as the exchange's miniTicker computes them: over the 1,440 one-minute candles
  opening from 1,439 minutes before it to the minute itself, the first candle's open, the
  highest high, the lowest low and the sums of the volumes, in exact decimal arithmetic. Where
  the exchange has fewer candles (a contract listed less than a day before), the window is the
  candles it has.

A minute whose own candle the exchange did not return, or whose values do not fit the
dataset's ``decimal128(38, 18)``, is not rebuilt and is reported. The window rolls across the
minutes with running sums and monotonic queues: a day of rows costs a day of candles, not a
day times 1,440.
"""

import decimal
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from recorder.ingest.decimals import is_exact_decimal
from recorder.ingest.klines import MAX_KLINES, MINUTE_MS, Candle
from recorder.model import MiniTicker
from recorder.rolling_extremes import RollingExtremes

WINDOW_MINUTES: Final = 1_440
"""One-minute candles in the rolling 24 hours."""
_WINDOW_MS: Final = (WINDOW_MINUTES - 1) * MINUTE_MS
# Sums of up to 1,440 values of 38 digits stay exact well inside 80 digits.
_EXACT: Final = decimal.Context(prec=80, traps=[decimal.Inexact, decimal.InvalidOperation])


@dataclass(slots=True)
class Rebuilt:
    """The rows of one gap, and the minutes that could not be rebuilt, with why.

    Attributes:
        rows: one per rebuilt minute, in time order, as :class:`~recorder.model.MiniTicker`
            values (``receive_time`` when the candles were read; no ``pair``, no
            ``contract_type``: klines carry neither).
        missing: ``(minute open time, reason)`` of each minute left out.
    """

    rows: list[MiniTicker] = field(default_factory=list)
    missing: list[tuple[int, str]] = field(default_factory=list)


def minutes_inside(from_ms: int, to_ms: int) -> list[int]:
    """The open times of the whole minutes strictly between ``from_ms`` and ``to_ms``.

    >>> [m % 3_600_000 // 60_000 for m in minutes_inside(1_714_557_630_000, 1_714_557_900_000)]
    [1, 2, 3, 4]
    """
    first = (from_ms // MINUTE_MS + 1) * MINUTE_MS
    last = to_ms - MINUTE_MS  # its last millisecond, last + 59,999, is before to_ms
    return list(range(first, last + 1, MINUTE_MS))


def candle_spans(minutes: Sequence[int]) -> list[tuple[int, int]]:
    """The ``(first, last)`` open times of the klines requests the ``minutes`` need.

    The candles from 1,439 minutes before the first minute to the last, in requests of at most
    :data:`~recorder.ingest.klines.MAX_KLINES` candles.

    >>> candle_spans([1_440 * 60_000, 1_441 * 60_000])
    [(60000, 86460000)]
    >>> len(candle_spans(list(range(0, 3_000 * 60_000, 60_000))))
    3
    """
    if not minutes:
        return []
    start, end = minutes[0] - _WINDOW_MS, minutes[-1]
    step = MAX_KLINES * MINUTE_MS
    return [(first, min(first + step - MINUTE_MS, end)) for first in range(start, end + 1, step)]


def _plain(value: decimal.Decimal) -> str:
    """An exact decimal as ``digits[.digits]`` (no exponent), trailing zeros kept as computed."""
    return format(value, "f")


def rebuild(
    symbol: str, minutes: Sequence[int], candles: Mapping[int, Candle], *, read_at_us: int
) -> Rebuilt:
    """Rebuild the row of every minute in ``minutes`` (ascending) from ``candles`` by open time.

    ``candles`` should hold the candles of :func:`candle_spans`; fewer make shorter windows.
    ``read_at_us``, when they were read, is each row's ``receive_time``.
    """
    result = Rebuilt()
    if not minutes:
        return result
    wanted = set(minutes)
    window: deque[Candle] = deque()
    extremes = RollingExtremes[decimal.Decimal]()
    volume = quote_volume = decimal.Decimal(0)
    with decimal.localcontext(_EXACT):
        for minute in range(minutes[0] - _WINDOW_MS, minutes[-1] + 1, MINUTE_MS):
            candle = candles.get(minute)
            if candle is not None:
                window.append(candle)
                volume += decimal.Decimal(candle.volume)
                quote_volume += decimal.Decimal(candle.quote_volume)
                extremes.push(minute, decimal.Decimal(candle.high), decimal.Decimal(candle.low))
            oldest = minute - _WINDOW_MS
            while window and window[0].open_time < oldest:
                gone = window.popleft()
                volume -= decimal.Decimal(gone.volume)
                quote_volume -= decimal.Decimal(gone.quote_volume)
            extremes.expire(oldest)
            if minute not in wanted:
                continue
            high, low = extremes.highest, extremes.lowest
            if candle is None or high is None or low is None:
                result.missing.append((minute, "the exchange returned no candle for it"))
                continue
            row = MiniTicker(
                symbol=symbol,
                event_time=minute + MINUTE_MS - 1,
                close=candle.close,
                open=window[0].open,
                high=_plain(high),
                low=_plain(low),
                volume=_plain(volume),
                quote_volume=_plain(quote_volume),
                receive_time=read_at_us,
            )
            unfit = [
                name
                for name in ("high", "low", "volume", "quote_volume")
                if not is_exact_decimal(getattr(row, name))
            ]
            if unfit:
                reason = f"{', '.join(unfit)} do not fit decimal(38, 18) exactly"
                result.missing.append((minute, reason))
                continue
            result.rows.append(row)
    return result
