"""Run ``recorder run`` against ``recorder simulate`` at 10x the pace, through rotations and a kill.

Both run as subprocesses on loopback: ``--symbols`` contracts (``SYM0001USDT``...) at ``--speed``
10, a tick every 0.2 s; the recorder with the defaults but ``flush_interval`` and ``max_file_age``
scaled alike (0.1 s, 36 s, from the environment), ``NOTIFY_SOCKET`` (a datagram socket bound
here) and ``WATCHDOG_USEC`` (``--watchdog-sec``, by default the flush interval: see 1).
Run 1 gets SIGKILL ``--kill-after`` s (0.8 s: 8 s at the real pace) after its first ``.parquet``
file appears; run 2 starts on the same root, recovers, records through ``--rotations``
rotations; the simulator is frozen (a ``stall`` fault), run 2 drains for 1 s and gets SIGTERM.

Method:

1. **Flush gaps.** No log line marks a flush, and ``/metrics`` is too dear to scrape every 20 ms
   (110 kB and about 15 ms of the recorder's event loop at 600 symbols). But the flush loop
   pings the watchdog after a flush once ``WATCHDOG_USEC / 2`` has passed since the last ping:
   with ``WATCHDOG_USEC`` set to ``flush_interval`` (``--watchdog-sec``' default) every flush,
   empty or not, sends one ``WATCHDOG=1`` datagram as it ends, and its arrival time is taken as
   that flush. One ``/metrics`` scrape per run (run 1 at ``max_file_age / 2``, run 2 before
   SIGTERM) checks the flushes seen against ``recorder_flush_duration_seconds_count``. A gap
   *overlaps a rotation* when it overlaps the span from the first to the last file of a
   rotation episode (see 5). The longest pause is what ``WatchdogSec`` must exceed.
2. **Watchdog.** The arrival of every ``READY=1`` and ``WATCHDOG=1`` datagram, run by run.
3. **RSS.** ``VmRSS`` (``/proc/<pid>/status``) every 50 ms, *steady* being the median after
   ``max_file_age / 2``; ``VmHWM`` before the kill and at the stop.
4. **Loss.** The simulator's ledger (``GET /_sim/events``: each event and the connections it
   was written to) against the dataset (``pyarrow.dataset``, hive partitioning), by
   ``(symbol, E)``. ``GET /_sim/status`` is polled every 20 ms: tick ``n`` left after the last
   poll seeing ``ticks <= n`` was sent and before the first seeing more was answered. Missing
   events of run 1 are split by that time: at the latest ``flush_interval`` + 100 ms before the
   kill (a correct recorder loses none), in that last interval, or after the kill (written into
   the dead socket); run 2 must miss none. Run 1's ingest lag in its last 2 s (``receive_time``
   minus publication) tells whether it had read what was sent.
5. **Files.** Every ``.parquet`` file at the end (mtime, size, rows), in episodes by run and
   kind (``recovery`` before run 2 is ready, ``stop`` after SIGTERM, else ``rotation``) split
   by pauses over 3 s.
6. **CPU** of the recorders (``/proc/<pid>/stat``, ``wait4``), the simulator, this script and
   the machine (``/proc/stat``), so that other load shows.

Usage::

    .venv/bin/python scripts/pace_e2e.py [--symbols 600] [--speed 10] [--kill-after 0.8]
        [--max-file-age 36] [--rotations 2] [--json FILE] [--tmp-dir DIR] [--keep]

Markdown on stdout, progress on stderr; about 3 minutes. The recorders run outside the project,
so ``PYTHONPATH=<dir>`` makes them use the ``recorder`` package in ``<dir>`` (a ``git archive``
of a commit, say); the simulator (``benchmark.Simulator``) runs in the project directory.
"""

import argparse
import bisect
import contextlib
import http.client
import itertools
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from benchmark import (  # scripts/ is on sys.path when a script runs
    CLOCK_TICKS_PER_SECOND,
    RECORDER_COMMAND,
    Simulator,
    child_environment,
    number,
    sample_process,
    symbol_names,
    terminate_and_reap,
)
from scenario_cli import Option, in_scratch, options_parser, progress, write_json

import recorder

MARGIN_S = 0.1
"""Scheduling margin added to ``flush_interval`` before a lost event counts as old."""
DISK_POLL_S, STATUS_POLL_S, RSS_EVERY = 0.002, 0.02, 25
EPISODE_GAP_S, LAG_WINDOW_S = 3.0, 2.0
RAW_SERIES = ("flushes", "rss", "scrape")
RECOVERED = ("instances", "files", "rows")
Windows = Sequence[tuple[float, float]]
"""Time spans (start, end), in ``time.time`` seconds."""


class LedgerEvent(msgspec.Struct):
    """One event of ``GET /_sim/events`` (its payload is skipped)."""

    symbol: str
    tick: int
    delivered_to: list[str]
    event_time: int = msgspec.field(name="E")


class Ledger(msgspec.Struct):
    """The body of ``GET /_sim/events``."""

    forgotten: int
    events: list[LedgerEvent]


@dataclass(slots=True)
class Run:
    """One ``recorder run`` process and what was observed of it (times from ``time.time``)."""

    label: str
    process: "subprocess.Popen[bytes]"
    log_path: Path
    started: float
    max_file_age: float
    started_log: dict[str, Any] = field(default_factory=dict)
    ready: float = math.nan
    ended: float = math.inf
    flushes: list[float] = field(default_factory=list)
    rss: list[tuple[float, int]] = field(default_factory=list)
    scrape: tuple[float, float] = (math.nan, math.nan)
    """When ``/metrics`` was scraped, and its ``recorder_flush_duration_seconds_count``."""
    metrics_port: int = 0
    hwm_bytes: int = 0
    cpu_s: float = 0.0
    exit_code: int | None = None
    stop_s: float = math.nan

    def wait_for(self, event: str, timeout: float = 60) -> dict[str, Any]:
        """Wait for a JSON log line; raise with the log's tail if the process exits first."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
            for line in text.splitlines():
                if f'"{event}"' in line and json.loads(line).get("event") == event:
                    return dict(json.loads(line))
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.label}: no {event!r} log line:\n{text[-3000:]}")
            time.sleep(0.02)


class Probes:
    """The background threads: disk and ``/proc`` poller, ``/_sim/status`` poller, notify."""

    def __init__(self, root: Path, sim_url: str, notify_path: Path) -> None:
        self.root, self.instance = root, ""
        self.run: Run | None = None
        self.first_parquet, self.first_parquet_mtime = threading.Event(), math.nan
        self.ticks: list[tuple[float, float, int]] = []
        """(request sent, answer received, ticks published) of each ``/_sim/status`` poll."""
        self.datagrams: list[tuple[float, str]] = []
        self._stop, self._sim = threading.Event(), urlsplit(sim_url)
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(notify_path))
        self._socket.settimeout(0.2)
        targets = (self._poll_disk, self._poll_status, self._listen)
        self._threads = [threading.Thread(target=target, daemon=True) for target in targets]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop the threads and close the socket."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._socket.close()

    def _poll_disk(self) -> None:
        for polls in itertools.count():
            if self._stop.wait(DISK_POLL_S):
                return
            if (run := self.run) is None:
                continue
            if polls % RSS_EVERY == 0:
                with contextlib.suppress(OSError, StopIteration):
                    status = Path(f"/proc/{run.process.pid}/status").read_text(encoding="ascii")
                    rss = next(line for line in status.splitlines() if line.startswith("VmRSS"))
                    run.rss.append((time.time(), int(rss.split()[1]) * 1024))
            if not self.first_parquet.is_set():
                mtimes = [path.stat().st_mtime for path in self.root.glob("date=*/*/*.parquet")]
                if mtimes:
                    self.first_parquet_mtime = min(mtimes)
                    self.first_parquet.set()

    def _poll_status(self) -> None:
        sim = http.client.HTTPConnection(self._sim.hostname or "", self._sim.port, timeout=10)
        while not self._stop.wait(STATUS_POLL_S):
            sent = time.time()
            try:
                sim.request("GET", "/_sim/status")
                with sim.getresponse() as response:
                    self.ticks.append((sent, time.time(), int(json.load(response)["ticks"])))
            except (OSError, http.client.HTTPException):
                sim.close()  # reconnects at the next request

    def _listen(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                payload = self._socket.recv(4096)
                now, text = time.time(), payload.decode(errors="replace")
                self.datagrams.append((now, text))
                if (run := self.run) is not None and "WATCHDOG=1" in text.split("\n"):
                    run.flushes.append(now)


def scrape(run: Run) -> None:
    """Scrape ``run``'s ``/metrics`` for ``recorder_flush_duration_seconds_count``."""
    url = f"http://127.0.0.1:{run.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=30) as response:
        text = response.read().decode()
    count = text.split("\nrecorder_flush_duration_seconds_count ", 1)[1].split()[0]
    run.scrape = (time.time(), float(count))


def machine_busy_s() -> float:
    """Return the CPU seconds the whole machine spent busy since boot (``/proc/stat``)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text(encoding="ascii").split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS_PER_SECOND  # less idle and iowait


def start_run(label: str, args: argparse.Namespace, scratch: Path, url: str, probes: Probes) -> Run:
    """Start ``recorder run`` with the scaled settings; follow it; return once it is ready."""
    env = child_environment() | {
        "RECORDER_STORAGE__FLUSH_INTERVAL": str(args.flush_interval),
        "RECORDER_STORAGE__MAX_FILE_AGE": str(args.max_file_age),
        "NOTIFY_SOCKET": str(scratch / "notify.sock"),
        "WATCHDOG_USEC": str(round(args.watchdog_sec * 1_000_000)),
    }
    command = [*RECORDER_COMMAND, "run", "--url", url, "--root", str(scratch / "data")]
    command += ["--symbols", ",".join(symbol_names(args.symbols))]
    log_path = scratch / f"{label.replace(' ', '')}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, env=env, cwd=scratch)
    run = Run(label, process, log_path, time.time(), args.max_file_age)
    run.started_log = run.wait_for("recorder started")
    probes.run, probes.instance = run, str(run.started_log["instance_id"])
    run.metrics_port = int(run.wait_for("metrics listening")["address"].rsplit(":", 1)[1])
    run.wait_for("ready")
    run.ready = time.time()
    progress(f"{label} ready after {run.ready - run.started:.1f} s")
    return run


def kill(run: Run, when: float) -> None:
    """SIGKILL ``run`` at wall time ``when``, after reading its CPU time and ``VmHWM``."""
    time.sleep(max(0.0, when - time.time()))
    usage = sample_process(run.process.pid)
    run.cpu_s, run.hwm_bytes, run.ended = usage.cpu_s, usage.peak_rss_bytes, time.time()
    run.process.send_signal(signal.SIGKILL)
    run.exit_code = run.process.wait()


def spread(values: Sequence[float]) -> dict[str, float]:
    """Return the nearest-rank p50 and p99, and the max, of ``values`` (``nan`` when empty)."""
    ordered = sorted(values) or [math.nan]
    rank = {"p50": 0.5, "p99": 0.99, "max": 1.0}
    return {k: ordered[max(0, math.ceil(q * len(ordered)) - 1)] for k, q in rank.items()}


def longest(times: Sequence[float], windows: Windows) -> float:
    """Return the longest pause between consecutive ``times`` that overlaps one of ``windows``."""
    pauses = itertools.pairwise(sorted(times))
    return max((b - a for a, b in pauses if any(a < e and b > s for s, e in windows)), default=-1)


def episodes(root: Path, runs: Sequence[Run], term_at: float) -> list[dict[str, Any]]:
    """Group the published files by run and kind, and by mtime within ``EPISODE_GAP_S``."""
    groups: list[tuple[Run, str, list[tuple[float, Path]]]] = []
    last = -math.inf
    for mtime, path in sorted((p.stat().st_mtime, p) for p in root.glob("date=*/*/*.parquet")):
        run = next((r for r in runs if r.started <= mtime < r.ended), runs[-1])
        kind = "stop" if mtime >= term_at else "recovery" if mtime < run.ready else "rotation"
        if groups[-1:] and groups[-1][:2] == (run, kind) and mtime < last + EPISODE_GAP_S:
            groups[-1][2].append((mtime, path))
        else:
            groups.append((run, kind, [(mtime, path)]))
        last = mtime
    found = []
    for run, kind, files in groups:
        rows = sum(pq.read_metadata(path).num_rows for _, path in files)
        size = sum(path.stat().st_size for _, path in files)
        found.append(
            {"run": run.label, "kind": kind, "start_sec": files[0][0]}
            | {"span_s": files[-1][0] - files[0][0], "files": len(files), "rows": rows}
            | {"size_bytes": size, "bytes_per_row": size / rows}
        )
    return found


def run_figures(run: Run, datagrams: list[tuple[float, str]], windows: Windows) -> dict[str, Any]:
    """Flush gaps, watchdog pauses, RSS and CPU of one run."""
    lines = [(t, text.split("\n")) for t, text in datagrams if run.started <= t <= run.ended]
    pings = [t for t, sent in lines if "WATCHDOG=1" in sent or "READY=1" in sent]
    ready = [t for t, sent in lines if "READY=1" in sent]
    steady = [rss for t, rss in run.rss if t >= run.started + run.max_file_age / 2]
    seconds = min(run.ended, time.time()) - run.started
    log = run.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    records = [r for line in log if line.startswith("{") and "level" in (r := json.loads(line))]
    warned = Counter(f"{r['level']} {r['event']!r}" for r in records if r["level"] != "info")
    return {
        "run_sec": seconds,
        "flushes_seen": sum(t <= run.scrape[0] for t in run.flushes),
        "flushes_counted": -1 if math.isnan(run.scrape[1]) else round(run.scrape[1]),
        "flush_gap_s": spread([b - a for a, b in itertools.pairwise(run.flushes)]),
        "flush_gap_in_rotation_s": longest(run.flushes, windows),
        "ready_after_s": (ready[0] - run.started) if ready else math.nan,
        "pings": len(pings),
        "ping_pause_s": longest(pings, [(-math.inf, math.inf)]),
        "ping_pause_in_rotation_s": longest(pings, windows),
        "rss_steady_bytes": statistics.median(steady) if steady else math.nan,
        "rss_peak_bytes": max((rss for _, rss in run.rss), default=0),
        "rss_hwm_bytes": run.hwm_bytes,
        "cpu_share": run.cpu_s / seconds,
        "end": "SIGKILL" if run.exit_code == -signal.SIGKILL else f"exit {run.exit_code}",
        "stop_s": run.stop_s,
        "recovered": [run.started_log.get(f"{k}_recovered") for k in RECOVERED],
        "warnings": ", ".join(f"{n} x {text}" for text, n in warned.items()) or "none",
    }


def loss_figures(
    ledger: Ledger, root: Path, killed: Run, probes: Probes, *, killed_ids: set[str], old_s: float
) -> dict[str, Any]:
    """Compare the delivered events with the dataset, around the kill."""
    table = ds.dataset(root, partitioning="hive", format="parquet").to_table(
        columns=["symbol", "event_time", "receive_time"]
    )
    event_times = pc.cast(table["event_time"], "int64").to_pylist()
    keys = zip(table["symbol"].to_pylist(), event_times, strict=True)
    received = dict(zip(keys, pc.cast(table["receive_time"], "int64").to_pylist(), strict=True))
    delivered = [event for event in ledger.events if event.delivered_to]
    counts, kill = [count for _, _, count in probes.ticks], killed.ended
    lost: Counter[str] = Counter()
    oldest, in_last, lags = 0.0, 0, []
    for event in delivered:
        i = bisect.bisect_right(counts, event.tick)  # the first poll that saw the tick
        low = probes.ticks[i - 1][0] if i else -math.inf
        high = probes.ticks[i][1] if i < len(counts) else math.inf
        to_killed = not killed_ids.isdisjoint(event.delivered_to)
        in_last += to_killed and kill - old_s <= high and low < kill
        receive_us = received.get((event.symbol, event.event_time))
        if receive_us is not None:
            if to_killed and kill - LAG_WINDOW_S <= low < kill:
                lags.append(receive_us / 1e6 - (low + high) / 2)
        elif not to_killed:
            lost["run_2"] += 1
        elif low >= kill:
            lost["after_kill"] += 1
        elif high < kill - old_s:
            lost["old"] += 1
            oldest = max(oldest, kill - high)
        else:
            lost["last_interval"] += 1
    delivered_keys = {(event.symbol, event.event_time) for event in delivered}
    return {
        "kill_after_first_file_s": kill - probes.first_parquet_mtime,
        "kill_after_last_flush_s": kill - max(t for t in killed.flushes if t <= kill),
        "delivered": len(delivered),
        "rows": table.num_rows,
        "duplicates": table.num_rows - len(received),
        "rows_not_delivered": sum(key not in delivered_keys for key in received),
        "ledger_forgotten": ledger.forgotten,
        "lost": {k: lost[k] for k in ("old", "last_interval", "after_kill", "run_2")},
        "oldest_lost_s": oldest,
        "delivered_in_last_interval": in_last,
        "lag_before_kill_s": spread(lags),
    }


# ---------------------------------------------------------------------------------------------
# Report

UNITS: list[tuple[str, Callable[[float], str]]] = [
    ("_s", lambda v: "-" if v < 0 else f"{number(v * 1000)} ms"),
    ("_sec", lambda v: f"{number(v)} s"),
    ("_bytes", lambda v: f"{number(v / 1024 / 1024)} MiB"),
    ("share", lambda v: f"{v:.0%}"),
]
RUN_ROWS = """\
run time | {run_sec}
flushes seen (WATCHDOG=1 datagrams) / counted by `/metrics`, up to its scrape | \
{flushes_seen} / {flushes_counted}
flush-to-flush gap p50 / p99 / max | {flush_gap_s[p50]} / {flush_gap_s[p99]} / {flush_gap_s[max]}
longest flush gap overlapping a rotation | {flush_gap_in_rotation_s}
READY=1 after start; READY and WATCHDOG datagrams | {ready_after_s}; {pings}
longest pause between pings: overall / overlapping a rotation | {ping_pause_s} / \
{ping_pause_in_rotation_s}
RSS: steady (median after max_file_age / 2) / peak sampled / VmHWM | {rss_steady_bytes} / \
{rss_peak_bytes} / {rss_hwm_bytes}
recorder CPU, share of one core | {cpu_share}
recovered at start: instances / files / rows | {recovered}
end; SIGTERM to exit | {end}; {stop_s}
log lines above info | {warnings}"""
EPISODE_ROW = "{run} | {kind} | {start_sec} | {span_s} | {files} | {rows} | {bytes_per_row}"
LOSS_ROWS = """\
kill: after the first file of the rotation / the last flush | {kill_after_first_file_s} / \
{kill_after_last_flush_s}
events delivered / rows in the dataset / duplicates / rows never delivered | {delivered} / \
{rows} / {duplicates} / {rows_not_delivered}
lost: delivered to run 1 more than {old} before the kill (must be 0); the oldest | {lost[old]}; \
{oldest_lost_s} before the kill
lost: delivered to run 1 in the last {old} before the kill | {lost[last_interval]} of \
{delivered_in_last_interval}
lost: written into run 1's connections after the kill | {lost[after_kill]}
lost: delivered to run 2 (must be 0) | {lost[run_2]}
run 1's ingest lag in its last 2 s (receive_time - publication) p50 / p99 / max | \
{lag_before_kill_s[p50]} / {lag_before_kill_s[p99]} / {lag_before_kill_s[max]}
Parquet files / size / bytes per row | {files} / {size_bytes} / {bytes_per_row}
simulator ticks per second: achieved / due | {ticks_per_second} / {ticks_due}
CPU in cores over {window_sec}: machine / recorders / simulator / this script / the rest | \
{machine} / {recorders} / {simulator} / {script} / {rest}"""


def pretty(value: Any, key: str = "") -> Any:
    """Render figures for the tables by key: ``*_s`` in ms, ``*_bytes`` in MiB..."""
    if isinstance(value, dict):
        units = key.endswith(("_s", "_bytes"))
        return {k: pretty(v, key if units else k) for k, v in value.items()}
    if isinstance(value, list):
        return " / ".join(str(pretty(item, key)) for item in value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    render = next((f for suffix, f in UNITS if key.endswith(suffix)), None)
    return render(value) if render else f"{value:,}" if isinstance(value, int) else number(value)


def report(summary: dict[str, Any]) -> str:
    """Render the summary as Markdown tables."""
    plan, runs = summary["plan"], [pretty(run) for run in summary["runs"]]
    lines = [
        f"## Pace end to end: {plan['symbols']} symbols at speed {number(plan['speed'])}, "
        f"flush_interval {plan['flush_interval']} s, max_file_age {plan['max_file_age']} s, "
        f"WATCHDOG_USEC {plan['watchdog_sec']} s\n",
        "| measure | run 1 (killed in its first rotation) | run 2 (restarted, SIGTERM) |",
        "|---|---|---|",
    ]
    for row in RUN_ROWS.splitlines():
        name, template = row.split(" | ")
        lines.append(f"| {name} | {' | '.join(template.format(**run) for run in runs)} |")
    lines += [
        "\n### Publication episodes (by file mtime)\n",
        "| run | kind | start, after run 1's | first to last file | files | rows | bytes per row |",
        "|---|---|---|---|---|---|---|",
    ]
    for episode in summary["episodes"]:
        shifted = episode | {"start_sec": episode["start_sec"] - summary["runs_started_at"]}
        lines.append(f"| {EPISODE_ROW.format(**pretty(shifted))} |")
    lines += ["\n### Kill -9, recovery and loss\n", "| measure | value |", "|---|---|"]
    files, size = (sum(e[k] for e in summary["episodes"]) for k in ("files", "size_bytes"))
    totals = {"files": files, "size_bytes": size, "bytes_per_row": size / summary["loss"]["rows"]}
    figures = pretty(summary["loss"] | totals | summary["machine"])
    old = f"{number((plan['flush_interval'] + MARGIN_S) * 1000)} ms"
    lines += [f"| {row.format(**figures, old=old)} |" for row in LOSS_ROWS.splitlines()]
    return "\n".join(lines)


OPTIONS: list[Option] = [
    ("--symbols", int, 600, "contracts"),
    ("--speed", float, 10.0, "simulator speed"),
    ("--flush-interval", float, 0.1, "recorder flush_interval, seconds"),
    ("--max-file-age", float, 36.0, "recorder max_file_age, seconds"),
    ("--kill-after", float, 0.8, "seconds from the first file of run 1's rotation to SIGKILL"),
    ("--rotations", int, 2, "rotations of run 2"),
    ("--settle", float, 15.0, "seconds run 2 records after its last rotation is due"),
    ("--watchdog-sec", float, 0.1, "WATCHDOG_USEC, seconds (flush_interval: a ping a flush)"),
]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    return options_parser(__doc__, OPTIONS).parse_args(argv)


def scenario(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """Run both recorders against one simulator; return the summary and the raw series."""
    runs: list[Run]
    root, runs = scratch / "data", []
    with (scratch / "simulator.log").open("w", encoding="utf-8") as sim_log:
        simulator = Simulator(symbol_names(args.symbols), args.speed, sim_log)
    probes = Probes(root, simulator.rest_url, scratch / "notify.sock")
    wall, busy, script = time.time(), machine_busy_s(), time.process_time()
    try:
        runs.append(first := start_run("run 1", args, scratch, simulator.url, probes))
        time.sleep(max(0.0, first.started + args.max_file_age / 2 - time.time()))
        scrape(first)
        if not probes.first_parquet.wait(args.max_file_age * 2 + 30):
            raise RuntimeError("run 1 published no file")
        killed_ids = {str(connection["id"]) for connection in simulator.connections()}
        kill(first, probes.first_parquet_mtime + args.kill_after)
        probes.run = None
        progress(f"killed run 1 {first.ended - probes.first_parquet_mtime:.3f} s into its rotation")
        runs.append(second := start_run("run 2", args, scratch, simulator.url, probes))
        until = second.started + args.rotations * args.max_file_age + args.settle
        time.sleep(max(0.0, until - time.time()))
        simulator.freeze()
        time.sleep(1.0)
        scrape(second)
        term_at = time.time()
        stop = terminate_and_reap(second.process, 60)
        second.ended, second.exit_code, second.stop_s = time.time(), stop.exit_code, stop.stop_s
        second.cpu_s, second.hwm_bytes = stop.cpu_s, stop.peak_rss_bytes
        window = time.time() - wall
        cpu = {"machine": machine_busy_s() - busy, "script": time.process_time() - script}
        cpu |= {"simulator": sample_process(simulator.process.pid).cpu_s}
        probes.stop()
        progress("reading the ledger and the dataset")
        url = simulator.rest_url + "/_sim/events"
        with urllib.request.urlopen(url, timeout=600) as response:  # noqa: S310 - loopback
            ledger = msgspec.json.decode(response.read(), type=Ledger)
    finally:
        for run in runs:
            if run.process.poll() is None:
                run.process.kill()
                run.process.wait()
        simulator.stop()
    found, old_s = episodes(root, runs, term_at), args.flush_interval + MARGIN_S
    rotations = [e for e in found if e["kind"] == "rotation"]
    windows = [(e["start_sec"], e["start_sec"] + e["span_s"]) for e in rotations]
    cpu["recorders"] = first.cpu_s + second.cpu_s
    cpu["rest"] = 2 * cpu["machine"] - sum(cpu.values())
    ticks = probes.ticks
    tick_rate = (ticks[-1][2] - ticks[0][2]) / (ticks[-1][1] - ticks[0][1])
    return {
        "plan": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "recorder_package": str(Path(recorder.__file__).parent),
        "runs_started_at": first.started,
        "runs": [run_figures(run, probes.datagrams, windows) for run in runs],
        "episodes": found,
        "loss": loss_figures(ledger, root, first, probes, killed_ids=killed_ids, old_s=old_s),
        "machine": {k: v / window for k, v in cpu.items()}
        | {"window_sec": window, "ticks_per_second": tick_rate, "ticks_due": args.speed / 2},
        "raw": {
            "datagrams": probes.datagrams,
            "runs": {r.label: {k: getattr(r, k) for k in RAW_SERIES} for r in runs},
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scenario, print the tables, write the JSON."""
    args = parse_args(argv)
    progress(f"pace_e2e: recorder package {Path(recorder.__file__).parent}")
    load_before = os.getloadavg()[0]
    summary = in_scratch("recorder-pace-", args, lambda scratch: scenario(args, scratch))
    summary["load_average_before_after"] = [load_before, os.getloadavg()[0]]
    print(report(summary))
    print(f"\nLoad average (1 min) before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f}")
    write_json(args, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
