"""Measure the event-loop CPU and quarantine bytes one hostile frame costs (issue 9).

Each frame the simulator's hostile faults send is decoded with
:func:`recorder.ingest.decode.decode_frame` as the pipeline calls it, and its rejections are
serialised as :class:`recorder.storage.quarantine.QuarantineLog` writes them. "before" is the
per-item array path the recorder used for every array frame until issue 9 (still there,
``all_market=True``, for the all-market stream a later issue adds); "after" is the default.
CPU is the process time of the best of a few rounds (no I/O involved).

Usage::

    .venv/bin/python scripts/hostile_decode_cpu.py [--rounds N]
"""

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory

from recorder.ingest.decode import Decoded, decode_frame
from recorder.simulate import SimulatorConfig
from recorder.simulate.fault_frames import (
    array_flood_text,
    hostile_data,
)
from recorder.simulate.faults import (
    FaultKind,
)
from recorder.simulate.market import MarketGenerator
from recorder.storage.quarantine import QuarantineLog

EVENT_TIME = 1_654_791_723_970
RECEIVED = EVENT_TIME * 1000 + 30_123
# A BTCUSDT payload of the simulator's market, as its faults build their frames from.
TEMPLATE = MarketGenerator(SimulatorConfig(symbols=("BTCUSDT",)), EVENT_TIME).payload_now(
    "BTCUSDT", EVENT_TIME
)


def combined(data: str | bytes) -> str | bytes:
    """Wrap ``data`` as the simulator's combined stream does."""
    if isinstance(data, bytes):
        return b'{"stream":"btcusdt@miniTicker","data":' + data + b"}"
    return f'{{"stream":"btcusdt@miniTicker","data":{data}}}'


def frames() -> dict[str, str | bytes]:
    """The hostile frames, keyed by fault kind, and the costliest deep frame to read."""
    built: dict[str, str | bytes] = {"array_flood": array_flood_text()}
    for kind in (FaultKind.NESTED, FaultKind.DEEP_EXTRA, FaultKind.WIDE, FaultKind.BAD_BYTES):
        built[kind.value] = combined(hostile_data(kind, TEMPLATE))
    # The slowest nesting to cut: one bracket per token, 1 MiB, with the event type in it.
    levels = (1 << 20) // 4 - 100
    deep = json.dumps(TEMPLATE)[:-1] + ', "x": ' + "[0," * levels + "0" + "]" * levels + "}"
    built["deep_extra, worst case"] = combined(deep)
    return built


def best_cpu(work: Callable[[], object], rounds: int) -> float:
    """Best process time of ``rounds`` runs of ``work``, in seconds."""
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        work()
        best = min(best, time.process_time() - start)
    return best


def quarantine_bytes(decoded: Decoded) -> int:
    """Bytes the quarantine file grows by for these rejections."""
    with TemporaryDirectory() as directory:
        log = QuarantineLog(Path(directory), "bench")
        log.add(decoded.rejections)
        log.flush()
        return sum(p.stat().st_size for p in log.directory.glob("*.jsonl"))


def main() -> None:
    """Print one Markdown row per frame and mode."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    subscribed = frozenset({"BTCUSDT"})
    print("| frame | bytes | mode | CPU ms | events | rejections | quarantine bytes |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, frame in frames().items():
        modes = {"after": False, "before (per item)": True} if name == "array_flood" else {}
        for mode, all_market in (modes or {"after": False}).items():

            def work(frame: str | bytes = frame, all_market: bool = all_market) -> Decoded:
                return decode_frame(
                    frame, receive_time=RECEIVED, subscribed=subscribed, all_market=all_market
                )

            decoded = work()
            cpu = best_cpu(work, args.rounds)
            row = [name, len(frame), mode, f"{cpu * 1000:.2f}", len(decoded.events)]
            row += [len(decoded.rejections), quarantine_bytes(decoded)]
            print("| " + " | ".join(map(str, row)) + " |")


if __name__ == "__main__":
    main()
