"""A symbol's rolling 24 h window of one-minute candles, sans-IO, updated in O(1) per trade.

The contract a client can check: for a miniTicker event with event time ``E``, let
``M = E // 60000 * 60000``. Its window is the :data:`~recorder.simulate.history.WINDOW_MINUTES`
one-minute candles opening at ``M - 1439 min`` ... ``M``, the last one partial (the trades up to
and including this event); a minute without a trade is a flat candle at the previous close with
no volume, as ``klines`` answers it. Then ``c`` is the event's close, ``o`` the open of the
window's first candle, ``h`` the highest of the candles' highs, ``l`` the lowest of their lows,
``v`` and ``q`` the sums of their volumes and quote volumes, all exact in integer units. So the
last event of a minute ``m`` has ``c`` = ``kline(m).close`` and ``o, h, l, v, q`` as computed
from ``klines`` ``m - 1439 ... m``.

A window only covers candles that exist: a contract listed while the exchange runs has no
candle before its first trade (Binance has none before a contract's onboarding), so until it
has traded a day its ``o`` is its first candle's open and ``h, l, v, q`` cover what it traded.

The closed minutes of the window are kept in a ring of compact arrays (open, volume, quote
volume, trades), with running sums for the volumes and monotonic deques of (minute, price) for
the highest high and the lowest low, so a trade costs O(1) and each minute enters and leaves
the window once.
"""

from __future__ import annotations

from array import array
from collections import deque
from typing import NamedTuple

from recorder.rolling_extremes import RollingExtremes
from recorder.simulate.history import MINUTE_MS, WINDOW_MINUTES, MinuteHistory


class WindowStats(NamedTuple):
    """A symbol's 24 h statistics after its latest trade, in the profile's integer units.

    Attributes:
        close: the last price.
        open: the open of the window's first candle.
        high: the highest high of the window's candles.
        low: the lowest low of the window's candles.
        volume: the base volume of the window, in quantity units.
        quote_volume: the quote volume of the window, in price units.
        trades: how many trades the window's candles have.
        first_minute: the open time of the window's first candle that exists.
    """

    close: int
    open: int
    high: int
    low: int
    volume: int
    quote_volume: int
    trades: int
    first_minute: int


_Candle = tuple[int, int, int, int, int, int]
"""A closed candle as the window keeps it: open, high, low, volume, quote volume, trades."""


class RollingWindow:
    """One symbol's 24 h window: feed it every trade in time order, read the statistics.

    Args:
        close: the price before any trade (the statistics of an empty window).
        history: the candles of the day before the first trade, if the symbol has them.
    """

    def __init__(self, close: int, history: MinuteHistory | None = None) -> None:
        size = WINDOW_MINUTES
        self._opens = array("q", bytes(8 * size))
        self._volumes = array("q", bytes(8 * size))
        self._quote_volumes = array("q", bytes(8 * size))
        self._trades = array("I", bytes(4 * size))
        self._extremes = RollingExtremes[int]()
        self._volume = self._quote_volume = self._trade_count = 0
        self.total_trades = 0
        """Every trade accounted, the history's included."""
        # The current (partial) candle; ``_minute`` is None until a first candle exists.
        self._minute: int | None = None
        self._first_minute = 0
        self._open = self._high = self._low = self._close = close
        self._candle_volume = self._candle_quote_volume = self._candle_trades = 0
        if history is not None and len(history):
            self._load(history)

    def _load(self, history: MinuteHistory) -> None:
        # In bulk, with slices and C-level scans: hundreds of symbols load at start-up.
        self._first_minute = history.first_minute
        closed = len(history) - 1
        # History candle i sits in the slot of its minute; the current candle's slot is empty.
        first_slot = history.first_minute // MINUTE_MS % WINDOW_MINUTES
        cut = WINDOW_MINUTES - first_slot

        def ring(values: list[int]) -> array[int]:
            laid = values[:closed] + [0] * (WINDOW_MINUTES - closed)
            return array("q", laid[cut:] + laid[:cut])

        self._opens = ring(history.opens)
        self._volumes = ring(history.volumes)
        self._quote_volumes = ring(history.quote_volumes)
        self._trades = array("I", ring(history.trades))
        self._volume = sum(history.volumes[:closed])
        self._quote_volume = sum(history.quote_volumes[:closed])
        self._trade_count = sum(history.trades[:closed])
        self._extremes = RollingExtremes(
            _records(history.first_minute, history.highs[:closed], highest=True),
            _records(history.first_minute, history.lows[:closed], highest=False),
        )
        # The last history candle stands as the current one, so that the first trade rolls it.
        self._minute = history.first_minute + closed * MINUTE_MS
        self._open, self._close = history.opens[closed], history.closes[closed]
        self._high, self._low = history.highs[closed], history.lows[closed]
        self._candle_volume = history.volumes[closed]
        self._candle_quote_volume = history.quote_volumes[closed]
        self._candle_trades = history.trades[closed]
        self.total_trades = sum(history.trades)

    def trade(self, event_time: int, price: int, volume: int, quote_volume: int) -> None:
        """Account one trade at ``event_time``, not before the previous one's.

        Args:
            event_time: ``E`` of the event, ms since the epoch.
            price: the price it traded at, the event's close.
            volume: the base quantity traded, in quantity units.
            quote_volume: the quote quantity traded, in price units.
        """
        minute = event_time // MINUTE_MS * MINUTE_MS
        current = self._minute
        if current is None:
            self._first_minute = minute
            self._start_candle(minute, price)
        elif minute != current:
            self._roll(current, minute)
            self._start_candle(minute, price)
        # Comparisons rather than max() and min(): this runs for every event of every symbol.
        if price > self._high:
            self._high = price
        elif price < self._low:
            self._low = price
        self._close = price
        self._candle_volume += volume
        self._candle_quote_volume += quote_volume
        self._candle_trades += 1
        self.total_trades += 1

    def _start_candle(self, minute: int, price: int) -> None:
        self._minute = minute
        self._open = self._high = self._low = self._close = price
        self._candle_volume = self._candle_quote_volume = self._candle_trades = 0

    def _roll(self, current: int, minute: int) -> None:
        """Close the current candle and the flat ones up to ``minute``, dropping what left."""
        close = self._close
        if minute - current > WINDOW_MINUTES * MINUTE_MS:
            # Everything in the new window is flat at the last close: start over, in O(window).
            self._reset_flat(minute, close)
            return
        self._advance(
            current,
            (
                self._open,
                self._high,
                self._low,
                self._candle_volume,
                self._candle_quote_volume,
                self._candle_trades,
            ),
        )
        flat = (close, close, close, 0, 0, 0)
        for empty in range(current + MINUTE_MS, minute, MINUTE_MS):
            self._advance(empty, flat)

    def _reset_flat(self, minute: int, close: int) -> None:
        size = WINDOW_MINUTES
        self._opens = array("q", [close]) * size
        self._volumes = array("q", bytes(8 * size))
        self._quote_volumes = array("q", bytes(8 * size))
        self._trades = array("I", bytes(4 * size))
        self._volume = self._quote_volume = self._trade_count = 0
        self._extremes = RollingExtremes[int]()
        self._extremes.push(minute - MINUTE_MS, close, close)

    def _advance(self, minute: int, candle: _Candle) -> None:
        """Close the candle of ``minute``: the window moves on to the minute after it."""
        # The minute a day before the next one leaves; its slot is the one after ``minute``'s.
        gone = minute - (WINDOW_MINUTES - 1) * MINUTE_MS
        slot = gone // MINUTE_MS % WINDOW_MINUTES
        self._volume -= self._volumes[slot]
        self._quote_volume -= self._quote_volumes[slot]
        self._trade_count -= self._trades[slot]
        self._volumes[slot] = self._quote_volumes[slot] = self._trades[slot] = 0
        self._extremes.expire(gone + 1)
        # A minute shares its slot with the minute a day before it, which has just left.
        open_, high, low, volume, quote_volume, trades = candle
        slot = minute // MINUTE_MS % WINDOW_MINUTES
        self._opens[slot] = open_
        self._volumes[slot] = volume
        self._quote_volumes[slot] = quote_volume
        self._trades[slot] = trades
        self._volume += volume
        self._quote_volume += quote_volume
        self._trade_count += trades
        self._extremes.push(minute, high, low)

    @property
    def has_candles(self) -> bool:
        """Whether any candle exists yet (a history, or a first trade)."""
        return self._minute is not None

    @property
    def stats(self) -> WindowStats:
        """The statistics after the latest trade (of the history, or empty, before any)."""
        minute = self._minute
        if minute is None:
            close = self._close
            return WindowStats(close, close, close, close, 0, 0, 0, 0)
        start = minute - (WINDOW_MINUTES - 1) * MINUTE_MS
        start = max(start, self._first_minute)
        # The first candle is a closed one, unless the window has only the current candle.
        open_ = self._open if start == minute else self._opens[start // MINUTE_MS % WINDOW_MINUTES]
        high, low = self._high, self._low
        highest, lowest = self._extremes.highest, self._extremes.lowest
        if highest is not None and highest > high:
            high = highest
        if lowest is not None and lowest < low:
            low = lowest
        # Positional, in the fields' order: cheaper than keywords, once per event.
        return WindowStats(
            self._close,
            open_,
            high,
            low,
            self._volume + self._candle_volume,
            self._quote_volume + self._candle_quote_volume,
            self._trade_count + self._candle_trades,
            start,
        )


def _records(first_minute: int, prices: list[int], *, highest: bool) -> deque[tuple[int, int]]:
    """The monotonic deque that pushing consecutive candles' ``prices`` one by one leaves.

    It keeps, from the last candle back, each candle whose price beats every later one (higher
    for the highs, lower for the lows); of equal prices the later, as pushing does.
    """
    if not prices:
        return deque()
    last = len(prices) - 1
    kept = [last]
    best = prices[last]
    # Two plain loops, not one with a comparison chosen per candle: this runs at start-up.
    if highest:
        for index in range(last - 1, -1, -1):
            if prices[index] > best:
                best = prices[index]
                kept.append(index)
    else:
        for index in range(last - 1, -1, -1):
            if prices[index] < best:
                best = prices[index]
                kept.append(index)
    return deque((first_minute + index * MINUTE_MS, prices[index]) for index in reversed(kept))
