"""What a simulated exchange is: its symbols, its clock, and the connection rules it enforces.

Times of the protocol (ping interval, pong timeout, lifetime, rate limit) are real seconds on the
server's monotonic clock: a client must keep to them whatever the simulation speed. Only the
event clock (``E``) runs ``speed`` times faster than real time.
"""

from dataclasses import dataclass

from recorder.errors import ConfigError
from recorder.exchange_limits import REST_WEIGHT_LIMIT
from recorder.symbols import is_valid_symbol

DEFAULT_SYMBOLS: tuple[str, ...] = (
    "BTCUSDT",
    "ETHUSDT",
    "SOLUSDT",
    "XRPUSDT",
    "DOGEUSDT",
    "1000SHIBUSDT",
    "1000LUNCBUSD",
    "PEPEUSDT",
    "币安人生USDT",
    "BTCUSDT_260327",
)
"""Ten contracts that cover every price profile, a non-ASCII symbol and a delivery contract."""

MAX_PORT = 65_535


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Settings of one simulated Binance USDⓈ-M futures exchange.

    Attributes:
        symbols: the contracts it lists, upper-case as Binance spells them.
        seed: makes every price, volume, jitter and activity draw reproducible.
        speed: how much faster than real time the event clock runs (10: a 2 s tick every 0.2 s).
        interval_ms: simulated milliseconds between two ticks of the event clock.
        jitter_ms: the largest delay of an event's ``E`` after its tick (drawn in 0..jitter_ms).
        start_ms: ``E`` of tick 0 before jitter, in ms since the epoch; ``None`` means the wall
            clock when the exchange starts.
        activity: probability that a busy symbol changes in a tick; ``None`` draws one per
            symbol in 0.9..1.0 from the seed.
        quiet_symbols: symbols that change rarely (``quiet_activity``); they must be listed.
        quiet_activity: probability that a quiet symbol changes in a tick.
        pair_fraction: share of symbols whose payload carries ``ps`` and ``st``.
        ping_interval: real seconds between two server pings on a connection.
        pong_timeout: real seconds a ping may stay unanswered before the server drops the client.
        lifetime: real seconds after which the server closes a connection.
        max_streams: the most streams one connection may carry.
        message_rate_limit: the most incoming messages (frames, pings, pongs) per second per
            connection; one more closes the connection.
        rest_weight_limit: request weight per minute on REST before HTTP 429.
        event_log_limit: the most generated events kept as ground truth (oldest dropped first).
        host: the address to listen on; loopback by default.
        port: the port to listen on; 0 picks a free one (read it from ``SimulatedExchange.port``).
    """

    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    seed: int = 0
    speed: float = 1.0
    interval_ms: int = 2_000
    jitter_ms: int = 150
    start_ms: int | None = None
    activity: float | None = None
    quiet_symbols: tuple[str, ...] = ()
    quiet_activity: float = 0.1
    pair_fraction: float = 0.5
    ping_interval: float = 180.0
    pong_timeout: float = 600.0
    lifetime: float = 86_400.0
    max_streams: int = 200
    message_rate_limit: int = 10
    rest_weight_limit: int = REST_WEIGHT_LIMIT
    event_log_limit: int = 1_000_000
    host: str = "127.0.0.1"
    port: int = 0

    def __post_init__(self) -> None:
        _check_symbols(self.symbols, self.quiet_symbols)
        _require(self.speed > 0, "speed", self.speed, "a number above 0")
        _require(self.jitter_ms >= 0, "jitter_ms", self.jitter_ms, "0 or more")
        # An interval longer than the jitter is what keeps E strictly increasing per symbol.
        _require(
            self.interval_ms > self.jitter_ms,
            "interval_ms",
            self.interval_ms,
            f"more than jitter_ms ({self.jitter_ms})",
        )
        _require(
            self.start_ms is None or self.start_ms >= 0, "start_ms", self.start_ms, "0 or more"
        )
        for name, probability in (
            ("activity", self.activity),
            ("quiet_activity", self.quiet_activity),
            ("pair_fraction", self.pair_fraction),
        ):
            _require(
                probability is None or 0.0 <= probability <= 1.0,
                name,
                probability,
                "a fraction in 0..1",
            )
        for name, seconds in (
            ("ping_interval", self.ping_interval),
            ("pong_timeout", self.pong_timeout),
            ("lifetime", self.lifetime),
        ):
            _require(seconds > 0, name, seconds, "seconds above 0")
        for name, count in (
            ("max_streams", self.max_streams),
            ("message_rate_limit", self.message_rate_limit),
            ("rest_weight_limit", self.rest_weight_limit),
            ("event_log_limit", self.event_log_limit),
        ):
            _require(count >= 1, name, count, "an integer of 1 or more")
        _require(bool(self.host), "host", self.host, "an address to listen on")
        _require(0 <= self.port <= MAX_PORT, "port", self.port, f"0..{MAX_PORT}")


def _require(condition: bool, key: str, value: object, expected: str) -> None:
    if not condition:
        raise ConfigError(f"simulator setting {key}={value!r}: expected {expected}")


def _check_symbols(symbols: tuple[str, ...], quiet_symbols: tuple[str, ...]) -> None:
    _require(len(symbols) > 0, "symbols", symbols, "at least one symbol")
    _require(len(set(symbols)) == len(symbols), "symbols", symbols, "no symbol listed twice")
    for symbol in symbols:
        # The stream name is the lower-cased symbol and the server maps it back by upper-casing,
        # so only symbols that survive that round trip can be subscribed.
        _require(
            is_valid_symbol(symbol) and symbol.lower().upper() == symbol,
            "symbols",
            symbol,
            "an upper-case Binance symbol (letters and digits of any script, '_' inside)",
        )
    unknown = sorted(set(quiet_symbols) - set(symbols))
    _require(not unknown, "quiet_symbols", unknown, "symbols that are also in symbols")
