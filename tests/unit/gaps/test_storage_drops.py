"""Storage gaps, sans-IO: where a hole starts and ends, what stays protected, what is counted."""

from hypothesis import given
from hypothesis import strategies as st

from recorder.gaps.detector import GapCause
from recorder.gaps.storage_drops import StorageDrops

BTC = "BTCUSDT"


def test_a_hole_runs_from_the_newest_durable_event_to_the_first_held_after_it() -> None:
    drops = StorageDrops(2000, {BTC: 10_000})
    drops.durable(BTC, 12_000)
    drops.dropped(BTC, 3, 14_000)

    assert drops.open_holes == {BTC: 12_000}
    gap = drops.close(BTC, 20_000, now_us=7)

    assert gap is not None
    assert (gap.symbol, gap.from_ms, gap.to_ms, gap.missed, gap.cause, gap.detected_at) == (
        BTC,
        12_000,
        20_000,
        3,
        GapCause.STORAGE,
        7,
    )
    assert drops.open_holes == {}
    assert drops.close(BTC, 22_000, now_us=8) is None


def test_without_a_durable_event_the_hole_starts_one_interval_before_the_first_drop() -> None:
    drops = StorageDrops(2000)
    drops.dropped(BTC, 2, 50_000)
    gap = drops.close(BTC, 54_000, now_us=0)
    assert gap is not None
    assert (gap.from_ms, gap.missed) == (48_000, 2)


def test_the_closing_event_stays_protected_until_durable_and_starts_the_next_hole() -> None:
    drops = StorageDrops(2000, {BTC: 10_000})
    drops.dropped(BTC, 1, 12_000)
    drops.close(BTC, 14_000, now_us=0)
    drops.dropped(BTC, 2, 16_000)  # the closing event itself is kept (protected)
    second = drops.close(BTC, 22_000, now_us=0)

    assert drops.protected == {BTC: frozenset({14_000, 22_000})}
    assert second is not None
    assert (second.from_ms, second.missed) == (14_000, 3)
    drops.durable(BTC, 14_000)
    assert drops.protected == {BTC: frozenset({22_000})}
    drops.durable(BTC, 30_000)
    assert drops.protected == {}
    assert drops.last_durable == {BTC: 30_000}


def test_durable_never_moves_the_newest_event_backwards() -> None:
    drops = StorageDrops(2000, {BTC: 10_000})
    drops.durable(BTC, 8_000)
    assert drops.last_durable == {BTC: 10_000}


@given(
    st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=30),
    st.integers(min_value=0, max_value=10**9),
)
def test_consecutive_drops_are_counted_by_the_gap_formula(runs: list[int], start: int) -> None:
    # Events every 2 s; each run of drops is followed by one kept event that closes its hole.
    drops = StorageDrops(2000, {BTC: start})
    at = start
    for run in runs:
        drops.dropped(BTC, run, at + 2000)
        at += 2000 * (run + 1)
        gap = drops.close(BTC, at, now_us=0)
        assert gap is not None
        assert gap.missed == run
        assert gap.to_ms - gap.from_ms == 2000 * (run + 1)
        drops.durable(BTC, at)
    assert drops.protected == {}
