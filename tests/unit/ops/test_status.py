import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from recorder.clock import ManualClock
from recorder.ops.logs import configure_logging
from recorder.ops.metrics import RecorderMetrics
from recorder.ops.status import (
    DELIVERING_SECONDS,
    MetricsReading,
    StatusSnapshot,
    StatusTracker,
    read_metrics,
)
from recorder.ops.status_log import TERMINAL_INTERVAL, StatusReporter
from recorder.ops.status_metrics import GapHour
from recorder.settings import Settings, parse_settings

MIB = 1024 * 1024


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(monotonic=1000.0)


@pytest.fixture
def metrics(clock: ManualClock) -> RecorderMetrics:
    metrics = RecorderMetrics(clock=clock, version="9.9.9")
    metrics.status.set_limits(buffer_budget=64 * MIB, stall_timeout=60.0)
    return metrics


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers = list(root.handlers)
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    structlog.reset_defaults()


def receive(metrics: RecorderMetrics, clock: ManualClock, symbol: str, count: int) -> None:
    for _ in range(count):
        metrics.event_received(symbol, clock.wall_us())


def observe(tracker: StatusTracker, metrics: RecorderMetrics, clock: ManualClock) -> StatusSnapshot:
    return tracker.observe(
        read_metrics(metrics.registry.collect()),
        wall=clock.wall_us() / 1e6,
        monotonic=clock.monotonic(),
    )


def test_events_per_second_over_the_last_interval(
    metrics: RecorderMetrics, clock: ManualClock
) -> None:
    tracker = StatusTracker()
    receive(metrics, clock, "BTCUSDT", 10)
    first = tracker.observe(read_metrics(metrics.registry.collect()), wall=0, monotonic=10.0)
    assert first.events_per_second is None  # one reading cannot give a rate
    assert first.events_total == 10
    receive(metrics, clock, "BTCUSDT", 30)
    receive(metrics, clock, "ETHUSDT", 20)
    second = tracker.observe(read_metrics(metrics.registry.collect()), wall=0, monotonic=15.0)
    assert second.events_per_second == pytest.approx(10.0)
    assert second.rate_interval == pytest.approx(5.0)
    rates = {s.symbol: s.events_per_second for s in second.symbols}
    assert rates == {"BTCUSDT": pytest.approx(6.0), "ETHUSDT": pytest.approx(4.0)}


def test_no_rate_across_a_restart_whose_counters_went_back() -> None:
    tracker = StatusTracker()
    tracker.observe(MetricsReading(received={"BTCUSDT": 500}), wall=0, monotonic=1.0)
    after = tracker.observe(MetricsReading(received={"BTCUSDT": 3}), wall=0, monotonic=2.0)
    assert after.events_per_second is None
    again = tracker.observe(MetricsReading(received={"BTCUSDT": 13}), wall=0, monotonic=4.0)
    assert again.events_per_second == pytest.approx(5.0)


def test_symbols_delivering_quiet_and_silent_by_the_age_of_their_last_event(
    metrics: RecorderMetrics, clock: ManualClock
) -> None:
    metrics.track_symbols(["SILENTUSDT"])
    clock.advance(45)
    receive(metrics, clock, "QUIETUSDT", 1)
    clock.advance(DELIVERING_SECONDS + 5)  # quiet: 15 s; silent: 60 s, the stall timeout
    receive(metrics, clock, "BTCUSDT", 1)
    clock.advance(DELIVERING_SECONDS - 1)
    snapshot = observe(StatusTracker(), metrics, clock)
    states = {s.symbol: s.state for s in snapshot.symbols}
    assert states == {"SILENTUSDT": "silent", "QUIETUSDT": "quiet", "BTCUSDT": "delivering"}
    # The worst first: the oldest last event.
    assert [s.symbol for s in snapshot.symbols] == ["SILENTUSDT", "QUIETUSDT", "BTCUSDT"]
    assert (snapshot.delivering, snapshot.quiet, snapshot.silent) == (1, 1, 1)


def test_a_short_stall_timeout_bounds_the_delivering_band_too() -> None:
    reading = MetricsReading(ages={"A": 1.0, "B": 3.0}, stall_timeout=2.0)
    snapshot = StatusTracker().observe(reading, wall=0, monotonic=0)
    assert {s.symbol: s.state for s in snapshot.symbols} == {"A": "delivering", "B": "silent"}


def test_last_flush_buffered_against_the_budget_and_connections(
    metrics: RecorderMetrics, clock: ManualClock
) -> None:
    tracker = StatusTracker()
    assert observe(tracker, metrics, clock).since_last_flush is None
    metrics.observe_flush(0.01, ok=True)
    clock.advance(2.5)
    metrics.observe_flush(0.01, ok=False)
    metrics.set_buffered_rows(1234)
    metrics.set_buffered_bytes(16 * MIB)
    metrics.set_open_connections(3)
    snapshot = observe(tracker, metrics, clock)
    assert snapshot.since_last_flush == pytest.approx(2.5)
    assert not snapshot.last_flush_ok
    assert snapshot.buffered_rows == 1234
    assert snapshot.buffer_budget == 64 * MIB
    assert snapshot.budget_used == pytest.approx(0.25)
    assert snapshot.connections == 3
    assert snapshot.version == "9.9.9"


def test_gaps_of_the_last_hour_by_cause_roll_off(
    metrics: RecorderMetrics, clock: ManualClock
) -> None:
    metrics.gap_detected("disconnect", 4)
    clock.advance(1800)
    metrics.gap_detected("stall", 2)
    metrics.gap_detected("stall", 1)
    tracker = StatusTracker()
    gaps = observe(tracker, metrics, clock).gaps_last_hour
    assert gaps == {"disconnect": 1, "stall": 2, "restart": 0, "quiet": 0, "storage": 0}
    clock.advance(1900)
    gaps = observe(tracker, metrics, clock).gaps_last_hour
    assert gaps["disconnect"] == 0
    assert gaps["stall"] == 2
    clock.advance(3600)
    assert observe(tracker, metrics, clock).gaps_total == 0


def test_the_gap_hour_keeps_one_bucket_per_minute_whatever_the_storm() -> None:
    hour = GapHour(("stall",))
    for second in range(7200):
        hour.add("disconnect", now=float(second), count=3)
    assert len(hour._buckets) <= 61
    assert hour.counts(now=7200.0)["disconnect"] == pytest.approx(3 * 3600, abs=3 * 60)


def test_a_parsed_scrape_reads_like_the_registry(
    metrics: RecorderMetrics, clock: ManualClock
) -> None:
    receive(metrics, clock, "币安人生USDT", 3)
    metrics.gap_detected("quiet", 1)
    metrics.set_buffered_rows(7)
    body, _ = metrics.exposition()
    parsed = read_metrics(text_string_to_metric_families(body.decode()))
    direct = read_metrics(metrics.registry.collect())
    assert parsed == direct
    assert parsed.received == {"币安人生USDT": 3}
    assert parsed.stall_timeout == 60.0


def test_a_reading_of_an_older_recorder_keeps_defaults() -> None:
    reading = read_metrics([])
    assert reading.buffer_budget is None
    assert reading.last_flush_at is None
    snapshot = StatusTracker(stall_timeout=30).observe(reading, wall=0, monotonic=0)
    assert snapshot.budget_used is None
    assert "buffered 0 rows, 0B |" in snapshot.summary()


def captured_log(log_format: str) -> io.StringIO:
    stream = io.StringIO()
    configure_logging("info", log_format, stream)
    return stream


def status_settings(**service: object) -> Settings:
    return parse_settings({"service": service, "source": {"stall_timeout": "1m"}})


def test_status_interval_is_a_duration_0_disables_negative_is_refused() -> None:
    assert Settings().service.status_interval == 300.0
    assert status_settings(status_interval="0s").service.status_interval == 0
    assert status_settings(status_interval="30s").service.status_interval == 30
    with pytest.raises(Exception, match=r"service\.status_interval"):
        status_settings(status_interval="-1s")


def test_the_json_log_gets_one_status_line_with_the_figures(
    metrics: RecorderMetrics, clock: ManualClock
) -> None:
    stream = captured_log("json")
    reporter = StatusReporter(status_settings(), metrics, clock, console=False)
    assert reporter.interval == 300.0
    metrics.set_open_connections(1)
    metrics.track_symbols(["BTCUSDT"])
    clock.advance(120)
    reporter.report()
    [line] = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert line["event"] == "status"
    assert line["connections"] == 1
    assert line["symbols_silent"] == 1
    assert line["silent_symbols"] == ["BTCUSDT"]
    assert line["buffer_budget_bytes"] == 64 * MIB
    assert line["gaps_last_hour"]["stall"] == 0
    assert "symbols" not in line


def test_a_terminal_gets_a_compact_line_every_few_seconds(
    metrics: RecorderMetrics, clock: ManualClock
) -> None:
    stream = captured_log("console")
    reporter = StatusReporter(status_settings(), metrics, clock, console=True)
    assert reporter.interval == TERMINAL_INTERVAL
    reporter.report()
    assert "status: ? ev/s | symbols 0 delivering" in stream.getvalue()
    shorter = StatusReporter(status_settings(status_interval="3s"), metrics, clock, console=True)
    assert shorter.interval == 3.0
    disabled = StatusReporter(status_settings(status_interval="0s"), metrics, clock, console=True)
    assert disabled.interval == 0


def test_the_limits_are_exported_for_recorder_status(metrics: RecorderMetrics) -> None:
    StatusReporter(
        parse_settings({"storage": {"buffer_budget": "8MiB"}, "source": {"stall_timeout": "5s"}}),
        metrics,
        ManualClock(),
        console=False,
    )
    reading = read_metrics(metrics.registry.collect())
    assert (reading.buffer_budget, reading.stall_timeout) == (8 * MIB, 5.0)


class BrokenMetrics(RecorderMetrics):
    """Metrics whose registry cannot be read: stands for a bug in the status line."""

    def __init__(self) -> None:
        super().__init__(clock=ManualClock())
        self.registry = None  # type: ignore[assignment]


def test_a_failing_status_line_is_logged_once_and_never_raised() -> None:
    stream = captured_log("json")
    reporter = StatusReporter(status_settings(), BrokenMetrics(), ManualClock(), console=False)
    for _ in range(3):
        reporter.report()
    lines = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == [
        "the status line failed; recording goes on without it"
    ]
    assert lines[0]["level"] == "error"
    assert lines[0]["exception"]
