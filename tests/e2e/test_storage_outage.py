"""A disk full for longer than the memory budget allows: bounded memory, ``storage`` gaps."""

from collections import Counter
from pathlib import Path

import pytest
from support import (
    READERS,
    StartRecorder,
    StartSimulator,
    data_gaps,
    fill,
    gap_records,
    metric_values,
    missed_between,
    read_rows_with,
    wait_until,
)

pytestmark = pytest.mark.e2e

SYMBOLS = [f"S{index:02d}USDT" for index in range(20)]
BUDGET = 96 * 1024
INTERVAL_MS = 2000


def test_a_disk_full_beyond_the_budget_drops_the_oldest_events_as_storage_gaps(
    small_disk: Path, start_simulator: StartSimulator, start_recorder: StartRecorder
) -> None:
    simulator = start_simulator("--symbols", ",".join(SYMBOLS), "--speed", "20", "--seed", "9")
    root = small_disk / "data"
    config = "\n".join(
        [
            "[storage]",
            'flush_interval = "200ms"',
            f"buffer_budget = {BUDGET}",
            "[metrics]",
            'address = "127.0.0.1:0"',
        ]
    )
    recorder = start_recorder(root=root, url=simulator.url, symbols=SYMBOLS, config=config + "\n")
    address = str(recorder.wait_for_log("metrics listening")["address"])
    recorder.wait_for_log("ready")

    filler = small_disk / "filler"
    fill(filler)
    recorder.wait_for_log("flush failed; events stay buffered and will be retried")
    dropping = recorder.wait_for_log(
        "storage outage outlasts the memory budget: dropping the oldest events not yet "
        "durable, logged as gaps of cause storage",
        timeout=30,
    )
    assert dropping["level"] == "warning"

    # Held longer than the budget allows: memory stays within it, and drops go on.
    def dropped_so_far() -> float:
        return sum(metric_values(address, "recorder_events_dropped").values())

    for _ in range(3):
        before = dropped_so_far()
        wait_until(lambda: dropped_so_far() > before, 15, "more events dropped")  # noqa: B023
        [held] = metric_values(address, "recorder_buffered_bytes").values()
        assert 0 < held <= BUDGET
    assert recorder.alive()

    filler.unlink()
    recorder.wait_for_log("flush recovered", timeout=30)
    # A few more flushes after the outage, so that every dropped run is closed by an event.
    wait_until(lambda: len(recorder.logged("flush recovered")) >= 1, 5, "recovery")
    dropped = metric_values(address, "recorder_events_dropped")
    simulator.freeze()
    recorder.wait_until_caught_up(simulator, durable=False)
    assert recorder.terminate() == 0

    readers = {reader: Counter(read_rows_with(reader, root)) for reader in READERS}
    rows = readers["duckdb"]
    assert all(found == rows for found in readers.values())  # the four readers agree
    delivered = Counter(simulator.delivered_rows())
    assert all(count == 1 for count in rows.values())
    assert not rows - delivered  # nothing invented
    lost = delivered - rows
    lost_by_symbol = Counter(row[0] for row in lost.elements())
    assert lost_by_symbol == Counter(
        {labels.split('"')[1]: int(value) for labels, value in dropped.items()}
    )
    storage_gaps = [g for g in gap_records(root) if g["cause"] == "storage"]
    assert storage_gaps
    recomputed = data_gaps(list(rows))
    first_recorded = {symbol: min(t for s, t, *_ in rows if s == symbol) for symbol in SYMBOLS}
    first_lost = {symbol: min(t for s, t, *_ in lost if s == symbol) for symbol in lost_by_symbol}
    for gap in storage_gaps:
        symbol = gap["symbol"]
        if gap["from_ms"] < first_recorded[symbol]:
            # None of the symbol's events was durable when the disk filled (the outage began
            # within its first update or two): the hole starts one interval before the first
            # event dropped, ends on the first recorded one, and counts what lies between.
            assert gap["from_ms"] == first_lost[symbol] - INTERVAL_MS, gap
            assert gap["to_ms"] == first_recorded[symbol], gap
            assert gap["missed"] == missed_between(gap["from_ms"], gap["to_ms"], INTERVAL_MS), gap
        else:
            # Each later hole runs between two recorded events and counts what was dropped.
            assert (symbol, gap["from_ms"], gap["to_ms"], gap["missed"]) in recomputed, gap
    for row in lost:
        symbol, event_time = row[0], row[1]
        assert any(
            g["symbol"] == symbol and g["from_ms"] < event_time < g["to_ms"] for g in storage_gaps
        ), row
