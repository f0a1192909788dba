import datetime as dt
import json
import re
from decimal import Decimal

import pytest

from recorder.simulate.config import SimulatorConfig
from recorder.simulate.market import MarketEvent, MarketGenerator
from recorder.simulate.profiles import PRICE_PROFILES, assign_profiles, format_units, pair_of

START_MS = 1_780_000_000_000


def run(config: SimulatorConfig, ticks: int) -> list[MarketEvent]:
    generator = MarketGenerator(config, START_MS)
    return [event for _ in range(ticks) for event in generator.step().events]


@pytest.mark.parametrize(
    ("units", "decimals", "text"),
    [
        (3_018_000, 2, "30180.00"),
        (721_000, 7, "0.0721000"),
        (1_234, 9, "0.000001234"),
        (6_878_775_288, 0, "6878775288"),
        (5, 3, "0.005"),
        (0, 2, "0.00"),
        (-150, 2, "-1.50"),
    ],
)
def test_format_units_keeps_binance_precision(units: int, decimals: int, text: str) -> None:
    assert format_units(units, decimals) == text


def test_pair_strips_only_a_delivery_suffix() -> None:
    assert pair_of("BTCUSDT_260327") == "BTCUSDT"
    assert pair_of("币安人生USDT") == "币安人生USDT"


def test_same_seed_same_market() -> None:
    config = SimulatorConfig(seed=7)
    assert run(config, 50) == run(config, 50)


def test_another_seed_another_market() -> None:
    first = [event.payload_json for event in run(SimulatorConfig(seed=1), 5)]
    second = [event.payload_json for event in run(SimulatorConfig(seed=2), 5)]
    assert first != second


def test_default_symbols_cover_every_price_profile() -> None:
    profiles = assign_profiles(SimulatorConfig())
    assert {profile.price.name for profile in profiles} == {p.name for p in PRICE_PROFILES}


def test_known_bases_look_like_the_real_contract() -> None:
    profiles = {p.symbol: p.price.name for p in assign_profiles(SimulatorConfig())}
    assert profiles["BTCUSDT"] == "major"
    assert profiles["BTCUSDT_260327"] == "major"
    assert profiles["1000LUNCBUSD"] == "coarse"


def test_decimal_strings_have_the_profile_precision() -> None:
    config = SimulatorConfig(activity=1.0)
    profiles = {profile.symbol: profile.price for profile in assign_profiles(config)}
    for event in run(config, 20):
        price = profiles[event.symbol]
        decimals = price.price_decimals
        price_pattern = rf"\d+\.\d{{{decimals}}}"
        for key in ("c", "o", "h", "l", "q"):
            assert re.fullmatch(price_pattern, str(event.payload[key])), (event.symbol, key)
        volume_pattern = (
            r"\d+" if price.quantity_decimals == 0 else rf"\d+\.\d{{{price.quantity_decimals}}}"
        )
        assert re.fullmatch(volume_pattern, str(event.payload["v"]))


def test_formats_range_from_integer_volumes_to_nine_decimal_prices() -> None:
    events = run(SimulatorConfig(activity=1.0), 5)
    assert any(re.fullmatch(r"0\.0{5}\d{4}", str(e.payload["c"])) for e in events)
    assert any(re.fullmatch(r"\d+\.\d{2}", str(e.payload["c"])) for e in events)
    assert any(re.fullmatch(r"\d{9,}", str(e.payload["v"])) for e in events)
    assert any(Decimal(str(e.payload["q"])) > 10**8 for e in events)


def test_coarse_ticks_show_trailing_zeros() -> None:
    events = [e for e in run(SimulatorConfig(activity=1.0), 30) if e.symbol == "1000LUNCBUSD"]
    assert events
    for event in events:
        assert str(event.payload["c"]).endswith("00")
        assert str(event.payload["q"]).endswith("00")


def test_payload_keys_and_types_are_binance_s() -> None:
    config = SimulatorConfig(activity=1.0, pair_fraction=0.0)
    for event in run(config, 3):
        assert list(event.payload) == ["e", "E", "s", "c", "o", "h", "l", "v", "q"]
        assert event.payload["e"] == "24hrMiniTicker"
        assert event.payload["E"] == event.event_time
        assert event.payload["s"] == event.symbol
        assert json.loads(event.payload_json) == event.payload


def test_payload_json_keeps_non_ascii_symbols_readable() -> None:
    events = run(SimulatorConfig(symbols=("币安人生USDT",), activity=1.0), 1)
    assert '"s":"币安人生USDT"' in events[0].payload_json


@pytest.mark.parametrize(("fraction", "carriers"), [(0.0, 0), (0.5, 5), (1.0, 10)])
def test_pair_fraction_decides_how_many_symbols_carry_ps_and_st(
    fraction: float, carriers: int
) -> None:
    config = SimulatorConfig(activity=1.0, pair_fraction=fraction)
    events = run(config, 1)
    carrying = [e for e in events if "ps" in e.payload]
    assert len(carrying) == carriers
    for event in carrying:
        assert event.payload["ps"] == pair_of(event.symbol)
        assert event.payload["st"] == 1


def test_event_time_is_tick_time_plus_bounded_jitter() -> None:
    config = SimulatorConfig(activity=1.0, interval_ms=2_000, jitter_ms=150)
    for event in run(config, 40):
        jitter = event.event_time - (START_MS + event.tick * 2_000)
        assert 0 <= jitter <= 150


def test_event_time_strictly_increases_per_symbol() -> None:
    config = SimulatorConfig(activity=1.0, interval_ms=200, jitter_ms=199)
    last: dict[str, int] = {}
    jitters = set()
    for event in run(config, 300):
        assert event.event_time > last.get(event.symbol, 0)
        last[event.symbol] = event.event_time
        jitters.add(event.event_time - (START_MS + event.tick * 200))
    assert len(jitters) > 100  # the jitter really varies


def test_open_high_low_stay_consistent_with_the_close() -> None:
    for event in run(SimulatorConfig(activity=1.0), 200):
        close, open_ = Decimal(str(event.payload["c"])), Decimal(str(event.payload["o"]))
        high, low = Decimal(str(event.payload["h"])), Decimal(str(event.payload["l"]))
        assert low <= min(open_, close) <= max(open_, close) <= high
        assert low > 0


def test_the_close_walks_on_from_the_history_s_last_close() -> None:
    generator = MarketGenerator(SimulatorConfig(activity=1.0), START_MS)
    closes = {symbol: generator.snapshot(symbol).close for symbol in generator.profiles}
    for symbol in generator.profiles:
        history = generator.history(symbol)
        assert history is not None
        decimals = generator.profiles[symbol].price.price_decimals
        assert closes[symbol] == format_units(history.closes[-1], decimals)


def test_unchanged_symbols_get_no_event() -> None:
    config = SimulatorConfig(
        symbols=("BTCUSDT", "ETHUSDT"), activity=1.0, quiet_symbols=("ETHUSDT",)
    )
    events = run(config, 400)
    busy = [e for e in events if e.symbol == "BTCUSDT"]
    quiet = [e for e in events if e.symbol == "ETHUSDT"]
    assert len(busy) == 400
    assert 10 < len(quiet) < 100  # about 10 % of the ticks


def test_default_activity_is_mostly_but_not_always_busy() -> None:
    config = SimulatorConfig()
    count = len(run(config, 100))
    assert 0.85 * 1_000 < count < 1_000


def test_activity_zero_means_silence() -> None:
    assert run(SimulatorConfig(activity=0.0), 50) == []


def test_a_start_before_midnight_crosses_the_day_boundary() -> None:
    start = int(dt.datetime(2026, 5, 1, 23, 59, 50, tzinfo=dt.UTC).timestamp() * 1000)
    generator = MarketGenerator(SimulatorConfig(activity=1.0), start)
    days = {
        dt.datetime.fromtimestamp(event.event_time / 1000, tz=dt.UTC).date()
        for _ in range(10)
        for event in generator.step().events
    }
    assert days == {dt.date(2026, 5, 1), dt.date(2026, 5, 2)}


def test_snapshot_reflects_the_last_event() -> None:
    generator = MarketGenerator(SimulatorConfig(activity=1.0), START_MS)
    before = generator.snapshot("BTCUSDT")
    assert before.event_time == START_MS
    assert before.trades == before.last_id > 0  # the day of history's
    events = [e for _ in range(3) for e in generator.step().events if e.symbol == "BTCUSDT"]
    snapshot = generator.snapshot("BTCUSDT")
    assert snapshot.close == events[-1].payload["c"]
    assert snapshot.volume == events[-1].payload["v"]
    assert snapshot.event_time == events[-1].event_time
    assert snapshot.last_id == before.last_id + 3


def test_payload_now_is_the_current_state_at_a_given_time() -> None:
    generator = MarketGenerator(SimulatorConfig(activity=1.0), START_MS)
    event = next(e for e in generator.step().events if e.symbol == "ETHUSDT")
    payload = generator.payload_now("ETHUSDT", 42)
    assert payload["E"] == 42
    assert {k: v for k, v in payload.items() if k != "E"} == {
        k: v for k, v in event.payload.items() if k != "E"
    }
