"""The event-time guard: implausible ``E`` rejected, a wrong local clock never drops events."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorder.ingest.event_times import (
    MULTI_SYMBOL_QUORUM,
    REASON_CODE,
    SINGLE_SYMBOL_QUORUM,
    ClockOffsetAlarm,
    ClockOffsetChange,
    EventTimeGuard,
    quorum_for,
    screen_restored,
)
from recorder.model import reason_code

T0 = 1_764_000_000_000
"""A real ``E`` (2025-11-24), milliseconds."""
DAY = 86_400_000
YEAR = 365 * DAY
SKEW = DAY


def at(local_ms: int) -> int:
    """``receive_time`` in microseconds for a local clock reading ``local_ms``."""
    return local_ms * 1000


def accepted(decided: list[tuple[str, str | None]]) -> list[str]:
    return [item for item, reason in decided if reason is None]


def rejected(decided: list[tuple[str, str | None]]) -> list[str]:
    return [item for item, reason in decided if reason is not None]


def test_an_event_near_the_local_clock_is_accepted_at_once() -> None:
    guard: EventTimeGuard[str] = EventTimeGuard(SKEW)
    assert guard.admit("BTCUSDT", T0, at(T0 + 40), "a") == [("a", None)]
    assert guard.clock_offset_ms == 40
    assert guard.reference_ms == T0


def test_a_far_future_event_is_held_then_rejected_by_the_next_real_one() -> None:
    guard: EventTimeGuard[str] = EventTimeGuard(SKEW)
    guard.admit("BTCUSDT", T0, at(T0), "real-1")
    assert guard.admit("ETHUSDT", T0 + 10 * YEAR, at(T0 + 500), "future") == []
    assert guard.held == 1
    decided = guard.admit("BTCUSDT", T0 + 2000, at(T0 + 2000), "real-2")
    assert decided[0][0] == "future"
    reason = decided[0][1]
    assert reason is not None
    assert reason_code(reason) == REASON_CODE == "implausible_event_time"
    assert "E=2035-11-22T16:00:00.000Z" in reason
    assert "more than 1d from the local clock (2025-11-24T16:00:00.500Z)" in reason
    assert decided[1:] == [("real-2", None)]
    assert guard.reference_ms == T0 + 2000  # the future E never became the reference
    assert guard.held == 0


def test_a_far_past_event_is_rejected_like_a_far_future_one() -> None:
    guard: EventTimeGuard[str] = EventTimeGuard(SKEW)
    guard.admit("BTCUSDT", T0, at(T0), "real-1")
    assert guard.admit("BTCUSDT", T0 - 3 * YEAR, at(T0 + 1), "past") == []
    assert rejected(guard.admit("ETHUSDT", T0 + 5, at(T0 + 5), "real-2")) == ["past"]


def test_the_very_first_event_far_from_the_clock_waits_for_a_second_opinion() -> None:
    guard: EventTimeGuard[str] = EventTimeGuard(SKEW)
    assert guard.admit("BTCUSDT", T0 + 10 * YEAR, at(T0), "future") == []
    assert guard.reference_ms is None
    decided = guard.admit("ETHUSDT", T0 + 1, at(T0 + 1), "real")
    assert rejected(decided) == ["future"]
    assert decided[-1] == ("real", None)
    assert "no other event vouches for it" in str(decided[0][1])
    assert guard.reference_ms == T0 + 1


@pytest.mark.parametrize("clock_error_ms", [-56 * YEAR, -YEAR, -2 * SKEW, 2 * SKEW, 70 * YEAR])
def test_a_wrong_local_clock_drops_nothing_when_two_symbols_agree(clock_error_ms: int) -> None:
    guard: EventTimeGuard[str] = EventTimeGuard(SKEW)
    assert guard.admit("BTCUSDT", T0, at(T0 + clock_error_ms), "btc-1") == []
    assert guard.admit("ETHUSDT", T0 + 300, at(T0 + 300 + clock_error_ms), "eth-1") == [
        ("btc-1", None),
        ("eth-1", None),
    ]
    # From now on the accepted E vouch for the next events at once.
    assert guard.admit("BTCUSDT", T0 + 2000, at(T0 + 2000 + clock_error_ms), "btc-2") == [
        ("btc-2", None)
    ]
    assert guard.clock_offset_ms == clock_error_ms
    assert guard.held == 0


def test_a_single_symbol_with_a_wrong_clock_vouches_for_itself_after_a_quorum() -> None:
    guard: EventTimeGuard[str] = EventTimeGuard(SKEW, quorum=SINGLE_SYMBOL_QUORUM)
    behind = -YEAR
    decided: list[tuple[str, str | None]] = []
    for tick in range(SINGLE_SYMBOL_QUORUM + 2):
        event_time = T0 + tick * 2000
        decided += guard.admit("BTCUSDT", event_time, at(event_time + behind), f"e{tick}")
        if tick < SINGLE_SYMBOL_QUORUM - 1:
            assert guard.held == tick + 1
    assert decided == [(f"e{tick}", None) for tick in range(SINGLE_SYMBOL_QUORUM + 2)]


def test_restored_state_is_a_reference_when_the_clock_is_wrong() -> None:
    guard: EventTimeGuard[str] = EventTimeGuard(SKEW, restored={"BTCUSDT": T0 - 60_000})
    assert guard.admit("ETHUSDT", T0, at(T0 - 10 * YEAR), "eth") == [("eth", None)]


def test_a_stale_reference_and_a_wrong_clock_still_drop_nothing() -> None:
    # Stopped for a week, restarted on a host whose clock says 1970: neither witness helps,
    # the events vouch for each other.
    guard: EventTimeGuard[str] = EventTimeGuard(SKEW, restored={"BTCUSDT": T0 - 7 * DAY})
    assert guard.admit("BTCUSDT", T0, at(0), "btc") == []
    assert accepted(guard.admit("ETHUSDT", T0 + 1, at(1), "eth")) == ["btc", "eth"]


def test_a_suspect_far_from_the_held_ones_rejects_them_and_waits_itself() -> None:
    guard: EventTimeGuard[str] = EventTimeGuard(SKEW)
    guard.admit("BTCUSDT", T0 + 10 * YEAR, at(T0 - YEAR), "hostile")
    decided = guard.admit("ETHUSDT", T0, at(T0 - YEAR), "real-1")
    assert rejected(decided) == ["hostile"]
    assert guard.held == 1
    assert accepted(guard.admit("BTCUSDT", T0 + 5, at(T0 + 5 - YEAR), "real-2")) == [
        "real-1",
        "real-2",
    ]


def test_settle_rejects_what_nothing_vouched_for() -> None:
    guard: EventTimeGuard[str] = EventTimeGuard(SKEW)
    guard.admit("BTCUSDT", T0, at(T0), "real")
    guard.admit("BTCUSDT", T0 + 10 * YEAR, at(T0 + 1), "future")
    [(item, reason)] = guard.settle()
    assert item == "future"
    assert reason.endswith("nothing vouched for it before the recorder stopped")
    assert guard.settle() == []


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        EventTimeGuard(0)
    with pytest.raises(ValueError, match="positive"):
        EventTimeGuard(SKEW, quorum=0)


# -- properties over any E and any clock ------------------------------------------------------

ANY_MS = st.integers(min_value=-(2**63), max_value=2**63)
SYMBOLS = st.sampled_from(["BTCUSDT", "ETHUSDT", "SOLUSDT"])


@given(
    st.lists(st.tuples(SYMBOLS, ANY_MS, ANY_MS), max_size=40),
    st.integers(min_value=1, max_value=10 * YEAR),
    st.integers(min_value=1, max_value=5),
)
def test_every_event_is_decided_once_in_arrival_order(
    events: list[tuple[str, int, int]], skew: int, quorum: int
) -> None:
    guard: EventTimeGuard[int] = EventTimeGuard(skew, quorum=quorum)
    decided: list[tuple[int, str | None]] = []
    for index, (symbol, event_time, local_ms) in enumerate(events):
        decided += guard.admit(symbol, event_time, at(local_ms), index)
        assert guard.held < quorum
    decided += guard.settle()
    assert [index for index, _ in decided] == list(range(len(events)))
    for _, reason in decided:
        assert reason is None or reason_code(reason) == REASON_CODE


@given(
    st.sampled_from([SINGLE_SYMBOL_QUORUM, MULTI_SYMBOL_QUORUM]),
    st.lists(st.tuples(SYMBOLS, st.integers(min_value=0, max_value=SKEW)), max_size=80),
    st.integers(min_value=-(10**15), max_value=10**15),
    st.integers(min_value=T0 - 8 * YEAR, max_value=T0 + 70 * YEAR),
)
def test_a_wrong_local_clock_never_drops_a_real_stream(
    quorum: int, steps: list[tuple[str, int]], clock_error_ms: int, start_ms: int
) -> None:
    # A real stream: E never goes back, and the events a quorum holds agree (real ones are
    # seconds apart): consecutive events are at most the bound / (quorum - 1) apart. The
    # local clock is off by any amount.
    guard: EventTimeGuard[int] = EventTimeGuard(SKEW, quorum=quorum)
    decided: list[tuple[int, str | None]] = []
    event_time = start_ms
    for index, (symbol, step) in enumerate(steps):
        event_time += step // (quorum - 1)
        decided += guard.admit(symbol, event_time, at(event_time + clock_error_ms), index)
    assert all(reason is None for _, reason in decided)
    # What is not decided yet is only waiting for a second symbol or the quorum.
    assert [index for index, _ in decided] == list(range(len(steps) - guard.held))
    if len({symbol for symbol, _ in steps}) >= 2 or len(steps) >= quorum:
        assert guard.held == 0


def test_the_quorum_is_small_only_for_a_single_symbol_recording() -> None:
    assert quorum_for(1) == SINGLE_SYMBOL_QUORUM == 3
    assert quorum_for(2) == quorum_for(1024) == MULTI_SYMBOL_QUORUM == 30


def test_a_burst_of_far_future_events_of_one_symbol_is_outvoted_by_another_symbol() -> None:
    guard: EventTimeGuard[str] = EventTimeGuard(SKEW, quorum=quorum_for(3))
    guard.admit("BTCUSDT", T0, at(T0), "real-1")
    for serial in range(5):
        event_time = T0 + 10 * YEAR + serial
        assert guard.admit("BTCUSDT", event_time, at(T0 + serial), f"future-{serial}") == []
    decided = guard.admit("ETHUSDT", T0 + 10, at(T0 + 10), "real-2")
    assert rejected(decided) == [f"future-{serial}" for serial in range(5)]
    assert accepted(decided) == ["real-2"]


@given(
    st.lists(st.tuples(SYMBOLS, st.integers(min_value=0, max_value=2000)), min_size=1),
    # Beyond the bound from the clock and from the next real event (2 s later at most).
    st.integers(min_value=SKEW + 2001, max_value=2**62),
    st.booleans(),
    st.data(),
)
def test_one_implausible_event_among_real_ones_is_rejected_and_moves_nothing(
    steps: list[tuple[str, int]], offset_ms: int, ahead: bool, data: st.DataObject
) -> None:
    guard: EventTimeGuard[str] = EventTimeGuard(SKEW)
    where = data.draw(st.integers(min_value=0, max_value=len(steps)))
    hostile_symbol = data.draw(SYMBOLS)
    event_time = T0
    decided: list[tuple[str, str | None]] = []
    for index, (symbol, step) in enumerate(steps):
        if index == where:
            hostile = event_time + offset_ms if ahead else event_time - offset_ms
            decided += guard.admit(hostile_symbol, hostile, at(event_time), "hostile")
        event_time += step
        decided += guard.admit(symbol, event_time, at(event_time), f"real-{index}")
    decided += guard.settle()
    assert rejected(decided) == (["hostile"] if where < len(steps) else [])
    assert accepted(decided) == [f"real-{index}" for index in range(len(steps))]
    assert guard.reference_ms == event_time


# -- restored state ---------------------------------------------------------------------------


def test_a_far_future_restored_time_is_dropped_and_old_ones_are_kept() -> None:
    restored = {"BTCUSDT": T0 - 7 * DAY, "ETHUSDT": T0 - 7 * DAY + 5, "SOLUSDT": T0 + 10 * YEAR}
    kept, dropped = screen_restored(restored, now_ms=T0, max_skew_ms=SKEW)
    assert kept == {"BTCUSDT": T0 - 7 * DAY, "ETHUSDT": T0 - 7 * DAY + 5}
    assert dropped == {"SOLUSDT": T0 + 10 * YEAR}


def test_restored_times_ahead_of_a_wrong_clock_are_kept_when_they_agree() -> None:
    restored = {"BTCUSDT": T0, "ETHUSDT": T0 + 2000}
    assert screen_restored(restored, now_ms=T0 - 10 * YEAR, max_skew_ms=SKEW) == (restored, {})


def test_a_lone_restored_time_is_judged_by_the_local_clock() -> None:
    assert screen_restored({"BTCUSDT": T0 + YEAR}, now_ms=T0, max_skew_ms=SKEW) == (
        {},
        {"BTCUSDT": T0 + YEAR},
    )
    assert screen_restored({"BTCUSDT": T0 + SKEW}, now_ms=T0, max_skew_ms=SKEW) == (
        {"BTCUSDT": T0 + SKEW},
        {},
    )


# -- the clock offset log line ----------------------------------------------------------------


def test_the_clock_offset_alarm_speaks_once_then_hourly_then_when_back() -> None:
    alarm = ClockOffsetAlarm(threshold_ms=60_000, every_s=3600)
    assert alarm.observe(None, 0.0) is None
    assert alarm.observe(59_000, 0.0) is None
    assert alarm.observe(-YEAR, 1.0) is ClockOffsetChange.FAR
    assert alarm.observe(-YEAR, 3600.0) is None
    assert alarm.observe(-YEAR, 3601.0) is ClockOffsetChange.FAR
    assert alarm.observe(200, 3602.0) is ClockOffsetChange.BACK
    assert alarm.observe(200, 3603.0) is None
    assert alarm.observe(61_000, 3604.0) is ClockOffsetChange.FAR
