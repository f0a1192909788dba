"""Helpers for the connection-liveness tests: a server that never finishes a handshake, the
service run as a context, and what the simulator's ground truth says about connections."""

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from pathlib import Path

from support import read_rows_with

from recorder.service import RecorderService
from recorder.settings import Settings
from recorder.simulate import SimulatedExchange


class HangingProxy:
    """A TCP server on loopback whose first ``hang`` connections are accepted and never answered.

    Later connections are piped to ``target_port``, so a client that gives up on a hanging
    handshake and tries again reaches the exchange behind.

    Args:
        target_port: the port of the server behind.
        hang: how many connections to accept and leave hanging.
    """

    def __init__(self, target_port: int, hang: int = 1) -> None:
        self._target_port = target_port
        self._hang = hang
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def port(self) -> int:
        """The port it listens on."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def __aenter__(self) -> "HangingProxy":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.append(writer)
        if self.accepted <= self._hang:
            # Read the upgrade request and never answer it.
            with contextlib.suppress(ConnectionError):
                while await reader.read(65536):
                    pass
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        self._writers.append(up_writer)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(_pipe(source, sink))
            self._tasks.add(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def running(settings: Settings, seed: int) -> AsyncIterator[RecorderService]:
    """Run the service until the block ends, then stop it cleanly (flush and seal)."""
    service = RecorderService(settings, rng=random.Random(seed))
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        yield service
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def open_ids(exchange: SimulatedExchange) -> list[str]:
    """The ids of the exchange's open connections, oldest first."""
    return [connection.connection_id for connection in exchange.connections()]


def delivered_events(exchange: SimulatedExchange) -> set[tuple[str, int]]:
    """``(symbol, E)`` of every event the exchange wrote to at least one connection."""
    return {(e.symbol, e.event_time) for e in exchange.events() if e.delivered_to}


def delivered_to_both(exchange: SimulatedExchange, first: str, second: str) -> int:
    """How many events the exchange wrote to both connections: a handover's overlap."""
    return sum(1 for e in exchange.events() if first in e.delivered_to and second in e.delivered_to)


def recorded_events(root: Path, reader: str = "duckdb") -> list[tuple[str, int]]:
    """``(symbol, E)`` of every row of the dataset, read as an analyst would."""
    return [(row[0], row[1]) for row in read_rows_with(reader, root)]
