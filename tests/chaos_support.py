"""The chaos schedule: ``recorder run`` killed with SIGKILL again and again, then judged.

One ``recorder simulate`` runs throughout; ``recorder run`` (and, once a schedule reaches it,
``recorder compact``) run as subprocesses on loopback, at a pace scaled so that the hourly
rotation (``max_file_age``) comes every few seconds. Each cycle starts a recorder on the same
root, waits for one kind of moment and kills it with SIGKILL:

* ``random``: a seeded offset after the recorder is ready;
* ``seal``: while a data file is being written aside (its hidden ``.tmp`` is present), or the
  moment a new ``.parquet`` appears if no write was caught in the act;
* ``rotation``: after the first file of a rotation is published, a seeded few milliseconds
  into the rotation, while the other partitions are still being sealed;
* ``recovery``: while the next start is still publishing the killed recorder's write-ahead
  backlog, before it logs ``recorder started`` and connects; half of the time (seeded) it gets
  SIGTERM there instead, and must exit 0 within :data:`STOP_WITHIN_S`, leaving the rest of
  the backlog in the log for the next start;
* ``compact``: the recorder is stopped cleanly (a crashed writer's log defers compaction), then
  ``recorder compact`` is killed while it is staging, and run again to completion, as the next
  cron run would.

After the last cycle a recorder runs until ready, the exchange stops delivering, the recorder is
waited for until its state file holds the newest event it was sent, and it gets SIGTERM.
:func:`judge` then reads the dataset and the gap log as an analyst would and compares them with
the simulator's ledger (every event, the connections it was written to) and with when each tick
was published (``/_sim/status`` polled in a thread).

The schedule is a function of the seed; the kill moments depend on timing, so two runs of one
seed differ in what exactly they interrupt, never in what they must prove.
"""

import contextlib
import json
import random
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from chaos_judge import Cycle, Figures, TickTimes, judge, recorder_cli
from support import RECORDER, RecorderProcess, SimulatorProcess, wait_until

from recorder.storage.compact.staging import STAGING_ROOT_NAME, staging_holders

KINDS = ("random", "seal", "rotation", "recovery", "compact")
"""The kinds of kill moment (see the module documentation); :func:`schedule` orders them."""
INSTANCE_ID = "chaos"
"""An explicit ``[service] instance_id``, as an operator restarting one recorder sets it."""
START_MS = 1_714_607_400_000
"""``E`` of the first tick: 2024-05-01T23:50:00Z, so a day ends during the run (at speed 20,
half a minute in) and the first day is finished by the wall clock, so ``compact`` takes it."""
STOP_WITHIN_S = 15.0
"""How long a SIGTERM during recovery may take: ``stop_timeout`` (10 s) and a margin."""
POLL_S = 0.002
"""How often the kill moments are polled for (a seal's temporary file lives milliseconds)."""


@dataclass(frozen=True, slots=True)
class ChaosPlan:
    """What to run.

    Attributes:
        seed: seeds the schedule, the offsets and the simulated market.
        cycles: kills of ``recorder run`` (a ``compact`` cycle stops it cleanly instead).
        symbols: contracts recorded, ``CHAOS00USDT``...
        speed: the simulator's speed (20: a tick every 0.1 s).
        flush_interval: the recorder's ``flush_interval``, seconds.
        max_file_age: the recorder's ``max_file_age`` (the scaled hourly rotation), seconds.
        margin: scheduling slack added to ``flush_interval``: an event delivered longer than
            both before a kill must be in the dataset.
        budget_s: no cycle starts after this many seconds (the clean stop still runs); a long
            run on a shared machine is sized by time, not by cycles.
    """

    seed: int = 9
    cycles: int = len(KINDS)
    symbols: int = 12
    speed: float = 20.0
    flush_interval: float = 0.2
    max_file_age: float = 2.0
    margin: float = 0.3
    budget_s: float = float("inf")

    def symbol_names(self) -> list[str]:
        """The recorded contracts."""
        return [f"CHAOS{index:02d}USDT" for index in range(self.symbols)]

    def config(self) -> str:
        """The recorder's TOML settings."""
        return (
            f'[service]\ninstance_id = "{INSTANCE_ID}"\n'
            f'[storage]\nflush_interval = "{round(self.flush_interval * 1000)}ms"\n'
            f'max_file_age = "{round(self.max_file_age * 1000)}ms"\n'
            '[source]\nbackoff_initial = "100ms"\nbackoff_max = "500ms"\n'
            '[metrics]\naddress = ""\n'
        )


def schedule(plan: ChaosPlan) -> list[str]:
    """The kind of every cycle: each kind once (in a seeded order), then seeded choices.

    A ``recovery`` cycle needs a backlog to recover, so it never comes first or right after a
    ``compact`` cycle (which stops the recorder cleanly, leaving an empty log).
    """
    rng = random.Random(plan.seed)
    first = rng.choice([kind for kind in KINDS if kind not in {"recovery", "compact"}])
    rest = [kind for kind in KINDS if kind not in {first, "recovery"}]
    kinds = [first, "recovery", *rng.sample(rest, len(rest))]
    while len(kinds) < plan.cycles:
        choices = [k for k in KINDS if not (k == "recovery" and kinds[-1] == "compact")]
        kinds.append(rng.choice(choices))
    return kinds[: plan.cycles]


def data_files(root: Path) -> set[Path]:
    """The published data files."""
    return set(root.glob("date=*/symbol=*/*.parquet"))


def seal_in_progress(root: Path) -> bool:
    """Whether a data file is being written aside right now."""
    return any(root.glob("date=*/symbol=*/.*.tmp"))


def poll(condition: Callable[[], str], timeout: float) -> str:
    """Poll ``condition`` every :data:`POLL_S` until it names a moment; ``""`` on timeout."""
    deadline = time.monotonic() + timeout
    while not (found := condition()) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    return found


class ChaosRun:
    """Runs one plan in ``workdir`` against ``simulator``; :meth:`run` returns the figures."""

    def __init__(self, plan: ChaosPlan, workdir: Path, simulator: SimulatorProcess) -> None:
        self.plan = plan
        self.workdir = workdir
        self.root = workdir / "data"
        self.simulator = simulator
        self.rng = random.Random(plan.seed + 1)
        self.cycles: list[Cycle] = []
        self.recorders: list[RecorderProcess] = []
        self.figures = Figures(plan=asdict(plan))

    def run(self) -> Figures:
        """Run every cycle, the clean stop and the judgement."""
        started = time.time()
        ticks = TickTimes(self.simulator.rest_url)
        try:
            for kind in schedule(self.plan):
                if time.time() - started > self.plan.budget_s:
                    break
                self._cycle(kind)
                # Down for a seeded while: the restart gap must cover it whatever its length.
                time.sleep(self.rng.uniform(0.1, 0.6))
            self._clean_stop()
        finally:
            ticks.stop()
            for recorder in self.recorders:
                if recorder.alive():
                    recorder.kill()
                recorder.close()
        self.figures.cycles = [asdict(cycle) for cycle in self.cycles]
        old_s = self.plan.flush_interval + self.plan.margin
        judge(self.figures, self.root, self.simulator, self.cycles, ticks, old_s)
        self.figures.wall_s = time.time() - started
        return self.figures

    def _start(self, kind: str) -> tuple[RecorderProcess, Cycle]:
        cycle = Cycle(kind, time.time())
        recorder = RecorderProcess(
            self.workdir,
            root=self.root,
            url=self.simulator.url,
            symbols=self.plan.symbol_names(),
            config=self.plan.config(),
            name=f"cycle{len(self.cycles):03d}-{kind}",
        )
        self.recorders.append(recorder)
        self.cycles.append(cycle)
        return recorder, cycle

    def _kill(self, recorder: RecorderProcess, cycle: Cycle, moment: str) -> None:
        cycle.ended = time.time()
        recorder.kill()
        cycle.moment = moment

    def _cycle(self, kind: str) -> None:
        recorder, cycle = self._start(kind)
        if kind == "recovery":
            before = data_files(self.root)

            def recovering() -> str:
                if published := len(data_files(self.root) - before):
                    return f"recovery had published {published} files"
                if not recorder.alive() or recorder.logged("recorder started"):
                    return "recovery was over"
                return ""

            moment = poll(recovering, 60) or "recovery timed out"
            cycle.connected = False  # stopped before it connects, or as it begins to
            if self.rng.random() < 0.5:
                self._kill(recorder, cycle, moment)
            else:
                # A stop asked for mid-recovery: prompt, exit 0, the rest left in the log.
                cycle.ended = time.time()
                cycle.exit_code = recorder.terminate(within=STOP_WITHIN_S)
                cycle.moment = f"SIGTERM: {moment}"
            return
        recorder.wait_for_log("ready", timeout=60)
        if kind == "random":
            offset = self.rng.uniform(0.0, self.plan.max_file_age)
            time.sleep(offset)
            self._kill(recorder, cycle, f"{offset:.3f} s after ready")
        elif kind == "seal":
            before = data_files(self.root)

            def sealing() -> str:
                if seal_in_progress(self.root):
                    return "a temporary file was being written"
                if data_files(self.root) - before:
                    return "a new file had just been published"
                return ""

            self._kill(recorder, cycle, poll(sealing, 3 * self.plan.max_file_age) or "no seal")
        elif kind == "rotation":
            before = data_files(self.root)
            if not poll(lambda: "yes" * bool(data_files(self.root) - before), 30):
                self._kill(recorder, cycle, "no rotation")
                return
            time.sleep(self.rng.uniform(0.0, 0.02))
            new = len(data_files(self.root) - before)
            self._kill(recorder, cycle, f"{new} of {self.plan.symbols} files of the rotation")
        else:
            time.sleep(self.rng.uniform(0.0, 1.0))
            cycle.ended = time.time()
            cycle.exit_code = recorder.terminate()
            cycle.moment = f"compact killed {self._crash_compact(cycle)}"

    def _crash_compact(self, cycle: Cycle) -> str:
        compact = subprocess.Popen(
            [*RECORDER, "compact", "--root", str(self.root)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        holders = staging_holders(self.root)

        def staged(holder: Path) -> bool:
            try:
                return any(holder.glob("date=*/symbol=*"))
            except FileNotFoundError:
                return False  # compact removed the holder while it was listed

        def staging() -> str:
            if any(staged(holder) for holder in holders):
                return "while staging"
            return "" if compact.poll() is None else "after it ended"

        moment = poll(staging, 60)
        compact.kill()
        compact.wait()
        # What a <root>/**/*.parquet glob would read twice: staged under the root.
        self.figures.staged_parquet_after_compact_kill += len(
            list((self.root / STAGING_ROOT_NAME).glob("date=*/symbol=*/*.parquet"))
        )
        cycle.compact_exit = recorder_cli("compact", "--root", str(self.root)).returncode
        return moment

    def _clean_stop(self) -> None:
        recorder, cycle = self._start("stop")
        recorder.wait_for_log("ready", timeout=60)
        time.sleep(self.rng.uniform(0.0, 1.0))
        open_ids = [connection["id"] for connection in self.simulator.connections()]
        self.simulator.inject("stall+600s")
        # Once the fault is accepted nothing more is delivered: wait until what was is durable.
        newest: dict[str, int] = {}
        for connection_id in open_ids:
            for event in self.simulator.get(f"/_sim/events?connection={connection_id}")["events"]:
                if event["delivered_to"]:
                    newest[event["symbol"]] = max(newest.get(event["symbol"], 0), event["E"])
        state_path = self.root / "_state" / f"{INSTANCE_ID}.json"

        def durable() -> bool:
            try:
                state = json.loads(state_path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                return False
            saved = state["last_event_times"]
            return all(saved.get(symbol, 0) >= e for symbol, e in newest.items())

        wait_until(durable, 30, "the last delivered events to be durable")
        cycle.ended = time.time()
        cycle.moment = "SIGTERM once the last delivered events were durable"
        cycle.exit_code = recorder.terminate()


def run_plan(plan: ChaosPlan, workdir: Path) -> Figures:
    """Start the simulator, run ``plan`` in ``workdir``, stop the simulator."""
    simulator = SimulatorProcess(
        workdir / "simulator.log",
        "--symbols",
        ",".join(plan.symbol_names()),
        "--speed",
        str(plan.speed),
        "--seed",
        str(plan.seed),
        "--start-ms",
        str(START_MS),
    )
    try:
        return ChaosRun(plan, workdir, simulator).run()
    finally:
        with contextlib.suppress(OSError):
            simulator.stop()
