"""Every durable step of the writer, the quarantine and compaction, against a power loss.

The crash tests elsewhere copy the page cache, so they pass with an ``fsync`` removed. These run
the real code on a real directory under :func:`power_loss.watch`, which forwards every call and
keeps what a power loss would keep, and check two things: the order the design prescribes (data
synced before the name that publishes it, a name synced before anything relies on it), and what
a power loss at every moment leaves, after the real recovery code ran on it.
"""

import datetime as dt
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import compact_support
import pyarrow.parquet as pq
import pytest
from compact_support import distinct_events, live_files, read_rows, redundant_dataset, run_compact
from power_loss import SYNCS, WRITES, CrashImage, Disk, Killed, Op, new_root, rel, watch
from writer_support import (
    DAY_MS,
    GRACE_MS,
    MAX_AGE,
    Row,
    WriterFactory,
    data_files,
    dataset_rows,
    events_for,
    rows_of,
    segments,
)

from recorder.clock import ManualClock
from recorder.errors import StorageError
from recorder.model import MiniTicker, Rejection
from recorder.storage.compact import publish as compact_publish
from recorder.storage.compact.report import CompactExitCode
from recorder.storage.compact.staging import STAGING_ROOT_NAME, choose_holder, outside_holder
from recorder.storage.compact.swap import exchange_directories
from recorder.storage.paths import temp_file_name
from recorder.storage.quarantine import QUARANTINE_DIR, QuarantineLog
from recorder.storage.wal import RecordType, decode_records, decode_sealed
from recorder.storage.writer import DatasetWriter

WAL_DIR = "_wal/alpha"


# -- helpers --------------------------------------------------------------------------------


def parent_of(path: str) -> str:
    return path.rpartition("/")[0] or "."


def where(ops: Sequence[Op], kinds: frozenset[str] | str, path: str | None = None) -> list[int]:
    """Indices of the ``ops`` of those kinds (on ``path``, if given)."""
    wanted = frozenset({kinds}) if isinstance(kinds, str) else kinds
    return [i for i, op in enumerate(ops) if op.kind in wanted and path in (None, op.path)]


def first_after(ops: Sequence[Op], start: int, kinds: frozenset[str] | str, path: str) -> int:
    """The first op of those kinds on ``path`` after index ``start``; fails if there is none."""
    later = [i for i in where(ops, kinds, path) if i > start]
    assert later, f"no {kinds} of {path} after op #{start}: {ops[start]}"
    return later[0]


def last_image(disk: Disk, mode: str) -> CrashImage:
    return next(image for image in reversed(disk.images) if image.mode == mode)


def restore_all(images: Sequence[CrashImage], directory: Path) -> Iterator[tuple[CrashImage, Path]]:
    for number, image in enumerate(images):
        yield image, image.restore(directory / f"{number}-{image.mode}")


def recovered_rows(make_writer: WriterFactory, root: Path) -> Counter[Row]:
    """The dataset of ``root`` after a restart recovered it and stopped (everything sealed)."""
    writer = make_writer(root)
    writer.open()
    writer.close()
    return dataset_rows(root)


def assert_no_unreadable_file(root: Path, label: str) -> None:
    for path in data_files(root):
        try:
            pq.read_table(path)
        except (OSError, ValueError) as exc:
            pytest.fail(f"{label}: {rel(root, path)} is visible and unreadable: {exc}")


def assert_recovers(
    make_writer: WriterFactory,
    image: CrashImage,
    root: Path,
    flushes: Sequence[Sequence[MiniTicker]],
) -> None:
    """Nothing corrupt is visible; recovery keeps every acknowledged flush, each row once."""
    assert_no_unreadable_file(root, image.label)
    assert isinstance(image.note, int)
    rows = recovered_rows(make_writer, root)
    acknowledged = rows_of([e for events in flushes[: image.note] for e in events])
    written = rows_of([e for events in flushes for e in events])
    assert acknowledged - rows == Counter(), f"{image.label}: acknowledged rows lost"
    assert max(rows.values(), default=1) == 1, f"{image.label}: rows duplicated"
    assert rows - written == Counter(), f"{image.label}: rows nobody wrote"


def syncs_a_partition_directory(op: Op) -> bool:
    return op.kind == "fsync" and op.path.rpartition("/")[2].startswith("symbol=")


def killable_writer(root: Path, clock: ManualClock) -> DatasetWriter:
    """A writer outside ``make_writer``'s clean-up: a killed writer is never closed."""
    return DatasetWriter(
        root,
        instance_id="alpha",
        max_file_age=MAX_AGE,
        max_file_bytes=1 << 30,
        day_grace_ms=GRACE_MS,
        clock=clock,
    )


# -- the write-ahead log ----------------------------------------------------------------------


def test_each_write_ahead_syncs_its_segment_after_its_last_write(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    # Invariant: write_ahead returns only after the bytes it appended are fdatasynced.
    live = new_root(tmp_path)
    with watch(live) as disk:
        writer = make_writer(live)
        writer.open()
        for i in range(3):
            start = len(disk.ops)
            writer.write_ahead(events_for(DAY_MS + i * 10_000, 2))
            segment = segments(live)[-1]
            ops = disk.ops[start:]
            writes = where(ops, WRITES, rel(live, segment))
            assert writes, "write_ahead appended nothing"
            assert where(ops, SYNCS, rel(live, segment))[-1:] > writes[-1:], ops
            assert disk.durable_content(segment) == segment.read_bytes()


def test_a_power_loss_right_after_write_ahead_returns_loses_no_event(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    # Invariant: a power loss the moment write_ahead returns keeps all of its events.
    live = new_root(tmp_path)
    flushes = [events_for(DAY_MS + i * 10_000, 2) for i in range(3)]
    returned: list[CrashImage] = []
    with watch(live) as disk:
        writer = make_writer(live)
        writer.open()
        for i, events in enumerate(flushes):
            writer.write_ahead(events)
            disk.mark(i + 1)
            returned += [last_image(disk, "synced"), last_image(disk, "eager")]
    for image, root in restore_all(returned, tmp_path / "crash"):
        assert isinstance(image.note, int)
        expected = rows_of([e for events in flushes[: image.note] for e in events])
        assert recovered_rows(make_writer, root) == expected, image.label


def test_a_new_segment_is_durable_under_its_name_before_the_writer_uses_it(
    tmp_path: Path, make_writer: WriterFactory, clock: ManualClock
) -> None:
    # Invariant: when open() or a rotation returns, the new segment and the directories leading
    # to it are in what a power loss keeps; a retired segment's deletion is synced too.
    live = new_root(tmp_path)
    with watch(live) as disk:
        writer = make_writer(live)
        writer.open()
        disk.mark("opened")
        first = segments(live)[0]
        assert last_image(disk, "synced").tree.get(rel(live, first)) == first.read_bytes()

        writer.write_ahead(events_for(DAY_MS, 2))
        clock.advance(MAX_AGE)
        rotation = len(disk.ops)
        writer.seal_due()
        disk.mark("rotated")
        (second,) = segments(live)
        assert second != first
        assert last_image(disk, "synced").tree.get(rel(live, second)) == second.read_bytes()
        assert rel(live, first) not in last_image(disk, "synced").tree

    ops = disk.ops[rotation:]
    created = first_after(ops, -1, "create", rel(live, second))
    header_synced = first_after(ops, created, SYNCS, rel(live, second))
    named = first_after(ops, header_synced, "fsync", WAL_DIR)
    retired = first_after(ops, named, "unlink", rel(live, first))
    first_after(ops, retired, "fsync", WAL_DIR)


# -- publication ------------------------------------------------------------------------------


def test_a_sealed_file_is_synced_renamed_and_named_durably_before_its_sealed_record(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    # Invariant: fsync(temp) -> rename(temp, final) -> fsync(partition dir) -> SEALED appended
    # -> SEALED synced; the synced temp held every byte of the published file.
    live = new_root(tmp_path)
    with watch(live) as disk:
        writer = make_writer(live)
        writer.open()
        writer.write_ahead(events_for(DAY_MS, 3))
        segment = rel(live, segments(live)[0])
        start = len(disk.ops)
        sealed = writer.close()
    ops = disk.ops[start:]
    assert len(sealed) == 3

    sealed_writes = [
        i
        for i in where(ops, WRITES, segment)
        if any(r.type == RecordType.SEALED for r in decode_records(ops[i].data).records)
    ]
    assert len(sealed_writes) == 1, "the SEALED records go out in one append"
    (sealed_write,) = sealed_writes
    marked = {
        decode_sealed(r.payload).file_name for r in decode_records(ops[sealed_write].data).records
    }
    first_after(ops, sealed_write, SYNCS, segment)

    for file in sealed:
        final = rel(live, file.path)
        temp = rel(live, file.path.with_name(temp_file_name(file.path.name)))
        (renamed,) = [i for i in where(ops, "rename", temp) if ops[i].target == final]
        synced = [i for i in where(ops, SYNCS, temp) if i < renamed]
        assert synced, f"{temp} renamed without a sync"
        assert ops[synced[-1]].data == file.path.read_bytes(), f"{temp} synced before complete"
        named = first_after(ops, renamed, "fsync", parent_of(final))
        assert named < sealed_write, f"SEALED logged before {final}'s name was synced"
        assert file.path.name in marked


def test_every_new_directory_is_named_durably_in_its_parent_before_the_writer_relies_on_it(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    # Invariant: each directory the writer makes (make_dirs) is followed by an fsync of its
    # parent, before the call returns and before any SEALED record can name a file in it.
    live = new_root(tmp_path)
    with watch(live) as disk:
        writer = make_writer(live)
        writer.open()
        opened = len(disk.ops)
        writer.write_ahead(events_for(DAY_MS, 2) + events_for(DAY_MS + 86_400_000, 1))
        writer.close()
    made = where(disk.ops, "mkdir")
    assert {disk.ops[i].path for i in made} >= {"_wal", WAL_DIR, "date=2026-03-27"}
    assert len(made) == 2 + 2 + 3 * 2  # _wal dirs, two dates, three symbols in each
    sealed_write = where(disk.ops, "pwrite")[-1]
    for i in made:
        path = disk.ops[i].path
        named = first_after(disk.ops, i, "fsync", parent_of(path))
        assert named < (opened if path.startswith("_wal") else sealed_write), path


def test_a_power_loss_at_any_moment_keeps_every_acknowledged_event_once(
    tmp_path: Path, make_writer: WriterFactory, clock: ManualClock
) -> None:
    # Invariant (SPEC, durability): a power loss at any moment, then a restart, publishes every
    # event of every flush that returned, exactly once, and shows no unreadable file.
    live = new_root(tmp_path)
    flushes = [events_for(DAY_MS + i * 10_000, 2) for i in range(4)]
    with watch(live, note=0) as disk:
        writer = make_writer(live)
        writer.open()
        for i, events in enumerate(flushes):
            writer.write_ahead(events)
            disk.mark(i + 1)
            if i == 1:
                clock.advance(MAX_AGE)  # seal everything, rotate the segment, delete the old one
            writer.seal_due()
        writer.close()
    assert len(disk.images) > 50
    for image, root in restore_all(disk.images, tmp_path / "crash"):
        assert_recovers(make_writer, image, root, flushes)


def test_a_power_loss_during_recovery_loses_nothing(
    tmp_path: Path, make_writer: WriterFactory, clock: ManualClock
) -> None:
    # Invariant: recovery publishes durably before it deletes the log, so a power loss while
    # it runs leaves a root that the next recovery completes without loss or duplicates.
    live = new_root(tmp_path)
    flushes = [events_for(DAY_MS, 3), events_for(DAY_MS + 86_400_000, 2)]
    with watch(live) as disk:
        crashed = killable_writer(live, clock)
        crashed.open()
        for events in flushes:
            crashed.write_ahead(events)
        # kill -9 once the first partition is published, before its SEALED record
        disk.kill_when = syncs_a_partition_directory
        with pytest.raises(Killed):
            crashed.close()
        disk.reap()
        disk.mark(len(flushes))
        recovering = make_writer(live)
        start = len(disk.ops)
        recovering.open()
        assert recovering.buffered_rows == 0
        disk.mark(len(flushes))
    # The replayed segments' deletion is synced before the new session's segment is made.
    ops = disk.ops[start:]
    deleted = [i for i in where(ops, "unlink") if ops[i].path.endswith(".wal")]
    assert deleted
    assert first_after(ops, deleted[-1], "fsync", WAL_DIR) < where(ops, "create")[-1]
    recovery = [image for image in disk.images if image.note == len(flushes)]
    assert len(recovery) > 10
    for image, root in restore_all(recovery, tmp_path / "crash"):
        assert_recovers(make_writer, image, root, flushes)


# -- state a killed process left in the page cache is made durable before it is relied on ---


def test_recovery_makes_a_file_a_killed_writer_published_durable_before_deleting_the_log(
    tmp_path: Path, make_writer: WriterFactory, clock: ManualClock
) -> None:
    # Invariant: kill -9, restart, then a power loss: nothing the killed writer acknowledged
    # is lost.
    live = new_root(tmp_path)
    events = events_for(DAY_MS, 2, symbols=("BTCUSDT",))
    with watch(live) as disk:
        killed = killable_writer(live, clock)
        killed.open()
        killed.write_ahead(events)
        # kill -9 between the rename of the sealed file and the fsync of its directory
        disk.kill_when = lambda op: op.kind == "rename" and op.target.endswith(".parquet")
        with pytest.raises(Killed):
            killed.close()
        disk.reap()
        restarted = make_writer(live)
        assert restarted.open().files_already_published == 1
        disk.mark("recovered")
    root = last_image(disk, "synced").restore(tmp_path / "crash")
    assert recovered_rows(make_writer, root) == rows_of(events)


def test_a_seal_retried_after_a_failed_directory_sync_makes_the_file_durable(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    # Invariant: when close() returns, a power loss loses nothing that was logged.
    live = new_root(tmp_path)
    events = events_for(DAY_MS, 2, symbols=("BTCUSDT",))
    with watch(live) as disk:
        writer = make_writer(live)
        writer.open()
        writer.write_ahead(events)
        # EIO (or ENOSPC) from the fsync of the partition directory, after the rename
        disk.fail_sync_when = syncs_a_partition_directory
        with pytest.raises(StorageError):
            writer.close()
        assert writer.close() == []  # the retry: "already published"
        disk.mark("closed")
    root = last_image(disk, "synced").restore(tmp_path / "crash")
    assert recovered_rows(make_writer, root) == rows_of(events)


def test_a_directory_a_killed_writer_made_is_made_durable_by_the_next_publication(
    tmp_path: Path, make_writer: WriterFactory, clock: ManualClock
) -> None:
    # Invariant: kill -9, restart, then a power loss: nothing the killed writer acknowledged
    # is lost.
    live = new_root(tmp_path)
    events = events_for(DAY_MS, 2, symbols=("BTCUSDT",))
    with watch(live) as disk:
        killed = killable_writer(live, clock)
        killed.open()
        killed.write_ahead(events)
        # kill -9 between the mkdir of the partition directory and the fsync of its parent
        disk.kill_when = lambda op: op.kind == "mkdir" and "symbol=" in op.path
        with pytest.raises(Killed):
            killed.close()
        disk.reap()
        assert make_writer(live).open().rows_published == len(events)
        disk.mark("recovered")
    root = last_image(disk, "synced").restore(tmp_path / "crash")
    assert recovered_rows(make_writer, root) == rows_of(events)


# -- the quarantine ---------------------------------------------------------------------------

JUNE_9 = 1_654_791_724_000_123  # 2022-06-09T16:22:04.000123Z


def rejections(count: int, start: int = 0) -> list[Rejection]:
    return [
        Rejection(f'{{"n": {start + i}}}', "not_json: test", JUNE_9 + start + i, "0.1")
        for i in range(count)
    ]


def test_a_quarantine_flush_is_durable_under_its_name_when_it_returns(tmp_path: Path) -> None:
    # Invariant: when flush() returns, what a power loss keeps holds every line written, the
    # file synced after its last write and its name (and a new directory's) synced.
    live = new_root(tmp_path)
    quarantine = QuarantineLog(live, "alpha")
    path = quarantine.path_for(dt.date(2022, 6, 9))
    name = rel(live, path)
    with watch(live) as disk:
        for flush in range(2):  # a new directory and file, then an append
            start = len(disk.ops)
            quarantine.add(rejections(3, start=flush * 3))
            assert quarantine.flush() == 3
            disk.mark(flush)
            ops = disk.ops[start:]
            assert where(ops, SYNCS, name)[-1] > where(ops, WRITES, name)[-1]
            assert last_image(disk, "synced").tree.get(name) == path.read_bytes()
    assert len(path.read_bytes().splitlines()) == 6
    made = where(disk.ops, "mkdir", QUARANTINE_DIR)
    assert made
    first_after(disk.ops, made[0], "fsync", ".")
    first_after(disk.ops, where(disk.ops, "create", name)[0], "fsync", QUARANTINE_DIR)


def test_a_quarantine_file_a_killed_process_created_is_made_durable_on_restart(
    tmp_path: Path,
) -> None:
    # Invariant: kill -9, restart, flush, then a power loss: the flushed lines survive.
    live = new_root(tmp_path)
    (live / QUARANTINE_DIR).mkdir()  # made and synced by an earlier run
    with watch(live) as disk:
        killed = QuarantineLog(live, "alpha")
        killed.add(rejections(1))
        disk.kill_when = lambda op: op.kind == "fsync" and op.path.endswith(".jsonl")
        with pytest.raises(Killed):
            killed.flush()
        disk.reap()
        restarted = QuarantineLog(live, "alpha")
        restarted.add(rejections(2, start=1))
        assert restarted.flush() == 2
        disk.mark("flushed")
    name = rel(live, restarted.path_for(dt.date(2022, 6, 9)))
    kept = last_image(disk, "synced").tree.get(name)
    assert kept is not None
    assert kept.count(b"\n") >= 2


# -- compaction -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompactionLayout:
    """Where a compaction stages, as the power-loss model sees it.

    Attributes:
        dataset: the root compacted.
        watched: the tree the model watches: the root, or its parent with the holder beside it.
        root_prefix: the root's path in the watched tree (``""`` or ``"data/"``).
        holder: the staging holder's path in the watched tree.
    """

    dataset: Path
    watched: Path
    root_prefix: str
    holder: str


@pytest.fixture(params=["holder-next-to-the-root", "holder-inside-the-root"])
def layout(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> CompactionLayout:
    dataset = redundant_dataset(tmp_path / "tree")
    if request.param == "holder-inside-the-root":
        # As where the root's parent is another file system.
        monkeypatch.setattr(
            "recorder.storage.compact.run.choose_holder", lambda root: root / STAGING_ROOT_NAME
        )
        return CompactionLayout(dataset, dataset, "", STAGING_ROOT_NAME)
    assert choose_holder(dataset) == outside_holder(dataset)
    return CompactionLayout(dataset, dataset.parent, "data/", outside_holder(dataset).name)


def test_a_compacted_file_is_synced_and_named_before_it_is_swapped_in(
    layout: CompactionLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Invariant, per partition: staging dir named durably; new file and manifest synced before
    # their renames; renames synced (staging fsync) before the swap; the swap synced before
    # the old parts go; the cleanup synced.
    dataset = layout.dataset
    with watch(layout.watched) as disk:
        monkeypatch.setattr(
            compact_publish, "exchange_directories", disk.spy_exchange(exchange_directories)
        )
        assert run_compact(dataset).exit_code is CompactExitCode.OK
    ops = disk.ops
    for directory, (name,) in live_files(dataset).items():
        live = f"{layout.root_prefix}date=2024-05-01/{directory}"
        holder = f"{layout.holder}/date=2024-05-01"
        staging = f"{holder}/{directory}"
        final, manifest = f"{staging}/{name}", f"{staging}/.compact-manifest.json"
        (made,) = where(ops, "mkdir", staging)
        inside = min(i for i, op in enumerate(ops) if op.path.startswith(f"{staging}/"))
        assert first_after(ops, made, "fsync", holder) < inside
        (swapped,) = where(ops, "exchange", live)
        for temp, target, content in (
            (
                f"{staging}/{temp_file_name(name)}",
                final,
                (layout.watched / live / name).read_bytes(),
            ),
            (f"{staging}/{temp_file_name('.compact-manifest.json')}", manifest, None),
        ):
            (renamed,) = [i for i in where(ops, "rename", temp) if ops[i].target == target]
            synced = [i for i in where(ops, SYNCS, temp) if i < renamed]
            assert synced, f"{temp} renamed without a sync"
            assert content is None or ops[synced[-1]].data == content
            assert first_after(ops, renamed, "fsync", staging) < swapped
        # Both parents of the exchanged entries.
        exchanged = max(
            first_after(ops, swapped, "fsync", f"{layout.root_prefix}date=2024-05-01"),
            first_after(ops, swapped, "fsync", holder),
        )
        parts_removed = [i for i in where(ops, "unlink") if ops[i].path.startswith(f"{staging}/")]
        assert parts_removed
        assert min(parts_removed) > exchanged
        (cleaned,) = where(ops, "rmdir", staging)
        first_after(ops, cleaned, "fsync", holder)
        (dropped,) = where(ops, "unlink", f"{live}/.compact-manifest.json")
        first_after(ops, dropped, "fsync", live)


def test_a_power_loss_at_any_moment_of_compaction_leaves_whole_partitions(
    layout: CompactionLayout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Invariant: after a power loss at any moment, each partition reads as all its old parts
    # or the new file, never a torn mix, and the next run completes the compaction.
    dataset = layout.dataset
    before = read_rows(dataset)
    expected = Counter(distinct_events(before).values())
    with watch(layout.watched) as disk:
        monkeypatch.setattr(
            compact_publish, "exchange_directories", disk.spy_exchange(exchange_directories)
        )
        run_compact(dataset)
    assert len(disk.images) > 20
    for image, tree in restore_all(disk.images, tmp_path / "crash"):
        root = tree / layout.root_prefix
        by_partition: dict[tuple[Any, ...], Counter[compact_support.Row]] = {}
        for row, count in read_rows(root).items():
            by_partition.setdefault(row[:2], Counter())[row] = count
        assert len(by_partition) == len(compact_support.SYMBOLS), image.label
        for key, rows in by_partition.items():
            old = Counter({r: c for r, c in before.items() if r[:2] == key})
            new = Counter({r: c for r, c in expected.items() if r[:2] == key})
            assert rows in (old, new), f"{image.label}: {key} is neither old nor new"
        report = run_compact(root)
        assert report.exit_code is CompactExitCode.OK, f"{image.label}: {report.problems}"
        assert read_rows(root) == expected, image.label
        assert all(len(names) == 1 for names in live_files(root).values()), image.label
