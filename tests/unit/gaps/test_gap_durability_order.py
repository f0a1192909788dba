"""The gap log's and the state file's durable steps, against a simulated power loss.

Like ``tests/unit/storage/test_durability_order.py``: the real code on a real directory under
:func:`power_loss.watch`, checked for the order of its syncs and for what a power loss at every
moment keeps.
"""

from collections.abc import Sequence
from pathlib import Path

import pytest
from gap_samples import T0, gap
from power_loss import SYNCS, WRITES, CrashImage, Disk, Killed, Op, new_root, rel, watch

from recorder.clock import event_date
from recorder.gaps.detector import Gap
from recorder.gaps.log import GapLog
from recorder.gaps.records import RecordKey
from recorder.gaps.scan import scan_gap_log
from recorder.gaps.state import read_states, state_file, write_state

DAY = event_date(T0)


def where(ops: Sequence[Op], kinds: frozenset[str] | str, path: str) -> list[int]:
    wanted = frozenset({kinds}) if isinstance(kinds, str) else kinds
    return [i for i, op in enumerate(ops) if op.kind in wanted and op.path == path]


def first_after(ops: Sequence[Op], start: int, kinds: frozenset[str] | str, path: str) -> int:
    later = [i for i in where(ops, kinds, path) if i > start]
    assert later, f"no {kinds} of {path} after op #{start}: {ops[start]}"
    return later[0]


def last_image(disk: Disk, mode: str) -> CrashImage:
    return next(image for image in reversed(disk.images) if image.mode == mode)


def keys(gaps: Sequence[Gap]) -> set[RecordKey]:
    return {g.key for g in gaps}


# -- the gap log ------------------------------------------------------------------------------


def test_a_gap_log_flush_is_durable_under_its_name_when_it_returns(tmp_path: Path) -> None:
    # Invariant: when flush() returns, what a power loss keeps holds every line written: the
    # file synced after its last write, a new file's and new directories' names synced.
    live = new_root(tmp_path)
    log = GapLog(live, "alpha")
    path = log.path_for(DAY)
    name = rel(live, path)
    with watch(live) as disk:
        for flush in range(2):  # a new day directory and file, then an append
            start = len(disk.ops)
            log.append([gap(to_ms=T0 + 10_000 * (flush + 1))])
            assert log.flush() == 1
            disk.mark(flush)
            ops = disk.ops[start:]
            assert where(ops, SYNCS, name)[-1] > where(ops, WRITES, name)[-1]
            assert last_image(disk, "synced").tree.get(name) == path.read_bytes()
    ops = disk.ops
    (made_gaps,) = where(ops, "mkdir", "_gaps")
    first_after(ops, made_gaps, "fsync", ".")
    (made_day,) = where(ops, "mkdir", rel(live, path.parent))
    first_after(ops, made_day, "fsync", "_gaps")
    (created,) = where(ops, "create", name)
    first_after(ops, created, "fsync", rel(live, path.parent))


def test_a_power_loss_at_any_moment_of_the_gap_log_keeps_flushed_gaps_and_whole_lines(
    tmp_path: Path,
) -> None:
    # Invariant: a power loss at any moment keeps every gap of every flush that returned, and
    # no torn line.
    live = new_root(tmp_path)
    log = GapLog(live, "alpha")
    flushes = [
        [gap(to_ms=T0 + 10_000), gap("ETHUSDT")],
        [gap(to_ms=T0 + 20_000), gap(from_ms=T0 + 86_400_000, to_ms=T0 + 86_410_000)],
        [gap("币安人生USDT", to_ms=T0 + 30_000)],
    ]
    with watch(live, note=0) as disk:
        for number, gaps in enumerate(flushes, start=1):
            log.append(gaps)
            log.flush()
            disk.mark(number)
    assert len(disk.images) > 10
    for number, image in enumerate(disk.images):
        scan = scan_gap_log(image.restore(tmp_path / "crash" / f"{number}-{image.mode}"))
        assert isinstance(image.note, int)
        flushed = keys([g for gaps in flushes[: image.note] for g in gaps])
        assert not scan.torn, image.label
        assert flushed <= keys(scan.gaps), f"{image.label}: flushed gaps lost"


# -- the state file ---------------------------------------------------------------------------


def test_the_state_file_is_synced_aside_renamed_and_its_directory_synced(tmp_path: Path) -> None:
    # Invariant: mkdir(_state) -> fsync(root); fsync(temp) with the whole document ->
    # replace(temp, state) -> fsync(_state), all before write_state returns.
    live = new_root(tmp_path)
    path = state_file(live, "alpha")
    name = rel(live, path)
    temp = f"_state/.{path.name}.tmp"
    with watch(live) as disk:
        for second in range(2):
            start = len(disk.ops)
            write_state(live, "alpha", {"BTCUSDT": T0 + second}, ["BTCUSDT"], wall_us=T0 * 1000)
            disk.mark(second)
            ops = disk.ops[start:]
            (replaced,) = where(ops, "replace", temp)
            assert ops[replaced].target == name
            synced = [i for i in where(ops, SYNCS, temp) if i < replaced]
            assert synced, "the state file replaced without a sync"
            assert ops[synced[-1]].data == path.read_bytes()
            first_after(ops, replaced, "fsync", "_state")
            assert last_image(disk, "synced").tree.get(name) == path.read_bytes()
    (made,) = where(disk.ops, "mkdir", "_state")
    first_after(disk.ops, made, "fsync", ".")


def test_a_power_loss_at_any_moment_of_a_state_write_leaves_a_whole_state(
    tmp_path: Path,
) -> None:
    # Invariant: after a power loss at any moment, the state file is absent (before the first
    # write returned) or a whole document, at least as new as the last write that returned.
    live = new_root(tmp_path)
    with watch(live, note=0) as disk:
        for number in range(1, 4):
            write_state(live, "alpha", {"BTCUSDT": T0 + number}, ["BTCUSDT"], wall_us=T0 * 1000)
            disk.mark(number)
    assert len(disk.images) > 6
    for number, image in enumerate(disk.images):
        root = image.restore(tmp_path / "crash" / f"{number}-{image.mode}")
        states = read_states(root)  # raises on a torn or empty document
        assert isinstance(image.note, int)
        if image.note == 0:
            continue
        assert len(states) == 1, f"{image.label}: the state file is lost"
        assert states[0].last_event_times["BTCUSDT"] >= T0 + image.note, image.label


def test_a_state_directory_a_killed_process_made_is_made_durable_by_the_next_write(
    tmp_path: Path,
) -> None:
    # Invariant: kill -9, restart, write_state returns, then a power loss: the state survives.
    live = new_root(tmp_path)
    with watch(live) as disk:
        disk.kill_when = lambda op: op.kind == "mkdir" and op.path == "_state"
        with pytest.raises(Killed):
            write_state(live, "alpha", {"BTCUSDT": T0}, ["BTCUSDT"])
        disk.reap()
        write_state(live, "alpha", {"BTCUSDT": T0 + 1}, ["BTCUSDT"])
        disk.mark("written")
    root = last_image(disk, "synced").restore(tmp_path / "crash")
    assert [s.last_event_times for s in read_states(root)] == [{"BTCUSDT": T0 + 1}]
