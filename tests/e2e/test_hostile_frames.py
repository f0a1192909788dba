"""Hostile frames over a real socket (issue 9): ``recorder run`` neither exits nor floods.

The simulator sends the frames that used to end the daemon (nesting that made msgspec raise
``RecursionError``) or flood the quarantine (a 1 MiB array split into half a million records),
between its normal data; the recorder keeps recording every good symbol, records the valid
ticker that only carries a deep unknown field, and writes one short quarantine record per bad
frame, read back as an analyst would.
"""

import re
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from support import (
    READERS,
    SimulatorProcess,
    StartRecorder,
    StartSimulator,
    read_rows_with,
    wait_until,
)

from recorder.ingest.rejections import MAX_RAW_BYTES
from recorder.simulate.fault_frames import (
    array_flood_text,
)

pytestmark = pytest.mark.e2e

SYMBOLS = ["BTCUSDT", "ETHUSDT", "币安人生USDT"]
CONFIG = '[storage]\nflush_interval = "200ms"\n[source]\nbackoff_initial = "100ms"\n'
# Fault kind and count, and the quarantine reason each frame must get.
HOSTILE = {
    "nested": (3, "too_deep"),
    "array_flood": (2, "not_object"),
    "wide": (2, "missing_field:e"),
    "bad_bytes": (2, "not_utf8"),
}
DEEP_EXTRA = 2


def delivered_to(simulator: SimulatorProcess, connection: str) -> int:
    return sum(1 for e in simulator.events() if connection in e["delivered_to"])


def read_quarantine(root: Path) -> pd.DataFrame:
    files = sorted((root / "_quarantine").glob("*.jsonl"))
    if not files:
        return pd.DataFrame(columns=["reason_code", "raw", "raw_bytes", "raw_sha256"])
    return pd.concat([pd.read_json(f, lines=True, dtype=False) for f in files])


def deep_extra_keys(simulator: SimulatorProcess) -> set[tuple[str, int]]:
    """``(symbol, E)`` of every valid ticker the ``deep_extra`` faults sent."""
    keys = set()
    for record in simulator.get("/_sim/faults")["faults"]:
        if record["fault"]["kind"] != "deep_extra":
            continue
        for sample in record["samples"]:
            event_time = re.search(r'"E":(\d+)', sample)
            symbol = re.search(r'"s":"([^"]+)"', sample)
            assert event_time is not None
            assert symbol is not None
            keys.add((symbol[1], int(event_time[1])))
    return keys


def test_hostile_frames_are_one_short_record_each_and_recording_goes_on(
    tmp_path: Path, start_simulator: StartSimulator, start_recorder: StartRecorder
) -> None:
    simulator = start_simulator("--symbols", ",".join(SYMBOLS), "--speed", "20")
    root = tmp_path / "data"
    recorder = start_recorder(root=root, url=simulator.url, symbols=SYMBOLS, config=CONFIG)
    wait_until(lambda: len(simulator.connections()) == 1, 15, "the first connection")
    (connection,) = (c["id"] for c in simulator.connections())
    wait_until(lambda: delivered_to(simulator, connection) >= 10, 15, "data before the faults")

    for kind, (count, _) in HOSTILE.items():
        simulator.inject(f"{kind}*{count}")
    simulator.inject(f"deep_extra*{DEEP_EXTRA}")
    expected = Counter({reason: count for count, reason in HOSTILE.values()})
    wait_until(
        lambda: Counter(read_quarantine(root)["reason_code"]) == expected,
        30,
        "one quarantine record per hostile frame",
    )
    after = delivered_to(simulator, connection)
    wait_until(
        lambda: delivered_to(simulator, connection) >= after + 3 * len(SYMBOLS),
        15,
        "more data after the hostile frames",
    )
    assert recorder.alive()
    assert recorder.logged("connection lost") == []
    simulator.freeze()
    assert recorder.terminate() == 0

    # The dataset: exactly what was delivered, plus the valid tickers with a deep extra field.
    extra = deep_extra_keys(simulator)
    assert len(extra) == DEEP_EXTRA
    delivered = Counter(simulator.delivered_rows())
    for reader in READERS:
        rows = read_rows_with(reader, root)
        assert len(rows) == len(set(rows)), reader
        assert extra <= {(row[0], row[1]) for row in rows}, reader
        assert Counter(row for row in rows if (row[0], row[1]) not in extra) == delivered, reader
    recorded = {row[0] for row in read_rows_with("pandas", root)}
    assert recorded == set(SYMBOLS)

    # The quarantine: one short record per frame with the whole frame's size and hash. The
    # 1 MiB array used to become 524,287 records; nothing of the deep_extra frames is here.
    quarantine = read_quarantine(root)
    assert Counter(quarantine["reason_code"]) == expected
    assert (quarantine["raw"].map(lambda raw: len(raw.encode())) <= MAX_RAW_BYTES).all()
    assert (quarantine["raw_sha256"].str.fullmatch(r"[0-9a-f]{64}")).all()
    floods = quarantine[quarantine["reason_code"] == "not_object"]
    assert (floods["raw_bytes"] == len(array_flood_text())).all()
    assert not quarantine["raw"].str.contains('"x":[[[', regex=False).any()
    quarantine_bytes = sum(p.stat().st_size for p in (root / "_quarantine").glob("*.jsonl"))
    assert quarantine_bytes < len(quarantine) * 2 * MAX_RAW_BYTES
