"""Publication beside the flush: a publisher that hangs never stops durability, the watchdog
or, beyond ``stop_timeout``, the stop, and the rows waiting for it spill instead of growing
memory past ``buffer_budget``."""

import asyncio
import dataclasses
import random
import shutil
import socket
import threading
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from service_support import SYMBOLS, durable_newest_event_times, settings_for, wait_for
from writer_support import WriterFactory

from recorder.service import RecorderService
from recorder.simulate import Fault, FaultKind, SimulatedExchange, SimulatorConfig
from recorder.storage.seal_jobs import SealJob, SealResult
from recorder.storage.writer import DatasetWriter

pytestmark = pytest.mark.integration


class HangingDisk:
    """Publication that blocks until released, like a file system that stopped answering."""

    def __init__(self, writer: DatasetWriter) -> None:
        self._publish = writer.publish
        self.entered = threading.Event()
        self.released = threading.Event()
        self.returned = threading.Event()

    def publish(self, job: SealJob) -> SealResult:
        self.entered.set()
        self.released.wait(30)
        try:
            return self._publish(job)
        finally:
            self.returned.set()


async def run_with_a_hung_disk(
    service: RecorderService, monkeypatch: pytest.MonkeyPatch
) -> tuple[HangingDisk, asyncio.Event, asyncio.Task[None]]:
    """Start ``service`` with publication hanging; return once the first publication hangs.

    Returns:
        The disk (release it with ``disk.released.set()``), the stop event and the run task.
    """
    disk = HangingDisk(service.writer)
    monkeypatch.setattr(service.writer, "publish", disk.publish)
    stop = asyncio.Event()
    running = asyncio.create_task(service.run(stop))
    # The first rotation hands partitions over; the first publication hangs.
    await wait_for(disk.entered.is_set)
    return disk, stop, running


def recorded(root: Path) -> set[tuple[str, int]]:
    table = ds.dataset(root, partitioning="hive", format="parquet").to_table()
    return set(
        zip(
            table.column("symbol").to_pylist(),
            table.column("event_time").cast(pa.int64()).to_pylist(),
            strict=True,
        )
    )


@pytest.mark.asyncio
async def test_a_hung_publication_stops_neither_the_flush_nor_the_watchdog_nor_a_crash_recovery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_writer: WriterFactory
) -> None:
    root = tmp_path / "data"
    notify_path = tmp_path / "notify"
    notifications = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notifications.bind(str(notify_path))
    notifications.setblocking(False)
    config = SimulatorConfig(symbols=SYMBOLS, speed=20, seed=3)
    async with SimulatedExchange(config) as exchange:
        settings = settings_for(exchange, root, {"max_file_age": "500ms"})
        service = RecorderService(
            settings,
            rng=random.Random(3),
            environ={"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "400000"},
        )
        disk, stop, running = await run_with_a_hung_disk(service, monkeypatch)
        while True:  # forget what was sent before the hang
            try:
                notifications.recv(4096)
            except BlockingIOError:
                break
        durable_at_hang = durable_newest_event_times(root, service.instance_id)
        await wait_for(
            lambda: all(
                newest > durable_at_hang.get(symbol, 0) + 10_000
                for symbol, newest in durable_newest_event_times(root, service.instance_id).items()
            )
        )
        assert service.flush_health.ok
        pings = []
        while True:
            try:
                pings.append(notifications.recv(4096))
            except BlockingIOError:
                break
        assert b"WATCHDOG=1" in pings  # fed while the publication hangs

        # A kill -9 now (the page cache survives it): freeze the feed (a fault at 0 s is in
        # force at once), wait for the flushes that log what was delivered, and copy the root
        # while the publisher still hangs.
        for connection in exchange.connections():
            exchange.inject(
                Fault(FaultKind.STALL, duration=60, connection_id=connection.connection_id)
            )
        delivered = {(e.symbol, e.event_time) for e in exchange.events() if e.delivered_to}
        newest_delivered: dict[str, int] = {}
        for symbol, event_time in delivered:
            newest_delivered[symbol] = max(event_time, newest_delivered.get(symbol, 0))
        await wait_for(
            lambda: all(
                durable_newest_event_times(root, service.instance_id).get(symbol, 0) >= newest
                for symbol, newest in newest_delivered.items()
            )
        )
        crashed = shutil.copytree(root, tmp_path / "crashed", symlinks=True)
        assert not disk.released.is_set()

        disk.released.set()
        stop.set()
        await asyncio.wait_for(running, 20)
    notifications.close()

    assert recorded(root) == delivered
    recovering = make_writer(crashed, instance_id="recovery")
    report = recovering.open()
    recovering.close()
    assert report.rows_published > 0
    assert recorded(crashed) == delivered  # nothing delivered before the crash was lost


@pytest.mark.asyncio
async def test_stop_timeout_bounds_a_stop_whose_publication_hangs_and_the_log_keeps_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_writer: WriterFactory
) -> None:
    root = tmp_path / "data"
    config = SimulatorConfig(symbols=SYMBOLS, speed=20, seed=5)
    async with SimulatedExchange(config) as exchange:
        settings = settings_for(exchange, root, {"max_file_age": "500ms"})
        settings = dataclasses.replace(
            settings, service=dataclasses.replace(settings.service, stop_timeout=1.0)
        )
        service = RecorderService(settings, rng=random.Random(5))
        disk, stop, running = await run_with_a_hung_disk(service, monkeypatch)
        for connection in exchange.connections():
            exchange.inject(
                Fault(FaultKind.STALL, duration=60, connection_id=connection.connection_id)
            )

        def delivered() -> Counter[tuple[str, int]]:
            return Counter((e.symbol, e.event_time) for e in exchange.events() if e.delivered_to)

        # Everything the stalled feed delivered has reached the pipeline.
        await wait_for(lambda: service.pipeline.counters.events == delivered().total())
        stop.set()
        # The publication hangs for 30 s unless released: returning first is the bound.
        await asyncio.wait_for(running, 20)
        assert not disk.released.is_set()
        assert service.abandoned
        sent = delivered()
    # The process exits here: the root as it leaves it, the hung thread still inside.
    exited = shutil.copytree(root, tmp_path / "exited", symlinks=True)
    disk.released.set()
    await asyncio.to_thread(disk.returned.wait, 30)

    assert not list(exited.rglob("*.parquet"))  # nothing was published before the stop
    next_start = make_writer(exited, instance_id=service.instance_id)
    report = next_start.open()
    next_start.close()
    # As many rows as were delivered, and every one of them: each once, none lost.
    assert report.rows_published == sent.total()
    assert recorded(exited) == set(sent)


@pytest.mark.asyncio
async def test_rows_waiting_for_a_hung_publication_spill_and_memory_stays_within_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "data"
    budget = 8 * 1024  # about 50 rows
    config = SimulatorConfig(symbols=SYMBOLS, speed=50, seed=9)
    async with SimulatedExchange(config) as exchange:
        settings = settings_for(
            exchange, root, {"max_file_age": "500ms", "buffer_budget": f"{budget}B"}
        )
        service = RecorderService(settings, rng=random.Random(9))
        disk, stop, running = await run_with_a_hung_disk(service, monkeypatch)
        held: list[int] = []

        def spilled_enough() -> bool:
            held.append(service.writer.buffered_bytes)
            return service.writer.spilled_bytes > budget

        await wait_for(spilled_enough)
        spill_dir = root / "_wal" / service.instance_id / "spill"
        assert list(spill_dir.glob("*.arrow"))
        # The durable rows in memory stay within the seal and publish shares of the budget,
        # give or take the one partition's rows handed over when nothing else was.
        assert max(held) <= budget
        assert service.flush_health.ok
        for connection in exchange.connections():
            exchange.inject(
                Fault(FaultKind.STALL, duration=60, connection_id=connection.connection_id)
            )
        delivered = {(e.symbol, e.event_time) for e in exchange.events() if e.delivered_to}
        await wait_for(lambda: service.pipeline.counters.events == len(delivered))

        disk.released.set()
        stop.set()
        await asyncio.wait_for(running, 20)

    assert recorded(root) == delivered
    assert not spill_dir.exists()
