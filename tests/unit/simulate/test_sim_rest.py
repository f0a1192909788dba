import itertools
from decimal import Decimal

import pytest
from sim_market import run_market

from recorder.exchange_limits import klines_weight
from recorder.simulate.config import SimulatorConfig
from recorder.simulate.exchange_info import (
    PERPETUAL_DELIVERY_MS,
    delivery_date_ms,
    exchange_info,
    split_pair,
)
from recorder.simulate.history import MINUTE_MS
from recorder.simulate.listings import ContractBook, ContractStatus
from recorder.simulate.market import MarketEvent, MarketGenerator
from recorder.simulate.rest import (
    PING,
    CandleBook,
    WeightMeter,
    klines,
    server_time,
    ticker_24hr,
)

START_MS = 1_780_000_040_000  # 20 s into a minute
LIVE_MINUTE = START_MS // MINUTE_MS * MINUTE_MS
"""The first minute with events; the day before it is the synthetic history."""
CONFIG = SimulatorConfig(
    symbols=("BTCUSDT", "ETHUSDT", "BTCUSDT_260327"),
    quiet_symbols=("ETHUSDT",),
    quiet_activity=0.0,
    activity=1.0,
    interval_ms=2_000,
)


def market(ticks: int) -> tuple[MarketGenerator, CandleBook, list[MarketEvent]]:
    run = run_market(CONFIG, START_MS, ticks)
    return run.generator, run.book, run.events


def test_weight_meter_counts_per_clock_minute() -> None:
    meter = WeightMeter(limit=10)
    assert meter.spend(6, 120.0)
    assert meter.spend(4, 150.0)
    assert not meter.spend(1, 179.9)
    assert meter.used == 10
    assert meter.spend(1, 180.0)
    assert meter.used == 1


def test_retry_after_points_at_the_next_minute() -> None:
    assert WeightMeter.retry_after(125.5) == 55
    assert WeightMeter.retry_after(179.99) == 1


@pytest.mark.parametrize(
    ("limit", "weight"),
    [(1, 1), (99, 1), (100, 2), (499, 2), (500, 5), (1000, 5), (1001, 10), (1500, 10)],
)
def test_klines_weight(limit: int, weight: int) -> None:
    assert klines_weight(limit) == weight


def test_split_pair() -> None:
    assert split_pair("1000LUNCBUSD") == ("1000LUNC", "BUSD")
    assert split_pair("BTCUSDC") == ("BTC", "USDC")
    assert split_pair("WEIRD") == ("WEIRD", "USDT")


def test_delivery_dates() -> None:
    assert delivery_date_ms("BTCUSDT") == PERPETUAL_DELIVERY_MS
    assert delivery_date_ms("BTCUSDT_991399") == PERPETUAL_DELIVERY_MS


def test_ping_and_server_time_weigh_1() -> None:
    assert (PING.status, PING.body, PING.weight) == (200, {}, 1)
    reply = server_time(START_MS)
    assert (reply.status, reply.body, reply.weight) == (200, {"serverTime": START_MS}, 1)


def test_exchange_info_lists_every_configured_symbol_trading() -> None:
    generator, _, _ = market(0)
    onboard = START_MS - 86_400_000
    body = exchange_info(ContractBook(generator, onboard).contracts(), START_MS, 2_400)
    assert body["serverTime"] == START_MS
    symbols = body["symbols"]
    assert isinstance(symbols, list)
    by_name = {entry["symbol"]: entry for entry in symbols}
    assert list(by_name) == list(CONFIG.symbols)
    assert all(entry["status"] == "TRADING" for entry in symbols)
    assert {entry["onboardDate"] for entry in symbols} == {onboard}
    assert by_name["BTCUSDT"]["contractType"] == "PERPETUAL"
    assert by_name["BTCUSDT_260327"]["contractType"] == "CURRENT_QUARTER"
    assert by_name["BTCUSDT_260327"]["pair"] == "BTCUSDT"
    assert by_name["BTCUSDT_260327"]["deliveryDate"] == 1_774_598_400_000
    assert (by_name["ETHUSDT"]["baseAsset"], by_name["ETHUSDT"]["quoteAsset"]) == ("ETH", "USDT")
    tick = by_name["BTCUSDT"]["filters"][0]
    assert tick["filterType"] == "PRICE_FILTER"
    assert tick["tickSize"] == "0.10"


def test_exchange_info_has_binance_s_fields_and_types() -> None:
    generator, _, _ = market(0)
    body = exchange_info(ContractBook(generator, START_MS).contracts(), START_MS, 2_400)
    assert list(body) == [
        "timezone",
        "serverTime",
        "futuresType",
        "rateLimits",
        "exchangeFilters",
        "assets",
        "symbols",
    ]
    assert body["futuresType"] == "U_MARGINED"
    assert body["assets"] == [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "0"}]
    symbols = body["symbols"]
    assert isinstance(symbols, list)
    entry = symbols[0]
    strings = {
        "symbol", "pair", "contractType", "status", "maintMarginPercent", "requiredMarginPercent",
        "baseAsset", "quoteAsset", "marginAsset", "underlyingType", "triggerProtect",
        "liquidationFee", "marketTakeBound",
    }  # fmt: skip
    integers = {
        "deliveryDate", "onboardDate", "pricePrecision", "quantityPrecision",
        "baseAssetPrecision", "quotePrecision", "settlePlan", "maxMoveOrderLimit",
    }  # fmt: skip
    lists = {"underlyingSubType", "filters", "orderTypes", "timeInForce"}
    assert set(entry) == strings | integers | lists
    assert all(type(entry[name]) is str for name in strings)
    assert all(type(entry[name]) is int for name in integers)
    assert all(type(entry[name]) is list for name in lists)
    filters = {item["filterType"]: item for item in entry["filters"]}
    assert set(filters) == {
        "PRICE_FILTER", "LOT_SIZE", "MARKET_LOT_SIZE", "MAX_NUM_ORDERS", "MAX_NUM_ALGO_ORDERS",
        "MIN_NOTIONAL", "PERCENT_PRICE",
    }  # fmt: skip
    assert type(filters["MAX_NUM_ORDERS"]["limit"]) is int
    assert type(filters["PERCENT_PRICE"]["multiplierDecimal"]) is str


def test_exchange_info_follows_the_listing() -> None:
    generator, _, _ = market(0)
    book = ContractBook(generator, START_MS)
    book.set_status("NEWUSDC", ContractStatus.PENDING_TRADING, START_MS + 5)
    book.set_status("ETHUSDT", ContractStatus.SETTLING, START_MS + 6)
    book.delist("BTCUSDT_260327")
    body = exchange_info(book.contracts(), START_MS + 7, 2_400)
    symbols = body["symbols"]
    assert isinstance(symbols, list)
    assert [(entry["symbol"], entry["status"]) for entry in symbols] == [
        ("BTCUSDT", "TRADING"),
        ("ETHUSDT", "SETTLING"),
        ("NEWUSDC", "PENDING_TRADING"),
    ]
    assert symbols[2]["onboardDate"] == START_MS + 5
    assert (symbols[2]["baseAsset"], symbols[2]["marginAsset"]) == ("NEW", "USDC")
    assets = body["assets"]
    assert isinstance(assets, list)
    assert [asset["asset"] for asset in assets] == ["USDC", "USDT"]


def test_ticker_of_one_symbol() -> None:
    generator, _, generated = market(5)
    reply = ticker_24hr(generator, CONFIG.symbols, {"symbol": "BTCUSDT"})
    assert reply.status == 200
    assert reply.weight == 1
    body = reply.body
    assert isinstance(body, dict)
    last = [e for e in generated if e.symbol == "BTCUSDT"][-1]
    assert body["lastPrice"] == last.payload["c"]
    assert body["volume"] == last.payload["v"]
    assert body["closeTime"] == last.event_time
    assert body["lastId"] == generator.snapshot("BTCUSDT").last_id
    change = Decimal(str(last.payload["c"])) - Decimal(str(last.payload["o"]))
    assert Decimal(body["priceChange"]) == change


def test_ticker_of_all_symbols_weighs_40() -> None:
    generator, _, _ = market(1)
    reply = ticker_24hr(generator, CONFIG.symbols, {})
    assert reply.weight == 40
    assert isinstance(reply.body, list)
    assert [entry["symbol"] for entry in reply.body] == list(CONFIG.symbols)


def test_ticker_of_an_unknown_symbol() -> None:
    generator, _, _ = market(1)
    reply = ticker_24hr(generator, CONFIG.symbols, {"symbol": "NOPEUSDT"})
    assert (reply.status, reply.body) == (400, {"code": -1121, "msg": "Invalid symbol."})


def test_ticker_of_a_delisted_symbol() -> None:
    generator, _, _ = market(1)
    assert ticker_24hr(generator, ("BTCUSDT",), {"symbol": "ETHUSDT"}).status == 400
    every = ticker_24hr(generator, ("BTCUSDT",), {}).body
    assert isinstance(every, list)
    assert [entry["symbol"] for entry in every] == ["BTCUSDT"]


def test_one_minute_candles_follow_the_events() -> None:
    _, book, generated = market(60)  # 2 minutes of events, starting 20 s into a minute
    rows = book.rows("BTCUSDT", MINUTE_MS, LIVE_MINUTE, None, 500)
    btc = [e for e in generated if e.symbol == "BTCUSDT"]
    minutes = sorted({e.event_time // MINUTE_MS * MINUTE_MS for e in btc})
    assert [row[0] for row in rows] == minutes
    for row in rows:
        inside = [e for e in btc if row[0] <= e.event_time <= row[6]]
        closes = [Decimal(str(e.payload["c"])) for e in inside]
        assert row[6] == row[0] + MINUTE_MS - 1
        assert Decimal(str(row[1])) == closes[0]
        assert Decimal(str(row[2])) == max(closes)
        assert Decimal(str(row[3])) == min(closes)
        assert Decimal(str(row[4])) == closes[-1]
        assert row[8] == len(inside)
        assert Decimal(str(row[9])) <= Decimal(str(row[5]))
        assert row[11] == "0"


def test_minutes_without_events_are_flat_candles() -> None:
    config = SimulatorConfig(symbols=("BTCUSDT",), activity=0.02, interval_ms=2_000)
    generator = MarketGenerator(config, START_MS)
    book = CandleBook(generator.profiles, generator.history)
    for _ in range(600):
        for event in generator.step().events:
            book.add(event)
    rows = book.rows("BTCUSDT", MINUTE_MS, None, None, 1_500)
    assert all(b[0] - a[0] == MINUTE_MS for a, b in itertools.pairwise(rows))
    flat = [row for row in rows if row[8] == 0]
    assert flat
    for row in flat:
        previous = rows[rows.index(row) - 1]
        assert row[1] == row[2] == row[3] == row[4] == previous[4]
        assert Decimal(str(row[5])) == 0


def test_selection_by_start_end_and_limit() -> None:
    _, book, _ = market(300)  # 10 minutes
    every = book.rows("BTCUSDT", MINUTE_MS, LIVE_MINUTE, None, 1_500)
    opens = [row[0] for row in every]
    assert len(opens) == 11
    assert [r[0] for r in book.rows("BTCUSDT", MINUTE_MS, None, None, 3)] == opens[-3:]
    assert [r[0] for r in book.rows("BTCUSDT", MINUTE_MS, opens[2], None, 3)] == opens[2:5]
    assert [r[0] for r in book.rows("BTCUSDT", MINUTE_MS, opens[2] + 1, None, 2)] == opens[3:5]
    assert [r[0] for r in book.rows("BTCUSDT", MINUTE_MS, None, opens[5], 2)] == opens[4:6]
    assert [r[0] for r in book.rows("BTCUSDT", MINUTE_MS, opens[1], opens[3], 500)] == opens[1:4]
    assert book.rows("BTCUSDT", MINUTE_MS, opens[-1] + MINUTE_MS, None, 5) == []
    # A symbol that never trades has its day of history only, flat and empty at activity 0.
    [*_, last] = book.rows("ETHUSDT", MINUTE_MS, None, None, 5)
    assert (last[0], last[5], last[8]) == (LIVE_MINUTE - MINUTE_MS, "0.000", 0)


def test_wider_intervals_aggregate_minutes() -> None:
    _, book, _ = market(300)
    minutes = book.rows("BTCUSDT", MINUTE_MS, None, None, 1_500)
    fives = book.rows("BTCUSDT", 5 * MINUTE_MS, None, None, 1_500)
    assert sum(row[8] for row in fives) == sum(row[8] for row in minutes)
    for row in fives:
        assert row[0] % (5 * MINUTE_MS) == 0
        inside = [m for m in minutes if row[0] <= m[0] < row[0] + 5 * MINUTE_MS]
        assert row[1] == inside[0][1]
        assert row[4] == inside[-1][4]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"interval": "1m"}, -1102),
        ({"symbol": "BTCUSDT"}, -1102),
        ({"symbol": "BTCUSDT", "interval": "7m"}, -1120),
        ({"symbol": "BTCUSDT", "interval": "1m", "limit": "abc"}, -1100),
        ({"symbol": "BTCUSDT", "interval": "1m", "limit": "1501"}, -1130),
        ({"symbol": "BTCUSDT", "interval": "1m", "limit": "0"}, -1130),
        ({"symbol": "BTCUSDT", "interval": "1m", "startTime": "-5"}, -1100),
        ({"symbol": "BTCUSDT", "interval": "1m", "startTime": "9", "endTime": "8"}, -1023),
        ({"symbol": "NOPEUSDT", "interval": "1m"}, -1121),
    ],
)
def test_klines_errors(params: dict[str, str], code: int) -> None:
    _, book, _ = market(1)
    reply = klines(book, params)
    assert reply.status == 400
    assert isinstance(reply.body, dict)
    assert reply.body["code"] == code


def test_klines_reply_and_weight() -> None:
    _, book, _ = market(30)
    reply = klines(book, {"symbol": "BTCUSDT", "interval": "1m", "limit": "1000"})
    assert reply.status == 200
    assert reply.weight == 5
    assert reply.body == book.rows("BTCUSDT", MINUTE_MS, None, None, 1000)
