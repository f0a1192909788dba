"""The simulated market, sans-IO: given the next tick, which tickers changed and their payloads.

Every number is an integer count of the symbol's smallest unit (``10**-decimals``) and becomes a
decimal string only when formatted, so values are exact and keep the trailing zeros Binance
sends (``"0.0721000"``). Each symbol draws from its own random generator seeded with
``(seed, symbol)``, and the draws use integer arithmetic only, so a run is reproducible
bit for bit from the seed and the symbol list.
"""

import json
import random
from dataclasses import dataclass
from decimal import Decimal

from recorder.simulate.config import SimulatorConfig

MINI_TICKER_EVENT = "24hrMiniTicker"
USDS_MARGINED = 1
"""``st`` of a USDⓈ-M contract."""


@dataclass(frozen=True, slots=True)
class PriceProfile:
    """How one kind of contract is quoted: precision, tick size and price range.

    Attributes:
        name: a short label for logs and tests.
        price_decimals: decimals of prices and of the quote volume.
        tick_units: prices move in multiples of this many ``10**-price_decimals`` units, so a
            profile with a coarse tick shows trailing zeros (``"30180.10"``, ``"0.0721000"``).
        quantity_decimals: decimals of the base volume; 0 gives integer volumes.
        min_price: the lowest starting price.
        max_price: the highest starting price.
    """

    name: str
    price_decimals: int
    tick_units: int
    quantity_decimals: int
    min_price: Decimal
    max_price: Decimal

    @property
    def tick_size(self) -> str:
        """The price step as Binance writes it in ``PRICE_FILTER`` (``"0.10"``)."""
        return format_units(self.tick_units, self.price_decimals)

    @property
    def step_size(self) -> str:
        """The quantity step as Binance writes it in ``LOT_SIZE`` (``"0.001"``, ``"1"``)."""
        return format_units(1, self.quantity_decimals)


PRICE_PROFILES: tuple[PriceProfile, ...] = (
    PriceProfile("major", 2, 10, 3, Decimal(5_000), Decimal(90_000)),
    PriceProfile("large", 2, 1, 3, Decimal(100), Decimal(5_000)),
    PriceProfile("mid", 3, 1, 2, Decimal(10), Decimal(300)),
    PriceProfile("small", 4, 1, 1, Decimal("0.5"), Decimal(10)),
    PriceProfile("penny", 5, 1, 0, Decimal("0.05"), Decimal("0.5")),
    PriceProfile("micro", 6, 1, 0, Decimal("0.005"), Decimal("0.05")),
    PriceProfile("coarse", 7, 100, 0, Decimal("0.01"), Decimal("0.1")),
    PriceProfile("nano", 8, 1, 0, Decimal("0.0001"), Decimal("0.005")),
    PriceProfile("pico", 9, 1, 0, Decimal("0.000001"), Decimal("0.00001")),
)
"""From BTC-like (``"30180.00"``, volume ``"315252.128"``) to 9-decimal prices
(``"0.000001234"``) with integer volumes (``"6878775288"``)."""


@dataclass(frozen=True, slots=True)
class SymbolProfile:
    """What is fixed about one listed symbol for the whole run.

    Attributes:
        symbol: the contract (``"BTCUSDT_260327"``).
        pair: the underlying pair (``"BTCUSDT"``): the symbol without a delivery suffix.
        carries_pair: whether its payloads carry ``ps`` and ``st``.
        activity: probability that it changes in a tick.
        price: its quoting profile.
    """

    symbol: str
    pair: str
    carries_pair: bool
    activity: float
    price: PriceProfile


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
    """A symbol's rolling 24 h statistics now, as decimal strings (for REST).

    Attributes:
        symbol: the contract.
        close: last price.
        open: price 24 h ago (the session's open).
        high: highest price.
        low: lowest price.
        volume: base volume.
        quote_volume: quote volume.
        last_quantity: base quantity of the last change.
        event_time: ``E`` of the last event, or the start time before any.
        trades: how many changes it has had.
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
    trades: int


def format_units(units: int, decimals: int) -> str:
    """Write ``units * 10**-decimals`` with exactly ``decimals`` decimals, as Binance does.

    >>> format_units(3018000, 2), format_units(721000, 7), format_units(6878775288, 0)
    ('30180.00', '0.0721000', '6878775288')
    """
    if decimals == 0:
        return str(units)
    sign = "-" if units < 0 else ""
    whole, fraction = divmod(abs(units), 10**decimals)
    return f"{sign}{whole}.{fraction:0{decimals}d}"


def pair_of(symbol: str) -> str:
    """Return the pair of a contract: the symbol without a ``_YYMMDD`` delivery suffix.

    >>> pair_of("BTCUSDT_260327"), pair_of("ETHUSDT")
    ('BTCUSDT', 'ETHUSDT')
    """
    return symbol.split("_", 1)[0]


KNOWN_BASES: dict[str, str] = {
    "BTC": "major",
    "ETH": "large",
    "BNB": "large",
    "SOL": "mid",
    "XRP": "small",
    "DOGE": "penny",
    "1000SHIB": "micro",
    "1000LUNC": "coarse",
    "PEPE": "nano",
}
"""Bases quoted the way the real contract is, so that demos look familiar."""


def _known_profile(symbol: str) -> PriceProfile | None:
    pair = pair_of(symbol)
    for base, name in KNOWN_BASES.items():
        if pair.startswith(base) and pair[len(base) :].isalpha():
            return next(profile for profile in PRICE_PROFILES if profile.name == name)
    return None


def assign_profiles(config: SimulatorConfig) -> tuple[SymbolProfile, ...]:
    """Decide each symbol's quoting profile, activity and ``ps``/``st`` carriage from the seed.

    Well-known bases (``BTC``, ``ETH``...) get their usual profile; the other symbols are dealt
    profiles round-robin from a seeded shuffle that puts the profiles no known symbol took
    first, so a list of ``len(PRICE_PROFILES)`` symbols covers every profile.
    ``pair_fraction`` of the symbols (rounded) carry the pair.

    Args:
        config: the exchange's settings.

    Returns:
        One profile per symbol, in the order of ``config.symbols``.
    """
    dealer = random.Random(f"{config.seed}:profiles")  # noqa: S311 - simulation, not security
    known = {symbol: _known_profile(symbol) for symbol in config.symbols}
    taken = {profile.name for profile in known.values() if profile is not None}
    deck = list(PRICE_PROFILES)
    dealer.shuffle(deck)
    deck.sort(key=lambda profile: profile.name in taken)
    carriers = list(config.symbols)
    dealer.shuffle(carriers)
    carrying = set(carriers[: round(config.pair_fraction * len(config.symbols))])
    quiet = set(config.quiet_symbols)
    profiles = []
    dealt = 0
    for symbol in config.symbols:
        if symbol in quiet:
            activity = config.quiet_activity
        elif config.activity is not None:
            activity = config.activity
        else:
            activity = 0.9 + dealer.randint(0, 100) / 1000
        price = known[symbol]
        if price is None:
            price = deck[dealt % len(deck)]
            dealt += 1
        profiles.append(
            SymbolProfile(
                symbol=symbol,
                pair=pair_of(symbol),
                carries_pair=symbol in carrying,
                activity=activity,
                price=price,
            )
        )
    return tuple(profiles)


def listing_profile(config: SimulatorConfig, symbol: str) -> SymbolProfile:
    """Decide the profile of a contract listed while the exchange runs, from the seed.

    The draws come from a generator seeded with ``(seed, symbol)`` alone, so a listing gets the
    same profile whenever it happens and whatever else was listed before it.

    Args:
        config: the exchange's settings (seed, activity, ``pair_fraction``).
        symbol: the new contract.

    Returns:
        Its profile: a well-known base's usual one, else one drawn from :data:`PRICE_PROFILES`.
    """
    rng = random.Random(f"{config.seed}:listing:{symbol}")  # noqa: S311 - simulation only
    price = _known_profile(symbol) or rng.choice(PRICE_PROFILES)
    drawn_activity = 0.9 + rng.randint(0, 100) / 1000
    activity = config.activity if config.activity is not None else drawn_activity
    return SymbolProfile(
        symbol=symbol,
        pair=pair_of(symbol),
        carries_pair=rng.random() < config.pair_fraction,
        activity=activity,
        price=price,
    )


class _SymbolMarket:
    """The mutable state of one symbol's ticker, advanced one tick at a time."""

    def __init__(self, profile: SymbolProfile, seed: int) -> None:
        self.profile = profile
        self.rng = random.Random(f"{seed}:{profile.symbol}")  # noqa: S311 - simulation only
        price = profile.price
        tick = price.tick_units
        low_units = int(price.min_price.scaleb(price.price_decimals))
        high_units = int(price.max_price.scaleb(price.price_decimals))
        self.open = max(tick, self.rng.randint(low_units, high_units) // tick * tick)
        drift = self.open * self.rng.randint(-300, 300) // 10_000
        self.close = max(tick, (self.open + drift) // tick * tick)
        spread = max(tick, self.open * self.rng.randint(0, 500) // 10_000 // tick * tick)
        self.high = max(self.open, self.close) + spread
        self.low = max(tick, min(self.open, self.close) - spread)
        # 24 h quote turnover between 1e7 and 1e10, expressed as base volume at today's price.
        turnover = self.rng.randint(100, 999) * 10 ** self.rng.randint(5, 7)
        scale = 10**price.quantity_decimals
        self.volume = max(1, turnover * scale * 10**price.price_decimals // self.close)
        # On the tick grid, so that a coarse-tick profile shows Binance's trailing zeros in q too.
        self.quote_volume = (
            self.volume * self.close // scale * self.rng.randint(980, 1_020) // 1_000 // tick * tick
        )
        self.typical_trade = max(1, self.volume // 50_000)
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
        self.high = max(self.high, self.close)
        self.low = min(self.low, self.close)
        traded = max(1, self.typical_trade * rng.randint(1, 200) // 100)
        traded_quote = _round_half_even(traded * self.close, 10**price.quantity_decimals)
        self.volume += traded
        self.quote_volume += traded_quote
        self.last_quantity = traded
        self.trades += 1
        return rng.randint(0, jitter_ms), traded, traded_quote

    def payload(self, event_time: int) -> dict[str, str | int]:
        """Build the payload of the current state, keys in Binance's order."""
        profile = self.profile
        decimals = profile.price.price_decimals
        payload: dict[str, str | int] = {
            "e": MINI_TICKER_EVENT,
            "E": event_time,
            "s": profile.symbol,
            "c": format_units(self.close, decimals),
            "o": format_units(self.open, decimals),
            "h": format_units(self.high, decimals),
            "l": format_units(self.low, decimals),
            "v": format_units(self.volume, profile.price.quantity_decimals),
            "q": format_units(self.quote_volume, decimals),
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
        self._markets = [_SymbolMarket(profile, config.seed) for profile in self.profiles.values()]
        self._by_symbol = {market.profile.symbol: market for market in self._markets}
        self._halted: set[str] = set()
        self._last_event_time: dict[str, int] = {}
        self.next_tick = 0

    def add_symbol(self, symbol: str) -> SymbolProfile:
        """Start a market for a contract listed now (:func:`listing_profile`), halted.

        Raises:
            ValueError: ``symbol`` already has a market.
        """
        if symbol in self._by_symbol:
            raise ValueError(f"{symbol} is already listed")
        profile = listing_profile(self._config, symbol)
        market = _SymbolMarket(profile, self._config.seed)
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
        """Return ``symbol``'s current 24 h statistics.

        Raises:
            KeyError: ``symbol`` is not listed.
        """
        market = self._by_symbol[symbol]
        price = market.profile.price
        decimals = price.price_decimals
        return TickerSnapshot(
            symbol=symbol,
            close=format_units(market.close, decimals),
            open=format_units(market.open, decimals),
            high=format_units(market.high, decimals),
            low=format_units(market.low, decimals),
            volume=format_units(market.volume, price.quantity_decimals),
            quote_volume=format_units(market.quote_volume, decimals),
            last_quantity=format_units(market.last_quantity, price.quantity_decimals),
            event_time=self._last_event_time.get(symbol, self.start_ms),
            trades=market.trades,
        )
