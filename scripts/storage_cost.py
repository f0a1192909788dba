"""CPU per event of each step a recorder of durable Parquet cannot skip, with no socket.

The steps of ``floor_client.py`` (the floor of ``compare_clients.py``), timed one by one on the
comparison's frames: the parse into the recorder's typed payload, the columns, the write-ahead
record batch (decimals cast to ``decimal(38, 18)``), the log record (zstd Arrow IPC), and the
publication (each symbol's rows sorted and written as Parquet with the recorder's options,
fsynced). Beside them, ``json.loads`` and a parse of the whole batch at once by Arrow's JSON
reader, the one way of parsing that builds the columns in C++ without a Python object per
event. Each figure is the best of ``--repeat`` runs of ``time.process_time``; the batch is
``--events`` frames (a second of the comparison's feed is about 50,000).

Their sum (either way of parsing), with the bare aiohttp client's CPU per frame from
``compare_clients.py``, is the least CPU per frame a recorder of this dataset spends in Python
on this machine. The record batch Arrow's JSON reader builds equals the one of msgspec's
payloads, column for column.

Usage::

    .venv/bin/python scripts/storage_cost.py [--events N] [--repeat N]
"""

import argparse
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from compare_clients import build_frames  # scripts/ is on sys.path
from floor_client import FloorRecorder, arrow_wal_batch, decode_frame, read_frames

from recorder.event_columns import EventColumns
from recorder.storage.schema import build_wal_batch
from recorder.storage.wal import encode_batch

T = TypeVar("T")


def best_of(repeat: int, step: Callable[[], T]) -> tuple[float, T]:
    """The least CPU seconds of ``repeat`` calls of ``step``, and what the last one returned."""
    least = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        result = step()
        least = min(least, time.process_time() - started)
    return least, result


def measure(frames: Sequence[str], repeat: int, directory: Path) -> dict[str, float]:
    """Microseconds of CPU per event of each step, in the order a recorder takes them."""
    count = len(frames)
    receive_times = list(range(count))

    def per_event(seconds: float) -> float:
        return seconds / count * 1e6

    figures: dict[str, float] = {}

    def parse_and_drop() -> None:
        for frame in frames:
            json.loads(frame)  # dropped at once, as by the bare client: no collector's work

    seconds, _ = best_of(repeat, parse_and_drop)
    figures["json.loads (reference)"] = per_event(seconds)
    seconds, payloads = best_of(repeat, lambda: [decode_frame(frame) for frame in frames])
    figures["parse: msgspec into the typed payload"] = per_event(seconds)

    def columns() -> EventColumns:
        built = EventColumns()
        built.extend_payloads(payloads, receive_times)
        return built

    seconds, rows = best_of(repeat, columns)
    figures["columns: one list per field"] = per_event(seconds)
    seconds, batch = best_of(repeat, lambda: build_wal_batch(rows))
    figures["record batch: Arrow arrays, decimals cast"] = per_event(seconds)
    seconds, _ = best_of(repeat, lambda: encode_batch(batch))
    figures["log record: zstd Arrow IPC"] = per_event(seconds)

    def publish() -> None:
        floor = FloorRecorder(Path(tempfile.mkdtemp(dir=directory)))
        floor.keep_batch(batch)
        floor.publish()

    seconds, _ = best_of(repeat, publish)
    figures["publication: sorted, Parquet, fsynced"] = per_event(seconds)
    seconds, _ = best_of(repeat, lambda: read_frames(list(frames)))
    figures["alternative parse: Arrow's JSON reader, whole batch"] = per_event(seconds)
    seconds, _ = best_of(repeat, lambda: arrow_wal_batch(list(frames), receive_times))
    figures["alternative record batch: Arrow's JSON reader, Arrow's casts"] = per_event(seconds)
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table of steps."""
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--events", type=int, default=50_000, help="frames per batch (50000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each step (5)")
    args = parser.parse_args(argv)
    frames = build_frames(args.events, time.time_ns() // 1_000_000)
    with tempfile.TemporaryDirectory() as scratch:
        figures = measure(frames, args.repeat, Path(scratch))
    print(f"{args.events:,} frames of the comparison's feed, best of {args.repeat} runs\n")
    print("| step | CPU µs per event |\n|---|---:|")
    for step, micros in figures.items():
        print(f"| {step} | {micros:.2f} |")
    floor = sum(
        micros
        for step, micros in figures.items()
        if step.startswith(("parse", "columns", "record", "log", "publication"))
    )
    print(f"| **the steps a recorder cannot skip, with msgspec** | **{floor:.2f}** |")
    arrow = sum(
        micros
        for step, micros in figures.items()
        if step.startswith(("alternative record", "log", "publication"))
    )
    print(f"| **the same, with Arrow's JSON reader** | **{arrow:.2f}** |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
