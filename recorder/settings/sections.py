"""The recorder's settings: one frozen section per concern, their keys, defaults and rules.

Each key is declared with :func:`~recorder.settings.keys.setting`; :data:`SETTINGS_TABLE` hands
the sections and the cross-key rules to :mod:`recorder.settings.loader`, which reads them from
TOML, the environment and flags.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from recorder.settings.keys import (
    Conflict,
    SettingsTable,
    choice_key,
    duration_key,
    int_key,
    setting,
    size_key,
)
from recorder.settings.units import format_duration, format_size
from recorder.settings.values import (
    AllSymbols,
    SymbolSelection,
    parse_address,
    parse_contract_types,
    parse_instance_id,
    parse_rest_url,
    parse_root,
    parse_symbols,
    parse_ws_url,
    render_contract_types,
    render_path,
    render_symbols,
)

LOG_LEVELS: Final = ("debug", "info", "warning", "error")
"""Accepted values of ``log.level``, most verbose first."""

LOG_FORMATS: Final = ("auto", "json", "console")
"""Accepted values of ``log.format``."""

PER_SYMBOL: Final = "per_symbol"
"""``source.mode``: one ``<symbol>@miniTicker`` stream per symbol, sharded over connections."""
ALL_MARKET: Final = "all_market"
"""``source.mode``: the one ``!miniTicker@arr`` stream of every contract, on one connection."""
SOURCE_MODES: Final = (PER_SYMBOL, ALL_MARKET)
"""Accepted values of ``source.mode``."""

_HOUR: Final = 3600.0
_MIB: Final = 1024 * 1024

# Binance closes every connection after 24 h; the planned handover must be finished by then.
_EXCHANGE_CONNECTION_LIMIT: Final = 24 * _HOUR
_MAX_STREAMS_PER_CONNECTION: Final = 1024

_positive_duration: Final = duration_key()
_DEFAULT_SYMBOLS: Final[SymbolSelection] = ("BTCUSDT", "ETHUSDT")


@dataclass(frozen=True, slots=True)
class SourceSettings:
    """Where the recorder connects and how it keeps its websocket connections healthy.

    Attributes:
        mode: which streams carry the recorded symbols. ``"per_symbol"``: one
            ``<symbol>@miniTicker`` stream each, at most ``max_streams_per_connection`` on a
            connection, changed live with ``SUBSCRIBE``/``UNSUBSCRIBE``. ``"all_market"``: the
            one ``!miniTicker@arr`` stream (every second, an array of the tickers that changed,
            of every contract) on one connection whatever the number of symbols; the recorded
            symbols are picked out of it, the others skipped and counted, and a change of the
            list sends nothing to the exchange (``max_streams_per_connection`` does not apply).
        url: websocket base URL (``ws://`` or ``wss://``, no trailing ``/``, no query string);
            the stream path and ``?streams=`` are added by the source.
        symbols: the contracts to record, upper-case, valid, unique, in the given order; or
            :data:`~recorder.settings.values.ALL_SYMBOLS`: every contract ``exchangeInfo``
            lists as ``TRADING`` with a type in ``contract_types``, followed while running.
        rest_url: the REST base URL ``exchangeInfo`` is read from (``symbols = "all"``).
        contract_types: the ``contractType`` values recorded with ``symbols = "all"``.
        refresh_interval: seconds between two readings of ``exchangeInfo`` while recording
            ``"all"`` (one request of weight 1 each; Binance allows 2400 a minute).
        max_streams_per_connection: streams subscribed on one connection (Binance allows 200)
            in per-symbol mode.
        connection_lifetime: age in seconds after which a connection is replaced by a planned
            handover (Binance closes connections at 24 h).
        handover_timeout: seconds the replacement connection may take to deliver its first data
            (in a handover and in a silence check).
        open_timeout: seconds allowed for the websocket handshake, and for each REST request
            (``exchangeInfo``) with its answer.
        ping_interval: seconds between client heartbeats; a dead peer is detected within 1.5x.
        stall_timeout: seconds an open connection may deliver nothing before a silence check
            tells whether it stalled (replaced) or its symbols are quiet (kept).
        first_data_timeout: seconds after connecting with no data at all before a loud error
            (for example a URL that accepts subscriptions and never delivers) and a silence
            check (an alive connection is kept: its symbols may be quiet from the start).
        backoff_initial: first reconnect delay in seconds.
        backoff_max: largest reconnect delay in seconds; at least ``backoff_initial``.
        max_frame_bytes: largest websocket frame accepted, in bytes.
        max_event_time_skew: seconds an event's ``E`` may be from both the local clock and
            the newest ``E`` of the other symbols before it is quarantined as implausible
            (see :mod:`recorder.ingest.event_times`).
    """

    mode: str = setting(PER_SYMBOL, choice_key(SOURCE_MODES))
    url: str = setting("wss://fstream.binance.com/market", parse_ws_url)
    # A tuple or an enum member, both immutable; ruff cannot see through the alias.
    symbols: SymbolSelection = setting(_DEFAULT_SYMBOLS, parse_symbols, render_symbols)  # noqa: RUF009
    rest_url: str = setting("https://fapi.binance.com", parse_rest_url)
    contract_types: tuple[str, ...] = setting(
        ("PERPETUAL",), parse_contract_types, render_contract_types
    )
    refresh_interval: float = setting(60.0, duration_key(minimum=1.0), format_duration)
    max_streams_per_connection: int = setting(200, int_key(1, _MAX_STREAMS_PER_CONNECTION))
    connection_lifetime: float = setting(23 * _HOUR, _positive_duration, format_duration)
    handover_timeout: float = setting(60.0, _positive_duration, format_duration)
    open_timeout: float = setting(10.0, _positive_duration, format_duration)
    ping_interval: float = setting(30.0, _positive_duration, format_duration)
    stall_timeout: float = setting(60.0, _positive_duration, format_duration)
    first_data_timeout: float = setting(30.0, _positive_duration, format_duration)
    backoff_initial: float = setting(1.0, _positive_duration, format_duration)
    backoff_max: float = setting(60.0, _positive_duration, format_duration)
    max_frame_bytes: int = setting(1 * _MIB, size_key(), format_size)
    max_event_time_skew: float = setting(24 * _HOUR, duration_key(minimum=1.0), format_duration)

    @property
    def records_all(self) -> bool:
        """Whether ``symbols`` is ``"all"``: the list comes from ``exchangeInfo``."""
        return isinstance(self.symbols, AllSymbols)

    @property
    def all_market(self) -> bool:
        """Whether ``mode`` is ``"all_market"``: one ``!miniTicker@arr`` connection."""
        return self.mode == ALL_MARKET

    @property
    def listed_symbols(self) -> tuple[str, ...]:
        """The symbols listed in the settings; none while ``symbols`` is ``"all"``.

        The service replaces ``"all"`` by the contracts ``exchangeInfo`` lists before it
        builds anything that records them.
        """
        return () if isinstance(self.symbols, AllSymbols) else self.symbols


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """Where and how the dataset is written.

    Attributes:
        root: the dataset root directory.
        flush_interval: seconds between durable flushes; the most data a crash can lose.
        max_file_age: seconds after which an open part file is sealed.
        max_file_bytes: size in bytes after which an open part file is sealed.
        day_grace: seconds of event time past midnight UTC before a day's files are sealed,
            so that late events of the previous day still find their file open.
        buffer_budget: Arrow bytes of every row held in memory: the largest partitions are
            sealed early above three quarters of it, and rows storage refuses beyond it are
            dropped as ``storage`` gaps; the resident set follows it (README: memory).
        quarantine_max_day_bytes: size each day's quarantine file of an instance stops
            growing at; rejections beyond it are dropped and counted.
    """

    # setting returns the dataclass field declaration, evaluated once on purpose.
    root: Path = setting(Path("data"), parse_root, render_path)  # noqa: RUF009
    flush_interval: float = setting(1.0, _positive_duration, format_duration)
    max_file_age: float = setting(_HOUR, _positive_duration, format_duration)
    max_file_bytes: int = setting(128 * _MIB, size_key(), format_size)
    day_grace: float = setting(10.0, duration_key(allow_zero=True), format_duration)
    buffer_budget: int = setting(64 * _MIB, size_key(), format_size)
    quarantine_max_day_bytes: int = setting(64 * _MIB, size_key(), format_size)


@dataclass(frozen=True, slots=True)
class GapSettings:
    """How missed updates are counted.

    Attributes:
        interval: the exchange's update interval in seconds; a symbol's events further apart
            than this count as missed updates.
    """

    interval: float = setting(2.0, duration_key(minimum=0.001), format_duration)

    @property
    def interval_ms(self) -> int:
        """The update interval in whole milliseconds, the unit of event times."""
        return round(self.interval * 1000)


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """How the daemon runs.

    Attributes:
        queue_size: events buffered between the source and the writer before back-pressure.
        stop_timeout: seconds allowed for the final flush on stop.
        instance_id: name of this recorder instance in file names; ``None`` generates one at
            start.
        status_interval: seconds between two ``status`` lines in the log (events per second,
            symbols delivering, quiet and silent, connections, last flush, buffered rows,
            gaps of the last hour); on a terminal a compact line comes every 10 s, or this
            often if it is shorter. ``0`` disables both.
    """

    queue_size: int = setting(10_000, int_key(1))
    stop_timeout: float = setting(10.0, _positive_duration, format_duration)
    instance_id: str | None = setting(None, parse_instance_id)
    status_interval: float = setting(300.0, duration_key(allow_zero=True), format_duration)


@dataclass(frozen=True, slots=True)
class LogSettings:
    """What is logged and how.

    Attributes:
        level: ``debug``, ``info``, ``warning`` or ``error``.
        format: ``json``, ``console``, or ``auto`` (JSON unless the log stream is a terminal).
    """

    level: str = setting("info", choice_key(LOG_LEVELS))
    format: str = setting("auto", choice_key(LOG_FORMATS))


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """The Prometheus ``/metrics`` and ``/healthz`` endpoint.

    Attributes:
        address: ``host:port`` to listen on, loopback by default; ``""`` disables the endpoint.
    """

    address: str = setting("127.0.0.1:9464", parse_address)

    @property
    def host(self) -> str:
        """The host part, without IPv6 brackets."""
        return self.address.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        """The port part."""
        return int(self.address.rpartition(":")[2])


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of the recorder, one frozen section per concern.

    Attributes:
        source: the websocket source.
        storage: the dataset on disk.
        gaps: gap detection.
        service: the daemon.
        log: logging.
        metrics: the metrics and health endpoint.
    """

    source: SourceSettings = field(default_factory=SourceSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    gaps: GapSettings = field(default_factory=GapSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)
    log: LogSettings = field(default_factory=LogSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)


def find_conflicts(settings: Settings) -> Iterator[Conflict]:
    """Yield the cross-key rules ``settings`` break, most fundamental first.

    Args:
        settings: settings whose every value is valid on its own.

    Yields:
        Each broken rule, with the keys involved.

    >>> [conflict.dotted_keys for conflict in find_conflicts(Settings())]
    []
    """
    source = settings.source
    if source.backoff_max < source.backoff_initial:
        yield Conflict(
            ("source.backoff_max", "source.backoff_initial"),
            "expected backoff_max >= backoff_initial (the reconnect delay grows from one to "
            "the other)",
        )
    if source.connection_lifetime + source.handover_timeout > _EXCHANGE_CONNECTION_LIMIT:
        yield Conflict(
            ("source.connection_lifetime", "source.handover_timeout"),
            "expected connection_lifetime + handover_timeout <= 24h (the exchange closes "
            "connections after 24h, so the planned handover must be over by then)",
        )


SETTINGS_TABLE: Final = SettingsTable(
    build=Settings,
    sections={
        "source": SourceSettings,
        "storage": StorageSettings,
        "gaps": GapSettings,
        "service": ServiceSettings,
        "log": LogSettings,
        "metrics": MetricsSettings,
    },
    example_key="storage.root",
    find_conflicts=find_conflicts,
)
"""The recorder's sections as the loader reads them: ``[source]``, ``[storage]``, ..."""
