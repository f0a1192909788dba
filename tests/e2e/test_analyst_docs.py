"""The Python examples of docs/analyst.md, run on a real recording, before and after compaction."""

import contextlib
import io
import re
from pathlib import Path

import pytest
from support import (
    StartRecorder,
    StartSimulator,
    gap_records,
    run_cli,
    wait_until,
)

pytestmark = pytest.mark.e2e

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "analyst.md"
EXAMPLE = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)
# The examples read BTCUSDT on 2024-05-01: the simulated exchange starts there.
START_MS = 1_714_557_600_000  # 2024-05-01T10:00:00Z
DAY_END_MS = 1_714_608_000_000
SYMBOLS = ["BTCUSDT", "ETHUSDT", "币安人生USDT"]
CONFIG = """
[storage]
flush_interval = "200ms"
max_file_age = "2s"
[source]
backoff_initial = "200ms"
backoff_max = "500ms"
"""


def examples() -> list[str]:
    return EXAMPLE.findall(GUIDE.read_text(encoding="utf-8"))


def run_examples(root: Path) -> list[dict[str, object]]:
    """Execute every example with ``ROOT`` bound; return each one's variables."""
    results = []
    for number, source in enumerate(examples()):
        namespace: dict[str, object] = {"ROOT": str(root)}
        code = compile(source, f"{GUIDE.name} example {number + 1}", "exec")
        with contextlib.redirect_stdout(io.StringIO()):
            exec(code, namespace)  # noqa: S102 - the guide's own examples, by design
        results.append(namespace)
    return results


def test_the_guide_has_every_example_for_every_library() -> None:
    found = examples()
    for library in ("pandas", "duckdb", "polars", "pyarrow"):
        assert sum(f"import {library}" in source for source in found) >= 4, library
    assert all("assert " in source for source in found)
    assert all("ROOT" in source for source in found)


def test_every_example_runs_on_a_recording_with_a_gap_before_and_after_compaction(
    tmp_path: Path, start_simulator: StartSimulator, start_recorder: StartRecorder
) -> None:
    simulator = start_simulator(
        "--symbols", ",".join(SYMBOLS), "--speed", "20", "--start-ms", str(START_MS)
    )
    root = tmp_path / "data"
    recorder = start_recorder(root=root, url=simulator.url, symbols=SYMBOLS, config=CONFIG)
    recorder.wait_for_log("ready")
    simulator.wait_for_deliveries(SYMBOLS, each=1, event_time_ms=60_000)  # a minute of data
    simulator.inject("drop")  # the recorder reconnects; the updates in between are missed
    wait_until(lambda: len(recorder.logged("connected")) >= 2, 15, "the reconnect")
    simulator.wait_for_deliveries(SYMBOLS, each=1, event_time_ms=60_000)
    simulator.freeze()
    recorder.wait_until_caught_up(simulator, durable=False)
    assert recorder.terminate() == 0
    lost = [
        gap
        for gap in gap_records(root)
        if gap["symbol"] == "BTCUSDT" and gap["cause"] != "quiet" and gap["to_ms"] < DAY_END_MS
    ]
    assert lost, "the dropped connection must leave a gap for the examples to flag"
    assert len(list(root.glob("date=2024-05-01/symbol=BTCUSDT/*.parquet"))) > 1

    check_examples(root, "parts")
    compacted = run_cli("compact", "--root", str(root))
    assert compacted.returncode == 0, compacted.stdout + compacted.stderr
    assert len(list(root.glob("date=2024-05-01/symbol=BTCUSDT/*.parquet"))) == 1
    check_examples(root, "compacted")


def check_examples(root: Path, stage: str) -> None:
    results = run_examples(root)
    # The gap examples count the minutes they flag; the dataset has a gap to flag.
    flagged = [r["flagged_minutes"] for r in results if "flagged_minutes" in r]
    assert len(flagged) == 4, stage
    assert all(isinstance(count, int) and count >= 1 for count in flagged), (stage, flagged)
