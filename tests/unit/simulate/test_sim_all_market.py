from hypothesis import given
from hypothesis import strategies as st

from recorder.simulate.all_market import ARRAY_PERIOD_MS, ArrayWindows, array_lag_ms
from recorder.simulate.config import SimulatorConfig
from recorder.simulate.ledger import EventLedger, LedgerEntry
from recorder.simulate.market import MarketGenerator

START_MS = 1_780_000_000_123


@given(interval_ms=st.integers(min_value=1, max_value=10_000), window=st.integers(0, 100_000))
def test_an_array_waits_for_exactly_the_ticks_that_fill_it_and_is_never_late(
    interval_ms: int, window: int
) -> None:
    windows = ArrayWindows(START_MS, interval_ms)
    end = START_MS + (window + 1) * ARRAY_PERIOD_MS
    needed = windows.ticks_needed(window)
    # Tick n has E >= start + n * interval: the ticks after the needed ones fall in later seconds.
    assert START_MS + needed * interval_ms >= end
    assert START_MS + (needed - 1) * interval_ms < end
    # The last needed tick is generated at the end of its interval, by the array's due time.
    assert START_MS + needed * interval_ms <= windows.due_ms(window)
    assert windows.due_ms(window + 1) - windows.due_ms(window) == ARRAY_PERIOD_MS


@given(interval_ms=st.integers(min_value=1, max_value=10_000))
def test_the_lag_is_the_least_that_keeps_every_array_complete(interval_ms: int) -> None:
    lag = array_lag_ms(interval_ms)
    waits = [
        -(-end // interval_ms) * interval_ms - end
        for end in range(ARRAY_PERIOD_MS, ARRAY_PERIOD_MS * (interval_ms + 1), ARRAY_PERIOD_MS)
    ]
    assert max(waits) == lag


@given(
    interval_ms=st.sampled_from([300, 1_000, 1_500, 2_000, 3_000]),
    jitter_fraction=st.floats(min_value=0.0, max_value=0.99),
    seed=st.integers(0, 50),
)
def test_every_event_goes_in_the_array_of_its_second_exactly_once(
    interval_ms: int, jitter_fraction: float, seed: int
) -> None:
    config = SimulatorConfig(
        interval_ms=interval_ms, jitter_ms=int(interval_ms * jitter_fraction), seed=seed
    )
    generator = MarketGenerator(config, START_MS)
    ledger = EventLedger(100_000)
    windows = ArrayWindows(START_MS, interval_ms)
    generated: list[LedgerEntry] = []
    sent: list[list[LedgerEntry]] = []
    for window in range(12):
        while generator.next_tick < windows.ticks_needed(window):
            entries = ledger.record(generator.step().events)
            generated.extend(entries)
            windows.add(entries)
        sent.append(windows.take(window))
    for window, entries in enumerate(sent):
        assert all(windows.window_of(entry.event.event_time) == window for entry in entries)
    flat = [(entry.event.symbol, entry.event.event_time) for entries in sent for entry in entries]
    in_time = [
        (entry.event.symbol, entry.event.event_time)
        for entry in generated
        if entry.event.event_time < START_MS + len(sent) * ARRAY_PERIOD_MS
    ]
    assert len(flat) == len(set(flat))
    assert sorted(flat) == sorted(in_time)
    if interval_ms == 2_000 and config.jitter_ms < ARRAY_PERIOD_MS:
        # Every other second has no tick, and still gets its array.
        assert all(not entries for entries in sent[1::2])


def test_an_empty_second_gives_an_empty_array() -> None:
    assert ArrayWindows(START_MS, 2_000).take(3) == []
