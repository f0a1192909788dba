"""What an operator watches: metrics, health, systemd notifications, cron checks."""

import json
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_support import PrometheusServer, have_prometheus
from support import (
    RECORDER,
    StartRecorder,
    StartSimulator,
    wait_until,
)

pytestmark = pytest.mark.e2e

SYMBOLS = ["BTCUSDT", "ETHUSDT", "币安人生USDT"]
CONFIG = """
[storage]
flush_interval = "200ms"
[source]
backoff_initial = "100ms"
backoff_max = "300ms"
stall_timeout = "2s"
"""


def scrape(address: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def healthz(address: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://{address}/healthz", timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_metrics_move_and_health_follows_a_stall(
    tmp_path: Path, start_simulator: StartSimulator, start_recorder: StartRecorder
) -> None:
    simulator = start_simulator("--symbols", ",".join(SYMBOLS), "--speed", "20")
    recorder = start_recorder(
        root=tmp_path / "data", url=simulator.url, symbols=SYMBOLS, config=CONFIG
    )
    listening = recorder.wait_for_log("metrics listening")
    address = str(listening["address"])
    assert address.startswith("127.0.0.1:")  # loopback by default
    recorder.wait_for_log("ready")
    wait_until(lambda: healthz(address)[0] == 200, 10, "healthy")

    def received(sample: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> list[float]:
        return [
            sample.get(("recorder_events_received_total", (("symbol", symbol),)), 0.0)
            for symbol in SYMBOLS
        ]

    wait_until(lambda: min(received(scrape(address))) > 0, 10, "an event of every symbol")
    first = scrape(address)
    flushes = ("recorder_flush_duration_seconds_count", ())

    def moved_on() -> bool:
        now = scrape(address)
        return now[flushes] > first[flushes] and all(
            count > before for count, before in zip(received(now), received(first), strict=True)
        )

    wait_until(moved_on, 10, "more events of every symbol and another flush")
    second = scrape(address)
    for symbol in SYMBOLS:
        written = ("recorder_events_written_total", (("symbol", symbol),))
        assert second[written] > 0
        age = second[("recorder_last_event_age_seconds", (("symbol", symbol),))]
        assert 0 <= age < 5
    assert second[("recorder_open_connections", ())] == 1
    assert second[("recorder_last_flush_success", ())] == 1
    assert (
        second[("recorder_flush_duration_seconds_count", ())]
        > first[("recorder_flush_duration_seconds_count", ())]
    )

    simulator.inject("stall+30s")
    wait_until(lambda: healthz(address)[0] == 503, 10, "unhealthy while stalled")
    status, body = healthz(address)
    assert status == 503
    assert body["reasons"]
    # The watchdog replaces the stalled connection; the new one delivers; health comes back.
    wait_until(lambda: healthz(address)[0] == 200, 15, "healthy after the replacement")
    after = scrape(address)
    assert after[("recorder_reconnects_total", (("reason", "stalled"),))] >= 1
    assert after[("recorder_gaps_total", (("cause", "stall"),))] >= 1
    assert after[("recorder_missed_updates_total", (("cause", "stall"),))] >= 1
    simulator.inject("garbage")
    wait_until(
        lambda: (
            scrape(address).get(("recorder_frames_quarantined_total", (("reason", "not_json"),)), 0)
            >= 1
        ),
        10,
        "the garbage frame counted",
    )
    assert recorder.terminate() == 0


def test_systemd_hears_ready_watchdog_and_stopping(
    tmp_path: Path, start_simulator: StartSimulator, start_recorder: StartRecorder
) -> None:
    simulator = start_simulator("--symbols", "BTCUSDT", "--speed", "20")
    notify_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify_socket:
        notify_socket.bind(str(notify_path))
        notify_socket.settimeout(15)
        recorder = start_recorder(
            root=tmp_path / "data",
            url=simulator.url,
            symbols=["BTCUSDT"],
            config=CONFIG,
            env={"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "1000000"},
        )
        received: list[str] = []

        def receive_until(word: str) -> None:
            while not any(word in message for message in received):
                received.append(notify_socket.recv(4096).decode())

        def watchdogs() -> int:
            return sum("WATCHDOG=1" in m for m in received)

        notify_socket.settimeout(15)
        receive_until("READY=1")
        # Ready means recording: the first events were durable before systemd heard it.
        assert recorder.wait_for_log("ready")["events_durable"] > 0
        receive_until("WATCHDOG=1")
        first_watchdogs = watchdogs()
        while watchdogs() <= first_watchdogs:  # they keep coming while it runs
            received.append(notify_socket.recv(4096).decode())
        assert recorder.terminate() == 0
        receive_until("STOPPING=1")  # sent before exiting, waiting in the socket's buffer
    order = [next(i for i, m in enumerate(received) if w in m) for w in ("READY=1", "STOPPING=1")]
    assert order == sorted(order)


def test_check_reports_healthy_then_stale_for_cron(
    tmp_path: Path, start_simulator: StartSimulator, start_recorder: StartRecorder
) -> None:
    simulator = start_simulator("--symbols", ",".join(SYMBOLS), "--speed", "1")
    root = tmp_path / "data"
    recorder = start_recorder(root=root, url=simulator.url, symbols=SYMBOLS, config=CONFIG)
    recorder.wait_for_log("ready")

    def check(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*RECORDER, "check", "--root", str(root), "--format", "json", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    # Healthy once every symbol's first 2 s update is durable.
    wait_until(
        lambda: check("--max-age", "30s", "--max-missed", "1000").returncode == 0,
        20,
        "check to pass while recording",
    )
    assert recorder.terminate() == 0
    # Stopped: the newest events age until they are older than a second.
    wait_until(
        lambda: check("--max-age", "1s", "--max-missed", "1000").returncode == 1,
        20,
        "check to fail on stale data",
    )
    stale = check("--max-age", "1s", "--max-missed", "1000")
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert json.loads(stale.stdout)
    missing_root = subprocess.run(
        [*RECORDER, "check", "--root", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing_root.returncode == 2


@pytest.mark.skipif(not have_prometheus(), reason="no prometheus server installed")
def test_a_real_prometheus_server_scrapes_the_recorder(
    tmp_path: Path, start_simulator: StartSimulator, start_recorder: StartRecorder
) -> None:
    simulator = start_simulator("--symbols", ",".join(SYMBOLS), "--speed", "20")
    recorder = start_recorder(
        root=tmp_path / "data", url=simulator.url, symbols=SYMBOLS, config=CONFIG
    )
    target = str(recorder.wait_for_log("metrics listening")["address"])
    with PrometheusServer.running(tmp_path, target) as server:
        wait_until(
            lambda: len(server.query("recorder_events_received_total > 0")) == 3, 30, "scrapes"
        )
        up = server.query('up{job="recorder"}')
        assert [sample["value"][1] for sample in up] == ["1"]
        symbols = {
            sample["metric"]["symbol"] for sample in server.query("recorder_events_received_total")
        }
        assert symbols == set(SYMBOLS)
    assert recorder.terminate() == 0
