"""The REST side of the simulated exchange, sans-IO: request parameters in, status and JSON out.

The endpoints, honest but small: ``/fapi/v1/ping``, ``/fapi/v1/time``, ``/fapi/v1/ticker/24hr``
and ``/fapi/v1/klines``; ``/fapi/v1/exchangeInfo`` is built by
:mod:`recorder.simulate.exchange_info`. Request weights and the per-minute weight limit follow
Binance's documentation, and errors carry Binance's ``{"code": -11xx, "msg": "..."}`` bodies.

``klines`` answers from a symbol's synthetic day before the start
(:mod:`~recorder.simulate.history`) and then from the events the exchange actually generated,
so the candles are those whose rolling 24 h window each event carries
(:mod:`~recorder.simulate.rolling`): the last event of a minute closes at that minute's close,
and its ``o, h, l, v, q`` are those of the 1,440 candles ending with it. ``ticker/24hr`` answers
the window of a symbol's last event, its ``count`` the trades of those candles.
"""

import math
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal

from recorder.exchange_limits import KLINES_DEFAULT_LIMIT, KLINES_MAX_LIMIT, klines_weight
from recorder.simulate.history import MINUTE_MS, MinuteHistory
from recorder.simulate.market import MarketEvent, MarketGenerator, TickerSnapshot
from recorder.simulate.profiles import SymbolProfile, format_units

DAY_MS = 24 * 60 * MINUTE_MS
KLINE_INTERVALS_MS: dict[str, int] = {
    "1m": MINUTE_MS,
    "3m": 3 * MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "30m": 30 * MINUTE_MS,
    "1h": 60 * MINUTE_MS,
    "2h": 120 * MINUTE_MS,
    "4h": 240 * MINUTE_MS,
    "6h": 360 * MINUTE_MS,
    "8h": 480 * MINUTE_MS,
    "12h": 720 * MINUTE_MS,
    "1d": DAY_MS,
}
"""Fixed-width intervals; calendar ones (``1w``, ``1M``) are not simulated."""
USED_WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"

KlineRow = tuple[int, str, str, str, str, str, int, str, int, str, str, str]
"""Binance's kline array: open time, open, high, low, close, volume, close time, quote volume,
number of trades, taker buy base volume, taker buy quote volume, ignore."""


@dataclass(frozen=True, slots=True)
class RestReply:
    """What to answer a REST request with.

    Attributes:
        status: the HTTP status.
        body: the JSON body.
        weight: the request weight it costs.
    """

    status: int
    body: object
    weight: int


def binance_error(code: int, msg: str, *, status: int = 400, weight: int = 1) -> RestReply:
    """Build Binance's error reply ``{"code": code, "msg": msg}``."""
    return RestReply(status, {"code": code, "msg": msg}, weight)


def _missing(name: str) -> RestReply:
    return binance_error(
        -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def _illegal(name: str) -> RestReply:
    return binance_error(
        -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."
    )


INVALID_SYMBOL = binance_error(-1121, "Invalid symbol.")
PING = RestReply(200, {}, 1)
"""``GET /fapi/v1/ping``: an empty object."""


def server_time(now_ms: int) -> RestReply:
    """Answer ``GET /fapi/v1/time``: the exchange's clock, ms since the epoch."""
    return RestReply(200, {"serverTime": now_ms}, 1)


class WeightMeter:
    """Request weight used in the current clock minute, as Binance counts it per IP.

    Args:
        limit: the most weight per minute; a request that would exceed it is refused.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._minute = -1
        self.used = 0

    def spend(self, weight: int, now: float) -> bool:
        """Charge ``weight`` at ``now`` (wall seconds); return ``False`` if over the limit."""
        minute = math.floor(now / 60)
        if minute != self._minute:
            self._minute = minute
            self.used = 0
        if self.used + weight > self.limit:
            return False
        self.used += weight
        return True

    @staticmethod
    def retry_after(now: float) -> int:
        """Whole seconds until the next minute starts (at least 1)."""
        return max(1, math.ceil(60 - now % 60))


def ticker_body(snapshot: TickerSnapshot, price_decimals: int) -> dict[str, object]:
    """Build one ``GET /fapi/v1/ticker/24hr`` object from a symbol's snapshot."""
    close, open_ = Decimal(snapshot.close), Decimal(snapshot.open)
    volume, quote_volume = Decimal(snapshot.volume), Decimal(snapshot.quote_volume)
    step = Decimal(1).scaleb(-price_decimals)
    average = (quote_volume / volume).quantize(step, ROUND_HALF_EVEN) if volume else close
    percent = ((close - open_) * 100 / open_).quantize(Decimal("0.001"), ROUND_HALF_EVEN)
    return {
        "symbol": snapshot.symbol,
        "priceChange": str((close - open_).quantize(step)),
        "priceChangePercent": str(percent),
        "weightedAvgPrice": str(average),
        "lastPrice": snapshot.close,
        "lastQty": snapshot.last_quantity,
        "openPrice": snapshot.open,
        "highPrice": snapshot.high,
        "lowPrice": snapshot.low,
        "volume": snapshot.volume,
        "quoteVolume": snapshot.quote_volume,
        "openTime": snapshot.open_time,
        "closeTime": snapshot.event_time,
        "firstId": snapshot.last_id - snapshot.trades + 1,
        "lastId": snapshot.last_id,
        "count": snapshot.trades,
    }


def ticker_24hr(
    generator: MarketGenerator, listed: Collection[str], params: Mapping[str, str]
) -> RestReply:
    """Answer ``GET /fapi/v1/ticker/24hr``: one symbol (weight 1) or all (weight 40).

    Args:
        generator: the market.
        listed: the symbols listed now, in listing order; any other is an invalid symbol.
        params: the query.
    """
    symbol = params.get("symbol")
    if symbol is None:
        bodies = [_ticker_of(generator, name) for name in listed]
        return RestReply(200, bodies, 40)
    if symbol not in listed:
        return INVALID_SYMBOL
    return RestReply(200, _ticker_of(generator, symbol), 1)


def _ticker_of(generator: MarketGenerator, symbol: str) -> dict[str, object]:
    decimals = generator.profiles[symbol].price.price_decimals
    return ticker_body(generator.snapshot(symbol), decimals)


@dataclass(slots=True)
class _Candle:
    open: int
    high: int
    low: int
    close: int
    volume: int = 0
    quote_volume: int = 0
    trades: int = 0
    taker_volume: int = 0
    taker_quote_volume: int = 0

    def add(self, other: "_Candle") -> None:
        self.high = max(self.high, other.high)
        self.low = min(self.low, other.low)
        self.close = other.close
        self.volume += other.volume
        self.quote_volume += other.quote_volume
        self.trades += other.trades
        self.taker_volume += other.taker_volume
        self.taker_quote_volume += other.taker_quote_volume


@dataclass(slots=True)
class _SymbolCandles:
    minutes: list[int] = field(default_factory=list)
    candles: dict[int, _Candle] = field(default_factory=dict)
    last_close: int | None = None


class CandleBook:
    """One-minute candles of every symbol: its day of history, then those of its events.

    A candle's open is the first price of the minute, its volume the quantity traded in it;
    a change at a price at or above the previous one counts as a taker buy (in the history,
    half of each candle's volume). Minutes without events after the first candle are flat
    candles at the previous close; a symbol's candles end at its last event's minute.

    Args:
        profiles: the symbols with a market (for their decimals); one added to it later, when a
            contract is listed, has candles from its first event on.
        history: a symbol's synthetic day before the start, or ``None`` if it has none
            (:meth:`~recorder.simulate.market.MarketGenerator.history`).
    """

    def __init__(
        self,
        profiles: Mapping[str, SymbolProfile],
        history: Callable[[str], MinuteHistory | None],
    ) -> None:
        self._profiles = profiles
        self._history = history
        self._symbols: dict[str, _SymbolCandles] = {}

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._profiles

    def add(self, event: MarketEvent) -> None:
        """Account one generated event."""
        book = self._symbols.setdefault(event.symbol, _SymbolCandles())
        minute = event.event_time // MINUTE_MS * MINUTE_MS
        price = event.close_units
        taker = book.last_close is None or price >= book.last_close
        book.last_close = price
        candle = book.candles.get(minute)
        if candle is None:
            candle = _Candle(open=price, high=price, low=price, close=price)
            book.candles[minute] = candle
            book.minutes.append(minute)
        candle.add(
            _Candle(
                open=price,
                high=price,
                low=price,
                close=price,
                volume=event.trade_units,
                quote_volume=event.trade_quote_units,
                trades=1,
                taker_volume=event.trade_units if taker else 0,
                taker_quote_volume=event.trade_quote_units if taker else 0,
            )
        )

    def rows(
        self,
        symbol: str,
        interval_ms: int,
        start_time: int | None,
        end_time: int | None,
        limit: int,
    ) -> list[KlineRow]:
        """Return kline rows in Binance's array form, selected as Binance selects them.

        With ``start_time``, the first ``limit`` candles opening at or after it (and at or
        before ``end_time``); otherwise the last ``limit`` candles opening at or before
        ``end_time``, or the newest.
        """
        book = self._symbols.get(symbol) or _SymbolCandles()
        history = self._history(symbol)
        if history is not None:
            first, last = history.first_minute, history.end_minute - MINUTE_MS
        elif book.minutes:
            first = last = book.minutes[0]
        else:
            return []
        if book.minutes:
            last = book.minutes[-1]
        low = first // interval_ms * interval_ms
        high = last // interval_ms * interval_ms
        if start_time is not None:
            low = max(low, -(-start_time // interval_ms) * interval_ms)
        if end_time is not None:
            high = min(high, end_time // interval_ms * interval_ms)
        if start_time is not None:
            high = min(high, low + (limit - 1) * interval_ms)
        else:
            low = max(low, high - (limit - 1) * interval_ms)
        price = self._profiles[symbol].price
        return [
            _row(
                _bucket(book, history, bucket, interval_ms),
                bucket,
                interval_ms,
                price.price_decimals,
                price.quantity_decimals,
            )
            for bucket in range(low, high + 1, interval_ms)
        ]


def _bucket(
    book: _SymbolCandles, history: MinuteHistory | None, bucket: int, interval_ms: int
) -> _Candle:
    """Add up the history's and the events' candles of one bucket, or a flat one if none."""
    total = None if history is None else _history_part(history, bucket, interval_ms)
    first = bisect_left(book.minutes, bucket)
    last = bisect_right(book.minutes, bucket + interval_ms - 1)
    for minute in book.minutes[first:last]:
        candle = book.candles[minute]
        if total is None:
            total = _Candle(open=candle.open, high=candle.high, low=candle.low, close=candle.close)
        total.add(candle)
    if total is not None:
        return total
    # No trade in the bucket: Binance still returns it, flat at the previous close.
    if first > 0:
        close = book.candles[book.minutes[first - 1]].close
    else:
        assert history is not None  # noqa: S101 - rows() starts at the first candle there is
        close = history.closes[-1]
    return _Candle(open=close, high=close, low=close, close=close)


def _history_part(history: MinuteHistory, bucket: int, interval_ms: int) -> _Candle | None:
    begin = max(0, (bucket - history.first_minute) // MINUTE_MS)
    end = min(len(history), (bucket + interval_ms - history.first_minute) // MINUTE_MS)
    if begin >= end:
        return None
    volumes, quote_volumes = history.volumes[begin:end], history.quote_volumes[begin:end]
    return _Candle(
        open=history.opens[begin],
        high=max(history.highs[begin:end]),
        low=min(history.lows[begin:end]),
        close=history.closes[end - 1],
        volume=sum(volumes),
        quote_volume=sum(quote_volumes),
        trades=sum(history.trades[begin:end]),
        taker_volume=sum(volume // 2 for volume in volumes),
        taker_quote_volume=sum(quote // 2 for quote in quote_volumes),
    )


def _row(total: _Candle, bucket: int, interval_ms: int, decimals: int, quantity: int) -> KlineRow:
    return (
        bucket,
        format_units(total.open, decimals),
        format_units(total.high, decimals),
        format_units(total.low, decimals),
        format_units(total.close, decimals),
        format_units(total.volume, quantity),
        bucket + interval_ms - 1,
        format_units(total.quote_volume, decimals),
        total.trades,
        format_units(total.taker_volume, quantity),
        format_units(total.taker_quote_volume, decimals),
        "0",
    )


def _integer(params: Mapping[str, str], name: str) -> int | RestReply | None:
    text = params.get(name)
    if text is None:
        return None
    if not re.fullmatch(r"[0-9]{1,20}", text):
        return _illegal(name)
    return int(text)


def klines(book: CandleBook, params: Mapping[str, str]) -> RestReply:  # noqa: PLR0911 - one per error
    """Answer ``GET /fapi/v1/klines``.

    Parameters as Binance takes them: ``symbol`` and ``interval`` (required), ``startTime``,
    ``endTime`` (ms), ``limit`` (default 500, at most 1500); each invalid one gets Binance's
    error code.
    """
    symbol = params.get("symbol")
    if not symbol:
        return _missing("symbol")
    interval = params.get("interval")
    if not interval:
        return _missing("interval")
    interval_ms = KLINE_INTERVALS_MS.get(interval)
    if interval_ms is None:
        return binance_error(-1120, "Invalid interval.")
    numbers: dict[str, int | None] = {}
    for name in ("limit", "startTime", "endTime"):
        value = _integer(params, name)
        if isinstance(value, RestReply):
            return value
        numbers[name] = value
    limit = numbers["limit"] if numbers["limit"] is not None else KLINES_DEFAULT_LIMIT
    if not 1 <= limit <= KLINES_MAX_LIMIT:
        return binance_error(-1130, "Data sent for parameter 'limit' is not valid.")
    start_time, end_time = numbers["startTime"], numbers["endTime"]
    if start_time is not None and end_time is not None and start_time > end_time:
        return binance_error(-1023, "Start time is greater than end time.")
    if symbol not in book:
        return INVALID_SYMBOL
    rows = book.rows(symbol, interval_ms, start_time, end_time, limit)
    return RestReply(200, rows, klines_weight(limit))
