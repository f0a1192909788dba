"""``recorder compact`` killed with SIGKILL mid-run, and read while it runs, by the four readers.

The root holds many symbols of one finished day, each in several parts of distinct events
(one recorder, no copies), so every reader must return each event exactly once before, during
and after compaction. The kill lands by watching the root: when the wanted state shows up, the
process is stopped (SIGSTOP, so the state cannot move on), the state is checked again, and only
then killed; a state that moved on is let go (SIGCONT) and watched for again.
"""

import contextlib
import os
import signal
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from compact_support import DAY_MS, record, ticker
from support import READERS, RECORDER, read_rows_with, run_cli

from recorder.storage.compact.staging import STAGING_ROOT_NAME, outside_holder, staging_holders

pytestmark = pytest.mark.e2e

SYMBOLS = [f"S{number:02d}USDT" for number in range(40)]
PARTS = 6
EVENTS_PER_PART = 10
Event = tuple[str, int]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Counter[Event]]:
    """A root of :data:`SYMBOLS`, :data:`PARTS` parts each; and each of its events once."""
    root = tmp_path_factory.mktemp("many-parts") / "data"
    flushes = [
        [
            ticker(symbol, DAY_MS + 3_600_000 + (part * EVENTS_PER_PART + i) * 2000)
            for i in range(EVENTS_PER_PART)
            for symbol in SYMBOLS
        ]
        for part in range(PARTS)
    ]
    record(root, "alpha", flushes, wall_us=(DAY_MS + 7_200_000) * 1000)
    events = Counter(
        (symbol, DAY_MS + 3_600_000 + n * 2000)
        for symbol in SYMBOLS
        for n in range(PARTS * EVENTS_PER_PART)
    )
    return root, events


@pytest.fixture
def root(pristine: tuple[Path, Counter[Event]], tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    subprocess.run(["cp", "-a", str(pristine[0]), str(copy)], check=True)
    return copy


def events_read(reader: str, root: Path) -> Counter[Event]:
    return Counter((row[0], row[1]) for row in read_rows_with(reader, root))


@contextlib.contextmanager
def compact_running(root: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``recorder compact`` on ``root``, killed (if still running) and reaped on the way out.

    Reaped even when the test fails: pipes left open would be reported by the garbage
    collector during a later test, which ``filterwarnings = error`` turns into its failure.
    """
    # The day of the events is long finished and past its grace by the real clock.
    with subprocess.Popen(
        [*RECORDER, "compact", "--root", str(root), "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()  # a stopped process dies of SIGKILL too
                process.communicate(timeout=30)


def compacted_partitions(root: Path) -> int:
    return sum(
        1
        for directory in root.glob("date=*/symbol=*")
        if any("-compact-" in path.name for path in directory.iterdir())
    )


def staged_names(root: Path) -> list[str]:
    """What compaction holds in its staging directories right now, in either holder."""
    # os.walk, not rglob: compaction removes staging directories while this looks, and walk
    # skips a directory that vanished where rglob raises.
    holders = staging_holders(root)
    return [name for holder in holders for _, _, files in os.walk(holder) for name in files]


def in_staging_without_parquet(root: Path) -> bool:
    """A partition is being rebuilt: only its temporary file or manifest is staged."""
    names = staged_names(root)
    return bool(names) and not any(name.endswith(".parquet") for name in names)


def between_partitions(root: Path) -> bool:
    """Some partitions are compacted, others not yet, and nothing is staged."""
    return 0 < compacted_partitions(root) < len(SYMBOLS) and not staged_names(root)


def kill_when(process: subprocess.Popen[bytes], state: Callable[[], bool]) -> bool:
    """SIGKILL ``process`` while ``state()`` holds; ``False`` if it ended first.

    The state is watched as fast as the root can be listed: it stands for a moment of the
    run, and the run does not wait for the watcher.
    """
    while process.poll() is None:
        if not state():
            continue
        os.kill(process.pid, signal.SIGSTOP)
        _, status = os.waitpid(process.pid, os.WUNTRACED)
        if not os.WIFSTOPPED(status):
            break  # it ended before the signal landed
        if state():
            os.kill(process.pid, signal.SIGKILL)
            process.communicate(timeout=30)
            return True
        os.kill(process.pid, signal.SIGCONT)
    process.communicate(timeout=60)
    return False


@pytest.mark.parametrize(
    "state",
    [in_staging_without_parquet, between_partitions],
    ids=["while-a-partition-is-staged", "between-two-partitions"],
)
def test_a_killed_compaction_reads_whole_with_every_reader_before_and_after_a_rerun(
    root: Path, pristine: tuple[Path, Counter[Event]], state: Callable[[Path], bool]
) -> None:
    _, events = pristine
    with compact_running(root) as process:
        seen = kill_when(process, lambda: state(root))
    assert seen, "compact ended before the state was seen"
    assert process.returncode == -signal.SIGKILL
    assert 0 < compacted_partitions(root) < len(SYMBOLS) or staged_names(root)

    for reader in READERS:
        assert events_read(reader, root) == events, reader

    rerun = run_cli("compact", "--root", str(root), timeout=120)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    for reader in READERS:
        assert events_read(reader, root) == events, reader
    assert compacted_partitions(root) == len(SYMBOLS)
    assert not (root / STAGING_ROOT_NAME).exists()
    assert not outside_holder(root).exists()


def test_duckdb_and_polars_read_the_root_while_compact_runs(
    root: Path, pristine: tuple[Path, Counter[Event]]
) -> None:
    _, events = pristine
    with compact_running(root) as process:
        stderr = watch_readers_while_compact_runs(process, root, events)
    assert process.returncode == 0, stderr
    for reader in READERS:
        assert events_read(reader, root) == events, reader


def watch_readers_while_compact_runs(
    process: subprocess.Popen[bytes],
    root: Path,
    events: Counter[Event],
) -> bytes:
    """Read with DuckDB and polars while ``process`` compacts ``root``; its stderr at the end."""
    # Once for certain, mid-run: the run paused between two partitions, both readers read
    # every event once (nothing is staged then).
    paused = False
    while process.poll() is None and not paused:
        if not between_partitions(root):
            continue
        os.kill(process.pid, signal.SIGSTOP)
        _, status = os.waitpid(process.pid, os.WUNTRACED)
        if not os.WIFSTOPPED(status):
            break
        if between_partitions(root):
            for reader in ("duckdb", "polars"):
                assert events_read(reader, root) == events, reader
            paused = True
        os.kill(process.pid, signal.SIGCONT)
    assert paused, "compact ended before it was seen between two partitions"
    # Then as often as they can while it runs on: no reader fails but for the race below,
    # and each reads every event exactly once.
    while process.poll() is None:
        for reader in ("duckdb", "polars"):
            try:
                rows = events_read(reader, root)
            except Exception as exc:  # noqa: BLE001 - every failure is classified below
                failure = str(exc)
            else:
                failure = ""
            if failure:
                # A query that listed the old parts just before a swap and opened one after
                # its deletion; the same query run again reads the new file.
                assert "No such file" in failure or "No files found" in failure, failure
                continue
            # The holder is next to the root: no moment shows a partition twice or not at all.
            assert rows == events, reader
    _, stderr = process.communicate(timeout=60)
    return stderr
