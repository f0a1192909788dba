"""Shared fixtures: the recorder and the simulator as subprocesses, stopped after a test."""

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import RecorderProcess, SimulatorProcess


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
