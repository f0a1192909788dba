"""The day of one-minute candles before the simulator starts, sans-IO, derived from the seed.

So that the first events already have a whole 24 h window (and a client backfilling the first
minutes finds the day before them in ``klines``), each configured symbol gets synthetic candles
for the :data:`WINDOW_MINUTES` minutes before the start minute. They are a random walk at the
profile's tick, drawn from a generator seeded with ``(seed, "history", symbol)`` alone, walked
backwards from the market's starting close so that the live market carries on where the last
candle closed; each candle opens at the previous close. Volumes and trade counts are of the
live market's order: a minute trades about ``trades_per_minute`` times the typical trade.

Deriving a day costs about a millisecond, and the same inputs give the same candles bit for
bit, so nothing keeps a history once the rolling window has read it: ``klines`` derives it
again when asked (:meth:`~recorder.simulate.market.MarketGenerator.history`).
"""

from __future__ import annotations

import random
from array import array
from dataclasses import dataclass
from functools import partial
from itertools import accumulate
from math import isqrt
from operator import neg

MINUTE_MS = 60_000
WINDOW_MINUTES = 1_440
"""The one-minute candles of a 24 h window: the event's minute and the 1,439 before it."""


@dataclass(frozen=True, slots=True)
class MinuteHistory:
    """One symbol's synthetic one-minute candles, oldest first, in the profile's integer units.

    Attributes:
        first_minute: the open time of the first candle, ms since the epoch.
        opens: each candle's open (the previous candle's close).
        highs: each candle's high.
        lows: each candle's low.
        closes: each candle's close.
        volumes: each candle's base volume, in quantity units.
        quote_volumes: each candle's quote volume, in price units.
        trades: each candle's number of trades.
    """

    first_minute: int
    opens: list[int]
    highs: list[int]
    lows: list[int]
    closes: list[int]
    volumes: list[int]
    quote_volumes: list[int]
    trades: list[int]

    def __len__(self) -> int:
        return len(self.opens)

    @property
    def end_minute(self) -> int:
        """The open time of the minute after the last candle (the live market's first)."""
        return self.first_minute + len(self) * MINUTE_MS


@dataclass(frozen=True, slots=True)
class HistorySpec:
    """What a symbol's history is derived from; the same spec gives the same candles.

    Attributes:
        seed: the exchange's seed.
        symbol: the contract.
        end_minute: the live market's first minute; the history is the day before it.
        close: the live market's starting close: the last candle's close.
        tick: the price step, in price units.
        quantity_scale: ``10**quantity_decimals``, to turn quantity times price into price units.
        typical_trade: the base quantity of a typical trade.
        trades_per_minute: how many trades a minute has on average; 0 gives a flat, empty day.
    """

    seed: int
    symbol: str
    end_minute: int
    close: int
    tick: int
    quantity_scale: int
    typical_trade: int
    trades_per_minute: int


def synthetic_history(spec: HistorySpec) -> MinuteHistory:
    """Derive the :data:`WINDOW_MINUTES` candles before ``spec.end_minute``, deterministically.

    A minute moves the price by up to about ``sqrt(trades_per_minute)`` times what one trade
    moves it (4 in 10,000 of the price, at least one tick), which is how far the live market
    wanders in a minute; wicks reach up to half that beyond the open and close. Volumes are
    ``typical_trade * trades_per_minute`` times 0.5 to 1.5, the quote volume that times the
    close; every candle has ``trades_per_minute`` trades.
    """
    count = WINDOW_MINUTES
    rng = random.Random(f"{spec.seed}:history:{spec.symbol}")  # noqa: S311 - simulation only
    tick, per_minute = spec.tick, spec.trades_per_minute
    swing = max(1, spec.close * 4 // 10_000 // tick) * isqrt(per_minute)
    span, half = 2 * swing + 1, swing // 2 + 1
    # Comprehensions over random bytes and a C-level walk, no call per candle: hundreds of
    # symbols start in a fraction of a second. A candle's move is its close minus its open.
    moves = [((draw * span >> 16) - swing) * tick for draw in _draws(rng, "H")]
    walk = list(accumulate(map(neg, reversed(moves)), initial=spec.close))
    if min(walk) < tick:
        # A walk that would fall to zero is held at one tick instead (rare: a cheap symbol).
        walk = list(accumulate(reversed(moves), partial(_step_back, tick), initial=spec.close))
    walk.reverse()
    opens, closes = walk[:count], walk[1:]
    highs = [
        (close if close > open_ else open_) + (draw * half >> 8) * tick
        for open_, close, draw in zip(opens, closes, _draws(rng, "B"), strict=True)
    ]
    lows = [
        (open_ if close > open_ else close) - (draw * half >> 8) * tick
        for open_, close, draw in zip(opens, closes, _draws(rng, "B"), strict=True)
    ]
    if min(lows) < tick:
        lows = [low if low > tick else tick for low in lows]
    minute_volume = spec.typical_trade * per_minute
    volumes = [minute_volume * (128 + draw) >> 8 for draw in _draws(rng, "B")]
    # The quote volume as if the whole minute traded at its close, rounded down.
    scale = spec.quantity_scale
    quote_volumes = [volume * close // scale for volume, close in zip(volumes, closes, strict=True)]
    return MinuteHistory(
        first_minute=spec.end_minute - count * MINUTE_MS,
        opens=opens,
        highs=highs,
        lows=lows,
        closes=closes,
        volumes=volumes,
        quote_volumes=quote_volumes,
        trades=[per_minute] * count,
    )


def _draws(rng: random.Random, kind: str) -> array[int]:
    """One random unsigned integer per candle: ``"B"`` a byte, ``"H"`` two bytes."""
    draws = array(kind)
    draws.frombytes(rng.randbytes(draws.itemsize * WINDOW_MINUTES))
    return draws


def _step_back(tick: int, price: int, move: int) -> int:
    """The open of a candle that closed at ``price`` after moving ``move`` (at least a tick)."""
    return max(tick, price - move)
