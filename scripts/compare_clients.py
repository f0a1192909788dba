"""Compare the recorder with bare websocket clients on one pre-framed feed (issue 13's baseline).

A small aiohttp websocket server in this process serves ``/market/stream?streams=...``: to the
first connection of a run it sends ``--frames`` pre-built combined miniTicker frames
(``{"stream":"btcusdt@miniTicker","data":{...}}``, the simulator's ten default contracts, its
decimal strings, ``E`` increasing), as fast as the client reads (each ``send_str`` waits
while the socket's buffer is full), then closes. The frames are built once, kept as ``str``.
A later connection of the same run (the recorder reconnects) is held open, silent.

Each client is a subprocess:

1. ``bare_client.py``: a bare ``aiohttp`` client counting text frames;
2. ``bare_client.py --json``: the same, with ``json.loads`` of every frame;
3. ``floor_client.py``: the floor of a durable recorder, aiohttp with the recorder's typed
   parse, write-ahead log and Parquet and nothing else (no check, no de-duplication, no gap
   detection); its clock stops when it has written its files;
4. ``recorder``: ``recorder run`` end to end, with the defaults: received, durable in the
   write-ahead log, published as sealed Parquet at the stop;
5. ``peer_cryptofeed.py`` and ``peer_unicorn.py``: cryptofeed and
   unicorn-binance-websocket-api, each through its own connection handling and parsing (their
   docstrings say what differs from a run against Binance), counting updates. Each runs when
   its package imports (the ``bench`` extra installs both) and is a "not installed" line of
   the table otherwise (``feed_clients.PEERS``, beside the other clients' commands). For
   cryptofeed's start-up the server also answers ``GET /fapi/v1/exchangeInfo`` with the
   simulator's listing of the same contracts.

This process (the server) and every client are pinned to the same single CPU (``--cpu``,
default 1, with :func:`os.sched_setaffinity`, inherited by the children), so that the run is
CPU-bound and every client pays for the server's sending alike.

The clock of a run starts when the server sends the first frame. For the bare clients it stops
when the close handshake completes (the client has read every frame before the close frame); for
the recorder when its process has exited after SIGTERM, sent as soon as the close handshake
completes: its final flush and seal are inside the clock. The peers' libraries queue frames past
the close (cryptofeed's websockets options leave the receive queue unbounded; unicorn's stream
thread fills a buffer another thread reads), so their clock stops when the peer prints its
count, once it has handled every frame, or at the close handshake if that is later; the stop of
the library and the exit are outside it. The floor's clock stops the same way: it prints its
count once its Parquet files are written and fsynced. SIGTERM goes to a peer after its count.
CPU is the client process's from the moment the server accepts its connection
(``/proc/<pid>/stat``, 10 ms resolution) to its exit (:func:`os.wait4`); start-up and imports
are outside. Peak RSS is ``VmHWM``, read every 10 ms until the exit. The rounds interleave the
clients (A B C A B C ...); the first round is a warm-up and discarded; the table gives medians
with min-max.

Usage::

    .venv/bin/python scripts/compare_clients.py [--frames N] [--runs N] [--cpu N]
        [--json FILE] [--tmp-dir DIR] [--keep]
"""

import asyncio
import dataclasses
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from aiohttp import web
from benchmark import (  # scripts/ is on sys.path when a script runs
    MIB,
    SEED,
    child_environment,
    combined_frame,
    count_dataset,
    describe_machine,
    markdown,
    number,
    peak_rss,
    sample_process,
)
from feed_clients import CLIENTS, MISSING_PEERS, SYMBOLS, Client, recorder_command
from scenario_cli import Option, in_scratch, options_parser, progress, unpack_commit, write_json

from recorder.simulate.config import SimulatorConfig
from recorder.simulate.exchange_info import exchange_info
from recorder.simulate.listings import ContractBook
from recorder.simulate.market import MarketGenerator

CLOSE_TIMEOUT = 120.0
"""Seconds the server waits for the client's answer to its close frame."""
RUN_TIMEOUT = 600.0
STOP_TIMEOUT = 60.0
SAMPLE_SECONDS = 0.01

OPTIONS: list[Option] = [
    ("--frames", int, 200_000, "pre-framed frames sent per run"),
    ("--runs", int, 5, "measured rounds, after one warm-up round"),
    ("--cpu", int, 1, "the CPU the server and every client are pinned to"),
    ("--only", str, "", "run only the clients whose label contains this text"),
    ("--py-spy", Path, None, "profile every client's run with py-spy into this directory"),
    ("--before", str, "", "also run the recorder of this commit (git archive), as before"),
]


# ---------------------------------------------------------------------------------------------
# The feed


def market(start_ms: int) -> MarketGenerator:
    """The simulator's market of the ten default contracts, a tick every 100 ms of ``E``."""
    config = SimulatorConfig(
        symbols=SYMBOLS, seed=SEED, interval_ms=100, jitter_ms=50, activity=1.0
    )
    return MarketGenerator(config, start_ms)


def build_frames(count: int, start_ms: int) -> list[str]:
    """Build ``count`` combined miniTicker frames of the ten default contracts, ``E`` rising.

    The simulator's market generator gives the payloads (every symbol changes every tick, a
    tick every 100 ms of ``E`` from ``start_ms``), so the decimal strings are the realistic ones.
    """
    generator = market(start_ms)
    frames: list[str] = []
    while len(frames) < count:
        frames.extend(
            combined_frame(event.symbol, event.payload_json) for event in generator.step().events
        )
    return frames[:count]


def listing(start_ms: int) -> dict[str, object]:
    """The body of ``GET /fapi/v1/exchangeInfo`` that lists the feed's contracts, ``TRADING``."""
    contracts = ContractBook(market(start_ms), start_ms).contracts()
    return exchange_info(contracts, start_ms, 2_400)


@dataclass(slots=True)
class RunState:
    """What the server saw of one run's client.

    Attributes:
        pid: the client process.
        cpu_at_connect_s: its CPU seconds when the server accepted its first connection.
        started: :func:`time.perf_counter` just before the first frame was sent.
        closed: when the close handshake completed.
        done: set at ``closed``.
    """

    pid: int
    cpu_at_connect_s: float = 0.0
    started: float | None = None
    closed: float | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Feed:
    """The pre-framed feed server: the frames, the listing, and the run being served."""

    def __init__(self, frames: Sequence[str], listing: dict[str, object] | None = None) -> None:
        self.frames = frames
        self.listing = listing or {}
        self.current: RunState | None = None

    async def exchange_info(self, _request: web.Request) -> web.Response:
        """Answer ``GET /fapi/v1/exchangeInfo`` (a peer's start-up, outside the clock)."""
        return web.json_response(self.listing)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """Send every frame to the run's first connection, then close; hold any later one."""
        socket = web.WebSocketResponse(compress=False, timeout=CLOSE_TIMEOUT)
        await socket.prepare(request)
        state = self.current
        if state is None or state.started is not None:
            async for _ in socket:
                pass
            return socket
        state.cpu_at_connect_s = sample_process(state.pid).cpu_s
        state.started = time.perf_counter()
        for frame in self.frames:
            await socket.send_str(frame)
        await socket.close()
        state.closed = time.perf_counter()
        state.done.set()
        return socket


# ---------------------------------------------------------------------------------------------
# Runs


@dataclass(frozen=True, slots=True)
class RunResult:
    """One run of one client.

    Attributes:
        client: the client's label.
        round: the round (0: the warm-up).
        wall_s: the clock of the run (see the module's docstring).
        cpu_s: the client's CPU from the accepted connection to its exit.
        peak_rss_bytes: its ``VmHWM``, last read before the exit.
        received: frames the bare client counted, or rows in the recorder's dataset.
        duplicates: rows beyond the first of each (symbol, E); 0 for the bare clients.
        exit_code: the client's exit code after SIGTERM.
    """

    client: str
    round: int
    wall_s: float
    cpu_s: float
    peak_rss_bytes: int
    received: int
    duplicates: int
    exit_code: int


async def reap(pid: int) -> tuple[float, int, float, int]:
    """SIGTERM ``pid`` and wait; return the exit time, exit code, CPU seconds and peak RSS."""
    loop = asyncio.get_running_loop()
    peak = peak_rss(pid) or 0

    def wait() -> tuple[float, int, float]:
        _, status, usage = os.wait4(pid, 0)
        return (
            time.perf_counter(),
            os.waitstatus_to_exitcode(status),
            usage.ru_utime + usage.ru_stime,
        )

    os.kill(pid, signal.SIGTERM)
    waiting = loop.run_in_executor(None, wait)
    while not waiting.done():
        peak = max(peak, peak_rss(pid) or 0)
        await asyncio.wait({waiting}, timeout=SAMPLE_SECONDS)
    exited, code, cpu = await waiting
    return exited, code, cpu, peak


def start_client(client: Client, base_url: str, directory: Path) -> "subprocess.Popen[bytes]":
    """Start ``client`` with its log in ``directory``; a bare client's or peer's stdout is piped."""
    with (directory / "client.log").open("wb") as log:
        return subprocess.Popen(
            client.command(base_url, directory),
            stdout=log if client.ends_at_exit else subprocess.PIPE,
            stderr=log,
            env=child_environment(),
            cwd=client.cwd,
        )


def start_profiler(pid: int, output: Path) -> "subprocess.Popen[bytes]":
    """Sample ``pid`` with py-spy until it exits; the raw stacks go to ``output``."""
    installed = Path(sys.executable).with_name("py-spy")  # a venv's scripts are beside python
    spy = str(installed) if installed.exists() else "py-spy"
    # --gil: only samples holding the GIL, so that a thread waiting for it counts for nothing.
    command = [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "250", "--gil"]
    return subprocess.Popen(
        [*command, "--output", str(output)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def read_report(stdout: IO[bytes]) -> tuple[float, bytes]:
    """Read a peer's count line; return when it came (:func:`time.perf_counter`) and the line."""
    line = stdout.readline()
    return time.perf_counter(), line


async def run_client(
    feed: Feed,
    base_url: str,
    client: Client,
    round_number: int,
    scratch: Path,
    *,
    profile_dir: Path | None = None,
) -> RunResult:
    """Run ``client`` once against the feed and measure it (and profile it, if asked)."""
    slug = re.sub(r"[^a-z0-9]+", "-", client.name.lower()).strip("-")
    directory = scratch / f"round{round_number}-{slug}"
    directory.mkdir()
    process = start_client(client, base_url, directory)
    profiler = None
    if profile_dir is not None:
        profiler = start_profiler(process.pid, profile_dir / f"{slug}-round{round_number}.txt")
    state = RunState(pid=process.pid)
    feed.current = state
    report = None
    if client.ends_at_report and process.stdout is not None:
        report = asyncio.create_task(asyncio.to_thread(read_report, process.stdout))
    try:
        await asyncio.wait_for(state.done.wait(), RUN_TIMEOUT)
        reported, output = await asyncio.wait_for(report, RUN_TIMEOUT) if report else (0.0, b"")
    except TimeoutError:
        process.kill()
        raise
    exited, code, cpu_total, peak = await reap(process.pid)
    process.returncode = code
    feed.current = None
    if state.started is None or state.closed is None:
        raise RuntimeError(f"{client.name}: the feed did not run")
    if client.ends_at_exit:
        wall_s = exited - state.started
        counts = count_dataset(directory / "data", (0, 2**62))
        received, duplicates = counts.rows, counts.duplicate_rows
    elif report is not None:
        wall_s = max(state.closed, reported) - state.started
        received = int(json.loads(output or b'{"frames": 0}')["frames"])
        duplicates = 0
    else:
        wall_s = state.closed - state.started
        output = process.stdout.read() if process.stdout is not None else b""
        received = int(json.loads(output or b'{"frames": 0}')["frames"])
        duplicates = 0
    if process.stdout is not None:
        process.stdout.close()
    if profiler is not None:
        await asyncio.to_thread(profiler.wait, STOP_TIMEOUT)
    return RunResult(
        client=client.name,
        round=round_number,
        wall_s=wall_s,
        cpu_s=cpu_total - state.cpu_at_connect_s,
        peak_rss_bytes=peak,
        received=received,
        duplicates=duplicates,
        exit_code=code,
    )


async def compare(
    frames: Sequence[str],
    runs: int,
    scratch: Path,
    clients: Sequence[Client] = CLIENTS,
    profile_dir: Path | None = None,
    *,
    listing: dict[str, object] | None = None,
) -> list[RunResult]:
    """Serve the feed on loopback and run every client ``runs + 1`` times, interleaved."""
    feed = Feed(frames, listing)
    app = web.Application()
    app.router.add_get("/market/stream", feed.handle)
    app.router.add_get("/fapi/v1/exchangeInfo", feed.exchange_info)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    base_url = f"ws://127.0.0.1:{port}/market"
    results: list[RunResult] = []
    try:
        for round_number in range(runs + 1):
            for client in clients:
                result = await run_client(
                    feed, base_url, client, round_number, scratch, profile_dir=profile_dir
                )
                progress(
                    f"round {round_number} {client.name}: {number(len(frames) / result.wall_s)} "
                    f"frames/s, {number(result.cpu_s / len(frames) * 1e6)} µs CPU/frame, "
                    f"{number(result.peak_rss_bytes / MIB)} MiB, {result.received:,} received"
                )
                results.append(result)
    finally:
        await runner.cleanup()
    return results


# ---------------------------------------------------------------------------------------------
# Report


def spread(values: Sequence[float]) -> str:
    """Write the median with the min-max: ``43,200 (41,000-44,100)``."""
    return f"{number(statistics.median(values))} ({number(min(values))}-{number(max(values))})"


TABLE_HEADER = (
    "client",
    "frames/s",
    "CPU µs per frame",
    "peak RSS (MiB)",
    "every frame received / recorded once, clean exit",
)


def summary_table(
    results: Sequence[RunResult], frames: int, clients: Sequence[Client] = CLIENTS
) -> list[list[str]]:
    """One row per client over the measured rounds (round 0, the warm-up, left out)."""
    rows = []
    for client in clients:
        measured = [r for r in results if r.client == client.name and r.round > 0]
        if not measured:
            continue
        complete = sum(
            r.received == frames and r.duplicates == 0 and r.exit_code == 0 for r in measured
        )
        rows.append(
            [
                client.name,
                spread([frames / r.wall_s for r in measured]),
                spread([r.cpu_s / frames * 1e6 for r in measured]),
                spread([r.peak_rss_bytes / MIB for r in measured]),
                f"{complete} of {len(measured)} runs",
            ]
        )
    rows.extend(
        [name, "not run", "", "", "not installed: pip install -e '.[bench]'"]
        for name in MISSING_PEERS
    )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison, print the Markdown table, and write JSON if asked."""
    args = options_parser(__doc__, OPTIONS).parse_args(argv)
    os.sched_setaffinity(0, {args.cpu})
    progress(f"building {args.frames:,} frames")
    start_ms = time.time_ns() // 1_000_000
    frames = build_frames(args.frames, start_ms)

    def scenario(scratch: Path) -> dict[str, Any]:
        machine = dataclasses.replace(describe_machine(scratch), cpus=os.cpu_count() or 0)
        clients = [client for client in CLIENTS if args.only in client.name]
        if args.before:
            # The same recorder command run from the older commit's tree: its "before" row.
            tree = unpack_commit(args.before, scratch / "before")
            label = f"recorder run at {args.before} (before)"
            before = Client(label, recorder_command, ends_at_exit=True, cwd=tree)
            clients.insert(clients.index(CLIENTS[2]) if CLIENTS[2] in clients else 0, before)
        if args.py_spy is not None:
            args.py_spy.mkdir(parents=True, exist_ok=True)
        results = asyncio.run(
            compare(frames, args.runs, scratch, clients, args.py_spy, listing=listing(start_ms))
        )
        table = markdown(TABLE_HEADER, summary_table(results, len(frames), clients))
        print(
            f"Machine: {machine.describe()}; server and clients pinned to CPU {args.cpu}.\n\n"
            f"{len(frames):,} pre-framed frames of {len(SYMBOLS)} symbols per run, "
            f"{args.runs} measured rounds after one warm-up; medians (min-max).\n\n{table}"
        )
        return {
            "machine": asdict(machine),
            "frames": len(frames),
            "symbols": list(SYMBOLS),
            "cpu": args.cpu,
            "runs": [asdict(result) for result in results],
            "table": table,
        }

    write_json(args, in_scratch("compare-clients-", args, scenario))
    return 0


if __name__ == "__main__":
    sys.exit(main())
