"""Rebuilt rows from candles, sans-IO: the minutes a gap holds and their rolling 24 h values."""

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.backfill.rebuild import WINDOW_MINUTES, candle_spans, minutes_inside, rebuild
from recorder.ingest.klines import MAX_KLINES, MINUTE_MS, Candle

T0 = 1_714_557_600_000  # 2024-05-01T10:00:00Z, a whole minute


def candle(minute: int, close: str = "10.5", volume: str = "2.25") -> Candle:
    return Candle(minute, close, close, close, close, volume, "23.625")


def test_the_minutes_strictly_inside_a_gap() -> None:
    assert minutes_inside(T0, T0 + 2 * MINUTE_MS) == [T0 + MINUTE_MS]
    # A minute that starts on from_ms holds the recorded event: not inside.
    assert minutes_inside(T0 - 1, T0 + MINUTE_MS) == [T0]
    assert minutes_inside(T0, T0 + MINUTE_MS) == []
    assert minutes_inside(T0 + 1_500, T0 + 119_999) == []
    assert minutes_inside(T0 + 1_500, T0 + 120_000) == [T0 + MINUTE_MS]


def test_spans_cover_the_window_in_requests_of_at_most_1500() -> None:
    minutes = minutes_inside(T0, T0 + 3 * 24 * 3_600_000)
    spans = candle_spans(minutes)
    assert spans[0][0] == minutes[0] - (WINDOW_MINUTES - 1) * MINUTE_MS
    assert spans[-1][1] == minutes[-1]
    for (first, last), following in zip(spans, [*spans[1:], None], strict=True):
        assert (last - first) // MINUTE_MS + 1 <= MAX_KLINES
        if following is not None:
            assert following[0] == last + MINUTE_MS
    assert candle_spans([]) == []


def test_a_row_is_the_minutes_close_and_the_trailing_days_totals() -> None:
    minute = T0 + 2_000 * MINUTE_MS
    start = minute - (WINDOW_MINUTES - 1) * MINUTE_MS
    candles = {start - MINUTE_MS: Candle(start - MINUTE_MS, "999", "999", "1", "999", "7", "7")}
    for index in range(WINDOW_MINUTES):
        at = start + index * MINUTE_MS
        candles[at] = Candle(
            at, f"{100 + index}.0", f"{200 + index}.00", "50.5", "101.1", "0.1", "1.10"
        )
    [row] = rebuild("BTCUSDT", [minute], candles, read_at_us=7).rows
    assert (row.symbol, row.event_time, row.receive_time) == ("BTCUSDT", minute + MINUTE_MS - 1, 7)
    assert (row.pair, row.contract_type) == (None, None)
    assert row.close == "101.1"
    assert row.open == "100.0"  # the first candle of the window, not the one before it
    assert Decimal(row.high) == Decimal(200 + WINDOW_MINUTES - 1)
    assert Decimal(row.low) == Decimal("50.5")
    assert Decimal(row.volume) == Decimal("144.0")
    assert Decimal(row.quote_volume) == Decimal("1584.00")


def test_a_minute_without_its_candle_is_reported_not_invented() -> None:
    minutes = [T0, T0 + MINUTE_MS]
    result = rebuild("BTCUSDT", minutes, {T0: candle(T0)}, read_at_us=7)
    assert [row.event_time for row in result.rows] == [T0 + MINUTE_MS - 1]
    assert result.missing == [(T0 + MINUTE_MS, "the exchange returned no candle for it")]


def test_a_young_contract_has_the_window_it_has() -> None:
    candles = {T0: candle(T0, "1.0"), T0 + MINUTE_MS: candle(T0 + MINUTE_MS, "2.0")}
    result = rebuild("BTCUSDT", [T0 + MINUTE_MS], candles, read_at_us=7)
    [row] = result.rows
    assert (row.open, row.close, row.volume) == ("1.0", "2.0", "4.50")


def test_values_that_do_not_fit_the_dataset_are_reported() -> None:
    huge = "9" * 20 + ".5"
    candles = {
        T0: Candle(T0, "1", "1", "1", "1", huge, "1"),
        T0 + MINUTE_MS: Candle(T0 + MINUTE_MS, "1", "1", "1", "1", huge, "1"),
    }
    result = rebuild("BTCUSDT", [T0 + MINUTE_MS], candles, read_at_us=7)
    assert result.rows == []
    assert result.missing == [(T0 + MINUTE_MS, "volume do not fit decimal(38, 18) exactly")]


prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999"), places=2)
volumes = st.decimals(min_value=Decimal(0), max_value=Decimal("1000"), places=3)


@settings(max_examples=40, deadline=None)
@given(
    data=st.lists(
        st.tuples(prices, prices, prices, volumes, st.booleans()), min_size=1, max_size=1_600
    ),
    wanted=st.sets(st.integers(min_value=0, max_value=1_599), min_size=1, max_size=30),
)
def test_the_rolling_window_equals_the_window_computed_minute_by_minute(
    data: list[tuple[Decimal, Decimal, Decimal, Decimal, bool]], wanted: set[int]
) -> None:
    candles = {}
    for index, (first, second, third, volume, present) in enumerate(data):
        if present:
            low, mid, high = sorted((first, second, third))
            at = T0 + index * MINUTE_MS
            candles[at] = Candle(
                at, str(mid), str(high), str(low), str(mid), str(volume), str(volume * 2)
            )
    minutes = sorted(T0 + index * MINUTE_MS for index in wanted if index < len(data))
    if not minutes:
        return
    result = rebuild("BTCUSDT", minutes, candles, read_at_us=7)
    rows = {row.event_time - MINUTE_MS + 1: row for row in result.rows}
    for minute in minutes:
        if minute not in candles:
            assert minute in dict(result.missing)
            continue
        window = [
            candles[t]
            for t in range(minute - (WINDOW_MINUTES - 1) * MINUTE_MS, minute + 1, MINUTE_MS)
            if t in candles
        ]
        row = rows[minute]
        assert row.open == window[0].open
        assert row.close == candles[minute].close
        assert Decimal(row.high) == max(Decimal(c.high) for c in window)
        assert Decimal(row.low) == min(Decimal(c.low) for c in window)
        assert Decimal(row.volume) == sum(Decimal(c.volume) for c in window)
        assert Decimal(row.quote_volume) == sum(Decimal(c.quote_volume) for c in window)
