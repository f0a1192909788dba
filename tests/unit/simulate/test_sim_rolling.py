import random
from dataclasses import replace

import pytest

from recorder.simulate.history import MINUTE_MS, WINDOW_MINUTES, HistorySpec, synthetic_history
from recorder.simulate.rolling import RollingWindow, WindowStats

START_MINUTE = 1_780_000_020_000 // MINUTE_MS * MINUTE_MS
SPEC = HistorySpec(
    seed=3,
    symbol="BTCUSDT",
    end_minute=START_MINUTE,
    close=3_018_000,
    tick=10,
    quantity_scale=1_000,
    typical_trade=120,
    trades_per_minute=30,
)

Candle = list[int]  # open, high, low, close, volume, quote volume, trades


class NaiveCandles:
    """Every one-minute candle kept, flat ones filled in: the window computed the long way."""

    def __init__(self) -> None:
        self.candles: dict[int, Candle] = {}
        self.last_minute: int | None = None

    def load(self, spec: HistorySpec) -> None:
        minutes = synthetic_history(spec)
        for index in range(len(minutes)):
            self.candles[minutes.first_minute + index * MINUTE_MS] = [
                minutes.opens[index],
                minutes.highs[index],
                minutes.lows[index],
                minutes.closes[index],
                minutes.volumes[index],
                minutes.quote_volumes[index],
                minutes.trades[index],
            ]
        self.last_minute = minutes.end_minute - MINUTE_MS

    def trade(self, event_time: int, price: int, volume: int, quote: int) -> None:
        minute = event_time // MINUTE_MS * MINUTE_MS
        if self.last_minute is not None:
            close = self.candles[self.last_minute][3]
            for flat in range(self.last_minute + MINUTE_MS, minute, MINUTE_MS):
                self.candles[flat] = [close, close, close, close, 0, 0, 0]
        candle = self.candles.setdefault(minute, [price, price, price, price, 0, 0, 0])
        candle[1], candle[2], candle[3] = max(candle[1], price), min(candle[2], price), price
        candle[4] += volume
        candle[5] += quote
        candle[6] += 1
        self.last_minute = minute

    def window(self, event_time: int) -> WindowStats:
        minute = event_time // MINUTE_MS * MINUTE_MS
        inside = [
            (start, self.candles[start])
            for start in range(minute - (WINDOW_MINUTES - 1) * MINUTE_MS, minute + 1, MINUTE_MS)
            if start in self.candles
        ]
        first_minute, first = inside[0]
        candles = [candle for _, candle in inside]
        return WindowStats(
            close=candles[-1][3],
            open=first[0],
            high=max(candle[1] for candle in candles),
            low=min(candle[2] for candle in candles),
            volume=sum(candle[4] for candle in candles),
            quote_volume=sum(candle[5] for candle in candles),
            trades=sum(candle[6] for candle in candles),
            first_minute=first_minute,
        )


def trades(seed: int, count: int, start: int) -> list[tuple[int, int, int, int]]:
    """Trades at increasing times with gaps from a second to two days; prices walk."""
    rng = random.Random(seed)
    price, now, found = 3_018_000, start, []
    for _ in range(count):
        now += rng.choice((1_000, 2_000, 7_000, 60_000, 300_000, 40 * MINUTE_MS, 1_500 * MINUTE_MS))
        price = max(10, price + rng.randint(-30, 30) * 10)
        volume = rng.randint(1, 500)
        found.append((now, price, volume, volume * price // 1_000))
    return found


@pytest.mark.parametrize("with_history", [True, False])
def test_every_trade_s_window_is_the_window_of_its_candles(with_history: bool) -> None:
    window = RollingWindow(3_018_000, synthetic_history(SPEC) if with_history else None)
    naive = NaiveCandles()
    if with_history:
        naive.load(SPEC)
        assert window.stats == naive.window(START_MINUTE - MINUTE_MS)
    else:
        assert window.stats == WindowStats(3_018_000, 3_018_000, 3_018_000, 3_018_000, 0, 0, 0, 0)
    for event_time, price, volume, quote in trades(1, 1_500, START_MINUTE + 5_000):
        window.trade(event_time, price, volume, quote)
        naive.trade(event_time, price, volume, quote)
        assert window.stats == naive.window(event_time), event_time


def test_a_listed_symbol_s_window_starts_at_its_first_trade() -> None:
    window = RollingWindow(500)
    window.trade(START_MINUTE + 30_000, 510, 4, 2_040)
    window.trade(START_MINUTE + 3 * MINUTE_MS, 490, 1, 490)
    assert window.stats == WindowStats(490, 510, 510, 490, 5, 2_530, 2, START_MINUTE)
    window.trade(START_MINUTE + WINDOW_MINUTES * MINUTE_MS, 500, 2, 1_000)
    # The first candle left; the window opens at the flat minute after it, at its close.
    assert window.stats.open == 510
    assert window.stats.first_minute == START_MINUTE + MINUTE_MS
    # The flat minutes at 510 are still in it.
    assert (window.stats.volume, window.stats.high, window.stats.low) == (3, 510, 490)


def test_history_is_deterministic_continuous_and_on_the_tick() -> None:
    history = synthetic_history(SPEC)
    assert history == synthetic_history(SPEC)
    assert history != synthetic_history(replace(SPEC, seed=4))
    assert len(history) == WINDOW_MINUTES
    assert history.end_minute == START_MINUTE
    assert history.closes[-1] == SPEC.close
    assert list(history.opens[1:]) == list(history.closes[:-1])
    for index in range(len(history)):
        prices = (history.opens[index], history.closes[index])
        assert history.lows[index] <= min(prices) <= max(prices) <= history.highs[index]
        assert history.lows[index] >= SPEC.tick
        assert all(price % SPEC.tick == 0 for price in (*prices, history.highs[index]))
        assert history.volumes[index] > 0
    # A day of about the live market's turnover: 30 trades of 120 a minute.
    assert 0.8 < sum(history.volumes) / (WINDOW_MINUTES * 30 * 120) < 1.2


def test_a_symbol_without_trades_has_a_flat_empty_history() -> None:
    history = synthetic_history(replace(SPEC, trades_per_minute=0))
    assert set(history.closes) == set(history.highs) == set(history.lows) == {SPEC.close}
    assert sum(history.volumes) == sum(history.trades) == 0
