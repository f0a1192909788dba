"""Settings: one frozen object built from defaults < TOML file < environment < command-line flags.

Every layer speaks the same keys, ``<section>.<key>``:

- the TOML file has one table per section (``[source]``, ``[storage]``, ...);
- the environment has ``RECORDER_<SECTION>__<KEY>`` (two underscores between section and key),
  for example ``RECORDER_STORAGE__ROOT=/data``; ``RECORDER_CONFIG`` names the TOML file;
- flags are given as dotted keys (``{"source.url": ...}``), ``None`` meaning "not given".

Every value, whatever layer it comes from, goes through the same per-key parser, so ``"200"`` from
the environment and ``200`` from TOML mean the same thing. Parsing is strict: an unknown section or
key, a value of the wrong type, or a value out of range is a :class:`~recorder.errors.ConfigError`
naming where it came from, the key, the value and what was expected. A typo never silently falls
back to a default.
"""

import dataclasses
import difflib
import math
import re
import tomllib
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from os import PathLike, fspath
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

from recorder.errors import ConfigError
from recorder.instance import INSTANCE_ID_RULE, is_valid_instance_id
from recorder.symbols import MAX_SYMBOL_LENGTH, is_valid_symbol

__all__ = [
    "CONFIG_ENV_VAR",
    "ENV_PREFIX",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "GapSettings",
    "LogSettings",
    "ServiceSettings",
    "Settings",
    "SourceSettings",
    "StorageSettings",
    "env_var_name",
    "format_duration",
    "format_size",
    "load_settings",
    "parse_duration",
    "parse_settings",
    "parse_size",
    "settings_to_mapping",
]

ENV_PREFIX: Final = "RECORDER_"
"""Prefix of every environment variable the recorder reads."""

CONFIG_ENV_VAR: Final = "RECORDER_CONFIG"
"""Environment variable naming the TOML file when no path is given explicitly."""

LOG_LEVELS: Final = ("debug", "info", "warning", "error")
"""Accepted values of ``log.level``, most verbose first."""

LOG_FORMATS: Final = ("auto", "json", "console")
"""Accepted values of ``log.format``."""

_ENV_SEPARATOR: Final = "__"
_SPEC: Final = "recorder.settings.spec"

_MINUTE: Final = 60.0
_HOUR: Final = 60 * _MINUTE
_DAY: Final = 24 * _HOUR
_KIB: Final = 1024
_MIB: Final = 1024 * _KIB

# Binance closes every connection after 24 h; the planned handover must be finished by then.
_EXCHANGE_CONNECTION_LIMIT: Final = 24 * _HOUR
# A longer duration is certainly a typo; absurd ones would also overflow timer arithmetic.
_MAX_DURATION: Final = 365 * _DAY
_MAX_STREAMS_PER_CONNECTION: Final = 1024
# difflib similarity from which a known name is offered as "did you mean ...?".
_SUGGESTION_CUTOFF: Final = 0.6

_T = TypeVar("_T")


class _InvalidValueError(Exception):
    """A value a key cannot take; the message says what was expected instead."""


@dataclass(frozen=True, slots=True)
class _KeySpec:
    """How one key's raw value becomes its setting, and how the setting is shown back."""

    parse: Callable[[object], object]
    render: Callable[[Any], object]


def _as_is(value: object) -> object:
    return value


def _setting(
    default: _T,
    parse: Callable[[object], _T],
    render: Callable[[_T], object] = _as_is,
) -> _T:
    """Declare a settings field: its default, the parser of raw values and its rendering."""
    spec = _KeySpec(parse=parse, render=render)
    return field(default=default, metadata={_SPEC: spec})


# --------------------------------------------------------------------------------------------
# Durations and sizes: the public, pure parsers.

_NUMBER: Final = r"(?:\d+(?:\.\d+)?|\.\d+)"
_PLAIN_NUMBER: Final = re.compile(_NUMBER)
_DURATION_PART: Final = re.compile(rf"\s*({_NUMBER})\s*(ms|[dhms])", re.IGNORECASE)
_DURATION_UNITS: Final = {
    "d": Decimal(86_400),
    "h": Decimal(3_600),
    "m": Decimal(60),
    "s": Decimal(1),
    "ms": Decimal("0.001"),
}
_DURATION_UNIT_ORDER: Final = tuple(_DURATION_UNITS)
_DURATION_FORMS: Final = (
    "written like '500ms', '30s', '1.5s', '5m', '1h30m' or '1d' (units d, h, m, s, ms, largest "
    "first, each at most once) or as a plain number of seconds"
)
_DURATION_EXPECTED: Final = f"a duration {_DURATION_FORMS}"

_SIZE: Final = re.compile(rf"({_NUMBER})\s*([kmgt]i?b|b)?", re.IGNORECASE)
_SIZE_UNITS: Final = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE_FORMS: Final = (
    "written like '64MiB', '1GiB', '500kB' or '128MB' (kB, MB, GB, TB are powers of 1000; "
    "KiB, MiB, GiB, TiB powers of 1024) or as a whole number of bytes"
)
_SIZE_EXPECTED: Final = f"a size {_SIZE_FORMS}"
# Largest unit first; on a tie the binary unit wins because file and frame limits are
# conventionally binary.
_SIZE_RENDER_UNITS: Final = (
    ("TiB", 2**40),
    ("TB", 10**12),
    ("GiB", 2**30),
    ("GB", 10**9),
    ("MiB", 2**20),
    ("MB", 10**6),
    ("KiB", 2**10),
    ("kB", 10**3),
)


def _duration_from_text(text: str) -> float:
    stripped = text.strip()
    if _PLAIN_NUMBER.fullmatch(stripped):
        return float(Decimal(stripped))
    total = Decimal(0)
    position = 0
    previous_rank = -1
    while position < len(stripped):
        part = _DURATION_PART.match(stripped, position)
        if part is None:
            raise _InvalidValueError(_DURATION_EXPECTED)
        unit = part.group(2).lower()
        rank = _DURATION_UNIT_ORDER.index(unit)
        if rank <= previous_rank:
            raise _InvalidValueError(_DURATION_EXPECTED)
        previous_rank = rank
        total += Decimal(part.group(1)) * _DURATION_UNITS[unit]
        position = part.end()
    if previous_rank < 0:
        raise _InvalidValueError(_DURATION_EXPECTED)
    return float(total)


def _duration_seconds(value: object) -> float:
    """Return ``value`` as non-negative, finite seconds; raise ``_InvalidValueError`` if not."""
    # bool is an int subclass; `true` as a timeout is a mistake, not one second.
    if isinstance(value, bool):
        raise _InvalidValueError(_DURATION_EXPECTED)
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _duration_from_text(value)
    else:
        raise _InvalidValueError(_DURATION_EXPECTED)
    if not math.isfinite(seconds) or seconds < 0:
        raise _InvalidValueError(f"a non-negative duration {_DURATION_FORMS}")
    if seconds > _MAX_DURATION:
        raise _InvalidValueError(f"a duration of at most {format_duration(_MAX_DURATION)}")
    return seconds


def parse_duration(value: str | float | timedelta) -> float:
    """Parse a duration into seconds.

    Accepts a number of seconds, a :class:`~datetime.timedelta`, or text made of number-unit
    parts with units ``d``, ``h``, ``m``, ``s`` and ``ms``, largest first, each at most once.
    Negative, infinite and absurdly long (over 365 days) durations are rejected.

    Args:
        value: the duration as written by a user.

    Returns:
        The duration in seconds.

    Raises:
        ConfigError: ``value`` is not a duration.

    >>> parse_duration("500ms"), parse_duration("1.5s"), parse_duration("90s")
    (0.5, 1.5, 90.0)
    >>> parse_duration("5m"), parse_duration("1h30m"), parse_duration("1d"), parse_duration(2)
    (300.0, 5400.0, 86400.0, 2.0)
    >>> parse_duration("30x")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    recorder.errors.ConfigError: '30x' is not valid: expected a duration written like ...
    """
    try:
        return _duration_seconds(value)
    except _InvalidValueError as error:
        raise ConfigError(f"{_show(value)} is not valid: expected {error}") from None


def _size_bytes(value: object) -> int:
    """Return ``value`` as a non-negative whole number of bytes; raise ``_InvalidValueError``."""
    if isinstance(value, bool):
        raise _InvalidValueError(_SIZE_EXPECTED)
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        match = _SIZE.fullmatch(value.strip())
        if match is None:
            raise _InvalidValueError(_SIZE_EXPECTED)
        number, unit = match.groups()
        exact = Decimal(number) * _SIZE_UNITS[(unit or "b").lower()]
        if exact != exact.to_integral_value():
            raise _InvalidValueError(f"{_SIZE_EXPECTED}; this is not a whole number of bytes")
        size = int(exact)
    else:
        raise _InvalidValueError(_SIZE_EXPECTED)
    if size < 0:
        raise _InvalidValueError(f"a non-negative size {_SIZE_FORMS}")
    return size


def parse_size(value: str | int) -> int:
    """Parse a size into a whole number of bytes.

    ``kB``, ``MB``, ``GB``, ``TB`` are powers of 1000 and ``KiB``, ``MiB``, ``GiB``, ``TiB``
    powers of 1024 (unit letters are case-insensitive); a bare number is bytes. Fractions are
    accepted when the result is a whole number of bytes.

    Args:
        value: the size as written by a user.

    Returns:
        The size in bytes.

    Raises:
        ConfigError: ``value`` is not a size.

    >>> parse_size("64MiB"), parse_size("1GiB"), parse_size("500kB"), parse_size("128MB")
    (67108864, 1073741824, 500000, 128000000)
    >>> parse_size(4096), parse_size("4096"), parse_size("1.5KiB")
    (4096, 4096, 1536)
    >>> parse_size("64M")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    recorder.errors.ConfigError: '64M' is not valid: expected a size written like ...
    """
    try:
        return _size_bytes(value)
    except _InvalidValueError as error:
        raise ConfigError(f"{_show(value)} is not valid: expected {error}") from None


def format_duration(seconds: float) -> str:
    """Render seconds as the shortest duration text :func:`parse_duration` reads back.

    Resolution is one microsecond.

    Args:
        seconds: a non-negative duration.

    Returns:
        Text such as ``"23h"``, ``"1h30m"``, ``"1.5s"`` or ``"500ms"``.

    Raises:
        ValueError: ``seconds`` is negative or not finite.

    >>> format_duration(82800), format_duration(5400), format_duration(1.5)
    ('23h', '1h30m', '1.5s')
    >>> format_duration(0.5), format_duration(90), format_duration(0)
    ('500ms', '1m30s', '0s')
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot render {seconds!r} as a duration: expected >= 0 seconds")
    remaining = round(seconds * 1_000_000)
    parts: list[str] = []
    for unit, unit_us in (("d", 86_400_000_000), ("h", 3_600_000_000), ("m", 60_000_000)):
        count, remaining = divmod(remaining, unit_us)
        if count:
            parts.append(f"{count}{unit}")
    whole_seconds, micros = divmod(remaining, 1_000_000)
    if whole_seconds == 0 and micros and micros % 1000 == 0:
        parts.append(f"{micros // 1000}ms")
    elif remaining or not parts:
        fraction = f"{micros:06d}".rstrip("0")
        parts.append(f"{whole_seconds}.{fraction}s" if fraction else f"{whole_seconds}s")
    return "".join(parts)


def format_size(size: int) -> str:
    """Render bytes as the shortest exact size text :func:`parse_size` reads back.

    Args:
        size: a non-negative number of bytes.

    Returns:
        Text such as ``"128MiB"``, ``"500kB"`` or ``"1234B"``.

    Raises:
        ValueError: ``size`` is negative.

    >>> format_size(128 * 1024 * 1024), format_size(500_000), format_size(1234), format_size(0)
    ('128MiB', '500kB', '1234B', '0B')
    """
    if size < 0:
        raise ValueError(f"cannot render {size!r} as a size: expected >= 0 bytes")
    for unit, multiple in _SIZE_RENDER_UNITS:
        if size and size % multiple == 0:
            return f"{size // multiple}{unit}"
    return f"{size}B"


# --------------------------------------------------------------------------------------------
# Per-key parsers. Each takes the raw value of any layer (TOML-typed, or a string from the
# environment or a flag) and returns the typed setting or raises _InvalidValueError.


def _duration_key(*, minimum: float = 0.0, allow_zero: bool = False) -> Callable[[object], float]:
    if allow_zero:
        requirement = "a non-negative duration"
    elif minimum:
        requirement = f"a duration of at least {format_duration(minimum)}"
    else:
        requirement = "a positive duration (greater than zero)"

    def parse(value: object) -> float:
        seconds = _duration_seconds(value)
        if seconds < minimum or (seconds == 0 and not allow_zero):
            raise _InvalidValueError(f"{requirement} {_DURATION_FORMS}")
        return seconds

    return parse


def _size_key(*, minimum: int = 1) -> Callable[[object], int]:
    def parse(value: object) -> int:
        size = _size_bytes(value)
        if size < minimum:
            raise _InvalidValueError(f"a size of at least {format_size(minimum)} {_SIZE_FORMS}")
        return size

    return parse


_INTEGER: Final = re.compile(r"[+-]?\d(?:_?\d)*")


def _int_key(minimum: int, maximum: int | None = None) -> Callable[[object], int]:
    if maximum is None:
        requirement = f"an integer of at least {minimum}"
    else:
        requirement = f"an integer from {minimum} to {maximum}"

    def parse(value: object) -> int:
        if isinstance(value, bool):
            raise _InvalidValueError(requirement)
        if isinstance(value, int):
            number = value
        elif isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
            number = int(value.strip())
        else:
            raise _InvalidValueError(requirement)
        if number < minimum or (maximum is not None and number > maximum):
            raise _InvalidValueError(requirement)
        return number

    return parse


def _choice_key(choices: tuple[str, ...]) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if isinstance(value, str) and value.strip().lower() in choices:
            return value.strip().lower()
        expected = "one of " + ", ".join(repr(choice) for choice in choices)
        close = difflib.get_close_matches(
            str(value).strip().lower(), choices, n=1, cutoff=_SUGGESTION_CUTOFF
        )
        if close:
            expected += f"; did you mean {close[0]!r}?"
        raise _InvalidValueError(expected)

    return parse


_URL_EXPECTED: Final = (
    "a websocket base URL: ws:// or wss://, a host, an optional path, no query string "
    "(the recorder adds '?streams=...' itself), such as 'wss://fstream.binance.com/market'"
)


def _parse_ws_url(value: object) -> str:
    if not isinstance(value, str):
        raise _InvalidValueError(_URL_EXPECTED)
    url = value.strip()
    if any(character.isspace() or not character.isprintable() for character in url):
        raise _InvalidValueError(_URL_EXPECTED)
    # urlsplit accepts nearly anything, so every rule is checked on its result.
    split = urlsplit(url)
    if split.scheme.lower() not in ("ws", "wss") or not split.hostname:
        raise _InvalidValueError(_URL_EXPECTED)
    if "?" in url or "#" in url:
        raise _InvalidValueError(_URL_EXPECTED)
    try:
        _ = split.port
    except ValueError:
        raise _InvalidValueError(
            f"{_URL_EXPECTED}; the port is not a number from 0 to 65535"
        ) from None
    return url.rstrip("/")


_SYMBOLS_EXPECTED: Final = (
    "a non-empty list of symbols such as ['BTCUSDT', 'ETHUSDT'] (or the text 'BTCUSDT,ETHUSDT'); "
    f"a symbol is letters and digits of any script, '_' allowed after the first character, "
    f"at most {MAX_SYMBOL_LENGTH} characters"
)


def _parse_symbols(value: object) -> tuple[str, ...]:
    items: list[object]
    if isinstance(value, str):
        items = list(value.split(","))
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise _InvalidValueError(_SYMBOLS_EXPECTED)
    symbols: list[str] = []
    for position, item in enumerate(items, start=1):
        if not isinstance(item, str):
            raise _InvalidValueError(
                f"{_SYMBOLS_EXPECTED}; item {position} {_show(item)} is not text"
            )
        symbol = unicodedata.normalize("NFC", item.strip().upper())
        if not symbol:
            raise _InvalidValueError(f"{_SYMBOLS_EXPECTED}; item {position} is empty")
        if not is_valid_symbol(symbol):
            raise _InvalidValueError(
                f"{_SYMBOLS_EXPECTED}; item {position} {_show(item)} is not a valid symbol"
            )
        if symbol not in symbols:
            symbols.append(symbol)
    if not symbols:
        raise _InvalidValueError(_SYMBOLS_EXPECTED)
    if symbols == ["ALL"]:
        # "ALL" passes as a symbol and would silently record nothing; say what is going on.
        raise _InvalidValueError(
            f"{_SYMBOLS_EXPECTED}; recording every symbol ('all') is not supported by this "
            "version, list the symbols instead"
        )
    return tuple(symbols)


_ROOT_EXPECTED: Final = "a local directory path such as 'data' or '/var/lib/recorder'"


def _parse_root(value: object) -> Path:
    if not isinstance(value, str | PathLike):
        raise _InvalidValueError(_ROOT_EXPECTED)
    text = fspath(value)
    if not isinstance(text, str) or not text.strip() or "\x00" in text:
        raise _InvalidValueError(_ROOT_EXPECTED)
    if "://" in text:
        # Path("s3://bucket/x") would quietly become the local directory "s3:/bucket/x".
        raise _InvalidValueError(
            f"{_ROOT_EXPECTED}; object-store URLs are not supported by this version"
        )
    return Path(text)


_INSTANCE_ID_EXPECTED: Final = (
    f"{INSTANCE_ID_RULE}, such as 'eu-1' (omit the key to generate a fresh id at every start)"
)


def _parse_instance_id(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and is_valid_instance_id(value.strip()):
        return value.strip()
    raise _InvalidValueError(_INSTANCE_ID_EXPECTED)


def _render_symbols(symbols: tuple[str, ...]) -> list[str]:
    return list(symbols)


def _render_path(path: Path) -> str:
    return str(path)


_positive_duration: Final = _duration_key()


# --------------------------------------------------------------------------------------------
# The settings.


@dataclass(frozen=True, slots=True)
class SourceSettings:
    """Where the recorder connects and how it keeps its websocket connections healthy.

    Attributes:
        url: websocket base URL (``ws://`` or ``wss://``, no trailing ``/``, no query string);
            the stream path and ``?streams=`` are added by the source.
        symbols: the contracts to record, upper-case, valid, unique, in the given order.
        max_streams_per_connection: streams subscribed on one connection (Binance allows 200).
        connection_lifetime: age in seconds after which a connection is replaced by a planned
            handover (Binance closes connections at 24 h).
        handover_timeout: seconds the replacement connection may take to deliver its first data.
        open_timeout: seconds allowed for the websocket handshake.
        ping_interval: seconds between client heartbeats; a dead peer is detected within 1.5x.
        stall_timeout: seconds an open connection may deliver nothing before it is replaced.
        first_data_timeout: seconds after connecting with no data at all before a loud error
            (for example a URL that accepts subscriptions and never delivers).
        backoff_initial: first reconnect delay in seconds.
        backoff_max: largest reconnect delay in seconds; at least ``backoff_initial``.
        max_frame_bytes: largest websocket frame accepted, in bytes.
    """

    url: str = _setting("wss://fstream.binance.com/market", _parse_ws_url)
    symbols: tuple[str, ...] = _setting(("BTCUSDT", "ETHUSDT"), _parse_symbols, _render_symbols)
    max_streams_per_connection: int = _setting(200, _int_key(1, _MAX_STREAMS_PER_CONNECTION))
    connection_lifetime: float = _setting(23 * _HOUR, _positive_duration, format_duration)
    handover_timeout: float = _setting(60.0, _positive_duration, format_duration)
    open_timeout: float = _setting(10.0, _positive_duration, format_duration)
    ping_interval: float = _setting(30.0, _positive_duration, format_duration)
    stall_timeout: float = _setting(60.0, _positive_duration, format_duration)
    first_data_timeout: float = _setting(30.0, _positive_duration, format_duration)
    backoff_initial: float = _setting(1.0, _positive_duration, format_duration)
    backoff_max: float = _setting(60.0, _positive_duration, format_duration)
    max_frame_bytes: int = _setting(1 * _MIB, _size_key(), format_size)


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
    """

    # _setting returns the dataclass field declaration, evaluated once on purpose.
    root: Path = _setting(Path("data"), _parse_root, _render_path)  # noqa: RUF009
    flush_interval: float = _setting(1.0, _positive_duration, format_duration)
    max_file_age: float = _setting(_HOUR, _positive_duration, format_duration)
    max_file_bytes: int = _setting(128 * _MIB, _size_key(), format_size)
    day_grace: float = _setting(10.0, _duration_key(allow_zero=True), format_duration)


@dataclass(frozen=True, slots=True)
class GapSettings:
    """How missed updates are counted.

    Attributes:
        interval: the exchange's update interval in seconds; a symbol's events further apart
            than this count as missed updates.
    """

    interval: float = _setting(2.0, _duration_key(minimum=0.001), format_duration)

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
    """

    queue_size: int = _setting(10_000, _int_key(1))
    stop_timeout: float = _setting(10.0, _positive_duration, format_duration)
    instance_id: str | None = _setting(None, _parse_instance_id)


@dataclass(frozen=True, slots=True)
class LogSettings:
    """What is logged and how.

    Attributes:
        level: ``debug``, ``info``, ``warning`` or ``error``.
        format: ``json``, ``console``, or ``auto`` (JSON unless the log stream is a terminal).
    """

    level: str = _setting("info", _choice_key(LOG_LEVELS))
    format: str = _setting("auto", _choice_key(LOG_FORMATS))


def _parse_address(value: object) -> str:
    """Check a ``host:port`` listening address (IPv6 as ``[::1]:9464``); empty disables."""
    if not isinstance(value, str):
        raise _InvalidValueError("expected a string like '127.0.0.1:9464'")
    if value == "":
        return value
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdecimal() or not 0 <= int(port) <= 65_535:
        raise _InvalidValueError(
            "expected host:port like '127.0.0.1:9464' or '[::1]:9464' ('' disables metrics)"
        )
    return value


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """The Prometheus ``/metrics`` and ``/healthz`` endpoint.

    Attributes:
        address: ``host:port`` to listen on, loopback by default; ``""`` disables the endpoint.
    """

    address: str = _setting("127.0.0.1:9464", _parse_address)

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


_SECTIONS: Final[dict[str, type[Any]]] = {
    "source": SourceSettings,
    "storage": StorageSettings,
    "gaps": GapSettings,
    "service": ServiceSettings,
    "log": LogSettings,
    "metrics": MetricsSettings,
}


def _section_keys(section_class: type[Any]) -> dict[str, _KeySpec]:
    specs: dict[str, _KeySpec] = {}
    for key in dataclasses.fields(section_class):
        spec = key.metadata[_SPEC]
        if not isinstance(spec, _KeySpec):  # pragma: no cover - a programming error
            raise TypeError(f"{section_class.__name__}.{key.name} is not declared with _setting")
        specs[key.name] = spec
    return specs


_KEYS: Final[dict[str, dict[str, _KeySpec]]] = {
    name: _section_keys(section_class) for name, section_class in _SECTIONS.items()
}
_DOTTED_KEYS: Final = tuple(f"{section}.{key}" for section, keys in _KEYS.items() for key in keys)


def env_var_name(section: str, key: str) -> str:
    """Return the environment variable that sets ``<section>.<key>``.

    Args:
        section: a settings section, such as ``"storage"``.
        key: a key of that section, such as ``"root"``.

    Returns:
        The variable name.

    >>> env_var_name("storage", "root")
    'RECORDER_STORAGE__ROOT'
    """
    return f"{ENV_PREFIX}{section.upper()}{_ENV_SEPARATOR}{key.upper()}"


# --------------------------------------------------------------------------------------------
# Layers: each produces assignments; the last assignment of a key wins.


@dataclass(frozen=True, slots=True)
class _Assignment:
    """One raw value for one key, and where it was written (for error messages)."""

    section: str
    key: str
    value: object
    where: str


def _show(value: object) -> str:
    """Render a user's value for an error message: quoted, and cut short if huge."""
    shown = repr(fspath(value)) if isinstance(value, PathLike) else repr(value)
    return shown if len(shown) <= 120 else shown[:117] + "..."


def _did_you_mean(word: str, candidates: Iterable[str], spell: Callable[[str], str]) -> str:
    """Return ``"; did you mean X? "`` for the candidate closest to ``word``, or ``""``."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=_SUGGESTION_CUTOFF)
    return _hint(spell(close[0]) if close else None)


def _hint(suggestion: str | None) -> str:
    return f"; did you mean {suggestion}? " if suggestion else ". "


def _suggest_key(section: str, key: str) -> str | None:
    """Return the dotted key most likely meant by ``<section>.<key>``, if any is close.

    Keys of every section compete, because the key may be right and the section wrong
    (``[storage] url``); on equal similarity the given section wins.
    """
    scored = [
        (difflib.SequenceMatcher(None, key, candidate).ratio(), name == section, name, candidate)
        for name, keys in _KEYS.items()
        for candidate in keys
    ]
    score, _, name, candidate = max(scored)
    return f"{name}.{candidate}" if score >= _SUGGESTION_CUTOFF else None


def _unknown_key_error(where: str, section: str, key: str, value: object) -> ConfigError:
    suggestion = _suggest_key(section, key)
    valid = ", ".join(_KEYS[section])
    return ConfigError(
        f"{where}: unknown key {section}.{key} = {_show(value)}{_hint(suggestion)}"
        f"Valid keys of [{section}]: {valid}"
    )


def _unknown_section_error(where: str, section: str, value: object) -> ConfigError:
    valid = ", ".join(_SECTIONS)
    if not isinstance(value, Mapping):
        # A key written above every table header, such as `url = ...` at the top of the file.
        suggestion = _suggest_key("", section)
        return ConfigError(
            f"{where}: unknown top-level key {section} = {_show(value)}{_hint(suggestion)}"
            f"Settings belong in a section: {valid}"
        )
    hint = _did_you_mean(section, _SECTIONS, lambda name: f"[{name}]")
    return ConfigError(f"{where}: unknown section [{section}]{hint}Valid sections: {valid}")


def _assignments_from_mapping(mapping: Mapping[str, Any], where: str) -> list[_Assignment]:
    assignments: list[_Assignment] = []
    for section, table in mapping.items():
        if section not in _SECTIONS:
            raise _unknown_section_error(where, str(section), table)
        if not isinstance(table, Mapping):
            raise ConfigError(
                f"{where}: [{section}] = {_show(table)} is not valid: expected a table of "
                f"settings with keys {', '.join(_KEYS[section])}"
            )
        for key, value in table.items():
            if key not in _KEYS[section]:
                raise _unknown_key_error(where, section, str(key), value)
            assignments.append(_Assignment(section, key, value, where))
    return assignments


def _assignments_from_environ(environ: Mapping[str, str]) -> list[_Assignment]:
    assignments: list[_Assignment] = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV_VAR:
            continue
        value = environ[name]
        where = f"environment variable {name}"
        section, separator, key = name.removeprefix(ENV_PREFIX).lower().partition(_ENV_SEPARATOR)
        if not separator or section not in _KEYS or key not in _KEYS[section]:
            known = [CONFIG_ENV_VAR] + [env_var_name(*dotted.split(".")) for dotted in _DOTTED_KEYS]
            # Compared without the shared prefix, which would make every name look close.
            hint = _did_you_mean(
                name.removeprefix(ENV_PREFIX),
                [known_name.removeprefix(ENV_PREFIX) for known_name in known],
                lambda suffix: ENV_PREFIX + suffix,
            )
            raise ConfigError(
                f"{where} = {_show(value)}: not a recorder setting{hint}Settings are read from "
                f"{ENV_PREFIX}<SECTION>{_ENV_SEPARATOR}<KEY> (two underscores between section "
                f"and key, such as {env_var_name('storage', 'root')}) and the config file from "
                f"{CONFIG_ENV_VAR}"
            )
        assignments.append(_Assignment(section, key, value, where))
    return assignments


def _assignments_from_flags(flags: Mapping[str, object]) -> list[_Assignment]:
    assignments: list[_Assignment] = []
    for dotted, value in flags.items():
        where = f"command-line flag for {dotted}"
        section, separator, key = dotted.partition(".")
        if not separator or section not in _KEYS or key not in _KEYS[section]:
            suggestion = _suggest_key(section, key) if separator else _suggest_key("", dotted)
            raise ConfigError(
                f"{where} = {_show(value)}: {dotted!r} is not a setting{_hint(suggestion)}"
                "Flags are given as <section>.<key>, such as 'storage.root'"
            )
        # None is how click reports an option that was not given.
        if value is not None:
            assignments.append(_Assignment(section, key, value, where))
    return assignments


def _read_toml(path: Path, where: str) -> Mapping[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except OSError as error:
        raise ConfigError(f"{where}: cannot be read: {error.strerror or error}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{where}: not UTF-8 text (byte {error.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        # The message ends in "(at line L, column C)", or in "(at end of document)", which
        # alone would not tell an operator where to look.
        detail = str(error).replace(
            "(at end of document)", f"(at end of document, after line {len(text.splitlines())})"
        )
        raise ConfigError(f"{where}: invalid TOML: {detail}") from None


# --------------------------------------------------------------------------------------------
# Resolution.


def _parse_assignment(assignment: _Assignment) -> object:
    spec = _KEYS[assignment.section][assignment.key]
    try:
        return spec.parse(assignment.value)
    except _InvalidValueError as error:
        raise ConfigError(
            f"{assignment.where}: {assignment.section}.{assignment.key} = "
            f"{_show(assignment.value)} is not valid: expected {error}"
        ) from None


def _relation_error(
    settings: Settings,
    origins: Mapping[str, str],
    dotted_keys: tuple[str, ...],
    rule: str,
) -> ConfigError:
    described = []
    for dotted in dotted_keys:
        section, key = dotted.split(".")
        value = getattr(getattr(settings, section), key)
        shown = _show(_KEYS[section][key].render(value))
        described.append(f"{dotted} = {shown} (from {origins.get(dotted, 'the default')})")
    return ConfigError(f"{' and '.join(described)} do not fit together: {rule}")


def _check_relations(settings: Settings, origins: Mapping[str, str]) -> None:
    source = settings.source
    if source.backoff_max < source.backoff_initial:
        raise _relation_error(
            settings,
            origins,
            ("source.backoff_max", "source.backoff_initial"),
            "expected backoff_max >= backoff_initial (the reconnect delay grows from one to "
            "the other)",
        )
    if source.connection_lifetime + source.handover_timeout > _EXCHANGE_CONNECTION_LIMIT:
        raise _relation_error(
            settings,
            origins,
            ("source.connection_lifetime", "source.handover_timeout"),
            "expected connection_lifetime + handover_timeout <= 24h (the exchange closes "
            "connections after 24h, so the planned handover must be over by then)",
        )


def _resolve(assignments: Iterable[_Assignment]) -> Settings:
    values: dict[str, dict[str, Any]] = {section: {} for section in _SECTIONS}
    origins: dict[str, str] = {}
    # Every value is parsed, even one a later layer overrides: a broken file is reported
    # rather than hidden behind today's environment.
    for assignment in assignments:
        values[assignment.section][assignment.key] = _parse_assignment(assignment)
        origins[f"{assignment.section}.{assignment.key}"] = assignment.where
    sections = {name: _SECTIONS[name](**values[name]) for name in _SECTIONS}
    settings = Settings(**sections)
    _check_relations(settings, origins)
    return settings


def parse_settings(mapping: Mapping[str, Any], *, origin: str = "settings") -> Settings:
    """Build settings from a nested mapping shaped like the TOML file.

    Args:
        mapping: ``{"source": {"url": ...}, "storage": {...}, ...}``; missing sections and keys
            keep their defaults.
        origin: where the mapping came from, used in error messages (a file name, say).

    Returns:
        The settings.

    Raises:
        ConfigError: a section or key is unknown, a value is invalid, or two values
            contradict each other.

    >>> parse_settings({"source": {"symbols": "btcusdt"}}).source.symbols
    ('BTCUSDT',)
    """
    return _resolve(_assignments_from_mapping(mapping, origin))


def load_settings(
    path: Path | None,
    environ: Mapping[str, str],
    flags: Mapping[str, object],
) -> Settings:
    """Build settings from defaults < TOML file < environment < flags.

    Args:
        path: the TOML file; when ``None``, the file named by ``RECORDER_CONFIG`` in
            ``environ`` if set, else no file.
        environ: the process environment; ``RECORDER_<SECTION>__<KEY>`` variables are settings.
        flags: dotted keys (``"storage.root"``) to values; a ``None`` value means "not given"
            (the key must still be a valid one).

    Returns:
        The effective settings.

    Raises:
        ConfigError: the file cannot be read or is not valid TOML, or any layer names an
            unknown section, key or variable, or gives an invalid value.
    """
    assignments: list[_Assignment] = []
    if path is None and CONFIG_ENV_VAR in environ:
        named = environ[CONFIG_ENV_VAR]
        if not named.strip():
            raise ConfigError(
                f"environment variable {CONFIG_ENV_VAR} is empty: expected the path of a TOML "
                "config file (unset it to use no file)"
            )
        path = Path(named)
        where = f"config file {path} (from {CONFIG_ENV_VAR})"
    else:
        where = f"config file {path}"
    if path is not None:
        assignments += _assignments_from_mapping(_read_toml(path, where), where)
    assignments += _assignments_from_environ(environ)
    assignments += _assignments_from_flags(flags)
    return _resolve(assignments)


def settings_to_mapping(settings: Settings) -> dict[str, dict[str, object]]:
    """Render settings as a nested mapping of plain values, for ``--print-config`` and logs.

    Durations become text such as ``"23h"``, sizes text such as ``"128MiB"``, paths strings and
    symbols a list; an unset ``instance_id`` stays ``None``. :func:`parse_settings` of the result
    gives back equal settings.

    Args:
        settings: the settings to render.

    Returns:
        ``{"source": {...}, "storage": {...}, ...}`` with every key.
    """
    rendered: dict[str, dict[str, object]] = {}
    for section, keys in _KEYS.items():
        values = getattr(settings, section)
        rendered[section] = {key: spec.render(getattr(values, key)) for key, spec in keys.items()}
    return rendered
