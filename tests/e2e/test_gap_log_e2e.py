"""The gap log against the ground truth of what the exchange generated and delivered."""

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from support import (
    StartRecorder,
    StartSimulator,
    data_gaps,
    gap_records,
    read_rows_with,
    run_cli,
    wait_until,
)

pytestmark = pytest.mark.e2e

SYMBOLS = ["BTCUSDT", "ETHUSDT", "币安人生USDT", "BTCUSDT_260327"]
CONFIG = """
[storage]
flush_interval = "200ms"
[source]
backoff_initial = "200ms"
backoff_max = "500ms"
"""


def logged_gaps(root: Path) -> Counter[tuple[str, int, int, int]]:
    return Counter((g["symbol"], g["from_ms"], g["to_ms"], g["missed"]) for g in gap_records(root))


def causes(root: Path) -> dict[tuple[str, int, int], str]:
    return {(g["symbol"], g["from_ms"], g["to_ms"]): g["cause"] for g in gap_records(root)}


def expected_cause(
    events: list[dict[str, Any]], recorded: set[tuple[str, int]], gap: tuple[str, int, int, int]
) -> str:
    """What the ground truth says about a gap: nothing generated, withheld, or lost in transit."""
    symbol, start, end, _ = gap
    lost = [
        e
        for e in events
        if e["symbol"] == symbol and start < e["E"] < end and (symbol, e["E"]) not in recorded
    ]
    if not lost:
        return "quiet"
    if any(e["withheld_from"] for e in lost):
        return "stall"
    return "disconnect"


def test_clean_run_across_handovers_logs_exactly_the_quiet_gaps_of_the_data(
    tmp_path: Path, start_simulator: StartSimulator, start_recorder: StartRecorder
) -> None:
    # Two symbols are quiet (the exchange rarely pushes them); the connection is replaced
    # every 2 s by a planned handover before the exchange's 3 s lifetime closes it.
    simulator = start_simulator(
        "--symbols",
        ",".join(SYMBOLS),
        "--quiet-symbols",
        "币安人生USDT,BTCUSDT_260327",
        "--speed",
        "20",
        "--lifetime",
        "3s",
    )
    root = tmp_path / "data"
    config = CONFIG + 'connection_lifetime = "2s"\nhandover_timeout = "900ms"\n'
    recorder = start_recorder(root=root, url=simulator.url, symbols=SYMBOLS, config=config)
    wait_until(lambda: len(recorder.logged("planned handover")) >= 3, 30, "three handovers")
    simulator.freeze()
    assert recorder.terminate() == 0

    rows = read_rows_with("duckdb", root)
    expected = data_gaps(rows)
    assert Counter(expected) == logged_gaps(root)
    assert expected, "quiet symbols must produce gaps"
    assert set(causes(root).values()) == {"quiet"}
    recorded = {(r[0], r[1]) for r in rows}
    events = simulator.events()
    assert {expected_cause(events, recorded, gap) for gap in expected} == {"quiet"}

    verify = run_cli("verify", "--root", str(root))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    listed = run_cli("gaps", "--root", str(root), "--since", "2000-01-01", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == len(expected)


def test_disconnects_and_stalls_are_logged_with_their_cause(
    tmp_path: Path, start_simulator: StartSimulator, start_recorder: StartRecorder
) -> None:
    simulator = start_simulator("--symbols", ",".join(SYMBOLS), "--speed", "20")
    root = tmp_path / "data"
    config = CONFIG + 'stall_timeout = "1s"\n'
    recorder = start_recorder(root=root, url=simulator.url, symbols=SYMBOLS, config=config)
    wait_until(lambda: len(simulator.connections()) == 1, 15, "a connection")
    # Each symbol has events on both sides of each fault, so each fault leaves it a gap.
    simulator.wait_for_deliveries(SYMBOLS, each=2)
    simulator.inject("drop")
    wait_until(lambda: len(recorder.logged("connection lost")) == 1, 15, "the drop")
    wait_until(lambda: len(recorder.logged("connected")) == 2, 15, "the reconnect")
    simulator.wait_for_deliveries(SYMBOLS, each=2)
    simulator.inject("stall+5s")
    wait_until(lambda: len(recorder.logged("connection lost")) == 2, 15, "the stall")
    wait_until(lambda: len(recorder.logged("connected")) == 3, 15, "the replacement")
    simulator.wait_for_deliveries(SYMBOLS, each=2)
    simulator.freeze()
    recorder.wait_until_caught_up(simulator, durable=False)
    assert recorder.terminate() == 0

    rows = read_rows_with("duckdb", root)
    expected = data_gaps(rows)
    assert Counter(expected) == logged_gaps(root)
    recorded = {(r[0], r[1]) for r in rows}
    events = simulator.events()
    logged = causes(root)
    wanted = {gap: expected_cause(events, recorded, gap) for gap in expected}
    # Every symbol lost updates to the drop and to the stall, and says so.
    for cause in ("disconnect", "stall"):
        assert {gap[0] for gap, why in wanted.items() if why == cause} == set(SYMBOLS), cause
    for gap, cause in wanted.items():
        if cause != "quiet":
            assert logged[gap[:3]] == cause, gap


@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
def test_a_restart_logs_exactly_one_restart_gap_per_symbol(
    tmp_path: Path, start_simulator: StartSimulator, start_recorder: StartRecorder, stop: str
) -> None:
    simulator = start_simulator("--symbols", ",".join(SYMBOLS), "--speed", "20")
    root = tmp_path / "data"
    first = start_recorder(root=root, url=simulator.url, symbols=SYMBOLS, config=CONFIG)
    wait_until(lambda: len(simulator.delivered_rows()) >= 100, 15, "100 events")
    if stop == "sigterm":
        assert first.terminate() == 0
    else:
        first.wait_until_caught_up(simulator, durable=True)
        first.kill()
    time.sleep(1)  # downtime: about ten ticks at 20x
    second = start_recorder(
        root=root, url=simulator.url, symbols=SYMBOLS, config=CONFIG, name="second"
    )
    wait_until(lambda: len(second.logged("ready")) == 1, 15, "the second recorder")
    simulator.wait_for_deliveries(SYMBOLS, each=2)  # every restart gap is closed by an event
    simulator.freeze()
    assert second.terminate() == 0

    rows = read_rows_with("pandas", root)
    assert len(rows) == len(set(rows))
    restarts = [g for g in gap_records(root) if g["cause"] == "restart"]
    assert sorted(g["symbol"] for g in restarts) == sorted(SYMBOLS)
    expected = data_gaps(rows)
    for gap in restarts:
        assert (gap["symbol"], gap["from_ms"], gap["to_ms"], gap["missed"]) in expected
        assert gap["missed"] >= 5  # a second of downtime at 20x is about ten updates
    # And nothing in the data is left unexplained.
    assert Counter(expected) == logged_gaps(root)
    verify = run_cli("verify", "--root", str(root))
    assert verify.returncode == 0, verify.stdout + verify.stderr
