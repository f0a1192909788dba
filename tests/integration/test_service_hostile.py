"""The service in-process under hostile frames (issue 9): the quarantine's daily cap holds."""

import asyncio
import json
import random
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from service_support import SYMBOLS, settings_for, wait_for

from recorder.service import RecorderService
from recorder.settings import Settings
from recorder.settings.loader import load_settings
from recorder.simulate import Fault, FaultKind, SimulatedExchange, SimulatorConfig

pytestmark = pytest.mark.integration

CAP = 16 * 1024
FRAMES = 12


def test_the_daily_cap_is_a_storage_setting_with_its_environment_variable() -> None:
    environ = {"RECORDER_STORAGE__QUARANTINE_MAX_DAY_BYTES": "16KiB"}
    assert load_settings(None, environ, {}).storage.quarantine_max_day_bytes == CAP
    assert Settings().storage.quarantine_max_day_bytes == 64 * 1024 * 1024


@pytest.mark.asyncio
async def test_a_flood_of_hostile_frames_stops_at_the_daily_cap_and_recording_goes_on(
    tmp_path: Path,
) -> None:
    config = SimulatorConfig(symbols=SYMBOLS, speed=20, seed=9)
    async with SimulatedExchange(config) as exchange:
        settings = settings_for(exchange, tmp_path, {"quarantine_max_day_bytes": "16KiB"})
        service = RecorderService(settings, rng=random.Random(9))
        stop = asyncio.Event()
        running = asyncio.create_task(service.run(stop))
        await wait_for(lambda: service.pipeline.counters.events >= 10)
        # Each nested frame is ~100 KB; its record a 4 KiB prefix, its size and hash.
        exchange.inject(Fault(FaultKind.NESTED, count=FRAMES))
        await wait_for(lambda: service.pipeline.counters.rejections == FRAMES)
        events_then = service.pipeline.counters.events
        await wait_for(lambda: service.pipeline.counters.events >= events_then + 3 * len(SYMBOLS))
        assert not running.done()
        stop.set()
        await asyncio.wait_for(running, 10)

    files = list((tmp_path / "_quarantine").glob("*.jsonl"))
    assert len(files) == 1
    assert files[0].stat().st_size <= CAP
    records = [json.loads(line) for line in files[0].read_text(encoding="utf-8").splitlines()]
    assert 0 < len(records) < FRAMES
    assert {record["reason_code"] for record in records} == {"too_deep"}
    assert all(record["raw_bytes"] > 100_000 for record in records)
    dropped, dropped_bytes = service.quarantine.dropped
    assert dropped == FRAMES - len(records)
    registry = service.metrics.registry
    assert registry.get_sample_value("recorder_quarantine_dropped_total") == dropped
    assert registry.get_sample_value("recorder_quarantine_dropped_bytes_total") == dropped_bytes
    # Every rejection is still counted by reason, dropped or not.
    quarantined = {"reason": "too_deep"}
    assert registry.get_sample_value("recorder_frames_quarantined_total", quarantined) == FRAMES
    table = ds.dataset(tmp_path, partitioning="hive", format="parquet").to_table()
    assert set(table.column("symbol").to_pylist()) == set(SYMBOLS)
