"""SIGHUP as an operator sends it: ``systemctl reload`` or ``docker kill -s HUP``.

``recorder run -c FILE`` records two symbols; the file is rewritten and the process gets
SIGHUP: the new symbol is recorded from then on, the removed one no longer, on the same
connection, and the symbol that stayed has no gap. A key that needs a restart is named in the
log; a broken file is refused and the recorder carries on. The dataset is read back with
pandas, DuckDB, polars and pyarrow afterwards, and ``recorder check`` judges it.
"""

import json
import signal
from pathlib import Path

import pytest
from support import (
    StartRecorder,
    StartSimulator,
    gap_records,
    metric_values,
    read_rows_with,
    run_cli,
    wait_until,
)

pytestmark = pytest.mark.e2e

SETTINGS = """
[source]
symbols = {symbols}
[storage]
flush_interval = "200ms"
[metrics]
address = "127.0.0.1:0"
"""


def received(address: str) -> dict[str, float]:
    """Events received so far, by symbol."""
    return {
        labels.partition('"')[2].rstrip('"'): value
        for labels, value in metric_values(address, "recorder_events_received").items()
    }


def test_sighup_adds_and_removes_symbols_live(
    tmp_path: Path, start_simulator: StartSimulator, start_recorder: StartRecorder
) -> None:
    simulator = start_simulator("--symbols", "BTCUSDT,ETHUSDT,SOLUSDT", "--speed", "10")
    root = tmp_path / "data"
    recorder = start_recorder(
        root=root,
        url=simulator.url,
        symbols=None,
        config=SETTINGS.format(symbols='["BTCUSDT", "ETHUSDT"]'),
    )
    recorder.wait_for_log("ready")
    address = str(recorder.wait_for_log("metrics listening")["address"])
    [before] = simulator.connections()
    # "ready" means one event is durable, not one of each: the symbol about to be removed
    # must have been recorded first, or the dataset cannot show it was.
    wait_until(lambda: received(address).get("ETHUSDT", 0) > 0, 15, "ETHUSDT recorded")

    # ETHUSDT out, SOLUSDT in; and a key that needs a restart.
    recorder.config_path.write_text(
        SETTINGS.format(symbols='["BTCUSDT", "SOLUSDT"]') + '[gaps]\ninterval = "1s"\n',
        encoding="utf-8",
    )
    recorder.process.send_signal(signal.SIGHUP)
    restart = recorder.wait_for_log(
        "settings changed that apply only at the next start; restart to apply them"
    )
    assert restart["keys"] == ["gaps.interval"]
    assert recorder.wait_for_log("settings reloaded")["applied"] == ["source.symbols"]
    wait_until(lambda: received(address).get("SOLUSDT", 0) > 0, 15, "SOLUSDT recorded")
    wait_until(
        lambda: (
            [c["streams"] for c in simulator.connections()]
            == [["btcusdt@miniTicker", "solusdt@miniTicker"]]
        ),
        10,
        "the connection carrying BTCUSDT and SOLUSDT only",
    )
    [after] = simulator.connections()
    assert after["id"] == before["id"]

    # A broken file: refused, said why, and recording goes on.
    recorder.config_path.write_text("[source]\nsymbols = [\n", encoding="utf-8")
    recorder.process.send_signal(signal.SIGHUP)
    refused = recorder.wait_for_log("settings reload refused; the running settings stay")
    assert "invalid TOML" in refused["error"]
    simulator.wait_for_deliveries(["BTCUSDT", "SOLUSDT"], each=3)
    assert recorder.alive()
    assert metric_values(address, "recorder_settings_reloads") == {
        'outcome="applied"': 1.0,
        'outcome="unchanged"': 0.0,
        'outcome="refused"': 1.0,
    }
    simulator.freeze()
    recorder.wait_until_caught_up(simulator, durable=False)
    assert recorder.terminate() == 0

    delivered = sorted(simulator.delivered_rows())
    for reader in ("pandas", "duckdb", "polars", "pyarrow"):
        rows = read_rows_with(reader, root)
        assert sorted(rows) == delivered, reader
        assert len(rows) == len(set(rows)), reader
    assert {row[0] for row in delivered} == {"BTCUSDT", "ETHUSDT", "SOLUSDT"}
    # The simulator pushes a ticker only when it changed: quiet gaps may be, no other.
    assert {gap["cause"] for gap in gap_records(root)} <= {"quiet"}
    assert simulator.connections() == []
    check = run_cli("check", "--root", str(root), "--max-age", "1h", "--format", "json")
    assert check.returncode == 0, check.stdout + check.stderr
    assert {s["symbol"] for s in json.loads(check.stdout)["symbols"]} == {"BTCUSDT", "SOLUSDT"}
