import pytest

from recorder.simulate.event_clock import tick_due


def test_tick_deadlines_do_not_accumulate() -> None:
    period = 2.0 / 50
    assert tick_due(10.0, 0, 2_000, 50.0) == pytest.approx(10.0 + period)
    assert tick_due(10.0, 99_999, 2_000, 50.0) == pytest.approx(10.0 + 100_000 * period)
    assert tick_due(10.0, 4, 2_000, 1.0) == pytest.approx(20.0)
