import random

import pytest

from recorder.ingest.connection import (
    ConnectionWatchdog,
    Verdict,
    backoff_delay,
    combined_stream_url,
    plan_shards,
)


def test_shards_respect_the_stream_limit_and_keep_order() -> None:
    symbols = [f"S{i}" for i in range(450)]
    shards = plan_shards(symbols, 200)
    assert [len(s) for s in shards] == [200, 200, 50]
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


def test_stall_is_measured_from_the_last_frame() -> None:
    dog = _watchdog()
    dog.on_data(101.0)
    dog.on_data(150.0)
    assert dog.verdict(159.9) is None
    assert dog.next_check_at() == 160.0
    assert dog.verdict(160.0) is Verdict.STALLED


def test_handover_is_due_at_the_lifetime_once() -> None:
    dog = _watchdog()
    dog.on_data(3699.0)
    assert dog.verdict(3700.0) is Verdict.HANDOVER_DUE
    dog.handover_requested = True
    assert dog.verdict(3700.0) is None
    assert dog.next_check_at() == 3709.0


def test_a_dead_connection_outranks_a_due_handover() -> None:
    dog = _watchdog()
    dog.on_data(101.0)
    assert dog.verdict(4000.0) is Verdict.STALLED
