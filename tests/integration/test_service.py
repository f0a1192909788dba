"""The service in-process against the simulated exchange, over real loopback sockets."""

import asyncio
import random
from collections.abc import Callable
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from recorder.service import RecorderService
from recorder.settings import Settings, parse_settings
from recorder.simulate import Fault, FaultKind, SimulatedExchange, SimulatorConfig

pytestmark = pytest.mark.integration

SYMBOLS = ("BTCUSDT", "ETHUSDT", "币安人生USDT")


def settings_for(exchange: SimulatedExchange, root: Path, **source: object) -> Settings:
    return parse_settings(
        {
            "source": {
                "url": exchange.base_url,
                "symbols": list(SYMBOLS),
                "backoff_initial": "50ms",
                "backoff_max": "200ms",
                **source,
            },
            "storage": {"root": str(root), "flush_interval": "100ms"},
            "metrics": {"address": ""},
        }
    )


async def wait_for(condition: Callable[[], bool]) -> None:
    """Poll a condition of the running service; ten seconds at most."""
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110 - the state polled has no event to await
            await asyncio.sleep(0.02)


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
        await asyncio.sleep(0.3)
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
