"""The service in-process against the simulated exchange, over real loopback sockets."""

import asyncio
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from service_support import SYMBOLS, durable_newest_event_times, settings_for, wait_for

from recorder.gaps.scan import read_gaps
from recorder.gaps.state import read_states
from recorder.service import RecorderService
from recorder.settings import parse_settings
from recorder.simulate import Fault, FaultKind, SimulatedExchange, SimulatorConfig

pytestmark = pytest.mark.integration


@pytest.mark.asyncio
async def test_service_records_until_stopped_then_seals_everything(tmp_path: Path) -> None:
    config = SimulatorConfig(symbols=SYMBOLS, speed=20, seed=11)
    async with SimulatedExchange(config) as exchange:
        service = RecorderService(settings_for(exchange, tmp_path), rng=random.Random(1))
        stop = asyncio.Event()
        running = asyncio.create_task(service.run(stop))
        await wait_for(lambda: service.pipeline.counters.events >= 60)
        assert service.health()[0]
        for connection in exchange.connections():
            exchange.inject(
                Fault(FaultKind.STALL, duration=60, connection_id=connection.connection_id)
            )
        # In force at once: the delivered set no longer moves; stop once all of it is read.
        in_flight = sum(1 for e in exchange.events() if e.delivered_to)
        await wait_for(lambda: service.pipeline.counters.events >= in_flight)
        stop.set()
        await asyncio.wait_for(running, 10)
        delivered = {(e.symbol, e.event_time) for e in exchange.events() if e.delivered_to}

    table = ds.dataset(tmp_path, partitioning="hive", format="parquet").to_table()
    recorded = list(
        zip(
            table.column("symbol").to_pylist(),
            [int(t.timestamp() * 1000 + 0.5) for t in table.column("event_time").to_pylist()],
            strict=True,
        )
    )
    assert len(recorded) == len(set(recorded))
    assert set(recorded) == delivered
    assert service.writer.buffered_rows == 0


@pytest.mark.asyncio
async def test_health_turns_red_while_the_stream_stalls_and_green_after_replacement(
    tmp_path: Path,
) -> None:
    config = SimulatorConfig(symbols=SYMBOLS, speed=20)
    async with SimulatedExchange(config) as exchange:
        settings = settings_for(exchange, tmp_path, stall_timeout="1s")
        service = RecorderService(settings, rng=random.Random(2))
        stop = asyncio.Event()
        running = asyncio.create_task(service.run(stop))
        assert not service.health()[0]  # nothing delivered yet
        await wait_for(lambda: service.health()[0])
        exchange.inject(Fault(FaultKind.STALL, duration=30))
        await wait_for(lambda: not service.health()[0])
        _, details = service.health()
        assert "delivered no data" in str(details["reasons"])
        await wait_for(lambda: service.health()[0])  # the watchdog replaced the connection
        assert len(exchange.connections()) >= 1
        stop.set()
        await asyncio.wait_for(running, 10)
    assert service.pipeline.counters.gaps >= 1


@pytest.mark.asyncio
async def test_more_symbols_than_a_connection_carries_open_more_connections(
    tmp_path: Path,
) -> None:
    symbols = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT")
    async with SimulatedExchange(SimulatorConfig(symbols=symbols, speed=20)) as exchange:
        settings = parse_settings(
            {
                "source": {
                    "url": exchange.base_url,
                    "symbols": list(symbols),
                    "max_streams_per_connection": 2,
                },
                "storage": {"root": str(tmp_path), "flush_interval": "100ms"},
                "metrics": {"address": ""},
            }
        )
        service = RecorderService(settings)
        stop = asyncio.Event()
        running = asyncio.create_task(service.run(stop))
        await wait_for(lambda: service.health()[0])
        streams = sorted(len(c.streams) for c in exchange.connections())
        assert streams == [1, 2, 2]
        carried = {s for c in exchange.connections() for s in c.streams}
        assert carried == {s.lower() + "@miniTicker" for s in symbols}
        stop.set()
        await asyncio.wait_for(running, 10)
    assert service.pipeline.counters.events > 0


@pytest.mark.asyncio
async def test_events_closing_a_gap_never_become_durable_before_the_gap_record(
    tmp_path: Path,
) -> None:
    config = SimulatorConfig(symbols=SYMBOLS, speed=20, seed=5)
    async with SimulatedExchange(config) as exchange:
        service = RecorderService(settings_for(exchange, tmp_path), rng=random.Random(5))
        stop = asyncio.Event()
        running = asyncio.create_task(service.run(stop))
        await wait_for(
            lambda: len(durable_newest_event_times(tmp_path, service.instance_id)) == len(SYMBOLS)
        )
        # The gap log's directory replaced by a file: every gap append fails, the WAL works.
        gaps_dir = tmp_path / "_gaps"
        logged_before = read_gaps(tmp_path)
        if gaps_dir.exists():
            gaps_dir.rename(tmp_path / "_gaps.aside")
        gaps_dir.write_text("not a directory")
        gaps_before = service.pipeline.counters.gaps
        exchange.inject(Fault(FaultKind.DROP))
        await wait_for(
            lambda: (
                service.pipeline.counters.gaps > gaps_before
                and service.flush_health.consecutive_failures >= 3
            )
        )
        # A crash now keeps only what is durable: the log and the state end before the gaps.
        durable = durable_newest_event_times(tmp_path, service.instance_id)
        [state] = read_states(tmp_path)
        assert service.buffered_rows > 0
        gaps_dir.unlink()
        if (tmp_path / "_gaps.aside").exists():
            (tmp_path / "_gaps.aside").rename(gaps_dir)
        await wait_for(lambda: service.flush_health.ok)
        stop.set()
        await asyncio.wait_for(running, 10)
        delivered = {(e.symbol, e.event_time) for e in exchange.events() if e.delivered_to}

    outage_gaps = [g for g in read_gaps(tmp_path) if g not in logged_before]
    assert outage_gaps
    for gap in outage_gaps:
        assert durable[gap.symbol] < gap.to_ms, gap
        assert state.last_event_times[gap.symbol] < gap.to_ms, gap
    table = ds.dataset(tmp_path, partitioning="hive", format="parquet").to_table()
    recorded = set(
        zip(
            table.column("symbol").to_pylist(),
            table.column("event_time").cast(pa.int64()).to_pylist(),
            strict=True,
        )
    )
    assert recorded == delivered  # nothing was lost while the gap log was refused
