"""Shared fixtures: recorder and simulator processes, writers on a manual clock, an HTTP client."""

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from hypothesis import settings
from support import RecorderProcess, SimulatorProcess
from writer_support import GRACE_MS, MAX_AGE, WriterFactory

from recorder.clock import ManualClock
from recorder.errors import StorageError
from recorder.storage.writer import DatasetWriter

# A shared, slower CI machine must not turn a slow example into a failure: no deadline.
settings.register_profile("recorder", deadline=None)
settings.load_profile("recorder")


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A real aiohttp client session, for talking to a simulated exchange over loopback."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def start_simulator(tmp_path: Path) -> Iterator[Callable[..., SimulatorProcess]]:
    """Start ``recorder simulate`` with extra CLI arguments; stopped after the test."""
    started: list[SimulatorProcess] = []

    def start(*args: str) -> SimulatorProcess:
        simulator = SimulatorProcess(tmp_path / f"simulator-{len(started)}.log", *args)
        started.append(simulator)
        return simulator

    yield start
    for simulator in started:
        simulator.stop()


@pytest.fixture
def start_recorder(tmp_path: Path) -> Iterator[Callable[..., RecorderProcess]]:
    """Start ``recorder run``; killed after the test if still running, logs shown on failure."""
    started: list[RecorderProcess] = []

    def start(**kwargs: Any) -> RecorderProcess:
        recorder = RecorderProcess(tmp_path, **kwargs)
        started.append(recorder)
        return recorder

    yield start
    for recorder in started:
        if recorder.alive():
            recorder.kill()
        recorder.close()
        sys.stderr.write(f"--- {recorder.log_path.name} (tail) ---\n{recorder.log_tail()}\n")


@pytest.fixture
def clock() -> ManualClock:
    """The writers' clock, at monotonic 100 s; tests advance it."""
    return ManualClock(monotonic=100.0)


@pytest.fixture
def make_writer(clock: ManualClock) -> Iterator[WriterFactory]:
    """Make writers with the test defaults (instance ``alpha``); each is closed afterwards."""
    created: list[DatasetWriter] = []

    def factory(root: Path, **overrides: object) -> DatasetWriter:
        settings: dict[str, object] = {
            "instance_id": "alpha",
            "max_file_age": MAX_AGE,
            "max_file_bytes": 1 << 30,
            "day_grace_ms": GRACE_MS,
            "clock": clock,
        }
        settings.update(overrides)
        writer = DatasetWriter(root, **settings)  # type: ignore[arg-type]
        created.append(writer)
        return writer

    yield factory
    for writer in created:
        with contextlib.suppress(StorageError):
            writer.close()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 8 MiB file system (tmpfs) to fill up; skipped where mounting is not allowed."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
