"""Tests of :mod:`recorder.reports.read`: the window bounds and the newest sealed events."""

from pathlib import Path

import pytest
from recorded_dataset import BTC, ETH, MINUTE_MS, NOW, T0, every, write_data_file

from recorder.clock import MS_PER_DAY
from recorder.errors import ConfigError
from recorder.reports.read import newest_sealed_event_times, parse_time_bound


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        (" NOW ", NOW),
        ("24h", NOW - MS_PER_DAY),
        ("90m", NOW - 90 * MINUTE_MS),
        ("1h30m", NOW - 90 * MINUTE_MS),
        ("7d", NOW - 7 * MS_PER_DAY),
        ("2024-05-01", T0 - 10 * 3_600_000),
        ("2024-05-01T10:00", T0),
        ("2024-05-01 10:00:00.250", T0 + 250),
        ("2024-05-01T10:00:00Z", T0),
        ("2024-05-01T12:00:00+02:00", T0),
        ("2024-05-01T10:00:00.250Z", T0 + 250),
        # Any length back: the settings' 365-day bound on durations is not a report's.
        ("366d", NOW - 366 * MS_PER_DAY),
        ("1000d", NOW - 1000 * MS_PER_DAY),
        ("1000d12h", NOW - 1000 * MS_PER_DAY - MS_PER_DAY // 2),
        # Back past 1970 is the epoch, not an overflow.
        ("9" * 40 + "d", 0),
    ],
)
def test_parse_time_bound(text: str, expected: int) -> None:
    assert parse_time_bound(text, NOW) == expected


@pytest.mark.parametrize(
    "text", ["", "3600", "2024", "yesterday", "2024-13-01", "2024-05-01T25", "1000x", "2w"]
)
def test_parse_time_bound_refuses_naming_every_accepted_form(text: str) -> None:
    with pytest.raises(ConfigError, match="is not a time: expected 'now'") as refusal:
        parse_time_bound(text, NOW)
    for example in ("1000d", "2024-05-01", "2024-05-01T10:00", "+02:00"):
        assert example in str(refusal.value)


def test_newest_sealed_event_times_reads_the_newest_day_only(tmp_path: Path) -> None:
    write_data_file(tmp_path, BTC, every(T0 - MS_PER_DAY, T0 - MS_PER_DAY + 10_000))
    write_data_file(tmp_path, BTC, every(T0, T0 + 10_000), name="a.parquet")
    write_data_file(tmp_path, BTC, every(T0 + 20_000, T0 + 30_000), name="b.parquet")
    # A broken file on an older day is never opened.
    (tmp_path / "date=2024-04-30" / "symbol=BTCUSDT" / "broken.parquet").write_bytes(b"PAR1")
    assert newest_sealed_event_times(tmp_path, [BTC, ETH, "../x"]) == {BTC: T0 + 28_000}
