"""Two recorders side by side at Binance's real pace: this checkout against an older commit.

One ``recorder simulate`` at speed 1 (a tick a second, each of ``--symbols`` contracts changing
nine times in ten or more: about one event per symbol and second, what the whole market sends)
serves both recorders at once, so they see the same events on the same machine at the same
moments. ``--base`` is a commit of this repository: ``git archive`` unpacks it into the scratch
directory and its recorder runs from there (``python -m recorder`` in that directory); the
other runs from this checkout. Both use the defaults (per-symbol streams, 200 a connection,
``flush_interval`` 1 s) and their own root.

After ``--warm-up`` seconds (connections open, first flushes done, the pandas import pyarrow
makes on its first conversion over), the steady window of ``--seconds`` seconds is measured:
CPU of each recorder process (``/proc/<pid>/stat``) over the window, as a share of one core
and per event (events: rows each recorded in the window, read back with pyarrow after the
stop, by ``receive_time``), and RSS (``VmRSS`` every second: median and peak in the window).
The processes get SIGTERM together at the end; each must exit 0 with no duplicate rows.

Usage::

    .venv/bin/python scripts/real_pace_cpu.py --base COMMIT [--symbols 600] [--seconds 300]
        [--warm-up 60] [--json FILE] [--tmp-dir DIR] [--keep]
"""

import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmark import (  # scripts/ is on sys.path when a script runs
    MIB,
    PROJECT_ROOT,
    RECORDER_COMMAND,
    Simulator,
    child_environment,
    count_dataset,
    markdown,
    number,
    sample_process,
    stop_process,
    symbol_names,
    wall_us,
)
from scenario_cli import Option, in_scratch, options_parser, progress, unpack_commit, write_json

OPTIONS: list[Option] = [
    ("--base", str, "HEAD~1", "the commit to compare with (before)"),
    ("--symbols", int, 600, "contracts the simulator lists, all recorded"),
    ("--seconds", float, 300.0, "length of the measured steady window"),
    ("--warm-up", float, 60.0, "seconds before the window opens"),
]


@dataclass(slots=True)
class Side:
    """One recorder of the comparison and what was read of it.

    Attributes:
        name: its label.
        code: the directory it runs from (its ``recorder`` package).
        root: its dataset root.
        process: the running ``recorder run``.
        cpu_start_s: its CPU seconds when the window opened.
        cpu_end_s: its CPU seconds when the window closed.
        rss_bytes: ``VmRSS`` samples in the window.
        peak_bytes: ``VmHWM`` at the end of the window.
    """

    name: str
    code: Path
    root: Path
    process: "subprocess.Popen[bytes]"
    cpu_start_s: float = 0.0
    cpu_end_s: float = 0.0
    rss_bytes: list[int] = field(default_factory=list)
    peak_bytes: int = 0


def start_recorder(name: str, code: Path, url: str, symbols: list[str], scratch: Path) -> Side:
    """``recorder run`` from ``code`` on ``url``, its log and root in ``scratch``."""
    root = scratch / f"{name}-data"
    with (scratch / f"{name}.log").open("wb") as log:
        process = subprocess.Popen(
            [
                *RECORDER_COMMAND,
                *("run", "--url", url, "--symbols", ",".join(symbols)),
                *("--root", str(root), "--instance-id", name),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_environment(),
            cwd=code,
        )
    return Side(name, code, root, process)


def rss(pid: int) -> int:
    """``VmRSS`` of a live process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def run(args: Any, scratch: Path) -> dict[str, Any]:
    """Run both recorders, measure the window, stop them, read their datasets."""
    symbols = list(symbol_names(args.symbols))
    base = unpack_commit(args.base, scratch / "base")
    with (scratch / "simulator.log").open("w", encoding="utf-8") as simulator_log:
        simulator = Simulator(symbols, 1.0, simulator_log)
        sides = [
            start_recorder("before", base, simulator.url, symbols, scratch),
            start_recorder("after", PROJECT_ROOT, simulator.url, symbols, scratch),
        ]
        try:
            progress(f"warming up {args.warm_up:.0f} s")
            time.sleep(args.warm_up)
            opened_us = wall_us()
            for side in sides:
                side.cpu_start_s = sample_process(side.process.pid).cpu_s
            ends = time.monotonic() + args.seconds
            while time.monotonic() < ends:
                for side in sides:
                    side.rss_bytes.append(rss(side.process.pid))
                time.sleep(1.0)
            closed_us = wall_us()
            for side in sides:
                sample = sample_process(side.process.pid)
                side.cpu_end_s, side.peak_bytes = sample.cpu_s, sample.peak_rss_bytes
        finally:
            for side in sides:
                stop_process(side.process, 60)
            simulator.stop()
    return report(sides, (opened_us, closed_us), args)


def report(sides: list[Side], window_us: tuple[int, int], args: Any) -> dict[str, Any]:
    """The table and the figures of both sides."""
    seconds = (window_us[1] - window_us[0]) / 1e6
    figures: dict[str, Any] = {"symbols": args.symbols, "seconds": seconds, "sides": {}}
    rows = []
    for side in sides:
        counts = count_dataset(side.root, window_us)
        cpu = side.cpu_end_s - side.cpu_start_s
        figures["sides"][side.name] = {
            "cpu_s": cpu,
            "events": counts.rows_in_window,
            "duplicates": counts.duplicate_rows,
            "exit_code": side.process.returncode,
            "rss_median_bytes": statistics.median(side.rss_bytes),
            "rss_peak_sampled_bytes": max(side.rss_bytes),
            "vmhwm_bytes": side.peak_bytes,
            "counts": asdict(counts),
        }
        rows.append(
            [
                side.name,
                f"{cpu / seconds:.2%}",
                number(cpu / max(counts.rows_in_window, 1) * 1e6),
                f"{counts.rows_in_window:,}",
                number(statistics.median(side.rss_bytes) / MIB),
                number(side.peak_bytes / MIB),
                f"{side.process.returncode}, {counts.duplicate_rows} duplicates",
            ]
        )
    before, after = figures["sides"]["before"], figures["sides"]["after"]
    ratio = after["cpu_s"] / before["cpu_s"] if before["cpu_s"] else float("nan")
    table = markdown(
        (
            "recorder",
            "CPU, share of one core",
            "CPU µs per event",
            "events in the window",
            "RSS median (MiB)",
            "VmHWM (MiB)",
            "exit, duplicates",
        ),
        rows,
    )
    print(
        f"{args.symbols} contracts at the real pace, both recorders on one simulator; window "
        f"{seconds:.0f} s after {args.warm_up:.0f} s of warm-up; before = {args.base}.\n\n"
        f"{table}\n\nCPU after / before: {ratio:.2f}"
    )
    figures["cpu_ratio_after_to_before"] = ratio
    figures["table"] = table
    return figures


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print its table."""
    args = options_parser(__doc__, OPTIONS).parse_args(argv)
    write_json(args, in_scratch("real-pace-", args, lambda scratch: run(args, scratch)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
