"""The recorder's status at a glance, computed from its metrics; sans-IO.

One code path serves the daemon's periodic ``status`` line and ``recorder status``: both read
metric families (the daemon from its own registry, the command from a scrape of ``/metrics``
parsed by ``prometheus_client.parser``; the sample names are the same), turn them into a
:class:`MetricsReading` (:func:`read_metrics`), and a :class:`StatusTracker` makes each reading
a :class:`StatusSnapshot` against the one before it (the event rate needs two).

The figures:

* **events/s**: events received (before de-duplication) per second since the previous
  reading; unknown on the first one, and after the recorder restarted (its counters went back).
* **symbols**: by the age of their last event (local clock). *Delivering*: younger than
  :data:`DELIVERING_SECONDS` (or ``stall_timeout`` if that is shorter); *quiet*: younger than
  ``[source] stall_timeout`` (Binance pushes a ticker only when it changed, so a quiet symbol is
  normal); *silent*: older, the ones to look at (the connection gets a silence check by then).
* **connections**: websocket connections open now.
* **last flush**: seconds since the last successful flush, and whether the latest failed.
* **buffered**: rows received and not yet in a published file, and the Arrow bytes held in
  memory against ``[storage] buffer_budget``.
* **gaps in the last hour**, by cause (``recorder_gaps_last_hour``, kept by the daemon).
"""

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from prometheus_client.metrics_core import Metric

__all__ = [
    "DELIVERING_SECONDS",
    "MetricsReading",
    "StatusSnapshot",
    "StatusTracker",
    "SymbolStatus",
    "human_bytes",
    "read_metrics",
]

DELIVERING_SECONDS: Final = 10.0
"""A symbol whose last event is younger than this is delivering: a few of Binance's 2 s
updates, so a liquid contract never leaves the band while its connection is well."""

DEFAULT_STALL_TIMEOUT: Final = 60.0
"""``[source] stall_timeout``'s default, for a recorder that does not export its own."""

DELIVERING: Final = "delivering"
QUIET: Final = "quiet"
SILENT: Final = "silent"

_LOG_SILENT_NAMES: Final = 10


@dataclass(frozen=True, slots=True)
class MetricsReading:
    """The figures of one reading of the recorder's metrics.

    Attributes:
        received: events received since the start, per symbol.
        ages: seconds since the last event of each tracked symbol.
        open_connections: websocket connections open.
        gaps_last_hour: gap records of the last hour, by cause.
        last_flush_ok: whether the most recent flush succeeded.
        last_flush_at: Unix time of the last successful flush; ``None`` before the first.
        buffered_rows: rows received and not yet published.
        buffered_bytes: Arrow bytes held in memory.
        buffer_budget: ``[storage] buffer_budget`` in bytes, if exported.
        stall_timeout: ``[source] stall_timeout`` in seconds, if exported.
        version: the recorder's version, if exported.
    """

    received: Mapping[str, int] = field(default_factory=dict)
    ages: Mapping[str, float] = field(default_factory=dict)
    open_connections: int = 0
    gaps_last_hour: Mapping[str, int] = field(default_factory=dict)
    last_flush_ok: bool = True
    last_flush_at: float | None = None
    buffered_rows: int = 0
    buffered_bytes: int = 0
    buffer_budget: int | None = None
    stall_timeout: float | None = None
    version: str | None = None


def read_metrics(families: Iterable[Metric]) -> MetricsReading:
    """Pick the status figures out of metric families (a registry's or a parsed scrape's).

    Series it does not know are ignored, and missing ones keep their defaults, so a newer or
    older recorder still gives a reading.
    """
    received: dict[str, int] = {}
    ages: dict[str, float] = {}
    gaps: dict[str, int] = {}
    scalars: dict[str, float] = {}
    version = None
    for family in families:
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, float(sample.value)
            if name == "recorder_events_received_total":
                received[labels["symbol"]] = int(value)
            elif name == "recorder_last_event_age_seconds":
                ages[labels["symbol"]] = value
            elif name == "recorder_gaps_last_hour":
                gaps[labels["cause"]] = int(value)
            elif name == "recorder_build_info":
                version = labels.get("version")
            elif not labels:
                scalars[name] = value
    flushed_at = scalars.get("recorder_last_flush_success_timestamp_seconds", 0.0)
    budget = scalars.get("recorder_buffer_budget_bytes")
    stall = scalars.get("recorder_stall_timeout_seconds")
    return MetricsReading(
        received=received,
        ages=ages,
        open_connections=int(scalars.get("recorder_open_connections", 0)),
        gaps_last_hour=gaps,
        last_flush_ok=scalars.get("recorder_last_flush_success", 1.0) == 1.0,
        last_flush_at=flushed_at or None,
        buffered_rows=int(scalars.get("recorder_buffered_rows", 0)),
        buffered_bytes=int(scalars.get("recorder_buffered_bytes", 0)),
        # 0 is the gauge's value before the service set it: not a budget.
        buffer_budget=int(budget) if budget else None,
        stall_timeout=stall or None,
        version=version,
    )


@dataclass(frozen=True, slots=True)
class SymbolStatus:
    """One symbol's figures.

    Attributes:
        symbol: the contract.
        state: ``"delivering"``, ``"quiet"`` or ``"silent"``.
        last_event_age: seconds since its last event (or since it was first tracked).
        events: events received since the start.
        events_per_second: its rate since the previous reading, if known.
    """

    symbol: str
    state: str
    last_event_age: float
    events: int
    events_per_second: float | None


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    """The recorder's status at one moment; see the module docstring for each figure.

    Attributes:
        events_total: events received since the start.
        events_per_second: the rate since the previous reading; ``None`` when unknown.
        rate_interval: seconds the rate was measured over; ``None`` when unknown.
        delivering: symbols whose last event is younger than the delivering threshold.
        quiet: symbols past it and younger than ``stall_timeout``.
        silent: symbols older than ``stall_timeout``.
        connections: websocket connections open.
        last_flush_ok: whether the most recent flush succeeded.
        since_last_flush: seconds since the last successful flush; ``None`` before the first.
        buffered_rows: rows not yet published.
        buffered_bytes: Arrow bytes held in memory.
        buffer_budget: ``[storage] buffer_budget``, if known.
        gaps_last_hour: gap records of the last hour, by cause.
        symbols: every tracked symbol, the oldest last event first.
        version: the recorder's version, if known.
    """

    events_total: int
    events_per_second: float | None
    rate_interval: float | None
    delivering: int
    quiet: int
    silent: int
    connections: int
    last_flush_ok: bool
    since_last_flush: float | None
    buffered_rows: int
    buffered_bytes: int
    buffer_budget: int | None
    gaps_last_hour: Mapping[str, int]
    symbols: tuple[SymbolStatus, ...]
    version: str | None = None

    @property
    def budget_used(self) -> float | None:
        """Buffered bytes as a fraction of the budget; ``None`` without a budget."""
        if not self.buffer_budget:
            return None
        return self.buffered_bytes / self.buffer_budget

    @property
    def gaps_total(self) -> int:
        """Gap records of the last hour, every cause."""
        return sum(self.gaps_last_hour.values())

    def summary(self) -> str:
        """One compact line of every figure, for a terminal.

        >>> snapshot = StatusSnapshot(120, 4.0, 5.0, 2, 1, 0, 1, True, 0.25, 12, 3 * 1024**2,
        ...                           64 * 1024**2, {"stall": 1, "quiet": 0}, ())
        >>> for part in snapshot.summary().split(" | "):
        ...     print(part)
        4.0 ev/s
        symbols 2 delivering, 1 quiet, 0 silent
        1 connection
        flushed 0.2s ago
        buffered 12 rows, 3.0MiB of 64.0MiB (5%)
        gaps 1h: 1 stall
        """
        rate = "? ev/s" if self.events_per_second is None else f"{self.events_per_second:.1f} ev/s"
        symbols = f"symbols {self.delivering} delivering, {self.quiet} quiet, {self.silent} silent"
        plural = "" if self.connections == 1 else "s"
        if self.since_last_flush is None:
            flushed = "no flush yet"
        else:
            flushed = f"flushed {self.since_last_flush:.1f}s ago"
        if not self.last_flush_ok:
            flushed += " (last flush FAILED)"
        buffered = f"buffered {self.buffered_rows:,} rows, {human_bytes(self.buffered_bytes)}"
        if self.buffer_budget:
            used = self.budget_used or 0.0
            buffered += f" of {human_bytes(self.buffer_budget)} ({used:.0%})"
        gaps = ", ".join(f"{n} {cause}" for cause, n in self.gaps_last_hour.items() if n)
        return (
            f"{rate} | {symbols} | {self.connections} connection{plural} | {flushed} | "
            f"{buffered} | gaps 1h: {gaps or 'none'}"
        )

    def log_fields(self) -> dict[str, object]:
        """The figures as fields of one JSON log line (the silent symbols named, ten at most)."""
        fields = {
            key: value for key, value in self.as_dict().items() if key not in {"symbols", "version"}
        }
        fields["silent_symbols"] = [s.symbol for s in self.symbols if s.state == SILENT][
            :_LOG_SILENT_NAMES
        ]
        return fields

    def as_dict(self) -> dict[str, object]:
        """Every figure as JSON-ready values, the symbols the oldest last event first."""
        return {
            "version": self.version,
            "events_total": self.events_total,
            "events_per_second": _rounded(self.events_per_second),
            "rate_interval_s": _rounded(self.rate_interval),
            "symbols_delivering": self.delivering,
            "symbols_quiet": self.quiet,
            "symbols_silent": self.silent,
            "connections": self.connections,
            "last_flush_ok": self.last_flush_ok,
            "seconds_since_flush": _rounded(self.since_last_flush),
            "buffered_rows": self.buffered_rows,
            "buffered_bytes": self.buffered_bytes,
            "buffer_budget_bytes": self.buffer_budget,
            "buffer_budget_used": _rounded(self.budget_used, 4),
            "gaps_last_hour": dict(self.gaps_last_hour),
            "symbols": [
                {
                    "symbol": s.symbol,
                    "state": s.state,
                    "last_event_age_s": _rounded(s.last_event_age),
                    "events": s.events,
                    "events_per_second": _rounded(s.events_per_second),
                }
                for s in self.symbols
            ],
        }


class StatusTracker:
    """Makes successive readings snapshots; remembers the previous one for the rates.

    Args:
        stall_timeout: where quiet ends and silent begins, when the reading does not say
            (a recorder that exports ``recorder_stall_timeout_seconds`` overrides it).
    """

    def __init__(self, stall_timeout: float = DEFAULT_STALL_TIMEOUT) -> None:
        self.stall_timeout = stall_timeout
        self._previous: tuple[float, MetricsReading] | None = None

    def observe(self, reading: MetricsReading, *, wall: float, monotonic: float) -> StatusSnapshot:
        """The snapshot of ``reading``, taken at ``wall`` (Unix time) and ``monotonic``.

        Args:
            reading: the metrics now.
            wall: the wall clock now, in seconds since the epoch: ages the last flush.
            monotonic: a monotonic clock now, in seconds: the interval of the rates.
        """
        previous, self._previous = self._previous, (monotonic, reading)
        total = sum(reading.received.values())
        rate = interval = None
        before: Mapping[str, int] = {}
        if previous is not None and monotonic > previous[0]:
            earlier = previous[1].received
            # Counters that went back mean a restart in between: no rate across it.
            if sum(earlier.values()) <= total:
                interval = monotonic - previous[0]
                rate = (total - sum(earlier.values())) / interval
                before = earlier
        stall = reading.stall_timeout or self.stall_timeout
        fresh = min(DELIVERING_SECONDS, stall)
        symbols = []
        for symbol, age in reading.ages.items():
            state = DELIVERING if age < fresh else QUIET if age < stall else SILENT
            count = reading.received.get(symbol, 0)
            symbol_rate = None
            if interval is not None:
                symbol_rate = max(0, count - before.get(symbol, 0)) / interval
            symbols.append(SymbolStatus(symbol, state, age, count, symbol_rate))
        symbols.sort(key=lambda s: (-s.last_event_age, s.symbol))
        states = [s.state for s in symbols]
        since_flush = None
        if reading.last_flush_at is not None:
            since_flush = max(0.0, wall - reading.last_flush_at)
        return StatusSnapshot(
            events_total=total,
            events_per_second=rate,
            rate_interval=interval,
            delivering=states.count(DELIVERING),
            quiet=states.count(QUIET),
            silent=states.count(SILENT),
            connections=reading.open_connections,
            last_flush_ok=reading.last_flush_ok,
            since_last_flush=since_flush,
            buffered_rows=reading.buffered_rows,
            buffered_bytes=reading.buffered_bytes,
            buffer_budget=reading.buffer_budget,
            gaps_last_hour=reading.gaps_last_hour,
            symbols=tuple(symbols),
            version=reading.version,
        )


def human_bytes(size: float) -> str:
    """Bytes in the largest binary unit that keeps a digit before the point.

    >>> human_bytes(512), human_bytes(3 * 1024**2 + 1), human_bytes(64 * 1024**3)
    ('512B', '3.0MiB', '64.0GiB')
    """
    units = ("B", "KiB", "MiB", "GiB")
    index = 0
    while size >= 1024 and index < len(units) - 1:
        size /= 1024
        index += 1
    return f"{size:.0f}B" if index == 0 else f"{size:.1f}{units[index]}"


def _rounded(value: float | None, digits: int = 3) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)
