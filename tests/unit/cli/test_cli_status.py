import dataclasses
import io
import re
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

from recorder.cli.main import main
from recorder.cli.status_fetch import Health, base_url
from recorder.cli.status_view import render_status, render_unreachable
from recorder.ops.status import MetricsReading, StatusSnapshot, StatusTracker

MIB = 1024 * 1024
URL = "http://127.0.0.1:9464"


def snapshot_of(**changes: Any) -> StatusSnapshot:
    reading = MetricsReading(
        received={f"S{n}USDT": 100 * n for n in range(15)},
        ages={f"S{n}USDT": float(n * 5) for n in range(15)},
        open_connections=2,
        gaps_last_hour={"disconnect": 3, "stall": 0},
        last_flush_ok=True,
        last_flush_at=99.5,
        buffered_rows=4321,
        buffered_bytes=50 * MIB,
        buffer_budget=64 * MIB,
        stall_timeout=60.0,
        version="1.2.3",
    )
    tracker = StatusTracker()
    tracker.observe(MetricsReading(received={"S1USDT": 0}), wall=99, monotonic=0)
    snapshot = tracker.observe(reading, wall=100.0, monotonic=2.0)
    return dataclasses.replace(snapshot, **changes)


def rendered(snapshot: StatusSnapshot, health: Health, **options: object) -> str:
    console = Console(record=True, width=110, file=io.StringIO(), color_system="truecolor")
    console.print(render_status(snapshot, health, url=URL, **options))  # type: ignore[arg-type]
    return console.export_text()


def test_the_view_shows_every_figure_and_the_worst_symbols_first() -> None:
    text = rendered(snapshot_of(), Health(True, {"status": "ok"}))
    assert f"recorder status: {URL}" in text
    assert "recorder 1.2.3" in text
    assert "health" in text
    assert "ok" in text
    # (sum of 100 * n for n < 15) - 0 events, over 2 s
    assert "5,250.0 (10,500 events since the start)" in text
    assert "2 delivering, 10 quiet, 3 silent" in text
    assert re.search(r"connections +2 ", text)
    assert "0.5s ago" in text
    assert "4,321 rows, 50.0MiB of 64.0MiB (78%)" in text
    assert "3 disconnect" in text
    assert "10 of 15 symbols, the oldest last event first" in text
    lines = text.splitlines()
    table = [line for line in lines if "USDT" in line]
    assert [line.split()[2] for line in table[:3]] == ["S14USDT", "S13USDT", "S12USDT"]
    assert "silent" in table[0]
    assert not any("S4USDT" in line for line in table)  # beyond the ten worst


def test_an_unhealthy_recorder_shows_why_and_a_failed_flush() -> None:
    health = Health(False, {"status": "unhealthy", "reasons": ["the last flush failed: full"]})
    text = rendered(snapshot_of(last_flush_ok=False), health, note="refresh failed: refused")
    assert "UNHEALTHY" in text
    assert "the last flush failed: full" in text
    assert "the latest flush FAILED" in text
    assert "refresh failed: refused" in text


def test_the_first_reading_has_no_rate_yet() -> None:
    snapshot = StatusTracker().observe(MetricsReading(received={"A": 5}), wall=0, monotonic=0)
    text = rendered(snapshot, Health(None))
    assert "measuring... (5 events so far)" in text
    assert "unknown (no /healthz verdict)" in text
    assert "none yet" in text


def test_the_unreachable_view_says_why() -> None:
    console = Console(record=True, width=80, file=io.StringIO())
    console.print(render_unreachable(URL, "cannot reach it: refused"))
    assert "cannot reach it: refused" in console.export_text()


@pytest.mark.parametrize("url", ["ftp://host:1", "127.0.0.1:9464", "http://", "http://h:1/?a=1"])
def test_a_url_that_is_not_a_metrics_endpoint_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="expected http://HOST:PORT"):
        base_url(url)
    result = CliRunner().invoke(main, ["status", "--url", url])
    assert result.exit_code == 2
    assert "expected http://HOST:PORT" in result.output


@pytest.mark.parametrize("interval", ["0s", "soon"])
def test_a_bad_interval_is_refused(interval: str) -> None:
    result = CliRunner().invoke(main, ["status", "--interval", interval])
    assert result.exit_code == 2
    assert "--interval" in result.output
