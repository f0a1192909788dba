"""Implausible event times against the running service: quarantined, and nothing poisoned.

The service runs in-process against the simulated exchange over loopback; afterwards the
dataset, the gap log, the quarantine and the state file are read as an analyst would.
"""

import asyncio
import json
import random
import time
from pathlib import Path

import duckdb
import pytest
import structlog
from service_support import SYMBOLS, durable_newest_event_times, settings_for, wait_for
from support import data_gaps, gap_records, parquet_files, read_rows_with

from recorder.clock import event_date
from recorder.gaps.state import read_states, write_state
from recorder.service import RecorderService
from recorder.simulate import Fault, FaultKind, SimulatedExchange, SimulatorConfig
from recorder.simulate.faults import FUTURE_TIME_LEAD_MS

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000
SPEED = 20


class OffsetClock:
    """This machine's clocks, with the wall clock off by a fixed amount (a wrong system time)."""

    def __init__(self, offset_ms: int) -> None:
        self.offset_us = offset_ms * 1000

    def monotonic(self) -> float:
        """Return :func:`time.monotonic`."""
        return time.monotonic()

    def wall_us(self) -> int:
        """Return the system wall clock plus the offset, in microseconds."""
        return time.time_ns() // 1000 + self.offset_us


def durable(service: RecorderService) -> dict[str, int]:
    """The newest ``E`` per symbol in the service's write-ahead log."""
    return durable_newest_event_times(service.settings.storage.root, service.instance_id)


async def quiesce(exchange: SimulatedExchange, service: RecorderService) -> set[tuple[str, int]]:
    """Stall every connection, wait until the service has every event delivered; return them."""
    exchange.inject(Fault(FaultKind.STALL, duration=60))
    delivered = {(e.symbol, e.event_time) for e in exchange.events() if e.delivered_to}
    await wait_for(lambda: service.pipeline.counters.events >= len(delivered))
    return delivered


def quarantine_records(root: Path) -> list[tuple[str, str]]:
    """``(reason, raw)`` of every quarantined frame, read with DuckDB."""
    if not list((root / "_quarantine").glob("*.jsonl")):
        return []
    query = (
        "SELECT reason, raw FROM read_json(?, format = 'newline_delimited', "
        "columns = {reason: 'VARCHAR', raw: 'VARCHAR'})"
    )
    rows = duckdb.connect().execute(query, [f"{root}/_quarantine/*.jsonl"]).fetchall()
    return [(str(reason), str(raw)) for reason, raw in rows]


@pytest.mark.asyncio
async def test_a_far_future_event_is_quarantined_and_cannot_poison_the_recording(
    tmp_path: Path,
) -> None:
    config = SimulatorConfig(symbols=SYMBOLS, speed=SPEED, seed=23)
    async with SimulatedExchange(config) as exchange:
        service = RecorderService(settings_for(exchange, tmp_path), rng=random.Random(23))
        stop = asyncio.Event()
        running = asyncio.create_task(service.run(stop))
        await wait_for(lambda: len(durable(service)) == len(SYMBOLS))
        exchange.inject(Fault(FaultKind.FUTURE_TIME))
        await wait_for(lambda: bool(exchange.fault_log()))
        # Events generated after the fault fired follow its frame: once one is durable, the
        # frame has reached the recorder (a stall would withhold it while still queued).
        fired_ms = exchange.simulated_now_ms()
        await wait_for(lambda: max(durable(service).values()) > fired_ms)
        # A stall of the whole connection afterwards: every symbol's gap across it must still
        # be found, the future-stamped symbol's included, with cause stall.
        stall_from = exchange.simulated_now_ms()
        exchange.inject(Fault(FaultKind.STALL, duration=0.5))
        stall_to = stall_from + round(0.5 * SPEED * 1000)
        await wait_for(lambda: all(newest > stall_to for newest in durable(service).values()))
        delivered = await quiesce(exchange, service)
        stop.set()
        await asyncio.wait_for(running, 10)
        [fault] = [r for r in exchange.fault_log() if r.fault.kind is FaultKind.FUTURE_TIME]

    [(reason, raw)] = quarantine_records(tmp_path)
    assert reason.startswith("implausible_event_time: E=20")
    assert "more than 1d from the local clock" in reason
    assert raw.startswith(fault.samples[0])
    poisoned = SYMBOLS[0]  # the fault stamps the connection's first symbol
    payload = json.loads(raw)["data"]
    assert payload["s"] == poisoned
    assert payload["E"] >= min(t for _, t in delivered) + FUTURE_TIME_LEAD_MS

    for reader in ("duckdb", "polars"):
        rows = read_rows_with(reader, tmp_path)
        recorded = {(row[0], row[1]) for row in rows}
        assert recorded == delivered  # every real event, and the future one is not among them
        assert max(event_time for _, event_time in recorded) < stall_to + 60_000
    dates = {path.parent.parent.name for path in parquet_files(tmp_path)}
    assert dates == {f"date={event_date(t).isoformat()}" for _, t in delivered}  # no 2036

    gaps = gap_records(tmp_path)
    assert max(gap["missed"] for gap in gaps) < 1000
    # The gap log holds exactly the gaps the data shows, none hidden by the future E ...
    assert {(g["symbol"], g["from_ms"], g["to_ms"], g["missed"]) for g in gaps} == data_gaps(rows)
    # ... and the stall is a stall for every symbol, the poisoned one included.
    across = {
        g["symbol"]: g["cause"]
        for g in gaps
        if g["from_ms"] <= stall_from < g["to_ms"] and g["to_ms"] - g["from_ms"] < DAY_MS
    }
    assert across == dict.fromkeys(SYMBOLS, "stall")

    [state] = read_states(tmp_path)
    assert max(state.last_event_times.values()) < stall_to + DAY_MS
    assert state.last_event_times[poisoned] == max(t for s, t in delivered if s == poisoned)
    # Sealed on the normal schedule (on stop, max_file_age being an hour): one file per
    # partition, not one per flush tick as a day end ten years ahead would make.
    partitions = [path.parent for path in parquet_files(tmp_path)]
    assert len(partitions) == len(set(partitions))


@pytest.mark.parametrize("offset_days", [-3 * 365, 40])
@pytest.mark.asyncio
async def test_a_local_clock_far_off_drops_no_event_and_the_offset_is_reported(
    tmp_path: Path, offset_days: int
) -> None:
    offset_ms = offset_days * DAY_MS
    config = SimulatorConfig(symbols=SYMBOLS, speed=SPEED, seed=29)
    async with SimulatedExchange(config) as exchange:
        service = RecorderService(
            settings_for(exchange, tmp_path), clock=OffsetClock(offset_ms), rng=random.Random(29)
        )
        stop = asyncio.Event()
        with structlog.testing.capture_logs() as logs:
            running = asyncio.create_task(service.run(stop))
            await wait_for(lambda: service.pipeline.counters.events >= 40)
            await wait_for(lambda: any("local clock is far" in line["event"] for line in logs))
            exposition, _ = service.metrics.exposition()
            delivered = await quiesce(exchange, service)
            stop.set()
            await asyncio.wait_for(running, 10)

    recorded = {(row[0], row[1]) for row in read_rows_with("duckdb", tmp_path)}
    assert recorded == delivered
    assert quarantine_records(tmp_path) == []
    [warning] = [line for line in logs if "local clock is far" in line["event"]]
    assert warning["log_level"] == "warning"
    # Local minus E: the offset, plus the latency and the simulator's speed-up (E runs 20x).
    assert abs(warning["clock_offset_s"] * 1000 - offset_ms) < DAY_MS
    [gauge] = [
        line
        for line in exposition.decode().splitlines()
        if line.startswith("recorder_clock_offset_seconds ")
    ]
    assert abs(float(gauge.split()[1]) * 1000 - offset_ms) < DAY_MS


@pytest.mark.asyncio
async def test_a_far_future_time_persisted_by_an_older_version_does_not_poison_a_restart(
    tmp_path: Path,
) -> None:
    config = SimulatorConfig(symbols=SYMBOLS, speed=SPEED, seed=31)
    async with SimulatedExchange(config) as exchange:
        now_ms = exchange.simulated_now_ms()
        poisoned, *others = SYMBOLS
        persisted = {poisoned: now_ms + FUTURE_TIME_LEAD_MS} | dict.fromkeys(
            others, now_ms - 60_000
        )
        write_state(tmp_path, "older", persisted, SYMBOLS)
        service = RecorderService(settings_for(exchange, tmp_path), rng=random.Random(31))
        stop = asyncio.Event()
        with structlog.testing.capture_logs() as logs:
            running = asyncio.create_task(service.run(stop))
            await wait_for(lambda: len(durable(service)) == len(SYMBOLS))
            delivered = await quiesce(exchange, service)
            stop.set()
            await asyncio.wait_for(running, 10)

    [ignored] = [line for line in logs if line["event"].startswith("restored event times ignored")]
    assert ignored["symbols"] == {poisoned: now_ms + FUTURE_TIME_LEAD_MS}
    [state] = [s for s in read_states(tmp_path) if s.instance_id == service.instance_id]
    assert state.last_event_times[poisoned] == max(t for s, t in delivered if s == poisoned)
    assert max(state.last_event_times.values()) < now_ms + DAY_MS
    gaps = gap_records(tmp_path)
    assert all(gap["to_ms"] < now_ms + DAY_MS for gap in gaps)
    restarts = {gap["symbol"]: gap["from_ms"] for gap in gaps if gap["cause"] == "restart"}
    # The sane restored times still close restart gaps; the poisoned one restores nothing.
    assert restarts == dict.fromkeys(others, now_ms - 60_000)
    rows = read_rows_with("pyarrow", tmp_path)
    assert {(row[0], row[1]) for row in rows} == delivered
