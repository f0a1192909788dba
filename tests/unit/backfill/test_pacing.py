"""The backfill's weight budget, sans-IO: times are fed in, nothing sleeps."""

import pytest

from recorder.backfill.pacing import DEFAULT_RETRY_AFTER, HEADROOM, WeightPacer
from recorder.exchange_limits import REST_WEIGHT_LIMIT

MINUTE_0 = 1_714_557_600.0  # 2024-05-01T10:00:00Z, the start of a wall-clock minute


def test_the_budget_is_the_limit_less_the_headroom() -> None:
    assert WeightPacer().budget == int(REST_WEIGHT_LIMIT * (1 - HEADROOM)) == 1_800
    assert WeightPacer(limit=100, headroom=0.1).budget == 90
    assert WeightPacer(limit=999, headroom=0.5).budget == 499  # rounded down, never over
    assert WeightPacer(limit=10, headroom=1.0).budget == 1  # something may always go


def test_requests_within_the_budget_go_at_once_and_are_counted() -> None:
    pacer = WeightPacer(limit=100, headroom=0.0)
    now = MINUTE_0 + 5
    assert [pacer.delay(10, now + i) for i in range(10)] == [0.0] * 10
    assert pacer.used == 100  # exactly the budget: the last one still went
    assert (pacer.waited, pacer.rate_limited) == (0.0, 0)


def test_a_request_over_the_budget_waits_into_the_next_wall_clock_minute() -> None:
    pacer = WeightPacer(limit=100, headroom=0.0)
    assert pacer.delay(95, MINUTE_0 + 10) == 0.0
    wait = pacer.delay(10, MINUTE_0 + 20)
    assert wait == 40.5  # to the next minute's start, and half a second into it
    assert pacer.used == 95  # not spent: it did not go
    assert pacer.waited == 40.5
    # Asked again before the minute turns: it still waits, for the rest of the minute.
    assert pacer.delay(10, MINUTE_0 + 59) == 1.5
    assert pacer.waited == 42.0
    # In the next minute the count starts again.
    assert pacer.delay(10, MINUTE_0 + 20 + wait) == 0.0
    assert pacer.used == 10


def test_one_request_heavier_than_the_whole_budget_goes_in_a_fresh_minute() -> None:
    pacer = WeightPacer(limit=8, headroom=0.0)
    assert pacer.delay(10, MINUTE_0 + 1) == 0.0  # never waits forever
    assert pacer.delay(1, MINUTE_0 + 2) == 58.5


def test_the_servers_count_of_the_minute_raises_ours() -> None:
    pacer = WeightPacer(limit=100, headroom=0.0)
    assert pacer.delay(5, MINUTE_0 + 1) == 0.0
    # Another client on the IP spent most of the minute: X-MBX-USED-WEIGHT-1M says so.
    pacer.observe(96, MINUTE_0 + 2)
    assert pacer.used == 96
    assert pacer.delay(5, MINUTE_0 + 3) == 57.5
    # A lower count, or no header, never lowers ours.
    pacer.observe(20, MINUTE_0 + 4)
    pacer.observe(None, MINUTE_0 + 4)
    assert pacer.used == 96
    # A count seen in a new minute is that minute's.
    pacer.observe(30, MINUTE_0 + 61)
    assert pacer.used == 30
    assert pacer.delay(70, MINUTE_0 + 62) == 0.0
    assert pacer.delay(1, MINUTE_0 + 62) > 0


def test_after_a_429_nothing_goes_until_retry_after() -> None:
    pacer = WeightPacer()
    pacer.refused(7.0, MINUTE_0 + 10)
    assert pacer.rate_limited == 1
    assert pacer.delay(1, MINUTE_0 + 10) == 7.0
    assert pacer.delay(1, MINUTE_0 + 15) == 2.0
    assert pacer.used == 0  # nothing was spent while paused
    assert pacer.delay(1, MINUTE_0 + 17) == 0.0
    assert pacer.waited == 9.0


def test_a_429_without_retry_after_pauses_a_minute() -> None:
    pacer = WeightPacer()
    pacer.refused(None, MINUTE_0 + 30)
    assert pacer.delay(1, MINUTE_0 + 30) == DEFAULT_RETRY_AFTER == 60.0
    assert pacer.delay(1, MINUTE_0 + 89.5) == 0.5
    assert pacer.delay(1, MINUTE_0 + 90) == 0.0


def test_a_shorter_retry_after_never_shortens_a_pause() -> None:
    pacer = WeightPacer()
    pacer.refused(20.0, MINUTE_0)
    pacer.refused(1.0, MINUTE_0 + 5)
    assert pacer.rate_limited == 2
    assert pacer.delay(1, MINUTE_0 + 10) == 10.0
    # A longer one extends it.
    pacer.refused(30.0, MINUTE_0 + 10)
    assert pacer.delay(1, MINUTE_0 + 20) == 20.0
    assert pacer.waited == pytest.approx(30.0)
