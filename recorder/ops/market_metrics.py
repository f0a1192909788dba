"""The metrics of the recorded set: exchangeInfo readings, the set, its changes, reloads.

:class:`MarketListMetrics` registers its series in the registry of
:class:`~recorder.ops.metrics.RecorderMetrics`, which exposes it as ``metrics.market``.
"""

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge

EXCHANGE_INFO_FAILURES: Final = (
    "connection",
    "timeout",
    "rate_limited",
    "banned",
    "http_error",
    "malformed",
    "shape",
    "too_large",
    "empty",
)
"""Reasons of a failed exchangeInfo reading; their series exist from the start, at zero."""

RELOAD_OUTCOMES: Final = ("applied", "unchanged", "refused")
"""Outcomes of a settings reload (SIGHUP); their series exist from the start, at zero."""


class MarketListMetrics:
    """Counts exchangeInfo readings and the listings and delistings they bring.

    Args:
        registry: the recorder's registry.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._readings = Counter(
            "recorder_exchange_info_readings",
            "exchangeInfo readings (symbols = all), by outcome (ok or failed).",
            ["outcome"],
            registry=registry,
        )
        self._failures = Counter(
            "recorder_exchange_info_failures",
            "Failed exchangeInfo readings, by reason; the recorded list is kept.",
            ["reason"],
            registry=registry,
        )
        self._last_success = Gauge(
            "recorder_exchange_info_last_success_timestamp_seconds",
            "Unix time of the latest usable exchangeInfo answer (0 before the first).",
            registry=registry,
        )
        self._recorded = Gauge(
            "recorder_recorded_symbols",
            "Symbols the recorder records now.",
            registry=registry,
        )
        self._changes = Counter(
            "recorder_symbol_changes",
            "Symbols added to (listed) or removed from (delisted) the recorded set while running;"
            " delisting_held: removals kept until the next reading confirms them.",
            ["change"],
            registry=registry,
        )
        for outcome in ("ok", "failed"):
            self._readings.labels(outcome)
        for reason in EXCHANGE_INFO_FAILURES:
            self._failures.labels(reason)
        for change in ("listed", "delisted", "delisting_held"):
            self._changes.labels(change)
        self._reloads = Counter(
            "recorder_settings_reloads",
            "Settings reloads (SIGHUP), by outcome: applied (something changed live), unchanged "
            "(nothing to apply live), refused (the file or environment is invalid; the running "
            "settings stay).",
            ["outcome"],
            registry=registry,
        )
        for outcome in RELOAD_OUTCOMES:
            self._reloads.labels(outcome)

    def reading_ok(self, wall_seconds: float) -> None:
        """Count one usable exchangeInfo answer, received at ``wall_seconds``."""
        self._readings.labels("ok").inc()
        self._last_success.set(wall_seconds)

    def reading_failed(self, reason: str) -> None:
        """Count one failed reading; ``reason`` outside the known set counts as ``http_error``."""
        self._readings.labels("failed").inc()
        known = reason if reason in EXCHANGE_INFO_FAILURES else "http_error"
        self._failures.labels(known).inc()

    def set_recorded(self, count: int) -> None:
        """Set how many symbols are recorded now."""
        self._recorded.set(count)

    def changed(self, *, listed: int, delisted: int) -> None:
        """Count symbols added to and removed from the recorded set."""
        self._changes.labels("listed").inc(listed)
        self._changes.labels("delisted").inc(delisted)

    def delisting_held(self, count: int) -> None:
        """Count symbols a reading removed at once and that wait for the next to confirm it."""
        self._changes.labels("delisting_held").inc(count)

    def reloaded(self, outcome: str) -> None:
        """Count one settings reload; ``outcome`` is one of :data:`RELOAD_OUTCOMES`."""
        self._reloads.labels(outcome).inc()
