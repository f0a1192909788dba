"""Durations and sizes as people write them: ``"1h30m"``, ``"500ms"``, ``"64MiB"``, ``"500kB"``.

:func:`parse_duration` and :func:`parse_size` read them strictly (a typo is an error, never a
guess) and :func:`format_duration` and :func:`format_size` write the shortest text that reads
back to the same value. The settings read every duration and size key through here; reports,
the CLI and the simulator use the same grammar for their own options.
"""

import math
import re
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Final, TypeVar

from recorder.errors import ConfigError
from recorder.settings.invalid import InvalidValueError, show_value

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
DURATION_FORMS: Final = (
    "written like '500ms', '30s', '1.5s', '5m', '1h30m' or '1d' (units d, h, m, s, ms, largest "
    "first, each at most once) or as a plain number of seconds"
)
"""How a duration may be written, for the end of an "expected ..." message."""
_DURATION_EXPECTED: Final = f"a duration {DURATION_FORMS}"
LOOKBACK_FORMS: Final = (
    "a number with a unit, of any length, such as '90m', '24h', '7d', '1000d' or '1d12h' "
    "(units d, h, m, s, ms, largest first, each at most once)"
)
"""How a duration before now may be written, for the end of an "expected ..." message."""
# A longer duration is certainly a typo; absurd ones would also overflow timer arithmetic.
_MAX_DURATION: Final = 365 * 86_400.0

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
SIZE_FORMS: Final = (
    "written like '64MiB', '1GiB', '500kB' or '128MB' (kB, MB, GB, TB are powers of 1000; "
    "KiB, MiB, GiB, TiB powers of 1024) or as a whole number of bytes"
)
"""How a size may be written, for the end of an "expected ..." message."""
_SIZE_EXPECTED: Final = f"a size {SIZE_FORMS}"
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

_T = TypeVar("_T")


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
            raise InvalidValueError(_DURATION_EXPECTED)
        unit = part.group(2).lower()
        rank = _DURATION_UNIT_ORDER.index(unit)
        if rank <= previous_rank:
            raise InvalidValueError(_DURATION_EXPECTED)
        previous_rank = rank
        total += Decimal(part.group(1)) * _DURATION_UNITS[unit]
        position = part.end()
    if previous_rank < 0:
        raise InvalidValueError(_DURATION_EXPECTED)
    return float(total)


def duration_seconds(value: object) -> float:
    """Return ``value`` as non-negative, finite seconds, for a key's parser.

    Args:
        value: a raw value from any settings layer.

    Returns:
        The duration in seconds.

    Raises:
        InvalidValueError: ``value`` is not a duration; the message says what was expected.

    >>> duration_seconds("1h30m"), duration_seconds(2)
    (5400.0, 2.0)
    """
    # bool is an int subclass; `true` as a timeout is a mistake, not one second.
    if isinstance(value, bool):
        raise InvalidValueError(_DURATION_EXPECTED)
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _duration_from_text(value)
    else:
        raise InvalidValueError(_DURATION_EXPECTED)
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidValueError(f"a non-negative duration {DURATION_FORMS}")
    if seconds > _MAX_DURATION:
        raise InvalidValueError(f"a duration of at most {format_duration(_MAX_DURATION)}")
    return seconds


def _read(value: object, parse: Callable[[object], _T]) -> _T:
    """Parse a value given outside any settings key, such as a command-line option."""
    try:
        return parse(value)
    except InvalidValueError as error:
        raise ConfigError(f"{show_value(value)} is not valid: expected {error}") from None


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
    return _read(value, duration_seconds)


def parse_lookback(text: str) -> float:
    """Parse how far back from now a report window reaches, in seconds: any length.

    The grammar of :func:`parse_duration` with a unit required (a bare number could be
    seconds, milliseconds or a year), and no upper bound: ``1000d`` before now is a real
    question to ask of a root that old, unlike a 1000-day timeout.

    Raises:
        ConfigError: ``text`` is not a duration with a unit.

    >>> parse_lookback("1000d"), parse_lookback("90m"), parse_lookback("1d12h")
    (86400000.0, 5400.0, 129600.0)
    """
    stripped = text.strip()
    refusal = ConfigError(
        f"{show_value(text)} is not a duration before now: expected {LOOKBACK_FORMS}"
    )
    if _PLAIN_NUMBER.fullmatch(stripped):
        raise refusal
    try:
        return _duration_from_text(stripped)
    except InvalidValueError:
        raise refusal from None


def size_bytes(value: object) -> int:
    """Return ``value`` as a non-negative whole number of bytes, for a key's parser.

    Args:
        value: a raw value from any settings layer.

    Returns:
        The size in bytes.

    Raises:
        InvalidValueError: ``value`` is not a size; the message says what was expected.

    >>> size_bytes("1.5KiB"), size_bytes(4096)
    (1536, 4096)
    """
    if isinstance(value, bool):
        raise InvalidValueError(_SIZE_EXPECTED)
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        match = _SIZE.fullmatch(value.strip())
        if match is None:
            raise InvalidValueError(_SIZE_EXPECTED)
        number, unit = match.groups()
        exact = Decimal(number) * _SIZE_UNITS[(unit or "b").lower()]
        if exact != exact.to_integral_value():
            raise InvalidValueError(f"{_SIZE_EXPECTED}; this is not a whole number of bytes")
        size = int(exact)
    else:
        raise InvalidValueError(_SIZE_EXPECTED)
    if size < 0:
        raise InvalidValueError(f"a non-negative size {SIZE_FORMS}")
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
    return _read(value, size_bytes)


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
