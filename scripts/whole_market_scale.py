"""Record the whole market at full scale: ``symbols = "all"``, 600 contracts, the real pace.

``recorder simulate`` lists ``--contracts`` TRADING perpetuals (``SYM0001USDT``...) at speed 1
(a tick every 2 s), beside contracts the recorder must leave out: ``--delivery`` TRADING
quarterlies (``..._261225``) and two perpetuals moved to ``PENDING_TRADING`` and ``SETTLING``
before it starts. ``recorder run --symbols all`` (``rest_url`` pointed at the simulator, the
other settings at their defaults) records for ``--duration`` s; at ``--burst-at`` s the script
lists ``--listed`` new contracts and delists ``--delisted`` recorded ones, all at once.

The simulator is the judge: it counts every request it receives on each connection (by method,
with its wall time, and its peak in any one second) and every REST request by path
(``/_sim/connections``, ``/_sim/status``).

Method:

1. **Samples, every second**, in a thread: ``/_sim/status`` and ``/_sim/connections`` (the
   last view of a connection is kept once it closes), ``utime + stime`` of both processes
   (``/proc/<pid>/stat``), the recorder's ``VmRSS``, the machine's busy CPU (``/proc/stat``);
   the recorder's ``/metrics`` every ``METRICS_EVERY`` samples (a scrape costs it a few ms).
2. **Start-up**: the first ``STARTUP_S`` s after the recorder's start: connections, control
   messages per connection (``SUBSCRIBE``, ``UNSUBSCRIBE``, ``LIST_SUBSCRIPTIONS``), REST.
3. **Steady** windows: from ``--settle`` s to the burst, and from ``--burst-window`` s after
   it to the end. CPU as a share of one core, of the recorder, the simulator and the machine
   (the rest is this script and whatever else runs); CPU µs per event recorded; RSS median
   and its least-squares slope; events delivered by the simulator and rows recorded (by
   ``receive_time``) per second.
4. **Burst**: from the first listing request to ``--burst-window`` s later: control messages
   per connection and their peak in any one second (sliding), connections opened, and for each
   new contract the time from its listing to its first recorded row (``receive_time``) and to
   the recorder's log line that took it in; for each delisted one, until no connection carries
   its stream.
5. **Agreement**, before the burst and at the end: the streams the simulator's connections
   carry, the contracts ``exchangeInfo`` lists as TRADING PERPETUAL, and what the recorder
   believes (its ``recorder_recorded_symbols`` and ``recorder_open_connections``, and the
   stream count per connection from its ``connected`` and ``streams changed`` log lines).
6. **End**: the simulator is frozen (a ``stall`` fault), the recorder drains for
   ``DRAIN_S`` s and gets SIGTERM; the ledger (``/_sim/events``) against the dataset (every
   delivered event recorded once), the gap log, and ``recorder verify`` of the root.

Usage::

    .venv/bin/python scripts/whole_market_scale.py [--duration 600] [--contracts 600]
        [--json FILE] [--tmp-dir DIR] [--keep]

Markdown on stdout, progress on stderr.
"""

import argparse
import bisect
import contextlib
import itertools
import json
import math
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.compute as pc
import pyarrow.dataset as ds
from benchmark import (  # scripts/ is on sys.path when a script runs
    RECORDER_COMMAND,
    Recorder,
    Simulator,
    child_environment,
    count_dataset,
    describe_machine,
    gap_causes,
    sample_process,
    stop_process,
    symbol_names,
    terminate_and_reap,
)
from pace_e2e import Ledger, machine_busy_s, spread
from scenario_cli import Option, in_scratch, options_parser, progress, write_json
from soak import slope
from whole_market_report import STARTUP_S, report

from recorder.simulate.protocol import stream_symbol

DRAIN_S, METRICS_EVERY, MIB = 2.0, 10, 1024 * 1024
NOT_TRADING = ("PENDING_TRADING", "SETTLING")
RECORDERS = ("recorder", "baseline")
ROLES = (*RECORDERS, "simulator", "baseline simulator")
"""The measured processes: the recorder with ``symbols = "all"`` and its simulator, and the
baseline: a recorder given the same contracts by name, on a simulator of its own."""


@dataclass(slots=True)
class Sample:
    """One second of the run (``t`` in ``time.time`` seconds)."""

    t: float
    cpu_s: dict[str, float]
    """``utime + stime`` of each process, by role (:data:`ROLES`)."""
    machine_busy_s: float
    rss_bytes: dict[str, int]
    """``VmRSS`` of the recorder and of the baseline recorder."""
    status: dict[str, Any]
    delivered: int
    """Events delivered so far to every connection ever seen (a closed one: its last count)."""
    carried: dict[str, int]
    """Streams carried by each open connection, by simulator connection id."""
    metrics: dict[str, float] | None = None


@dataclass(slots=True)
class Watch:
    """The sampling thread and what it saw."""

    simulator: Simulator
    pids: dict[str, int]
    """The process of each role (:data:`ROLES`)."""
    metrics_url: str
    samples: list[Sample] = field(default_factory=list)
    connections: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The last view of every connection the simulator reported, closed ones included."""
    gone: dict[str, float] = field(default_factory=dict)
    """When each delisted symbol was first seen on no connection."""
    watched: set[str] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        """Sample every second until stopped."""
        for count in itertools.count():
            if self._stop.wait(max(0.0, 1.0 - time.time() % 1.0)):
                return
            with contextlib.suppress(OSError, ValueError):
                self.samples.append(self._sample(count % METRICS_EVERY == 0))

    def _sample(self, scrape: bool) -> Sample:
        now, status = time.time(), self.simulator.get("/_sim/status")
        views = self.simulator.get("/_sim/connections")["connections"]
        self.connections.update({view["id"]: view for view in views})
        streams = {stream_symbol(s) for view in views for s in view["streams"]}
        for symbol in self.watched - streams - self.gone.keys():
            self.gone[symbol] = now
        return Sample(
            t=now,
            cpu_s={role: sample_process(pid).cpu_s for role, pid in self.pids.items()},
            machine_busy_s=machine_busy_s(),
            rss_bytes={role: resident(self.pids[role]) for role in RECORDERS},
            status=status,
            delivered=sum(int(v["events_delivered"]) for v in self.connections.values()),
            carried={view["id"]: len(view["streams"]) for view in views},
            metrics=scrape_metrics(self.metrics_url) if scrape else None,
        )

    def stop(self) -> None:
        """Stop sampling at the next second."""
        self._stop.set()


def resident(pid: int) -> int:
    """``VmRSS`` of a live process, in bytes."""
    status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    return next(int(line.split()[1]) * 1024 for line in status.splitlines() if "VmRSS:" in line)


def scrape_metrics(url: str) -> dict[str, float]:
    """Read the recorder's ``/metrics``: each sample's value summed over its labels."""
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            key = name.split("{", 1)[0]
            values[key] = values.get(key, 0.0) + float(value)
    return values


def log_records(path: Path) -> list[dict[str, Any]]:
    """The recorder's JSON log lines, each with its ``t`` (``time.time`` seconds)."""
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        with contextlib.suppress(json.JSONDecodeError, KeyError, ValueError):
            record = json.loads(line)
            record["t"] = datetime.fromisoformat(record["timestamp"]).timestamp()
            records.append(record)
    return records


def wait_for(path: Path, event: str, process: "subprocess.Popen[bytes]") -> dict[str, Any]:
    """Wait for the recorder's log line ``event``; raise with the log's tail if it exits."""
    deadline = time.monotonic() + 120
    while True:
        found = [record for record in log_records(path) if record.get("event") == event]
        if found:
            return found[0]
        if process.poll() is not None or time.monotonic() > deadline:
            tail = path.read_text(encoding="utf-8", errors="replace")[-3000:]
            raise RuntimeError(f"no {event!r} log line:\n{tail}")
        time.sleep(0.1)


# ---------------------------------------------------------------------------------------------
# Figures


def at(samples: Sequence[Sample], t: float) -> Sample:
    """The first sample at or after ``t`` (the last one when none is)."""
    index = bisect.bisect_left([sample.t for sample in samples], t)
    return samples[min(index, len(samples) - 1)]


def window_figures(
    samples: Sequence[Sample], start: float, end: float, rows: dict[str, int]
) -> dict[str, Any]:
    """CPU, RSS and event rates between the samples at ``start`` and ``end``.

    ``rows`` holds the rows each recorder recorded in the window (by ``receive_time``).
    """
    first, last = at(samples, start), at(samples, end)
    inside = [s for s in samples if first.t <= s.t <= last.t]
    seconds = last.t - first.t
    if seconds <= 0:
        return {}
    cpu = {role: last.cpu_s[role] - first.cpu_s[role] for role in ROLES}
    machine = last.machine_busy_s - first.machine_busy_s
    hours = [(s.t - first.t) / 3600 for s in inside]
    by_recorder = {}
    for role in RECORDERS:
        rss_slope = slope(hours, [s.rss_bytes[role] / MIB for s in inside])
        by_recorder[role] = {
            "us_per_event": cpu[role] / rows[role] * 1e6 if rows[role] else math.nan,
            "rss_median_mib": statistics.median(s.rss_bytes[role] for s in inside) / MIB,
            "rss_slope_mib_per_hour": math.nan if rss_slope is None else rss_slope,
            "recorded_per_s": rows[role] / seconds,
        }
    return {
        "seconds": seconds,
        "cores": {role: value / seconds for role, value in cpu.items()}
        | {"machine": machine / seconds, "rest": (machine - sum(cpu.values())) / seconds},
        "recorders": by_recorder,
        "delivered_per_s": (last.delivered - first.delivered) / seconds,
        "ticks_per_s": (last.status["ticks"] - first.status["ticks"]) / seconds,
    }


def control_figures(connections: dict[str, dict[str, Any]], start: float, end: float) -> Any:
    """Control messages received between ``start`` and ``end``, by connection and overall."""
    per_connection, methods = {}, Counter[str]()
    for connection_id, view in connections.items():
        times = [ms / 1000 for ms, m in view["latest_requests"] if start <= ms / 1000 < end]
        methods.update(m for ms, m in view["latest_requests"] if start <= ms / 1000 < end)
        peak = max((bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times)), default=0)
        per_connection[connection_id] = {"messages": len(times), "peak_per_second": peak}
    return {
        "by_method": dict(methods),
        "per_connection": per_connection,
        "peak_per_second": max((c["peak_per_second"] for c in per_connection.values()), default=0),
        "per_second_per_connection": sum(methods.values())
        / max(1, len(per_connection))
        / (end - start),
    }


def agreement(simulator: Simulator, samples: Sequence[Sample], log: Path) -> dict[str, Any]:
    """Compare what the connections carry, exchangeInfo and what the recorder believes, now."""
    listed = simulator.get("/fapi/v1/exchangeInfo")["symbols"]
    expected = {
        s["symbol"] for s in listed if s["status"] == "TRADING" and s["contractType"] == "PERPETUAL"
    }
    views = simulator.get("/_sim/connections")["connections"]
    carried = Counter(stream_symbol(stream) for view in views for stream in view["streams"])
    believed: dict[str, int] = {}
    for record in log_records(log):
        if record.get("event") in {"connected", "streams changed"}:
            believed[record["connection_id"]] = int(record["streams"])
    metrics = next(s.metrics for s in reversed(samples) if s.metrics is not None)
    counts = sorted(len(view["streams"]) for view in views)
    return {
        "expected": len(expected),
        "carried": sum(carried.values()),
        "carried_equals_expected": set(carried) == expected,
        "carried_twice": sum(n > 1 for n in carried.values()),
        "streams_per_connection": counts,
        "recorder_believes_per_connection": sorted(n for n in believed.values() if n),
        "recorder_recorded_symbols": metrics.get("recorder_recorded_symbols", math.nan),
        "recorder_open_connections": metrics.get("recorder_open_connections", math.nan),
        "simulator_open_connections": len(views),
    }


# ---------------------------------------------------------------------------------------------
# The run


def start_recorder(simulator: Simulator, scratch: Path) -> tuple["subprocess.Popen[bytes]", Path]:
    """Start ``recorder run --symbols all`` against the simulator, logging JSON into a file."""
    env = child_environment() | {"RECORDER_SOURCE__REST_URL": simulator.rest_url}
    command = [*RECORDER_COMMAND, "run", "--symbols", "all", "--url", simulator.url]
    log_path = scratch / "recorder.log"
    with log_path.open("wb") as log:
        command += ["--root", str(scratch / "data")]
        process = subprocess.Popen(command, stdout=log, stderr=log, env=env, cwd=scratch)
    return process, log_path


def burst(simulator: Simulator, args: argparse.Namespace) -> dict[str, float]:
    """List the new contracts and delist some recorded ones; return when each change was made."""
    changed = {}
    for number_ in range(1, args.listed + 1):
        symbol = f"NEW{number_:04d}USDT"
        simulator.post("/_sim/listings", {"symbol": symbol, "status": "TRADING"})
        changed[symbol] = time.time()
    for symbol in symbol_names(args.contracts)[-args.delisted :]:
        simulator.post("/_sim/listings", {"symbol": symbol, "status": "DELISTED"})
        changed[symbol] = time.time()
    return changed


def scenario(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """Run the recorder against the simulator; return the figures."""
    perpetuals = list(symbol_names(args.contracts + len(NOT_TRADING)))
    delivery = [f"DLV{n:04d}USDT_261225" for n in range(1, args.delivery + 1)]
    with contextlib.ExitStack() as stack:
        logs = [stack.enter_context((scratch / n).open("w")) for n in ("sim.log", "base-sim.log")]
        simulator = Simulator([*perpetuals, *delivery], 1.0, logs[0])
        stack.callback(simulator.stop)
        baseline_simulator = Simulator(perpetuals[: args.contracts], 1.0, logs[1])
        stack.callback(baseline_simulator.stop)
        for symbol, status in zip(perpetuals[args.contracts :], NOT_TRADING, strict=True):
            simulator.post("/_sim/listings", {"symbol": symbol, "status": status})
        (scratch / "baseline").mkdir()
        baseline = Recorder(
            baseline_simulator.url,
            perpetuals[: args.contracts],
            scratch / "baseline" / "data",
            scratch / "baseline" / "recorder.log",
        )
        stack.callback(stop_process, baseline.process, 60)
        process, log_path = start_recorder(simulator, scratch)
        started = time.time()
        stack.callback(stop_process, process, 60)
        return measure(
            args, (simulator, baseline_simulator), (process, baseline), log_path, started
        )


def measure(  # noqa: PLR0915 - one scenario, step by step
    args: argparse.Namespace,
    simulators: tuple[Simulator, Simulator],
    recorders: tuple["subprocess.Popen[bytes]", Recorder],
    log_path: Path,
    started: float,
) -> dict[str, Any]:
    """Sample the run, make the burst, stop, and read the datasets."""
    (simulator, baseline_simulator), (process, baseline) = simulators, recorders
    address = wait_for(log_path, "metrics listening", process)["address"]
    pids = dict(zip(ROLES, (process.pid, baseline.process.pid), strict=False))
    pids |= {
        "simulator": simulator.process.pid,
        "baseline simulator": baseline_simulator.process.pid,
    }
    watch = Watch(simulator, pids, f"http://{address}/metrics")
    thread = threading.Thread(target=watch.run, daemon=True)
    thread.start()
    ready = wait_for(log_path, "ready", process)["t"]
    baseline.wait_until_ready()
    progress(f"recorder ready after {ready - started:.1f} s")
    time.sleep(max(0.0, started + args.burst_at - 1 - time.time()))
    before = agreement(simulator, watch.samples, log_path)
    delisted = symbol_names(args.contracts)[-args.delisted :]
    watch.watched = set(delisted)
    opened_before = simulator.get("/_sim/status")["connections_opened"]
    burst_at = time.time()
    changed = burst(simulator, args)
    progress(
        f"burst: {args.listed} listed, {args.delisted} delisted in {time.time() - burst_at:.2f} s"
    )
    time.sleep(max(0.0, burst_at + args.burst_window - time.time()))
    opened_burst = simulator.get("/_sim/status")["connections_opened"] - opened_before
    time.sleep(max(0.0, started + args.duration - time.time()))
    after = agreement(simulator, watch.samples, log_path)
    end = time.time()
    simulator.freeze()
    baseline_simulator.freeze()
    time.sleep(DRAIN_S)
    watch.stop()
    thread.join()
    stop = terminate_and_reap(process, 60)
    baseline_stop = terminate_and_reap(baseline.process, 60)
    progress(f"recorder stopped: exit {stop.exit_code} after {stop.stop_s:.2f} s; reading")
    root = log_path.parent / "data"
    with urllib.request.urlopen(simulator.rest_url + "/_sim/events", timeout=600) as response:  # noqa: S310
        ledger = msgspec.json.decode(response.read(), type=Ledger)
    status = simulator.get("/_sim/status")
    verify = subprocess.run(
        [*RECORDER_COMMAND, "verify", "--root", str(root)], capture_output=True, check=False
    )
    table = ds.dataset(root, partitioning="hive", format="parquet").to_table(
        columns=["symbol", "event_time", "receive_time"]
    )
    received = pc.cast(table["receive_time"], "int64").to_pylist()
    keys = list(
        zip(
            table["symbol"].to_pylist(),
            pc.cast(table["event_time"], "int64").to_pylist(),
            strict=True,
        )
    )
    first_row: dict[str, float] = {}
    for (symbol, _), receive_us in zip(keys, received, strict=True):
        first_row[symbol] = min(first_row.get(symbol, math.inf), receive_us / 1e6)
    delivered = {(e.symbol, e.event_time) for e in ledger.events if e.delivered_to}
    samples = watch.samples

    def rows_between(a: float, b: float) -> dict[str, int]:
        window = (round(a * 1e6), round(b * 1e6))
        return {
            "recorder": count_dataset(root, window).rows_in_window,
            "baseline": count_dataset(baseline.root, window).rows_in_window,
        }

    steady = (started + args.settle, burst_at)
    later = (burst_at + args.burst_window, end)
    records = log_records(log_path)
    taken_in = {
        symbol: record["t"]
        for record in records
        if record.get("event") == "contracts listed: recording them"
        for symbol in record["symbols"]
    }
    new = [s for s in changed if s.startswith("NEW")]
    # Less the two readings of agreement(), this script's own.
    exchange_info = status["rest_requests"].get("/fapi/v1/exchangeInfo", 0) - 2
    warned = Counter(f"{r['level']} {r['event']!r}" for r in records if r["level"] != "info")
    return {
        "plan": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": describe_machine(root).describe(),
        "ready_after_s": ready - started,
        "startup": {
            "control": control_figures(watch.connections, started, started + STARTUP_S),
            "connections_simulator": at(samples, started + STARTUP_S).status["connections_open"],
            "connections_recorder": next(
                (s.metrics or {}).get("recorder_open_connections", math.nan)
                for s in samples
                if s.metrics is not None and s.t >= ready
            ),
            "rest_requests": at(samples, started + STARTUP_S).status["rest_requests"],
        },
        "steady": window_figures(samples, *steady, rows_between(*steady)),
        "after_burst": window_figures(samples, *later, rows_between(*later)),
        "burst": {
            "control": control_figures(watch.connections, burst_at, burst_at + args.burst_window),
            "connections_opened": opened_burst,
            "first_row_after_listing_s": spread(
                [first_row.get(s, math.inf) - changed[s] for s in new]
            ),
            "taken_in_after_listing_s": spread(
                [taken_in.get(s, math.inf) - changed[s] for s in new]
            ),
            "new_recorded": sum(s in first_row for s in new),
            "unsubscribed_after_delisting_s": spread(
                [watch.gone.get(s, math.inf) - changed[s] for s in delisted]
            ),
        },
        "agreement_before_burst": before,
        "agreement_at_end": after,
        "whole_run": {
            "seconds": end - started,
            "exchange_info_per_minute": exchange_info / ((end - started) / 60),
            "rest_requests": status["rest_requests"],
            "connections_opened": status["connections_opened"],
            "simulator_peak_requests_per_second": max(
                (v["request_peak_per_second"] for v in watch.connections.values()), default=0
            ),
            "requests_by_method": dict(
                sum((Counter(v["requests"]) for v in watch.connections.values()), Counter())
            ),
            "rss_peak_mib": max(s.rss_bytes["recorder"] for s in samples) / MIB,
            "rss_hwm_mib": stop.peak_rss_bytes / MIB,
            "baseline_rss_peak_mib": max(s.rss_bytes["baseline"] for s in samples) / MIB,
            "baseline_rss_hwm_mib": baseline_stop.peak_rss_bytes / MIB,
            "baseline_exit": baseline_stop.exit_code,
            "delivered": len(delivered),
            "rows": table.num_rows,
            "duplicates": table.num_rows - len(set(keys)),
            "delivered_not_recorded": len(delivered - set(keys)),
            "recorded_of_excluded": sum(s in first_row for s in delivery_and_not_trading(args)),
            "gaps": gap_causes(root),
            "verify_exit": verify.returncode,
            "verify_tail": verify.stdout.decode(errors="replace").strip().splitlines()[-1:],
            "exit": stop.exit_code,
            "stop_s": stop.stop_s,
            "warnings": ", ".join(f"{n} x {text}" for text, n in warned.items()) or "none",
        },
    }


def delivery_and_not_trading(args: argparse.Namespace) -> list[str]:
    """The listed contracts the recorder must not record."""
    names = symbol_names(args.contracts + len(NOT_TRADING))[args.contracts :]
    return [*names, *(f"DLV{n:04d}USDT_261225" for n in range(1, args.delivery + 1))]


OPTIONS: list[Option] = [
    ("--duration", float, 600.0, "seconds the recorder runs"),
    ("--contracts", int, 600, "TRADING perpetual contracts at the start"),
    ("--delivery", int, 3, "TRADING quarterly contracts (not recorded by default)"),
    ("--listed", int, 50, "contracts listed at once in the burst"),
    ("--delisted", int, 20, "recorded contracts delisted at once in the burst"),
    ("--burst-at", float, 270.0, "seconds after the start the burst comes"),
    ("--burst-window", float, 90.0, "seconds after the burst counted as the burst"),
    ("--settle", float, 60.0, "seconds after the start the steady window opens"),
]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = options_parser(__doc__, OPTIONS)
    args = parser.parse_args(argv)
    if not args.settle < args.burst_at < args.burst_at + args.burst_window <= args.duration:
        parser.error("expected settle < burst-at < burst-at + burst-window <= duration")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scenario, print the table, write the JSON."""
    args = parse_args(argv)
    figures = in_scratch("recorder-whole-market-", args, lambda scratch: scenario(args, scratch))
    print(report(figures))
    write_json(args, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
