"""The judgement of a chaos run: the dataset and the gap log against the simulator's ledger.

The ledger (``GET /_sim/events``) lists every generated event with the connections it was
written to, and its tick; :class:`TickTimes` learns when each tick was published by polling
``/_sim/status``. From those and the times each recorder was launched and stopped, :func:`judge`
works out what a correct recorder must have kept (everything delivered more than one flush
interval, plus slack, before a stop), reads the dataset with the four readers of the SPEC and
the gap log with DuckDB, runs ``recorder verify``, and fills in :class:`Figures`.
"""

import contextlib
import http.client
import itertools
import json
import subprocess
import threading
import time
import urllib.request
from bisect import bisect_right
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from support import (
    READERS,
    RECORDER,
    SimulatorProcess,
    gap_records,
    payload_row,
    read_rows_with,
)

STATUS_POLL_S = 0.02
"""How often ``/_sim/status`` is asked for the tick count."""


@dataclass(slots=True)
class Cycle:
    """One recorder start and how it ended (times are ``time.time()`` seconds)."""

    kind: str
    launched: float
    ended: float = 0.0
    connected: bool = True
    """Whether it got as far as connecting (a ``recovery`` kill ends it before)."""
    moment: str = ""
    """What the kill interrupted, as observed."""
    exit_code: int | None = None
    """The exit code of a clean stop (SIGTERM); ``None`` after SIGKILL."""
    compact_exit: int | None = None
    """The exit code of the ``compact`` run after the killed one."""


@dataclass(slots=True)
class Figures:
    """What a chaos run did and what the dataset and gap log say about it."""

    plan: dict[str, Any]
    cycles: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0
    generated: int = 0
    delivered: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    """Rows read by each of the four readers."""
    duplicates: int = 0
    rows_not_delivered: int = 0
    lost_old: list[tuple[str, int, float]] = field(default_factory=list)
    """(symbol, E, seconds before the kill) of events lost although delivered long enough."""
    lost_last_interval: int = 0
    delivered_last_interval: int = 0
    lost_unread: list[tuple[str, int, float]] = field(default_factory=list)
    """(symbol, E, seconds sent before the stop) of events sent long before a stop but that the
    recorder, lagging behind its socket, had not yet read (or read after its last flush): each
    comes after every row its recorder kept of that symbol, and that recorder's newest row was
    received within the flush interval plus slack of the stop, so every flush up to then ran.
    Not a loss of the recorder's making: it cannot make durable what it has not received."""
    lost_after_kill: int = 0
    outages: int = 0
    restart_gaps: int = 0
    restart_gaps_between_recordings: int = 0
    """``restart`` gaps from one recorder's last row of a symbol to the next one's first."""
    missing_restart_gaps: list[tuple[str, int, int]] = field(default_factory=list)
    """(symbol, last ``E`` of a recorder, first of the next) with no ``restart`` gap between."""
    uncovered: list[tuple[str, int]] = field(default_factory=list)
    """(symbol, E) of events not recorded and inside no ``restart`` gap."""
    gap_causes: dict[str, int] = field(default_factory=dict)
    staged_parquet_after_compact_kill: int = 0
    verify_exit: int = -1
    verify_output: str = ""
    ledger_forgotten: int = 0

    def to_json_text(self) -> str:
        """The figures as a JSON document."""
        return json.dumps(asdict(self), indent=1) + "\n"

    def problems(self) -> list[str]:
        """What the run proves wrong; empty when the recorder survived every kill."""
        found = []
        if self.ledger_forgotten:
            found.append(f"the ledger forgot {self.ledger_forgotten} events: judge is blind")
        if len(set(self.rows.values())) != 1 or not self.rows.get("pyarrow"):
            found.append(f"the readers disagree or read nothing: {self.rows}")
        if self.duplicates or self.rows_not_delivered:
            found.append(f"{self.duplicates} duplicates, {self.rows_not_delivered} foreign rows")
        if self.lost_old:
            found.append(
                f"{len(self.lost_old)} events lost long before a stop: {self.lost_old[:5]}"
            )
        if self.uncovered:
            found.append(f"{len(self.uncovered)} events in no restart gap: {self.uncovered[:5]}")
        if self.missing_restart_gaps:
            found.append(
                f"{len(self.missing_restart_gaps)} times no restart gap from one recorder's last"
                f" row to the next one's first: {self.missing_restart_gaps[:5]}"
            )
        if self.verify_exit != 0:
            found.append(f"recorder verify exited {self.verify_exit}: {self.verify_output}")
        for cycle in self.cycles:
            if cycle["kind"] in {"compact", "stop"} and cycle["exit_code"] != 0:
                found.append(f"a clean stop exited {cycle['exit_code']}")
            if cycle["kind"] == "recovery" and cycle["exit_code"] not in {None, 0}:
                found.append(f"a SIGTERM during recovery exited {cycle['exit_code']}")
            if cycle["kind"] == "compact" and cycle["compact_exit"] != 0:
                found.append(f"compact after a killed compact exited {cycle['compact_exit']}")
        return found


class TickTimes:
    """Polls ``/_sim/status`` in a thread: when each tick was published, within bounds."""

    def __init__(self, rest_url: str) -> None:
        self._polls: list[tuple[float, float, int]] = []
        self._counts: list[int] = []
        self._stop = threading.Event()
        self._url = urlsplit(rest_url)
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        self._thread.join()

    def bounds(self, tick: int) -> tuple[float, float]:
        """(not before, not after) tick ``tick`` was published; infinite when not seen."""
        first_seen = bisect_right(self._counts, tick)
        low = self._polls[first_seen - 1][0] if first_seen else float("-inf")
        high = self._polls[first_seen][1] if first_seen < len(self._polls) else float("inf")
        return low, high

    def _poll(self) -> None:
        status = http.client.HTTPConnection(self._url.hostname or "", self._url.port, timeout=10)
        with contextlib.closing(status):
            self._poll_with(status)

    def _poll_with(self, status: http.client.HTTPConnection) -> None:
        while not self._stop.wait(STATUS_POLL_S):
            sent = time.time()
            try:
                status.request("GET", "/_sim/status")
                with status.getresponse() as response:
                    ticks = int(json.load(response)["ticks"])
            except (OSError, http.client.HTTPException):
                status.close()  # reconnects at the next request
                continue
            self._polls.append((sent, time.time(), ticks))
            self._counts.append(ticks)


def recorder_cli(*args: str) -> "subprocess.CompletedProcess[str]":
    """Run a ``recorder`` command to its end, as cron would."""
    return subprocess.run(
        [*RECORDER, *args], capture_output=True, text=True, timeout=300, check=False
    )


def judge(
    figures: Figures,
    root: Path,
    simulator: SimulatorProcess,
    cycles: list[Cycle],
    ticks: TickTimes,
    old_s: float,
) -> None:
    """Compare the dataset and the gap log with the ledger; fill in ``figures``.

    ``old_s`` is how long before a stop an event must have been delivered to be certainly
    durable: the flush interval plus scheduling slack.
    """
    # A long run's ledger is hundreds of thousands of events: more than the 10 s of a control
    # request to encode on a loaded machine.
    url = simulator.rest_url + "/_sim/events"
    with urllib.request.urlopen(url, timeout=600) as response:  # noqa: S310 - loopback URL
        body = json.load(response)
    events: list[dict[str, Any]] = body["events"]
    figures.ledger_forgotten = int(body["forgotten"])
    figures.generated = len(events)
    figures.delivered = sum(1 for event in events if event["delivered_to"])
    read = {reader: Counter(read_rows_with(reader, root)) for reader in READERS}
    figures.rows = {reader: sum(rows.values()) for reader, rows in read.items()}
    rows = read["pyarrow"]
    keys = Counter((row[0], row[1]) for row in rows.elements())
    figures.duplicates = sum(count - 1 for count in keys.values())
    ledger_rows = {payload_row(event["payload"]) for event in events}
    figures.rows_not_delivered = sum(1 for row in rows if row not in ledger_rows)
    # Every stop but the last exempts what was delivered from (flush interval + margin) before
    # it up to the next launch: the last interval may not be durable, and what the exchange
    # wrote into the dead socket before it noticed was never received.
    stops = [(cycle.ended, after.launched) for cycle, after in itertools.pairwise(cycles)]
    kept = kept_by_cycle(root, cycles)
    missing: list[tuple[str, int]] = []
    for event in events:
        row = payload_row(event["payload"])
        low, high = ticks.bounds(int(event["tick"]))
        if row in rows:
            if event["delivered_to"]:
                in_last = any(high >= end - old_s and low <= end for end, _ in stops)
                figures.delivered_last_interval += in_last
            continue
        missing.append((row[0], row[1]))
        if not event["delivered_to"]:
            continue
        exempt = next((end for end, launch in stops if high >= end - old_s and low <= launch), None)
        if exempt is None:
            before_stop = min((end - high for end, _ in stops if end > high), default=-1.0)
            lost = (row[0], row[1], before_stop)
            if unread_at_stop(kept, cycles, row[0], row[1], low, old_s):
                figures.lost_unread.append(lost)
            else:
                figures.lost_old.append(lost)
        elif low <= exempt:
            figures.delivered_last_interval += 1
            figures.lost_last_interval += 1
        else:
            figures.lost_after_kill += 1
    figures.outages = sum(1 for cycle in cycles[:-1] if cycle.connected)
    judge_gaps(figures, gap_records(root), recordings(root, cycles), missing)
    verify = recorder_cli("verify", "--root", str(root))
    figures.verify_exit = verify.returncode
    figures.verify_output = (verify.stdout + verify.stderr)[-2000:]


@dataclass(slots=True)
class Kept:
    """What one recorder (one cycle) kept of each symbol: its last E and when it was received."""

    last_event_time: dict[str, int] = field(default_factory=dict)
    newest_receive_s: dict[str, float] = field(default_factory=dict)


def kept_by_cycle(root: Path, cycles: list[Cycle]) -> list[Kept]:
    """For each cycle, what its recorder made durable (a row's cycle is its ``receive_time``'s)."""
    import pyarrow.dataset as ds  # noqa: PLC0415 - the analyst's reader, as in support

    columns = ["symbol", "event_time", "receive_time"]
    table = ds.dataset(root, partitioning="hive", format="parquet").to_table(columns=columns)
    launches = [cycle.launched for cycle in cycles]
    kept = [Kept() for _ in cycles]
    for row in table.to_pylist():
        received = row["receive_time"].timestamp()
        run = kept[bisect_right(launches, received) - 1]
        event_time = round(row["event_time"].timestamp() * 1000)
        symbol = row["symbol"]
        run.last_event_time[symbol] = max(run.last_event_time.get(symbol, event_time), event_time)
        run.newest_receive_s[symbol] = max(run.newest_receive_s.get(symbol, received), received)
    return kept


def unread_at_stop(
    kept: list[Kept], cycles: list[Cycle], symbol: str, event_time: int, sent_s: float, old_s: float
) -> bool:
    """Tell whether a lost event was still unread (or unflushed) when its recorder was stopped.

    Frames of a connection are read in order and a flush takes everything read before it. So
    an event sent while cycle ``c`` ran is lost without fault only if it comes after every row
    ``c`` kept of its symbol (it was not read before the last flush), and ``c``'s newest row of
    that symbol was received no more than ``old_s`` before the stop (the flushes kept taking
    that symbol's rows until then). A flush that stopped early, a symbol's rows dropped, or a
    hole in the middle of a recording fail one or the other.
    """
    launches = [cycle.launched for cycle in cycles]
    index = bisect_right(launches, sent_s) - 1
    if index < 0 or index >= len(cycles) - 1:
        return False
    run, cycle = kept[index], cycles[index]
    if not cycle.connected or run.newest_receive_s.get(symbol, 0.0) < cycle.ended - old_s:
        return False
    return event_time > run.last_event_time[symbol]


def recordings(root: Path, cycles: list[Cycle]) -> dict[str, list[tuple[int, int]]]:
    """Per symbol, the first and last ``E`` each recorder kept, in the order they ran.

    A row belongs to the recorder that was running when it was received (``receive_time``).
    """
    import pyarrow.dataset as ds  # noqa: PLC0415 - the analyst's reader, as in support

    columns = ["symbol", "event_time", "receive_time"]
    table = ds.dataset(root, partitioning="hive", format="parquet").to_table(columns=columns)
    launches = [cycle.launched for cycle in cycles]
    spans: dict[tuple[str, int], tuple[int, int]] = {}
    for row in table.to_pylist():
        run = bisect_right(launches, row["receive_time"].timestamp()) - 1
        event_time = round(row["event_time"].timestamp() * 1000)
        first, last = spans.get((row["symbol"], run), (event_time, event_time))
        spans[row["symbol"], run] = (min(first, event_time), max(last, event_time))
    found: dict[str, list[tuple[int, int]]] = {}
    for symbol, run in sorted(spans):
        found.setdefault(symbol, []).append(spans[symbol, run])
    return found


def judge_gaps(
    figures: Figures,
    gaps: list[dict[str, Any]],
    recorded: dict[str, list[tuple[int, int]]],
    missing: list[tuple[str, int]],
) -> None:
    """Between two recorders' rows of a symbol lies one ``restart`` gap; it holds what is missing.

    The gap must run from the last ``E`` the earlier recorder kept to the first the later one
    kept. Every generated event that is not recorded, between a symbol's first and last row,
    must lie in a ``restart`` gap: nothing is lost while a recorder runs.
    """
    figures.gap_causes = dict(Counter(str(gap["cause"]) for gap in gaps))
    restarts = {
        (gap["symbol"], gap["from_ms"], gap["to_ms"]) for gap in gaps if gap["cause"] == "restart"
    }
    figures.restart_gaps = len(restarts)
    for symbol, spans in recorded.items():
        for (_, last), (first, _) in itertools.pairwise(spans):
            if (symbol, last, first) in restarts:
                figures.restart_gaps_between_recordings += 1
            else:
                figures.missing_restart_gaps.append((symbol, last, first))
    for symbol, event_time in missing:
        spans = recorded.get(symbol, [])
        # Before the first recording and after the last one nothing is expected.
        if not spans or not spans[0][0] < event_time < spans[-1][1]:
            continue
        if not any(s == symbol and a < event_time < b for s, a, b in restarts):
            figures.uncovered.append((symbol, event_time))
