"""Fault cases: the recorder survives, reconnects, quarantines and stays inside its root."""

import json
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from support import (
    RECORDER,
    RecorderProcess,
    SimulatorProcess,
    StartRecorder,
    StartSimulator,
    fill,
    read_rows_with,
    wait_until,
)

pytestmark = pytest.mark.e2e

SYMBOLS = ["BTCUSDT", "ETHUSDT", "币安人生USDT"]


def recorder_config(**source: str) -> str:
    lines = ["[storage]", 'flush_interval = "200ms"', "[source]"]
    lines += ['backoff_initial = "100ms"', 'backoff_max = "500ms"']
    lines += [f'{key} = "{value}"' for key, value in source.items()]
    return "\n".join(lines) + "\n"


def connection_ids(simulator: SimulatorProcess) -> set[str]:
    return {c["id"] for c in simulator.connections()}


def delivered_after(simulator: SimulatorProcess, connection: str) -> int:
    return sum(1 for e in simulator.events() if connection in e["delivered_to"])


def quarantine_reasons(root: Path) -> Counter[str]:
    reasons: Counter[str] = Counter()
    for file in (root / "_quarantine").glob("*.jsonl"):
        for line in file.read_text(encoding="utf-8").splitlines():
            reasons[json.loads(line)["reason_code"]] += 1
    return reasons


def assert_clean_stop_and_no_duplicates(recorder: RecorderProcess, root: Path) -> None:
    assert recorder.terminate() == 0
    rows = read_rows_with("duckdb", root)
    assert len(rows) == len(set(rows))


@pytest.mark.parametrize(
    ("fault", "config", "change"),
    [
        pytest.param("drop", recorder_config(), "dropped", id="abrupt-drop"),
        pytest.param("close", recorder_config(), "dropped", id="close-frame"),
        pytest.param(
            "stall+30s", recorder_config(stall_timeout="1s"), "stalled", id="stalled-stream"
        ),
        pytest.param(
            "blackhole+30s",
            recorder_config(ping_interval="500ms", stall_timeout="1m"),
            "dropped",
            id="dead-peer-no-pong",
        ),
    ],
)
def test_a_lost_connection_is_replaced_and_recording_goes_on(
    tmp_path: Path,
    start_simulator: StartSimulator,
    start_recorder: StartRecorder,
    fault: str,
    config: str,
    change: str,
) -> None:
    simulator = start_simulator("--symbols", ",".join(SYMBOLS), "--speed", "20")
    root = tmp_path / "data"
    recorder = start_recorder(root=root, url=simulator.url, symbols=SYMBOLS, config=config)
    wait_until(lambda: len(connection_ids(simulator)) == 1, 15, "the first connection")
    (first,) = connection_ids(simulator)
    wait_until(lambda: delivered_after(simulator, first) >= 20, 15, "data on it")

    simulator.inject(fault)
    wait_until(lambda: bool(recorder.logged("connection lost")), 15, "the loss to be noticed")
    lost = recorder.logged("connection lost")[0]
    assert lost["change"] == change
    wait_until(lambda: connection_ids(simulator) - {first} != set(), 15, "a new connection")
    (second,) = connection_ids(simulator) - {first}
    wait_until(lambda: delivered_after(simulator, second) >= 20, 15, "data on the new one")
    assert recorder.alive()
    simulator.freeze()
    assert_clean_stop_and_no_duplicates(recorder, root)

    # Everything the new connection delivered is recorded (nothing lost after recovery).
    rows = set(read_rows_with("pyarrow", root))
    delivered = simulator.events()
    after = {(e["symbol"], e["E"]) for e in delivered if second in e["delivered_to"]}
    assert after <= {(r[0], r[1]) for r in rows}


def test_bad_frames_are_quarantined_never_fatal_and_never_leave_the_root(
    tmp_path: Path, start_simulator: StartSimulator, start_recorder: StartRecorder
) -> None:
    simulator = start_simulator("--symbols", ",".join(SYMBOLS), "--speed", "20")
    nest = tmp_path / "nest"
    root = nest / "data"
    recorder = start_recorder(
        root=root, url=simulator.url, symbols=SYMBOLS, config=recorder_config()
    )
    wait_until(lambda: len(connection_ids(simulator)) == 1, 15, "the first connection")
    for fault in ("garbage", "hostile_symbol", "bad_field*4", "unsubscribed", "huge;size=3MiB"):
        simulator.inject(fault)
    expected = {"not_json", "unsafe_symbol", "unsubscribed_symbol", "too_large"}
    wait_until(
        lambda: (
            expected <= set(quarantine_reasons(root))
            and sum(quarantine_reasons(root).values()) >= 8
        ),
        15,
        "every bad frame in the quarantine",
    )
    assert recorder.alive()
    assert recorder.logged("connection lost") == []
    simulator.freeze()
    assert_clean_stop_and_no_duplicates(recorder, root)

    # Good data around the bad frames is recorded exactly; bad frames never enter the dataset.
    assert Counter(read_rows_with("pandas", root)) == Counter(simulator.delivered_rows())
    # Nothing was created outside the root, and no directory was named after a hostile symbol.
    assert list(nest.iterdir()) == [root]
    assert not [p for p in tmp_path.rglob("x") if p.is_dir()]
    symbols = {p.name for p in root.glob("date=*/symbol=*")}
    assert symbols <= {f"symbol={s}" for s in SYMBOLS}


def test_an_unrouted_url_that_delivers_nothing_is_reported_loudly(
    tmp_path: Path, start_simulator: StartSimulator, start_recorder: StartRecorder
) -> None:
    simulator = start_simulator("--symbols", "BTCUSDT", "--speed", "20")
    unrouted = simulator.url.removesuffix("/market")  # what the old Binance URL does: nothing
    recorder = start_recorder(
        root=tmp_path / "data",
        url=unrouted,
        symbols=["BTCUSDT"],
        config=recorder_config(first_data_timeout="1s"),
    )
    line = recorder.wait_for_log(
        "connection delivered no data at all; is the url the routed /market endpoint?"
    )
    assert line["level"] == "error"
    assert recorder.alive()
    assert recorder.terminate() == 0


def test_a_second_recorder_with_a_running_instance_id_refuses_to_start(
    tmp_path: Path, start_simulator: StartSimulator, start_recorder: StartRecorder
) -> None:
    simulator = start_simulator("--symbols", "BTCUSDT", "--speed", "20")
    config = '[service]\ninstance_id = "twin"\n'
    root = tmp_path / "data"
    first = start_recorder(root=root, url=simulator.url, symbols=["BTCUSDT"], config=config)
    first.wait_for_log("ready")

    second = start_recorder(
        root=root, url=simulator.url, symbols=["BTCUSDT"], config=config, name="second"
    )

    assert second.process.wait(30) == 1
    [failure] = second.logged("recorder failed")
    assert "already running" in failure["error"]
    assert f"locked by {first.process.pid} " in failure["error"]
    assert first.alive()
    assert first.terminate() == 0
    assert len(read_rows_with("pyarrow", root)) > 0


@pytest.mark.parametrize(
    ("args", "config", "expected"),
    [
        (["--symbols", "../../x"], "", "source.symbols"),
        ([], "[storage]\nflush_intervall = '1s'\n", "did you mean storage.flush_interval"),
        ([], "[source]\nstall_timeout = 'soon'\n", "source.stall_timeout"),
    ],
)
def test_a_bad_setting_is_a_clear_error_and_exit_code_2(
    tmp_path: Path, args: list[str], config: str, expected: str
) -> None:
    config_path = tmp_path / "recorder.toml"
    config_path.write_text(config, encoding="utf-8")
    result = subprocess.run(
        [*RECORDER, "run", "-c", str(config_path), "--root", str(tmp_path / "data"), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert expected in result.stderr
    assert not (tmp_path / "data").exists()


def test_a_full_disk_loses_nothing_and_recording_recovers_when_space_returns(
    small_disk: Path, start_simulator: StartSimulator, start_recorder: StartRecorder
) -> None:
    simulator = start_simulator("--symbols", ",".join(SYMBOLS), "--speed", "20")
    root = small_disk / "data"
    recorder = start_recorder(
        root=root, url=simulator.url, symbols=SYMBOLS, config=recorder_config()
    )
    recorder.wait_for_log("recorder started")
    wait_until(lambda: len(connection_ids(simulator)) == 1, 15, "the first connection")

    filler = small_disk / "filler"
    fill(filler)
    failure = recorder.wait_for_log("flush failed; events stay buffered and will be retried")
    assert failure["level"] == "error"
    assert "No space left" in failure["error"]
    wait_until(lambda: len(simulator.delivered_rows()) >= 100, 15, "events while the disk is full")
    assert recorder.alive()

    filler.unlink()
    recorder.wait_for_log("flush recovered")
    simulator.freeze()
    assert recorder.terminate() == 0
    assert Counter(read_rows_with("duckdb", root)) == Counter(simulator.delivered_rows())


def test_server_pings_are_answered_so_the_exchange_never_drops_the_recorder(
    tmp_path: Path, start_simulator: StartSimulator, start_recorder: StartRecorder
) -> None:
    # The exchange pings every 300 ms and drops a client that has not ponged within 1 s.
    simulator = start_simulator(
        "--symbols", "BTCUSDT", "--speed", "20", "--ping-interval", "300ms", "--pong-timeout", "1s"
    )
    recorder = start_recorder(
        root=tmp_path / "data", url=simulator.url, symbols=["BTCUSDT"], config=recorder_config()
    )
    wait_until(lambda: len(connection_ids(simulator)) == 1, 15, "the connection")
    (connection,) = connection_ids(simulator)
    time.sleep(4)  # a dozen pings, four pong deadlines
    assert connection_ids(simulator) == {connection}
    assert recorder.logged("connection lost") == []
    assert recorder.terminate() == 0
