"""The simulated market, sans-IO: given the next tick, which tickers changed and their payloads.

Every number is an integer count of the symbol's smallest unit (``10**-decimals``) and becomes a
decimal string only when formatted, so values are exact and keep the trailing zeros Binance
sends (``"0.0721000"``). Each symbol draws from its own random generator seeded with
``(seed, symbol)``, and the draws use integer arithmetic only, so a run is reproducible
bit for bit from the seed and the symbol list.

The 24 h fields ``o, h, l, v, q`` of each event are those of its rolling window of one-minute
candles (:mod:`~recorder.simulate.rolling`), the same candles ``klines`` answers with; each
configured symbol starts with a synthetic day of them before the start minute
(:mod:`~recorder.simulate.history`), so its first events already carry a whole window, while a
contract listed later starts with none. The ticker's ``c`` walks on from the history's last
close. Quoting profiles are :mod:`~recorder.simulate.profiles`'.
"""

import json
import random
from dataclasses import dataclass

from recorder.simulate.config import SimulatorConfig
from recorder.simulate.history import (
    MINUTE_MS,
    HistorySpec,
    MinuteHistory,
    synthetic_history,
)
from recorder.simulate.profiles import SymbolProfile, assign_profiles, format_units, listing_profile
from recorder.simulate.rolling import RollingWindow

MINI_TICKER_EVENT = "24hrMiniTicker"
USDS_MARGINED = 1
"""``st`` of a USDⓈ-M contract."""
HISTORIES_KEPT = 8
"""How many symbols' histories :meth:`MarketGenerator.history` keeps derived."""


@dataclass(frozen=True, slots=True)
class MarketEvent:
    """One ``24hrMiniTicker`` event the market generated.

    Attributes:
        tick: the tick that produced it.
        symbol: the contract.
        event_time: ``E``, ms since the epoch.
        payload: the payload exactly as sent (``e, E, s, c, o, h, l, v, q`` and maybe ``ps, st``).
        payload_json: ``payload`` serialised once, compactly, UTF-8 characters kept.
        close_units: the close price in ``10**-price_decimals`` units (for klines).
        trade_units: base quantity traded since the previous event, in quantity units.
        trade_quote_units: quote quantity traded since the previous event, in price units.
    """

    tick: int
    symbol: str
    event_time: int
    payload: dict[str, str | int]
    payload_json: str
    close_units: int
    trade_units: int
    trade_quote_units: int


@dataclass(frozen=True, slots=True)
class TickBatch:
    """The events of one tick, in symbol-list order; symbols that did not change are absent.

    Attributes:
        tick: the tick number, 0 for the first.
        events: one event per symbol that changed.
    """

    tick: int
    events: tuple[MarketEvent, ...]


@dataclass(frozen=True, slots=True)
class TickerSnapshot:
    """A symbol's rolling 24 h statistics (:mod:`~recorder.simulate.rolling`), as strings.

    Attributes:
        symbol: the contract.
        close: last price.
        open: the open of the window's first candle.
        high: the highest price of the window.
        low: the lowest price of the window.
        volume: the base volume of the window.
        quote_volume: the quote volume of the window.
        last_quantity: base quantity of the last change.
        event_time: ``E`` of the last event, or the start time before any.
        open_time: the open time of the window's first candle.
        trades: how many trades the window's candles have.
        last_id: how many trades it has had, its day of history included (the last trade's id).
    """

    symbol: str
    close: str
    open: str
    high: str
    low: str
    volume: str
    quote_volume: str
    last_quantity: str
    event_time: int
    open_time: int
    trades: int
    last_id: int


class _SymbolMarket:
    """The mutable state of one symbol's ticker, advanced one tick at a time.

    Args:
        profile: how it is quoted.
        seed: the exchange's seed.
        trades_per_minute: how many ticks of a minute it changes in, on average.
        history_end: the start minute, if the symbol has a day of history before it.
    """

    def __init__(
        self, profile: SymbolProfile, seed: int, trades_per_minute: int, history_end: int | None
    ) -> None:
        self.profile = profile
        self.rng = random.Random(f"{seed}:{profile.symbol}")  # noqa: S311 - simulation only
        price = profile.price
        tick = price.tick_units
        low_units = int(price.min_price.scaleb(price.price_decimals))
        high_units = int(price.max_price.scaleb(price.price_decimals))
        opening = max(tick, self.rng.randint(low_units, high_units) // tick * tick)
        drift = opening * self.rng.randint(-300, 300) // 10_000
        self.close = max(tick, (opening + drift) // tick * tick)
        self.rng.randint(0, 500)  # once the spread of a fixed open; kept so closes stay the same
        # 24 h quote turnover between 1e7 and 1e10, expressed as base volume at today's price.
        turnover = self.rng.randint(100, 999) * 10 ** self.rng.randint(5, 7)
        scale = 10**price.quantity_decimals
        volume = max(1, turnover * scale * 10**price.price_decimals // self.close)
        self.rng.randint(980, 1_020)  # once the quote volume's spread; kept likewise
        self.typical_trade = max(1, volume // 50_000)
        self.history: HistorySpec | None = None
        if history_end is not None:
            self.history = HistorySpec(
                seed=seed,
                symbol=profile.symbol,
                end_minute=history_end,
                close=self.close,
                tick=tick,
                quantity_scale=scale,
                typical_trade=self.typical_trade,
                trades_per_minute=trades_per_minute,
            )
        history = None if self.history is None else synthetic_history(self.history)
        self.window = RollingWindow(self.close, history)
        self.last_quantity = 0
        self.trades = 0

    def advance(self, jitter_ms: int) -> tuple[int, int, int] | None:
        """Move one tick; return ``(jitter, trade_units, trade_quote_units)`` if it changed."""
        rng = self.rng
        if rng.random() >= self.profile.activity:
            return None
        price = self.profile.price
        tick = price.tick_units
        reach = max(1, self.close * 4 // 10_000 // tick)
        self.close = max(tick, self.close + rng.randint(-reach, reach) * tick)
        traded = max(1, self.typical_trade * rng.randint(1, 200) // 100)
        traded_quote = _round_half_even(traded * self.close, 10**price.quantity_decimals)
        self.last_quantity = traded
        self.trades += 1
        return rng.randint(0, jitter_ms), traded, traded_quote

    def payload(self, event_time: int) -> dict[str, str | int]:
        """Build the payload of the current 24 h window, keys in Binance's order."""
        profile = self.profile
        decimals = profile.price.price_decimals
        stats = self.window.stats
        payload: dict[str, str | int] = {
            "e": MINI_TICKER_EVENT,
            "E": event_time,
            "s": profile.symbol,
            "c": format_units(stats.close, decimals),
            "o": format_units(stats.open, decimals),
            "h": format_units(stats.high, decimals),
            "l": format_units(stats.low, decimals),
            "v": format_units(stats.volume, profile.price.quantity_decimals),
            "q": format_units(stats.quote_volume, decimals),
        }
        if profile.carries_pair:
            payload["ps"] = profile.pair
            payload["st"] = USDS_MARGINED
        return payload


def _round_half_even(numerator: int, denominator: int) -> int:
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        quotient += 1
    return quotient


def encode_json(value: object) -> str:
    """Serialise like Binance: compact, UTF-8 characters kept as they are."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class MarketGenerator:
    """Generates the market tick by tick, deterministically from the config's seed.

    ``E`` of a symbol's event in tick ``n`` is ``start_ms + n * interval_ms + jitter`` with
    ``jitter`` in ``0..jitter_ms``; since ``interval_ms > jitter_ms`` it strictly increases per
    symbol. A symbol whose ticker did not change in a tick has no event in it, and neither has a
    halted one (a contract not ``TRADING``): its ticker stands still, drawing nothing, until it
    resumes.

    Args:
        config: the exchange's settings (symbols, seed, interval, jitter, activity).
        start_ms: ``E`` of tick 0 before jitter, in ms since the epoch.
    """

    def __init__(self, config: SimulatorConfig, start_ms: int) -> None:
        self.start_ms = start_ms
        self.interval_ms = config.interval_ms
        self.jitter_ms = config.jitter_ms
        self._config = config
        self.profiles: dict[str, SymbolProfile] = {
            profile.symbol: profile for profile in assign_profiles(config)
        }
        # Each configured symbol has traded for a day when the exchange starts.
        self.start_minute = start_ms // MINUTE_MS * MINUTE_MS
        self._markets = [
            self._market(profile, self.start_minute) for profile in self.profiles.values()
        ]
        self._by_symbol = {market.profile.symbol: market for market in self._markets}
        self._halted: set[str] = set()
        self._last_event_time: dict[str, int] = {}
        self._histories: dict[str, MinuteHistory] = {}
        self.next_tick = 0

    def _market(self, profile: SymbolProfile, history_end: int | None) -> _SymbolMarket:
        per_minute = round(MINUTE_MS / self.interval_ms * profile.activity)
        return _SymbolMarket(profile, self._config.seed, per_minute, history_end)

    def history(self, symbol: str) -> MinuteHistory | None:
        """Return ``symbol``'s day of candles before the start, derived again (for ``klines``).

        A contract listed while the exchange runs has none: it has no candle before it traded.
        The few most recently asked for are kept, so a backfill paging through them is cheap.

        Raises:
            KeyError: ``symbol`` has no market.
        """
        spec = self._by_symbol[symbol].history
        if spec is None:
            return None
        history = self._histories.pop(symbol, None) or synthetic_history(spec)
        self._histories[symbol] = history
        while len(self._histories) > HISTORIES_KEPT:
            del self._histories[next(iter(self._histories))]
        return history

    def add_symbol(self, symbol: str) -> SymbolProfile:
        """Start a market for a contract listed now (:func:`listing_profile`), halted.

        Raises:
            ValueError: ``symbol`` already has a market.
        """
        if symbol in self._by_symbol:
            raise ValueError(f"{symbol} is already listed")
        profile = listing_profile(self._config, symbol)
        market = self._market(profile, None)
        self.profiles[symbol] = profile
        self._markets.append(market)
        self._by_symbol[symbol] = market
        self._halted.add(symbol)
        return profile

    def set_trading(self, symbol: str, *, trading: bool) -> None:
        """Let ``symbol``'s ticker change from the next tick on, or stop it (halted).

        Raises:
            KeyError: ``symbol`` has no market.
        """
        if symbol not in self._by_symbol:
            raise KeyError(symbol)
        if trading:
            self._halted.discard(symbol)
        else:
            self._halted.add(symbol)

    def tick_time(self, tick: int) -> int:
        """Return the simulated time of ``tick`` before jitter, in ms since the epoch."""
        return self.start_ms + tick * self.interval_ms

    def step(self) -> TickBatch:
        """Generate the next tick and return the events of the symbols that changed."""
        tick = self.next_tick
        self.next_tick += 1
        base = self.tick_time(tick)
        events = []
        for market in self._markets:
            if market.profile.symbol in self._halted:
                continue
            change = market.advance(self.jitter_ms)
            if change is None:
                continue
            jitter, traded, traded_quote = change
            symbol = market.profile.symbol
            event_time = base + jitter
            self._last_event_time[symbol] = event_time
            market.window.trade(event_time, market.close, traded, traded_quote)
            payload = market.payload(event_time)
            events.append(
                MarketEvent(
                    tick=tick,
                    symbol=symbol,
                    event_time=event_time,
                    payload=payload,
                    payload_json=encode_json(payload),
                    close_units=market.close,
                    trade_units=traded,
                    trade_quote_units=traded_quote,
                )
            )
        return TickBatch(tick=tick, events=tuple(events))

    def payload_now(self, symbol: str, event_time: int) -> dict[str, str | int]:
        """Return a payload of ``symbol``'s current state stamped ``event_time`` (for faults).

        Raises:
            KeyError: ``symbol`` is not listed.
        """
        return self._by_symbol[symbol].payload(event_time)

    def snapshot(self, symbol: str) -> TickerSnapshot:
        """Return ``symbol``'s 24 h statistics as of its last event (those it carried).

        Raises:
            KeyError: ``symbol`` is not listed.
        """
        market = self._by_symbol[symbol]
        price = market.profile.price
        decimals = price.price_decimals
        stats = market.window.stats
        event_time = self._last_event_time.get(symbol, self.start_ms)
        return TickerSnapshot(
            symbol=symbol,
            close=format_units(stats.close, decimals),
            open=format_units(stats.open, decimals),
            high=format_units(stats.high, decimals),
            low=format_units(stats.low, decimals),
            volume=format_units(stats.volume, price.quantity_decimals),
            quote_volume=format_units(stats.quote_volume, decimals),
            last_quantity=format_units(market.last_quantity, price.quantity_decimals),
            event_time=event_time,
            # A contract that never traded has no candle: its empty window opens now.
            open_time=stats.first_minute if market.window.has_candles else event_time,
            trades=stats.trades,
            last_id=market.window.total_trades,
        )
