"""Prometheus metrics: every series the recorder exports, in a registry of its own.

:class:`RecorderMetrics` owns one :class:`~prometheus_client.CollectorRegistry` (never the
process-wide default, so that tests and several services in one process do not collide) and
offers small typed methods that the service calls as things happen.

Per-event calls (:meth:`RecorderMetrics.event_received`, :meth:`RecorderMetrics.events_written`,
:meth:`RecorderMetrics.duplicate_dropped`, :meth:`RecorderMetrics.frame_quarantined`) only add
to plain dictionaries; a custom collector turns them into metric families when Prometheus
scrapes. That costs about a quarter of a ``prometheus_client`` labelled child's ``inc()`` (which
takes a lock) and a tenth of ``Counter.labels(...).inc()``, on a path taken for every event.
Everything that happens once per flush, connection or gap uses ordinary
``prometheus_client`` metrics.

The per-event methods take no lock: call each of them from one thread only (the event loop, or
the storage worker for ``events_written``). A scrape copies each dictionary before reading it,
so it may run while they are being called. :mod:`recorder.ops.http` serves the exposition.
"""

import collections
import platform
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from recorder import __version__
from recorder.clock import Clock, SystemClock
from recorder.ops.market_metrics import MarketListMetrics
from recorder.ops.status_metrics import StatusMetrics

__all__ = ["GAP_CAUSES", "RecorderMetrics"]

GAP_CAUSES: Final = ("disconnect", "stall", "restart", "quiet", "storage")
"""Causes of a gap, as in the gap log; their series exist from the start, at zero."""

# Flushes run every second and fsync; most take milliseconds, a struggling disk seconds.
_FLUSH_SECONDS_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
_US_PER_SECOND: Final = 1_000_000


class _HotPathCollector:
    """Exports the dictionaries filled on the per-event path, computed when scraped.

    Args:
        clock: the wall clock that ages the last event of each symbol.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.received: dict[str, int] = {}
        self.written: dict[str, int] = {}
        self.quarantined: dict[str, int] = {}
        self.last_receive_us: dict[str, int] = {}
        self.duplicates = 0

    def describe(self) -> Iterable[Metric]:
        """Name the families (without samples) so the registry can reject duplicates."""
        return self._families()

    def collect(self) -> Iterable[Metric]:
        """Return the families with their current samples."""
        received, written, quarantined, last_receive_us = (
            # A copy is taken in one C call, so a scrape never sees a dict change under it.
            self.received.copy(),
            self.written.copy(),
            self.quarantined.copy(),
            self.last_receive_us.copy(),
        )
        received_family, written_family, duplicates_family, quarantined_family, age_family = (
            self._families()
        )
        for symbol, count in received.items():
            received_family.add_metric([symbol], count)
        for symbol, count in written.items():
            written_family.add_metric([symbol], count)
        duplicates_family.add_metric([], self.duplicates)
        for reason, count in quarantined.items():
            quarantined_family.add_metric([reason], count)
        now_us = self.clock.wall_us()
        for symbol, at_us in last_receive_us.items():
            # A wall-clock step backwards must not produce a negative age.
            age_family.add_metric([symbol], max(0, now_us - at_us) / _US_PER_SECOND)
        return (
            received_family,
            written_family,
            duplicates_family,
            quarantined_family,
            age_family,
        )

    @staticmethod
    def _families() -> tuple[
        CounterMetricFamily,
        CounterMetricFamily,
        CounterMetricFamily,
        CounterMetricFamily,
        GaugeMetricFamily,
    ]:
        return (
            CounterMetricFamily(
                "recorder_events_received",
                "Events decoded from the exchange, before de-duplication, per symbol.",
                labels=["symbol"],
            ),
            CounterMetricFamily(
                "recorder_events_written",
                "Events made durable in the write-ahead log, per symbol.",
                labels=["symbol"],
            ),
            CounterMetricFamily(
                "recorder_duplicates_dropped",
                "Events dropped because the same event was already received "
                "(connection overlap during a handover).",
            ),
            CounterMetricFamily(
                "recorder_frames_quarantined",
                "Frames or array items rejected into the quarantine, by reason code.",
                labels=["reason"],
            ),
            GaugeMetricFamily(
                "recorder_last_event_age_seconds",
                "Seconds since the last event of each symbol was received (local wall clock), "
                "or since the symbol was first tracked if none arrived yet. A quiet symbol can "
                "be silent for minutes while its connection is healthy.",
                labels=["symbol"],
            ),
        )


class _WithoutCreatedSeries:
    """A view of a registry without the ``*_created`` samples of counters and histograms.

    ``prometheus_client`` adds them to every labelled child; Prometheus ignores them unless a
    feature flag is set, and they double the size of a scrape. The switch the library offers
    (``disable_created_metrics``) is process-wide, which a library module must not flip.

    Args:
        registry: the registry to read.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        """Yield the registry's families, each without its ``_created`` samples."""
        for family in self._registry.collect():
            # Each collect() builds fresh family objects, so filtering them in place is safe.
            created = family.name + "_created"
            family.samples = [sample for sample in family.samples if sample.name != created]
            yield family


class RecorderMetrics:
    """Every metric the recorder exports, in a registry of its own.

    Args:
        clock: the wall clock used for event ages and flush timestamps; tests pass a
            :class:`~recorder.clock.ManualClock`.
        version: the recorder version reported by ``recorder_build_info``.

    Attributes:
        registry: the registry to expose; nothing else is registered in it. Besides the
            ``recorder_*`` series it holds ``prometheus_client``'s process collector
            (``process_start_time_seconds``, resident memory, CPU, open files; read from
            ``/proc``, so only on Linux), which the restart alert and the dashboard read.
        market: the series of the recorded set (:mod:`recorder.ops.market_metrics`).
        status: the gaps of the last hour and the limits a status view judges against
            (:mod:`recorder.ops.status_metrics`).
    """

    def __init__(self, *, clock: Clock | None = None, version: str = __version__) -> None:
        self._clock: Clock = clock or SystemClock()
        self.registry = CollectorRegistry()
        registry = self.registry
        self._hot = _HotPathCollector(self._clock)
        registry.register(self._hot)
        # The process's own series: its start time changes with every restart (the restart
        # alert counts those changes), its resident memory sits beside the buffer budget.
        ProcessCollector(registry=registry)
        self.market = MarketListMetrics(registry)
        self.status = StatusMetrics(registry, self._clock, GAP_CAUSES)
        self._reconnects = Counter(
            "recorder_reconnects",
            "Websocket connections replaced, by reason (dropped, stalled, no data, lifetime "
            "handover...).",
            ["reason"],
            registry=registry,
        )
        self._open_connections = Gauge(
            "recorder_open_connections",
            "Websocket connections currently open to the exchange.",
            registry=registry,
        )
        self._gaps = Counter(
            "recorder_gaps",
            "Gap records appended to the gap log, by cause.",
            ["cause"],
            registry=registry,
        )
        self._missed_updates = Counter(
            "recorder_missed_updates",
            "Updates estimated missing inside detected gaps, by cause.",
            ["cause"],
            registry=registry,
        )
        for cause in GAP_CAUSES:
            self._gaps.labels(cause)
            self._missed_updates.labels(cause)
        self._flush_duration = Histogram(
            "recorder_flush_duration_seconds",
            "Duration of each flush: write-ahead append, fsync and publication of due files.",
            buckets=_FLUSH_SECONDS_BUCKETS,
            registry=registry,
        )
        self._flush_failures = Counter(
            "recorder_flush_failures",
            "Flushes that failed (disk full, read-only or unwritable root); events stay "
            "buffered and are retried.",
            registry=registry,
        )
        self._last_flush_success = Gauge(
            "recorder_last_flush_success",
            "1 if the most recent flush succeeded, 0 if it failed.",
            registry=registry,
        )
        self._last_flush_success_time = Gauge(
            "recorder_last_flush_success_timestamp_seconds",
            "Unix time of the most recent successful flush (0 until the first one).",
            registry=registry,
        )
        self._bytes_written = Counter(
            "recorder_written_bytes",
            "Bytes written to storage: write-ahead log and published Parquet files.",
            registry=registry,
        )
        self._files_published = Counter(
            "recorder_files_published",
            "Parquet files sealed and published into the dataset.",
            registry=registry,
        )
        self._buffered_rows = Gauge(
            "recorder_buffered_rows",
            "Events received but not yet in a published Parquet file.",
            registry=registry,
        )
        self._buffered_bytes = Gauge(
            "recorder_buffered_bytes",
            "Arrow bytes of the rows held in memory (waiting to be logged or published); "
            "bounded by [storage] buffer_budget.",
            registry=registry,
        )
        self._spilled_bytes = Gauge(
            "recorder_spilled_bytes",
            "Arrow bytes of durable rows moved to spill files while publication lags behind; "
            "0 when the publisher keeps up.",
            registry=registry,
        )
        self._events_dropped = Counter(
            "recorder_events_dropped",
            "Events received, then given up because storage refused them for longer than the "
            "memory budget allows (each run is logged as a gap of cause storage), per symbol.",
            ["symbol"],
            registry=registry,
        )
        self._not_recorded = Counter(
            "recorder_events_not_recorded",
            "Valid items of the all-market array skipped because their contract is not "
            "recorded (the array carries every contract that changed).",
            registry=registry,
        )
        self._seal_duration = Histogram(
            "recorder_seal_duration_seconds",
            "Duration of publishing one sealed Parquet file, beside the write-ahead flush.",
            buckets=_FLUSH_SECONDS_BUCKETS,
            registry=registry,
        )
        self._quarantine_dropped = Counter(
            "recorder_quarantine_dropped",
            "Rejections not written to the quarantine because the day's file reached "
            "[storage] quarantine_max_day_bytes (they are still counted by reason).",
            registry=registry,
        )
        self._quarantine_dropped_bytes = Counter(
            "recorder_quarantine_dropped_bytes",
            "Bytes of quarantine lines dropped by [storage] quarantine_max_day_bytes.",
            registry=registry,
        )
        self._wal_size = Gauge(
            "recorder_wal_size_bytes",
            "Size of the write-ahead log on disk.",
            registry=registry,
        )
        self._clock_offset = Gauge(
            "recorder_clock_offset_seconds",
            "Local wall clock at arrival minus the exchange's event time E of the latest "
            "accepted event: this host's clock error plus the network latency (NaN before the "
            "first event).",
            registry=registry,
        )
        self._clock_offset.set(float("nan"))
        # Until the first flush there is no failure to report.
        self._last_flush_success.set(1)
        build = Info("recorder_build", "Recorder build information.", registry=registry)
        build.info({"version": version, "python": platform.python_version()})

    # --- per event: plain dictionary updates ------------------------------------------------

    def event_received(self, symbol: str, receive_time_us: int) -> None:
        """Count one decoded event of ``symbol`` and remember when it arrived.

        Args:
            symbol: the event's symbol.
            receive_time_us: local wall clock at arrival, microseconds since the epoch.
        """
        self.events_received((symbol,), (receive_time_us,))

    def events_received(self, symbols: Sequence[str], receive_times_us: Sequence[int]) -> None:
        """Count a batch of decoded events, each of ``symbols``, arriving at ``receive_times_us``.

        Once per batch, not per event: one count per symbol, the newest arrival kept.
        """
        received, hot = self._hot.received, self._hot
        for symbol, count in collections.Counter(symbols).items():
            received[symbol] = received.get(symbol, 0) + count
        hot.last_receive_us.update(zip(symbols, receive_times_us, strict=True))

    def events_written(self, symbol: str, count: int = 1) -> None:
        """Count ``count`` events of ``symbol`` made durable."""
        written = self._hot.written
        written[symbol] = written.get(symbol, 0) + count

    def duplicate_dropped(self, count: int = 1) -> None:
        """Count ``count`` events dropped as duplicates."""
        self._hot.duplicates += count

    def frame_quarantined(self, reason_code: str, count: int = 1) -> None:
        """Count ``count`` rejections with ``reason_code``.

        Args:
            reason_code: the machine-groupable code (:func:`recorder.model.reason_code`),
                never the free-text reason: every distinct value is a new time series.
            count: how many rejections.
        """
        quarantined = self._hot.quarantined
        quarantined[reason_code] = quarantined.get(reason_code, 0) + count

    def events_not_recorded(self, count: int) -> None:
        """Count ``count`` all-market items skipped as not recorded: once per frame."""
        self._not_recorded.inc(count)

    def track_symbols(self, symbols: Iterable[str]) -> None:
        """Export ``symbols`` before their first event: counters at 0, age from now.

        A symbol that never delivers anything then shows a growing
        ``recorder_last_event_age_seconds`` instead of no series at all, which an alert on
        age would miss. Symbols already seen keep their values.
        """
        hot = self._hot
        now_us = self._clock.wall_us()
        for symbol in symbols:
            hot.received.setdefault(symbol, 0)
            hot.written.setdefault(symbol, 0)
            hot.last_receive_us.setdefault(symbol, now_us)

    def untrack_symbols(self, symbols: Iterable[str]) -> None:
        """Stop exporting the event age of ``symbols`` (delisted): it would only grow.

        Their counters stay: a counter that vanishes looks like a reset.
        """
        for symbol in symbols:
            self._hot.last_receive_us.pop(symbol, None)

    # --- per connection, gap and flush ------------------------------------------------------

    def reconnect(self, reason: str) -> None:
        """Count one replaced connection.

        Args:
            reason: a short code from a small fixed set (``"dropped"``, ``"stalled"``,
                ``"no_data"``, ``"lifetime"``...), never an error message.
        """
        self._reconnects.labels(reason).inc()

    def set_open_connections(self, count: int) -> None:
        """Report how many websocket connections are open now."""
        self._open_connections.set(count)

    def gap_detected(self, cause: str, missed: int) -> None:
        """Count one gap record and the updates it estimates missing.

        Args:
            cause: ``"disconnect"``, ``"stall"``, ``"restart"``, ``"quiet"`` or ``"storage"``.
            missed: the record's ``missed`` count.
        """
        self._gaps.labels(cause).inc()
        self._missed_updates.labels(cause).inc(missed)
        self.status.gap(cause)

    def observe_flush(self, seconds: float, ok: bool) -> None:
        """Record one flush: its duration and whether it succeeded.

        Args:
            seconds: how long the flush took (monotonic clock).
            ok: whether everything taken was made durable.
        """
        self._flush_duration.observe(seconds)
        self._last_flush_success.set(1 if ok else 0)
        if ok:
            self._last_flush_success_time.set(self._clock.wall_us() / _US_PER_SECOND)
        else:
            self._flush_failures.inc()

    def bytes_written(self, count: int) -> None:
        """Count ``count`` bytes written to storage."""
        self._bytes_written.inc(count)

    def files_published(self, count: int) -> None:
        """Count ``count`` Parquet files published."""
        self._files_published.inc(count)

    def set_buffered_rows(self, count: int) -> None:
        """Report how many received events are not yet in a published file."""
        self._buffered_rows.set(count)

    def set_buffered_bytes(self, size_bytes: int) -> None:
        """Report the Arrow bytes of the rows held in memory."""
        self._buffered_bytes.set(size_bytes)

    def set_buffer_budget(self, size_bytes: int) -> None:
        """Report ``[storage] buffer_budget``, so that buffered bytes can be read as a share."""
        self.status.set_buffer_budget(size_bytes)

    def set_spilled_bytes(self, size_bytes: int) -> None:
        """Report the Arrow bytes of the rows waiting for publication in spill files."""
        self._spilled_bytes.set(size_bytes)

    def events_dropped(self, symbol: str, count: int) -> None:
        """Count ``count`` events of ``symbol`` given up in a storage outage."""
        self._events_dropped.labels(symbol).inc(count)

    def observe_seal(self, seconds: float) -> None:
        """Record how long publishing one file took."""
        self._seal_duration.observe(seconds)

    def quarantine_dropped(self, records: int, size_bytes: int) -> None:
        """Count rejections the quarantine's daily bound dropped; safe from any thread.

        Args:
            records: how many rejections.
            size_bytes: the bytes their lines would have taken.
        """
        self._quarantine_dropped.inc(records)
        self._quarantine_dropped_bytes.inc(size_bytes)

    def set_wal_size(self, size_bytes: int) -> None:
        """Report the size of the write-ahead log on disk."""
        self._wal_size.set(size_bytes)

    def set_clock_offset(self, offset_ms: int) -> None:
        """Report the local clock minus ``E`` of the latest accepted event, in milliseconds."""
        self._clock_offset.set(offset_ms / 1000)

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """Render every metric in the format the scraper asked for.

        Args:
            accept: the request's ``Accept`` header; Prometheus text format 0.0.4 unless it
                asks for OpenMetrics.

        Returns:
            The body and its ``Content-Type``.
        """
        encode, content_type = choose_encoder(accept)
        return encode(_WithoutCreatedSeries(self.registry)), content_type
