"""Decode the all-market ``!miniTicker@arr`` stream on one core: events per second (issue 13).

The frames are the simulator's whole market: ``--symbols`` contracts (600), one combined
``{"stream":"!miniTicker@arr","data":[...]}`` frame per 1 s tick holding every contract that
changed (nine in ten or more per tick, as the simulator draws it), the simulator's realistic
decimal strings, half the items with ``ps``/``st``. Every contract is recorded
(``symbols = "all"``). Each form below decodes all the frames once per round; the rounds
interleave the forms (A B C A B C ...), the first round is a warm-up and discarded, and the
table gives the median with the min-max of events per second. The process is pinned to one
CPU (``--cpu``).

Forms:

1. ``json.loads`` and a dict of the fields per item: a naive recorder, no validation;
2. msgspec's typed parse alone (``list[PayloadWire]``): the floor of any exact decoder here;
3. the hot path: :func:`~recorder.ingest.screen.screen_frame` per frame (its payloads made
   columns, :class:`~recorder.ingest.payload.PayloadColumns`, and checked on them) and
   :func:`~recorder.ingest.decimals.inexact_rows` over their decimals: what the pipeline does
   to decode, every check of the SPEC included (not in checkouts before issue 13);
4. :func:`~recorder.ingest.decode.decode_frame`: the same, then one
   :class:`~recorder.model.MiniTicker` per event (the API the tests call, and what the pipeline
   did before issue 13, so the figure of an older checkout is the "before");
5. the whole pipeline (:meth:`~recorder.ingest.pipeline.EventPipeline.feed_all`, one frame
   at a time; ``feed`` in older checkouts): decode, the event-time guard, the duplicate
   filter, the gap detector and the flush's events.

A form the checkout lacks (an older one, run with ``PYTHONPATH`` at its tree) is left out.

Usage::

    .venv/bin/python scripts/array_decode.py [--symbols N] [--ticks N] [--runs N] [--cpu N]
        [--json FILE]
"""

import importlib.util
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from benchmark import (  # scripts/ is on sys.path when a script runs
    START_MS,
    array_frame,
    markdown,
    market_ticks,
    naive_decode_array,
    number,
    symbol_names,
)
from scenario_cli import Option, options_parser, progress, write_json

from recorder.ingest.decode import decode_frame
from recorder.ingest.payload import PayloadWire

OPTIONS: list[Option] = [
    ("--symbols", int, 600, "contracts in the market"),
    ("--ticks", int, 200, "frames (1 s ticks) per round"),
    ("--runs", int, 7, "measured rounds, after one warm-up round"),
    ("--cpu", int, 1, "the CPU this process is pinned to"),
]
RECEIVE_US = START_MS * 1000


class _Wire(msgspec.Struct, frozen=True, gc=False):
    stream: str
    data: list[PayloadWire]


def forms(frames: Sequence[str], recorded: frozenset[str]) -> dict[str, Callable[[], int]]:
    """Each form: a function that decodes every frame once and returns the events it made."""
    typed = msgspec.json.Decoder(_Wire)

    def naive() -> int:
        return sum(len(naive_decode_array(frame)) for frame in frames)

    def parse_only() -> int:
        return sum(len(typed.decode(frame).data) for frame in frames)

    def decode_frames() -> int:
        return sum(
            len(
                decode_frame(
                    f, receive_time=RECEIVE_US, subscribed=recorded, all_market=True
                ).events
            )
            for f in frames
        )

    found: dict[str, Callable[[], int]] = {
        "json.loads + a dict per item (no checks)": naive,
        "msgspec typed parse alone": parse_only,
    }
    if importlib.util.find_spec("recorder.ingest.screen") is not None:  # issue 13 on
        found["hot path: screen_frame + inexact_rows"] = hot_path(frames, recorded)
    found["decode_frame (a MiniTicker per event)"] = decode_frames
    found["whole pipeline (decode, guard, dedup, gaps, flush's events)"] = pipeline(
        frames, recorded
    )
    return found


def hot_path(frames: Sequence[str], recorded: frozenset[str]) -> Callable[[], int]:
    """The pipeline's decoding stage, frame by frame (each frame its own batch)."""
    from recorder.ingest.decimals import inexact_rows  # noqa: PLC0415 (only in new checkouts)
    from recorder.ingest.screen import screen_frame  # noqa: PLC0415

    def run() -> int:
        events = 0
        for frame in frames:
            screened = screen_frame(frame, subscribed=recorded, all_market=True)
            if not isinstance(screened, tuple) or inexact_rows(screened[0].decimals):
                raise RuntimeError("a benchmark frame left the hot path")
            events += len(screened[1])
        return events

    return run


def pipeline(frames: Sequence[str], recorded: frozenset[str]) -> Callable[[], int]:
    """A fresh pipeline per round fed every frame, one frame per batch as at the real pace."""
    from recorder.gaps.detector import GapDetector  # noqa: PLC0415
    from recorder.ingest.pipeline import EventPipeline  # noqa: PLC0415
    from recorder.model import ReceivedFrame  # noqa: PLC0415

    received = [
        ReceivedFrame(frame, RECEIVE_US + index * 1_000_000, "0.1")
        for index, frame in enumerate(frames)
    ]

    def run() -> int:
        fed = EventPipeline(recorded, 1 << 20, GapDetector(2000), all_market=True)
        # Checkouts before issue 13 had no feed_all: one frame at a time is the same there.
        feed = getattr(fed, "feed_all", None)
        for frame in received:
            if feed is None:
                fed.feed(frame)
            else:
                feed((frame,))
        taken = fed.take()
        if taken.rejections:
            raise RuntimeError(f"a benchmark frame was rejected: {taken.rejections[0].reason}")
        return len(taken.events)

    return run


def measure(found: dict[str, Callable[[], int]], runs: int) -> dict[str, list[float]]:
    """Events per second of each form over ``runs`` measured rounds (after one warm-up)."""
    rates: dict[str, list[float]] = {name: [] for name in found}
    for round_number in range(runs + 1):
        for name, work in found.items():
            started = time.process_time()
            events = work()
            spent = time.process_time() - started
            if round_number:
                rates[name].append(events / spent)
        progress(f"round {round_number} done")
    return rates


def main(argv: Sequence[str] | None = None) -> int:
    """Build the frames, measure every form, print the table, write JSON if asked."""
    args = options_parser(__doc__, OPTIONS).parse_args(argv)
    os.sched_setaffinity(0, {args.cpu})
    symbols = symbol_names(args.symbols)
    ticks = market_ticks(symbols, args.ticks, interval_ms=1_000, activity=None)
    frames = [array_frame(tick) for tick in ticks]
    events = sum(len(tick.events) for tick in ticks)
    progress(f"{len(frames)} frames, {events:,} events, {len(frames[0]):,} bytes in the first")
    rates = measure(forms(frames, frozenset(symbols)), args.runs)
    rows = [
        [
            name,
            f"{number(statistics.median(values))} ({number(min(values))}-{number(max(values))})",
            number(1e6 / statistics.median(values), 3),
        ]
        for name, values in rates.items()
    ]
    table = markdown(("form", "events/s, one core", "µs CPU per event"), rows)
    print(
        f"{len(frames)} frames of the whole market ({args.symbols} contracts, {events:,} "
        f"events), {args.runs} rounds after a warm-up, CPU {args.cpu}; medians (min-max).\n\n"
        f"{table}"
    )
    result: dict[str, Any] = {"frames": len(frames), "events": events, "rates": rates}
    write_json(args, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
