"""The stream and the klines agree: a day and more of market, checked minute by minute."""

from decimal import Decimal
from itertools import accumulate

import pytest
from sim_market import MarketRun, run_market

from recorder.simulate.config import SimulatorConfig
from recorder.simulate.history import MINUTE_MS, WINDOW_MINUTES
from recorder.simulate.listings import ContractBook, ContractStatus
from recorder.simulate.market import MarketGenerator
from recorder.simulate.rest import CandleBook, KlineRow, klines, ticker_24hr

START_MS = 1_780_000_040_000  # 40 s into a minute
CONFIG = SimulatorConfig(
    symbols=("BTCUSDT", "PEPEUSDT", "ETHUSDT"),
    quiet_symbols=("ETHUSDT",),
    quiet_activity=0.03,  # about one change in 5 minutes: flat candles in between
    activity=1.0,
    interval_ms=10_000,
    seed=9,
)
HOURS = 26


def market(config: SimulatorConfig, ticks: int) -> MarketRun:
    return run_market(config, START_MS, ticks)


@pytest.fixture(scope="module")
def day() -> MarketRun:
    return market(CONFIG, HOURS * 3_600_000 // CONFIG.interval_ms)


def all_rows(book: CandleBook, symbol: str) -> list[KlineRow]:
    """Page through every one-minute candle from the first, 1,500 at a time, as a client does."""
    rows: list[KlineRow] = []
    start = 0
    while page := book.rows(symbol, MINUTE_MS, start, None, 1_500):
        rows.extend(page)
        start = page[-1][0] + MINUTE_MS
    return rows


def units(text: object, decimals: int) -> int:
    return int(Decimal(str(text)).scaleb(decimals))


@pytest.mark.parametrize("symbol", CONFIG.symbols)
def test_each_minute_s_last_event_carries_the_window_of_its_klines(
    day: MarketRun, symbol: str
) -> None:
    price = day.generator.profiles[symbol].price
    decimals, quantity = price.price_decimals, price.quantity_decimals
    rows = all_rows(day.book, symbol)
    opens = [row[0] for row in rows]
    assert opens == list(range(opens[0], opens[-1] + 1, MINUTE_MS))
    assert opens[0] == START_MS // MINUTE_MS * MINUTE_MS - WINDOW_MINUTES * MINUTE_MS
    highs = [units(row[2], decimals) for row in rows]
    lows = [units(row[3], decimals) for row in rows]
    volumes = [0, *accumulate(units(row[5], quantity) for row in rows)]
    quotes = [0, *accumulate(units(row[7], decimals) for row in rows)]
    last_of_minute = {
        e.event_time // MINUTE_MS * MINUTE_MS: e for e in day.events if e.symbol == symbol
    }
    assert len(last_of_minute) > 20 * 60 / (5 if symbol == "ETHUSDT" else 1)
    for minute, event in last_of_minute.items():
        end = opens.index(minute) + 1
        begin = end - WINDOW_MINUTES
        payload = event.payload
        assert payload["c"] == rows[end - 1][4]
        assert payload["o"] == rows[begin][1]
        assert units(payload["h"], decimals) == max(highs[begin:end])
        assert units(payload["l"], decimals) == min(lows[begin:end])
        assert units(payload["v"], quantity) == volumes[end] - volumes[begin]
        assert units(payload["q"], decimals) == quotes[end] - quotes[begin]


def test_the_window_rolls(day: MarketRun) -> None:
    btc = [event for event in day.events if event.symbol == "BTCUSDT"]
    first_day = [e for e in btc if e.event_time < START_MS + 24 * 3_600_000]
    later = [e for e in btc if e.event_time >= START_MS + 25 * 3_600_000]
    # o follows the window's first candle: it changes as the day moves on, before and after.
    assert len({e.payload["o"] for e in first_day}) > 100
    assert len({e.payload["o"] for e in later}) > 10
    volumes = [Decimal(str(e.payload["v"])) for e in btc]
    assert max(volumes) < 2 * volumes[0]
    assert min(volumes) > volumes[0] / 2


def test_the_ticker_answers_the_last_event_s_window(day: MarketRun) -> None:
    last = [event for event in day.events if event.symbol == "PEPEUSDT"][-1]
    reply = ticker_24hr(day.generator, CONFIG.symbols, {"symbol": "PEPEUSDT"})
    assert isinstance(reply.body, dict)
    body, payload = reply.body, last.payload
    assert [body[name] for name in ("lastPrice", "openPrice", "highPrice", "lowPrice")] == [
        payload[key] for key in ("c", "o", "h", "l")
    ]
    assert (body["volume"], body["quoteVolume"]) == (payload["v"], payload["q"])
    minute = last.event_time // MINUTE_MS * MINUTE_MS
    assert body["openTime"] == minute - (WINDOW_MINUTES - 1) * MINUTE_MS
    assert body["closeTime"] == last.event_time
    rows = day.book.rows("PEPEUSDT", MINUTE_MS, body["openTime"], None, 1_500)
    assert body["count"] == sum(row[8] for row in rows)
    assert body["lastId"] - body["firstId"] + 1 == body["count"]


def test_the_first_events_already_have_a_whole_day() -> None:
    first = market(CONFIG, 1)
    history = first.generator.history("BTCUSDT")
    assert history is not None
    event = next(e for e in first.events if e.symbol == "BTCUSDT")
    rows = first.book.rows("BTCUSDT", MINUTE_MS, None, None, 1_500)
    # The history's day, then the start minute, partial; the walk carries on from its close.
    assert len(rows) == WINDOW_MINUTES + 1
    assert rows[-1][0] == START_MS // MINUTE_MS * MINUTE_MS == history.end_minute
    assert rows[-1][1] == event.payload["c"]
    assert event.payload["o"] == rows[1][1]
    volume = sum(Decimal(row[5]) for row in rows[1:])
    assert Decimal(str(event.payload["v"])) == volume


# klines' selection, as Binance's ------------------------------------------------------------

BOOK_TICKS = 30  # 5 minutes of events after the day of history


@pytest.fixture(scope="module")
def short() -> MarketRun:
    return market(CONFIG, BOOK_TICKS)


def opens_of(reply_rows: object) -> list[int]:
    assert isinstance(reply_rows, list)
    return [row[0] for row in reply_rows]


def test_klines_default_to_the_500_most_recent(short: MarketRun) -> None:
    every = [row[0] for row in all_rows(short.book, "BTCUSDT")]
    reply = klines(short.book, {"symbol": "BTCUSDT", "interval": "1m"})
    assert (reply.status, reply.weight) == (200, 5)
    assert opens_of(reply.body) == every[-500:]


def test_klines_limits_and_bounds(short: MarketRun) -> None:
    every = [row[0] for row in all_rows(short.book, "BTCUSDT")]
    start = START_MS // MINUTE_MS * MINUTE_MS

    def opens(**params: str) -> list[int]:
        reply = klines(short.book, {"symbol": "BTCUSDT", "interval": "1m", **params})
        assert reply.status == 200, reply.body
        return opens_of(reply.body)

    assert opens(limit="1500") == every[-1_500:]
    assert opens(limit="1") == every[-1:]
    assert opens(startTime="0", limit="3") == every[:3]
    assert opens(startTime=str(every[0] + 1), limit="2") == every[1:3]
    assert opens(endTime=str(start - 1), limit="2") == [start - 2 * MINUTE_MS, start - MINUTE_MS]
    assert opens(startTime=str(every[5]), endTime=str(every[7])) == every[5:8]
    assert opens(startTime=str(every[5]), endTime=str(every[7]), limit="2") == every[5:7]
    assert opens(startTime=str(every[-1] + MINUTE_MS)) == []
    assert opens(endTime=str(every[0] - 1)) == []
    assert opens(startTime="0", limit="1500") == every[:1_500]
    reply = klines(short.book, {"symbol": "BTCUSDT", "interval": "1m", "limit": "1501"})
    assert (reply.status, reply.body) == (
        400,
        {"code": -1130, "msg": "Data sent for parameter 'limit' is not valid."},
    )


def test_wider_klines_add_up_history_and_events(short: MarketRun) -> None:
    minutes = all_rows(short.book, "BTCUSDT")
    [hour] = short.book.rows("BTCUSDT", 60 * MINUTE_MS, None, None, 1)
    inside = [row for row in minutes if hour[0] <= row[0] <= hour[6]]
    assert any(row[0] < START_MS for row in inside)
    assert any(row[0] > START_MS for row in inside)
    assert hour[1] == inside[0][1]
    assert hour[4] == inside[-1][4]
    assert Decimal(hour[2]) == max(Decimal(row[2]) for row in inside)
    assert Decimal(hour[5]) == sum(Decimal(row[5]) for row in inside)
    assert hour[8] == sum(row[8] for row in inside)


def test_a_listed_contract_has_no_candle_before_its_first_trade() -> None:
    generator = MarketGenerator(CONFIG, START_MS)
    book = CandleBook(generator.profiles, generator.history)
    contracts = ContractBook(generator, START_MS)
    contracts.set_status("NEWUSDT", ContractStatus.TRADING, START_MS)
    assert generator.history("NEWUSDT") is None
    assert book.rows("NEWUSDT", MINUTE_MS, 0, None, 1_500) == []
    events = []
    for _ in range(20):
        for event in generator.step().events:
            book.add(event)
            events.append(event)
    new = [event for event in events if event.symbol == "NEWUSDT"]
    rows = book.rows("NEWUSDT", MINUTE_MS, 0, None, 1_500)
    assert rows[0][0] == new[0].event_time // MINUTE_MS * MINUTE_MS
    assert new[0].payload["o"] == new[0].payload["c"] == rows[0][1]
    assert new[-1].payload["o"] == rows[0][1]
    assert Decimal(str(new[-1].payload["v"])) == sum(Decimal(row[5]) for row in rows)
