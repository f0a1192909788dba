"""Helpers for the in-process service tests: settings, polling, what the log holds now."""

import asyncio
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from recorder.settings import Settings, parse_settings
from recorder.simulate import SimulatedExchange
from recorder.storage.paths import instance_wal_dir
from recorder.storage.wal import RecordType, decode_batch, read_segment

SYMBOLS = ("BTCUSDT", "ETHUSDT", "币安人生USDT")


def settings_for(
    exchange: SimulatedExchange,
    root: Path,
    storage: dict[str, object] | None = None,
    **source: object,
) -> Settings:
    """Settings for a service recording ``exchange`` into ``root``, fast-paced for tests."""
    return parse_settings(
        {
            "source": {
                "url": exchange.base_url,
                "symbols": list(SYMBOLS),
                "backoff_initial": "50ms",
                "backoff_max": "200ms",
                **source,
            },
            "storage": {"root": str(root), "flush_interval": "100ms", **(storage or {})},
            "metrics": {"address": ""},
        }
    )


async def wait_for(condition: Callable[[], bool]) -> None:
    """Poll a condition of the running service; ten seconds at most."""
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110 - the state polled has no event to await
            await asyncio.sleep(0.02)


def durable_newest_event_times(root: Path, instance_id: str) -> dict[str, int]:
    """The newest ``E`` per symbol in the instance's write-ahead log: what survives a crash now."""
    newest: dict[str, int] = {}
    for segment in sorted(instance_wal_dir(root, instance_id).glob("*.wal")):
        for record in read_segment(segment).records:
            if record.type != RecordType.DATA:
                continue
            batch = decode_batch(record.payload)
            times = batch.column("event_time").cast(pa.int64()).to_pylist()
            for symbol, event_time in zip(batch.column("symbol").to_pylist(), times, strict=True):
                newest[symbol] = max(newest.get(symbol, event_time), event_time)
    return newest
