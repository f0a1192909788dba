"""How each simulated contract is quoted: precision, tick, price range, activity, pair.

Every number of the market is an integer count of the symbol's smallest unit
(``10**-decimals``), written as Binance writes it only when formatted (:func:`format_units`).
A symbol's profile is decided from the seed: the configured ones by :func:`assign_profiles`, a
contract listed later by :func:`listing_profile`.
"""

import random
from dataclasses import dataclass
from decimal import Decimal

from recorder.simulate.config import SimulatorConfig


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
