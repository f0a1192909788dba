import random

import pytest

from recorder.ingest.connection import (
    MAX_SILENCE_FACTOR,
    ConnectionWatchdog,
    SilenceCheck,
    SilenceOutcome,
    Verdict,
    backoff_delay,
    combined_stream_url,
    plan_shards,
)


def test_shards_respect_the_stream_limit_and_keep_order() -> None:
    symbols = [f"S{i}" for i in range(450)]
    shards = plan_shards(symbols, 200)
    assert [len(s) for s in shards] == [150, 150, 150]
    assert [s for shard in shards for s in shard] == symbols


@pytest.mark.parametrize(
    ("count", "limit", "sizes"),
    [
        (201, 200, [101, 100]),  # not 200 + 1: no connection left with one quiet symbol
        (200, 200, [200]),
        (401, 200, [134, 134, 133]),
        (5, 2, [2, 2, 1]),
        (1, 200, [1]),
        (0, 200, []),
    ],
)
def test_shards_are_balanced_and_as_few_as_the_limit_allows(
    count: int, limit: int, sizes: list[int]
) -> None:
    symbols = [f"S{i}" for i in range(count)]
    shards = plan_shards(symbols, limit)
    assert [len(shard) for shard in shards] == sizes
    assert [s for shard in shards for s in shard] == symbols


def test_shard_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_streams_per_connection"):
        plan_shards(["A"], 0)


def test_url_uses_lower_case_stream_names_under_the_base() -> None:
    url = combined_stream_url("wss://fstream.binance.com/market/", ["BTCUSDT", "BTCUSDT_260327"])
    assert url == (
        "wss://fstream.binance.com/market/stream"
        "?streams=btcusdt@miniTicker/btcusdt_260327@miniTicker"
    )


def test_backoff_grows_then_caps_and_never_reaches_zero() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(n, 0.5, 30.0, rng) for n in range(40)]
    for attempt, delay in enumerate(delays):
        capped = min(30.0, 0.5 * 2**attempt)
        assert capped / 2 <= delay <= capped
    assert max(delays) <= 30.0


def test_backoff_jitter_spreads_simultaneous_clients() -> None:
    delays = {round(backoff_delay(5, 1.0, 60.0, random.Random(seed)), 6) for seed in range(50)}
    assert len(delays) == 50


def _watchdog() -> ConnectionWatchdog:
    return ConnectionWatchdog(
        opened_at=100.0, first_data_timeout=30.0, stall_timeout=10.0, lifetime=3600.0
    )


def test_silent_new_connection_is_reported_as_no_data() -> None:
    dog = _watchdog()
    assert dog.verdict(129.9) is None
    assert dog.next_check_at() == 130.0
    assert dog.verdict(130.0) is Verdict.NO_DATA


def test_no_data_asks_for_a_check_once_and_a_quiet_verdict_keeps_the_connection() -> None:
    dog = _watchdog()
    assert dog.verdict(130.0) is Verdict.NO_DATA
    dog.check_requested = True
    assert dog.verdict(140.0) is None  # the check decides, nothing else is asked meanwhile
    dog.quiet_confirmed(141.0)  # alive: quiet from the start, or an unrouted url
    assert dog.allowed_silence == 20.0
    assert dog.next_check_at() == 161.0
    assert dog.verdict(160.9) is None
    assert dog.verdict(161.0) is Verdict.SILENT  # checked again, never NO_DATA again
    dog.on_data(170.0)  # the symbols speak at last
    assert dog.next_check_at() == 190.0


def test_silence_is_measured_from_the_last_frame() -> None:
    dog = _watchdog()
    dog.on_data(101.0)
    dog.on_data(150.0)
    assert dog.verdict(159.9) is None
    assert dog.next_check_at() == 160.0
    assert dog.verdict(160.0) is Verdict.SILENT


def test_a_running_silence_check_is_not_asked_for_again() -> None:
    dog = _watchdog()
    dog.on_data(101.0)
    assert dog.verdict(111.0) is Verdict.SILENT
    dog.check_requested = True
    assert dog.verdict(200.0) is None
    assert dog.next_check_at() == 3700.0  # only the handover is left to wake for


def test_each_quiet_check_doubles_the_silence_allowed_up_to_a_cap() -> None:
    dog = _watchdog()
    dog.on_data(101.0)
    now = 111.0
    allowed = []
    for _ in range(6):
        assert dog.verdict(now) is Verdict.SILENT
        dog.check_requested = True
        dog.quiet_confirmed(now)
        allowed.append(dog.allowed_silence)
        # Counted from the check, not from the old last frame: no check right after a check.
        assert dog.verdict(now + dog.allowed_silence - 0.1) is None
        now += dog.allowed_silence
    assert allowed == [20.0, 40.0, 80.0, 80.0, 80.0, 80.0]
    assert MAX_SILENCE_FACTOR * dog.stall_timeout == 80.0
    dog.on_data(now + 1.0)  # data after a check: the next silence counts from it
    assert dog.next_check_at() == now + 81.0


def test_steady_data_after_a_quiet_spell_brings_the_silence_allowed_back() -> None:
    dog = _watchdog()
    dog.on_data(101.0)
    for now in (111.0, 131.0, 171.0):  # three quiet checks: 80 s allowed
        dog.check_requested = True
        dog.quiet_confirmed(now)
    assert dog.allowed_silence == 80.0
    dog.on_data(300.0)  # one frame after a long silence: still a quiet connection
    assert dog.allowed_silence == 80.0
    dog.on_data(302.0)  # a second one soon after: data flows again
    assert dog.allowed_silence == 10.0
    assert dog.next_check_at() == 312.0
    assert dog.verdict(312.0) is Verdict.SILENT


def test_handover_is_due_at_the_lifetime_once() -> None:
    dog = _watchdog()
    dog.on_data(3699.0)
    assert dog.verdict(3700.0) is Verdict.HANDOVER_DUE
    dog.handover_requested = True
    assert dog.verdict(3700.0) is None
    assert dog.next_check_at() == 3709.0


def test_a_silent_connection_outranks_a_due_handover() -> None:
    dog = _watchdog()
    dog.on_data(101.0)
    assert dog.verdict(4000.0) is Verdict.SILENT


# -- the silence check: quiet or stalled, from evidence -------------------------------------


def _check() -> SilenceCheck:
    return SilenceCheck(started_at=100.0, window=30.0, grace=1.0)


def test_data_again_on_the_silent_connection_means_quiet() -> None:
    check = _check()
    assert check.decide(105.0) is None
    check.old_data_at = 105.0
    assert check.decide(105.0) is SilenceOutcome.QUIET


def test_a_replacement_delivering_what_the_silent_connection_does_not_means_stalled() -> None:
    check = _check()
    check.probe_answered_at = 100.1  # a stall answers requests: no proof of data
    check.replacement_data_at = 102.0
    assert check.decide(102.5) is None  # the silent one may still deliver the same event
    assert check.next_decision_at() == 103.0
    assert check.decide(103.0) is SilenceOutcome.STALLED


def test_the_silent_connection_delivering_the_same_event_late_is_quiet() -> None:
    check = _check()
    check.replacement_data_at = 102.0
    check.old_data_at = 102.3
    assert check.decide(102.3) is SilenceOutcome.QUIET


def test_an_answered_probe_and_a_replacement_with_nothing_either_mean_quiet() -> None:
    check = _check()
    check.probe_answered_at = 100.1
    assert check.decide(129.9) is None  # the replacement may still deliver
    assert check.next_decision_at() == 130.0
    assert check.decide(130.0) is SilenceOutcome.QUIET


def test_an_answered_probe_is_enough_when_no_replacement_could_open() -> None:
    check = _check()
    check.replacement_failed = True
    assert check.decide(101.0) is None
    check.probe_answered_at = 101.0
    assert check.decide(101.0) is SilenceOutcome.QUIET


def test_an_unanswered_probe_means_stalled_at_the_end_of_the_window() -> None:
    check = _check()
    assert check.decide(129.9) is None
    assert check.decide(130.0) is SilenceOutcome.STALLED
    failed = _check()
    failed.replacement_failed = True
    assert failed.decide(130.0) is SilenceOutcome.STALLED
