"""``recorder run`` in all-market mode as an operator runs it, read back by the four readers."""

from collections import Counter
from pathlib import Path

import pytest
from support import READERS, StartRecorder, StartSimulator, gap_records, read_rows_with, wait_until

from recorder.simulate import DEFAULT_SYMBOLS

pytestmark = pytest.mark.e2e

# Six of the ten contracts the simulator lists, the non-ASCII one and the delivery contract
# among them; the array carries the other four too, and the recorder skips them.
RECORDED = ["BTCUSDT", "ETHUSDT", "1000SHIBUSDT", "PEPEUSDT", "币安人生USDT", "BTCUSDT_260327"]
assert set(RECORDED) < set(DEFAULT_SYMBOLS)
CONFIG = """
[source]
mode = "all_market"
backoff_initial = "100ms"
backoff_max = "1s"
[storage]
flush_interval = "500ms"
[metrics]
address = "127.0.0.1:0"
"""


def test_all_market_mode_records_the_chosen_contracts_for_every_reader(
    tmp_path: Path, start_simulator: StartSimulator, start_recorder: StartRecorder
) -> None:
    simulator = start_simulator(
        "--symbols", ",".join(DEFAULT_SYMBOLS), "--speed", "20", "--seed", "8"
    )
    root = tmp_path / "data"
    recorder = start_recorder(root=root, url=simulator.url, symbols=RECORDED, config=CONFIG)
    connected = recorder.wait_for_log("connected")
    assert connected["url"].endswith("/stream?streams=!miniTicker@arr")

    def expected() -> list[tuple[object, ...]]:
        return [row for row in simulator.delivered_rows() if row[0] in RECORDED]

    wait_until(lambda: len(expected()) >= 120, 30, "120 delivered events of recorded contracts")
    simulator.freeze()
    delivered = expected()
    wait_until(
        lambda: recorder.metric_total("recorder_events_received") >= len(delivered),
        15,
        "every delivered event of the recorded contracts received",
    )
    assert recorder.metric_total("recorder_events_not_recorded") > 0
    [connection] = simulator.connections()
    assert connection["streams"] == ["!miniTicker@arr"]
    assert recorder.terminate() == 0

    assert {row[0] for row in delivered} == set(RECORDED)
    for reader in READERS:
        rows = read_rows_with(reader, root)
        assert Counter(rows) == Counter(delivered), reader
    # A contract that did not change in a tick is missing from that second's array: quiet.
    assert {gap["cause"] for gap in gap_records(root)} <= {"quiet"}
