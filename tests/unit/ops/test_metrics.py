import math
import platform
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from recorder.clock import ManualClock
from recorder.ops.metrics import GAP_CAUSES, RecorderMetrics

START_US = 1_700_000_000_000_000


def scrape(metrics: RecorderMetrics) -> dict[str, list[Sample]]:
    """Every sample of the text exposition, by family name."""
    body, _ = metrics.exposition()
    return {family.name: family.samples for family in text_string_to_metric_families(body.decode())}


def value(
    metrics: RecorderMetrics, sample_name: str, labels: dict[str, str] | None = None
) -> float:
    """The value of one sample, failing if it is not exported exactly once."""
    wanted = labels or {}
    found = [
        sample.value
        for samples in scrape(metrics).values()
        for sample in samples
        if sample.name == sample_name and sample.labels == wanted
    ]
    assert len(found) == 1, f"{sample_name}{wanted}: {found}"
    return found[0]


def family_types(metrics: RecorderMetrics) -> dict[str, str]:
    body, _ = metrics.exposition()
    return {family.name: family.type for family in text_string_to_metric_families(body.decode())}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(wall_us=START_US)


@pytest.fixture
def metrics(clock: ManualClock) -> RecorderMetrics:
    return RecorderMetrics(clock=clock, version="1.2.3")


def test_every_metric_is_exported_with_its_type_and_help(metrics: RecorderMetrics) -> None:
    metrics.event_received("BTCUSDT", START_US)
    metrics.events_written("BTCUSDT")
    metrics.frame_quarantined("not_json")
    metrics.reconnect("stalled")

    body, _ = metrics.exposition()
    families = {family.name: family for family in text_string_to_metric_families(body.decode())}
    expected = {
        "recorder_events_received": "counter",
        "recorder_events_written": "counter",
        "recorder_duplicates_dropped": "counter",
        "recorder_frames_quarantined": "counter",
        "recorder_reconnects": "counter",
        "recorder_open_connections": "gauge",
        "recorder_gaps": "counter",
        "recorder_missed_updates": "counter",
        "recorder_last_event_age_seconds": "gauge",
        "recorder_flush_duration_seconds": "histogram",
        "recorder_flush_failures": "counter",
        "recorder_last_flush_success": "gauge",
        "recorder_last_flush_success_timestamp_seconds": "gauge",
        "recorder_written_bytes": "counter",
        "recorder_files_published": "counter",
        "recorder_buffered_rows": "gauge",
        "recorder_buffered_bytes": "gauge",
        "recorder_buffer_budget_bytes": "gauge",
        "recorder_wal_size_bytes": "gauge",
        "recorder_clock_offset_seconds": "gauge",
        # The text format has no info type: build info is a gauge of constant 1.
        "recorder_build_info": "gauge",
    }
    assert {name: families[name].type for name in expected} == expected
    assert all(families[name].documentation for name in expected)


def test_events_received_and_written_count_per_symbol(metrics: RecorderMetrics) -> None:
    for _ in range(3):
        metrics.event_received("BTCUSDT", START_US)
    metrics.event_received("ETHUSDT", START_US)
    metrics.events_written("BTCUSDT", 2)
    metrics.events_written("BTCUSDT")

    assert value(metrics, "recorder_events_received_total", {"symbol": "BTCUSDT"}) == 3
    assert value(metrics, "recorder_events_received_total", {"symbol": "ETHUSDT"}) == 1
    assert value(metrics, "recorder_events_written_total", {"symbol": "BTCUSDT"}) == 3


def test_non_ascii_and_underscore_symbols_are_label_values(metrics: RecorderMetrics) -> None:
    metrics.event_received("币安人生USDT", START_US)
    metrics.event_received("BTCUSDT_260327", START_US)

    assert value(metrics, "recorder_events_received_total", {"symbol": "币安人生USDT"}) == 1
    assert value(metrics, "recorder_events_received_total", {"symbol": "BTCUSDT_260327"}) == 1


def test_duplicates_and_quarantined_frames(metrics: RecorderMetrics) -> None:
    assert value(metrics, "recorder_duplicates_dropped_total") == 0

    metrics.duplicate_dropped()
    metrics.duplicate_dropped(4)
    metrics.frame_quarantined("not_json")
    metrics.frame_quarantined("wrong_type:c", 2)
    metrics.frame_quarantined("not_json")

    assert value(metrics, "recorder_duplicates_dropped_total") == 5
    assert value(metrics, "recorder_frames_quarantined_total", {"reason": "not_json"}) == 2
    assert value(metrics, "recorder_frames_quarantined_total", {"reason": "wrong_type:c"}) == 2


def test_last_event_age_is_computed_when_scraped(
    metrics: RecorderMetrics, clock: ManualClock
) -> None:
    metrics.event_received("BTCUSDT", clock.wall_us())
    clock.advance(2.5)
    metrics.event_received("ETHUSDT", clock.wall_us())
    clock.advance(1.0)

    assert value(metrics, "recorder_last_event_age_seconds", {"symbol": "BTCUSDT"}) == 3.5
    assert value(metrics, "recorder_last_event_age_seconds", {"symbol": "ETHUSDT"}) == 1.0

    clock.advance(10.0)
    assert value(metrics, "recorder_last_event_age_seconds", {"symbol": "BTCUSDT"}) == 13.5


def test_last_event_age_never_goes_negative(metrics: RecorderMetrics, clock: ManualClock) -> None:
    # A frame stamped after the scrape's clock reading (a wall-clock step backwards).
    metrics.event_received("BTCUSDT", clock.wall_us() + 5_000_000)

    assert value(metrics, "recorder_last_event_age_seconds", {"symbol": "BTCUSDT"}) == 0


def test_tracked_symbols_are_exported_before_their_first_event(
    metrics: RecorderMetrics, clock: ManualClock
) -> None:
    metrics.event_received("BTCUSDT", clock.wall_us())
    clock.advance(5.0)
    metrics.track_symbols(["BTCUSDT", "ETHUSDT"])
    clock.advance(60.0)

    assert value(metrics, "recorder_events_received_total", {"symbol": "ETHUSDT"}) == 0
    assert value(metrics, "recorder_events_written_total", {"symbol": "ETHUSDT"}) == 0
    assert value(metrics, "recorder_last_event_age_seconds", {"symbol": "ETHUSDT"}) == 60.0
    # A symbol already seen keeps its count and its last event time.
    assert value(metrics, "recorder_events_received_total", {"symbol": "BTCUSDT"}) == 1
    assert value(metrics, "recorder_last_event_age_seconds", {"symbol": "BTCUSDT"}) == 65.0


def test_untracked_and_unseen_symbols_have_no_series(metrics: RecorderMetrics) -> None:
    families = scrape(metrics)

    assert families["recorder_events_received"] == []
    assert families["recorder_last_event_age_seconds"] == []


def test_reconnects_and_open_connections(metrics: RecorderMetrics) -> None:
    metrics.reconnect("stalled")
    metrics.reconnect("stalled")
    metrics.reconnect("dropped")
    metrics.set_open_connections(2)

    assert value(metrics, "recorder_reconnects_total", {"reason": "stalled"}) == 2
    assert value(metrics, "recorder_reconnects_total", {"reason": "dropped"}) == 1
    assert value(metrics, "recorder_open_connections") == 2

    metrics.set_open_connections(0)
    assert value(metrics, "recorder_open_connections") == 0


def test_gap_causes_start_at_zero_and_count_gaps_and_missed_updates(
    metrics: RecorderMetrics,
) -> None:
    for cause in GAP_CAUSES:
        assert value(metrics, "recorder_gaps_total", {"cause": cause}) == 0
        assert value(metrics, "recorder_missed_updates_total", {"cause": cause}) == 0

    metrics.gap_detected("disconnect", 4)
    metrics.gap_detected("disconnect", 1)
    metrics.gap_detected("restart", 30)

    assert value(metrics, "recorder_gaps_total", {"cause": "disconnect"}) == 2
    assert value(metrics, "recorder_missed_updates_total", {"cause": "disconnect"}) == 5
    assert value(metrics, "recorder_gaps_total", {"cause": "restart"}) == 1
    assert value(metrics, "recorder_missed_updates_total", {"cause": "restart"}) == 30
    assert value(metrics, "recorder_gaps_total", {"cause": "quiet"}) == 0


def test_flush_outcomes(metrics: RecorderMetrics, clock: ManualClock) -> None:
    assert value(metrics, "recorder_last_flush_success") == 1
    assert value(metrics, "recorder_last_flush_success_timestamp_seconds") == 0

    clock.advance(1.0)
    metrics.observe_flush(0.02, ok=True)
    assert value(metrics, "recorder_last_flush_success") == 1
    assert value(metrics, "recorder_last_flush_success_timestamp_seconds") == START_US / 1e6 + 1

    clock.advance(1.0)
    metrics.observe_flush(3.0, ok=False)
    assert value(metrics, "recorder_last_flush_success") == 0
    assert value(metrics, "recorder_flush_failures_total") == 1
    # The time of the last success is kept, so that an alert can say how long ago it was.
    assert value(metrics, "recorder_last_flush_success_timestamp_seconds") == START_US / 1e6 + 1

    assert value(metrics, "recorder_flush_duration_seconds_count") == 2
    assert math.isclose(value(metrics, "recorder_flush_duration_seconds_sum"), 3.02)
    assert value(metrics, "recorder_flush_duration_seconds_bucket", {"le": "0.025"}) == 1
    assert value(metrics, "recorder_flush_duration_seconds_bucket", {"le": "5.0"}) == 2

    metrics.observe_flush(0.01, ok=True)
    assert value(metrics, "recorder_last_flush_success") == 1


def test_storage_counters_and_gauges(metrics: RecorderMetrics) -> None:
    metrics.bytes_written(1000)
    metrics.bytes_written(24)
    metrics.files_published(3)
    metrics.set_buffered_rows(512)
    metrics.set_wal_size(65536)

    assert value(metrics, "recorder_written_bytes_total") == 1024
    assert value(metrics, "recorder_files_published_total") == 3
    assert value(metrics, "recorder_buffered_rows") == 512
    assert value(metrics, "recorder_wal_size_bytes") == 65536


def test_buffered_bytes_are_exported_beside_the_budget(metrics: RecorderMetrics) -> None:
    assert value(metrics, "recorder_buffer_budget_bytes") == 0  # until the service sets it
    metrics.set_buffer_budget(64 * 1024 * 1024)
    metrics.set_buffered_bytes(16 * 1024 * 1024)

    assert value(metrics, "recorder_buffer_budget_bytes") == 64 * 1024 * 1024
    assert (
        value(metrics, "recorder_buffered_bytes") / value(metrics, "recorder_buffer_budget_bytes")
        == 0.25
    )


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="no /proc: not Linux")
def test_the_process_start_time_is_exported_for_the_restart_alert(
    metrics: RecorderMetrics,
) -> None:
    started = value(metrics, "process_start_time_seconds")

    assert 0 < started <= time.time()
    assert value(metrics, "process_resident_memory_bytes") > 0
    assert family_types(metrics)["process_cpu_seconds"] == "counter"
    # The same process: a second scrape reports the same start, so changes() counts restarts.
    assert value(metrics, "process_start_time_seconds") == started


def test_clock_offset_is_unknown_until_set_then_in_seconds_either_way(
    metrics: RecorderMetrics,
) -> None:
    assert math.isnan(value(metrics, "recorder_clock_offset_seconds"))
    metrics.set_clock_offset(-31_536_000_000)  # this host a year behind the exchange
    assert value(metrics, "recorder_clock_offset_seconds") == -31_536_000
    metrics.set_clock_offset(250)
    assert value(metrics, "recorder_clock_offset_seconds") == 0.25


def test_counters_reject_negative_increments(metrics: RecorderMetrics) -> None:
    with pytest.raises(ValueError, match="negative"):
        metrics.bytes_written(-1)


def test_build_info_carries_the_version(metrics: RecorderMetrics) -> None:
    labels = {"version": "1.2.3", "python": platform.python_version()}
    assert value(metrics, "recorder_build_info", labels) == 1


def test_instances_have_separate_registries(clock: ManualClock) -> None:
    first = RecorderMetrics(clock=clock)
    second = RecorderMetrics(clock=clock)
    first.event_received("BTCUSDT", START_US)

    assert value(first, "recorder_events_received_total", {"symbol": "BTCUSDT"}) == 1
    assert scrape(second)["recorder_events_received"] == []


def test_metric_names_do_not_collide_with_another_registration(
    metrics: RecorderMetrics,
) -> None:
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Counter("recorder_events_received", "again", ["symbol"], registry=metrics.registry)
    # The recorder's names stay out of a registry it was not given.
    Counter("recorder_events_received", "elsewhere", ["symbol"], registry=CollectorRegistry())


def test_text_format_by_default_openmetrics_on_request(metrics: RecorderMetrics) -> None:
    body, content_type = metrics.exposition("")
    assert content_type.startswith("text/plain; version=0.0.4")
    assert b"# TYPE recorder_events_received_total counter" in body

    body, content_type = metrics.exposition("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


def test_no_created_series_in_either_format(metrics: RecorderMetrics) -> None:
    metrics.reconnect("stalled")
    metrics.observe_flush(0.1, ok=True)

    for accept in ("", "application/openmetrics-text; version=1.0.0"):
        body, _ = metrics.exposition(accept)
        assert b"_created" not in body
    assert value(metrics, "recorder_reconnects_total", {"reason": "stalled"}) == 1
