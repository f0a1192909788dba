"""Durations and sizes: the grammar users write, read strictly and written back exactly."""

import math
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import config_error

from recorder.settings.units import (
    format_duration,
    format_size,
    parse_duration,
    parse_lookback,
    parse_size,
)

# --- durations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("2s", 2.0),
        ("1.5s", 1.5),
        ("90s", 90.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1d2h3m4s5ms", 93784.005),
        ("1h 30m", 5400.0),
        (" 2s ", 2.0),
        ("2 s", 2.0),
        ("1H30M", 5400.0),
        ("0.1s", 0.1),
        (".5s", 0.5),
        ("1.5h", 5400.0),
        ("2", 2.0),
        ("2.5", 2.5),
        ("0", 0.0),
        ("0s", 0.0),
        (2, 2.0),
        (2.5, 2.5),
        (0, 0.0),
        (timedelta(minutes=2), 120.0),
        ("365d", 365 * 86400.0),
    ],
)
def test_parse_duration_accepts(text: str | float | timedelta, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "s",
        "ms",
        "1x",
        "30 seconds",
        "1.s",
        "1e3",
        "-5s",
        "+5s",
        "1h1h",
        "30m1h",
        "1ms1s",
        "1h30",
        "1,5s",
        "inf",
        "nan",
        "366d",
        -1,
        -0.5,
        math.inf,
        math.nan,
        True,
        None,
        [1],
        timedelta(seconds=-1),
    ],
)
def test_parse_duration_rejects(text: object) -> None:
    message = config_error(parse_duration, text)
    assert repr(text) in message
    assert "expected" in message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.5, "500ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (60, "1m"),
        (90, "1m30s"),
        (3600, "1h"),
        (5400, "1h30m"),
        (82800, "23h"),
        (86400, "1d"),
        (93784.005, "1d2h3m4.005s"),
        (3600.5, "1h500ms"),
        (0.000001, "0.000001s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("seconds", [0.001, 0.1, 0.3, 1.25, 59.999, 2.000001, 12345.678, 86399.5])
def test_format_duration_reads_back_exactly(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("seconds", [-1.0, math.inf, math.nan])
def test_format_duration_rejects_what_is_not_a_duration(seconds: float) -> None:
    with pytest.raises(ValueError, match="duration"):
        format_duration(seconds)


# --- sizes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("64MiB", 64 * 2**20),
        ("1GiB", 2**30),
        ("500kB", 500_000),
        ("128MB", 128_000_000),
        ("1TiB", 2**40),
        ("2TB", 2 * 10**12),
        ("3GB", 3 * 10**9),
        ("1KiB", 1024),
        ("1kb", 1000),
        ("1mib", 2**20),
        ("64 MiB", 64 * 2**20),
        (" 1MiB ", 2**20),
        ("1.5KiB", 1536),
        ("0.5kB", 500),
        ("10B", 10),
        ("4096", 4096),
        ("0", 0),
        (4096, 4096),
        (0, 0),
    ],
)
def test_parse_size_accepts(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text",
    [
        *("", "MiB", "64M", "64K", "1.5", "1.5B", "0.3KiB", "-1", "-1MiB", "1 Mi B", "1e6"),
        *("64MiB!", -1, 1.5, 1048576.0, True, None, ["1MiB"]),
    ],
)
def test_parse_size_rejects(text: object) -> None:
    message = config_error(parse_size, text)
    assert repr(text) in message
    assert "expected" in message


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0B"),
        (1, "1B"),
        (1234, "1234B"),
        (1000, "1kB"),
        (1024, "1KiB"),
        (2**20, "1MiB"),
        (128 * 2**20, "128MiB"),
        (10**6, "1MB"),
        (1536, "1536B"),
        (1_024_000, "1000KiB"),
        (2**30, "1GiB"),
        (2**40, "1TiB"),
        (10**12, "1TB"),
    ],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text
    assert parse_size(text) == size


def test_format_size_rejects_negative_sizes() -> None:
    with pytest.raises(ValueError, match="size"):
        format_size(-1)


# --- durations before now -------------------------------------------------------------------


@given(days=st.integers(0, 10**6), hours=st.integers(0, 23), minutes=st.integers(0, 59))
def test_a_lookback_has_no_upper_bound(days: int, hours: int, minutes: int) -> None:
    text = f"{days}d{hours}h{minutes}m"
    assert parse_lookback(text) == days * 86_400 + hours * 3600 + minutes * 60


@pytest.mark.parametrize("text", ["1000", "", "d", "1000x", "1m1h", "-5d"])
def test_a_lookback_needs_a_unit_and_the_refusal_names_the_forms(text: str) -> None:
    message = config_error(parse_lookback, text)
    assert "is not a duration before now: expected a number with a unit" in message
    assert "'1000d'" in message
