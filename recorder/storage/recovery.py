"""Recovery on start: replay the write-ahead segments earlier sessions left, publish the unsealed.

A writer starting up replays its own instance's leftover segments and those of every other
instance whose lock is free (its recorder is dead; :mod:`recorder.storage.locking`). Replay
rebuilds each session's buffered partitions exactly as the live writer had them
(:class:`~recorder.storage.partition_buffers.PartitionBuffers`), publishes every one that no
``SEALED`` record covers, then deletes the segments.

Why recovery never duplicates: a buffered partition's file is named after the writer's session
and the log sequence number of the partition's first record
(:func:`recorder.storage.paths.data_file_name`), which replay derives again from the log. A
crash between the rename and the ``SEALED`` record leaves a file whose name replay finds
already taken; the partition is then known to be published. Replay only reads the log and
publishes, so a crash during recovery just means recovering again, with the same result.

The same holds for a stop during recovery: asked to stop, recovery ends after the partition it
is publishing, keeps the segments of every session it did not finish, and the next start
publishes only what is still missing.
"""

import contextlib
import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from recorder.durable import fsync_dir
from recorder.errors import UnsafePathError
from recorder.instance import validate_instance_id
from recorder.storage.locking import InstanceLock
from recorder.storage.partition_buffers import BufferedPartition, PartitionBuffers
from recorder.storage.paths import (
    LOCK_FILE_NAME,
    WAL_SUFFIX,
    PartitionKey,
    data_file_name,
    instance_wal_dir,
    parse_data_file_name,
    parse_segment_file_name,
    partition_dir,
    session_instance_id,
    temp_file_target,
    wal_root,
)
from recorder.storage.publisher import SealedFile, publish_partition, published_last_lsn
from recorder.storage.sealing import SealReason
from recorder.storage.spill import SPILL_DIR_NAME, remove_spill_dir
from recorder.storage.wal import (
    FORMAT_VERSION,
    RecordType,
    ScanEnd,
    SegmentReader,
    WalRecord,
    decode_batch,
    decode_sealed,
    decode_segment_header,
)
from recorder.storage.wal_batch import newest_event_ms


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What :meth:`~recorder.storage.writer.DatasetWriter.open` found and did.

    Attributes:
        instances_recovered: instance directories whose log was replayed (this one included
            when it had leftovers).
        instances_skipped: instance directories locked by a running recorder, left alone.
        segments_replayed: segment files read and then deleted.
        damaged_segments: segments that ended in a torn or corrupt record; what followed the
            last good record was dropped (an append that was never acknowledged).
        files_published: buffered partitions found unsealed in the log and published now.
        files_already_published: buffered partitions whose file existed already (a crash
            after the rename, before the ``SEALED`` record): not published twice.
        problems: things left in place for an operator to look at, one sentence each.
        newest_event_ms: the newest ``E`` per symbol of every logged partition recovery found,
            published now or by an earlier run (a crash after the rename, or a recovery cut
            short): the rows the dataset holds, which the restored state must not fall behind.
        interrupted: recovery was asked to stop before it was done; what it did not publish
            stays in the log for the next start.
    """

    instances_recovered: tuple[str, ...] = ()
    instances_skipped: tuple[str, ...] = ()
    segments_replayed: int = 0
    damaged_segments: tuple[str, ...] = ()
    files_published: tuple[SealedFile, ...] = ()
    files_already_published: int = 0
    problems: tuple[str, ...] = ()
    newest_event_ms: Mapping[str, int] = dataclasses.field(default_factory=dict)
    interrupted: bool = False

    @property
    def rows_published(self) -> int:
        """Rows in :attr:`files_published`."""
        return sum(sealed.rows for sealed in self.files_published)

    def restored_event_times(self, persisted: Mapping[str, int]) -> dict[str, int]:
        """Merge the persisted newest ``E`` per symbol with the rows this recovery found.

        The state file is written after the write-ahead log, so recovered rows can be newer:
        those recovery published now, and those an earlier run published from the same log (a
        crash after the rename, or a recovery stopped part way) that the log still holds.
        """
        merged = dict(persisted)
        for sealed in self.files_published:
            merged[sealed.symbol] = max(merged.get(sealed.symbol, 0), sealed.last_event_ms)
        for symbol, newest in self.newest_event_ms.items():
            merged[symbol] = max(merged.get(symbol, 0), newest)
        return merged


def _never() -> bool:
    return False


def recover_leftovers(
    root: Path, instance_id: str, should_stop: Callable[[], bool] | None = None
) -> RecoveryReport:
    """Replay and publish what earlier sessions left in the log, then delete their segments.

    The caller holds ``instance_id``'s lock. Every other instance directory with segments is
    recovered under its lock, or skipped when a running recorder holds that lock.

    Args:
        root: the dataset root.
        instance_id: this instance.
        should_stop: asked between segments and between partitions; once it answers true,
            recovery returns (``interrupted``) and leaves the rest in the log.

    Raises:
        OSError: a file could not be read or deleted; what was not recovered stays
            in the log for the next start.
    """
    own_dir = instance_wal_dir(root, instance_id)
    report = _RecoveryFindings(should_stop=should_stop or _never)
    if _recover_instance_dir(root, own_dir, report):
        report.instances_recovered.append(instance_id)
    for directory in sorted(wal_root(root).iterdir()):
        if report.stopping():
            break
        if directory == own_dir or not directory.is_dir():
            continue
        if not any(directory.glob(f"*{WAL_SUFFIX}")):
            # Nothing to recover. Locking it anyway would race with its owner starting up.
            continue
        try:
            validate_instance_id(directory.name)
        except UnsafePathError:
            report.problems.append(f"{directory} is not an instance directory; left alone")
            continue
        try:
            lock = InstanceLock.acquire(directory)
        except FileNotFoundError:
            continue  # another recorder recovered and removed it just now
        if lock is None:
            report.instances_skipped.append(directory.name)
            continue
        try:
            lock.write_holder(recovering=True)
            if _recover_instance_dir(root, directory, report):
                report.instances_recovered.append(directory.name)
        finally:
            lock.release(remove=not any(directory.glob(f"*{WAL_SUFFIX}")))
    return report.build()


def recover_instance(root: Path, instance_id: str) -> RecoveryReport:
    """Replay and publish ``instance_id``'s leftover segments only; the caller holds its lock.

    For retiring an instance: what it logged is published before its files go.

    Raises:
        OSError: a file could not be read or deleted; the segments stay.
    """
    report = _RecoveryFindings()
    if _recover_instance_dir(root, instance_wal_dir(root, instance_id), report):
        report.instances_recovered.append(instance_id)
    return report.build()


@dataclass
class _RecoveryFindings:
    """A :class:`RecoveryReport` while it is being gathered."""

    instances_recovered: list[str] = dataclasses.field(default_factory=list)
    instances_skipped: list[str] = dataclasses.field(default_factory=list)
    segments_replayed: int = 0
    damaged_segments: list[str] = dataclasses.field(default_factory=list)
    files_published: list[SealedFile] = dataclasses.field(default_factory=list)
    files_already_published: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)
    newest_event_ms: dict[str, int] = dataclasses.field(default_factory=dict)
    should_stop: Callable[[], bool] = _never
    interrupted: bool = False

    def stopping(self) -> bool:
        """Whether to stop now; once true, true for good, and the report says so."""
        self.interrupted = self.interrupted or self.should_stop()
        return self.interrupted

    def build(self) -> RecoveryReport:
        return RecoveryReport(
            instances_recovered=tuple(self.instances_recovered),
            instances_skipped=tuple(self.instances_skipped),
            segments_replayed=self.segments_replayed,
            damaged_segments=tuple(self.damaged_segments),
            files_published=tuple(self.files_published),
            files_already_published=self.files_already_published,
            problems=tuple(self.problems),
            newest_event_ms=dict(self.newest_event_ms),
            interrupted=self.interrupted,
        )


class _SessionReplay:
    """Rebuild one session's buffered partitions from its records, as the live writer had them."""

    def __init__(self, session: str) -> None:
        self.session = session
        self.buffers = PartitionBuffers()
        self._seen: set[int] = set()

    def apply(self, record: WalRecord) -> None:
        """Apply one record.

        Raises:
            ValueError: a record that passed its checksum cannot be understood: written by
                an incompatible recorder.
        """
        if record.type == RecordType.SEGMENT:
            header = decode_segment_header(record.payload)
            if header.format_version != FORMAT_VERSION or header.session != self.session:
                raise ValueError(
                    f"segment of session {header.session!r}, format {header.format_version}: "
                    f"expected session {self.session!r}, format {FORMAT_VERSION}"
                )
            return
        # A record re-sent after a failed append may also survive, complete, in the segment
        # where the append failed: its first copy counts.
        if record.lsn in self._seen:
            return
        self._seen.add(record.lsn)
        if record.type == RecordType.DATA:
            self.buffers.add_batch(record.lsn, decode_batch(record.payload))
        elif record.type == RecordType.SEALED:
            marker = decode_sealed(record.payload)
            key = PartitionKey(dt.date.fromisoformat(marker.date), marker.symbol)
            self.buffers.apply_marker(key, marker.last_lsn)
        # Other types are for other readers of the log; they hold no rows.


def _recover_instance_dir(root: Path, directory: Path, report: _RecoveryFindings) -> bool:
    """Replay and delete every segment in ``directory``; the caller holds its lock.

    Returns:
        Whether there was anything to replay.

    A partition that cannot be published is reported in ``report.problems``; the others are
    published and the session's segments stay in place for the next start.

    Raises:
        OSError: a file could not be read or deleted; the segments stay.
    """
    with contextlib.suppress(OSError):
        # Copies of logged rows (a writer short of memory left them): the log holds them all.
        remove_spill_dir(directory)
    sessions: dict[str, list[tuple[int, Path]]] = {}
    for path in directory.iterdir():
        if path.name in {LOCK_FILE_NAME, SPILL_DIR_NAME}:
            continue
        parsed = parse_segment_file_name(path.name)
        if parsed is None:
            report.problems.append(f"{path} is not a write-ahead segment; left alone")
            continue
        sessions.setdefault(parsed.session, []).append((parsed.sequence, path))
    for session, numbered in sorted(sessions.items()):
        segments = [path for _, path in sorted(numbered)]
        replay = _SessionReplay(session)
        try:
            for path in segments:
                if report.stopping():
                    return True
                _replay_segment(path, replay, report)
        except ValueError as exc:
            report.problems.append(f"segments of session {session} left in place: {exc}")
            continue
        unpublished: list[str] = []
        for key, partition in sorted(replay.buffers.partitions.items()):
            if report.stopping():
                # What is published is found by name next time; the segments stay for the rest.
                return True
            try:
                _recover_partition(root, session, key, partition, report)
            except OSError as exc:
                # The others are still published; the segments stay for the next start, which
                # finds the published files by name and publishes only what is missing.
                unpublished.append(f"{key}: {exc}")
        if unpublished:
            report.problems.append(
                f"segments of session {session} kept: {len(unpublished)} partition(s) could "
                f"not be published, first {unpublished[0]}; the next start tries again"
            )
            continue
        for path in segments:
            path.unlink()
        fsync_dir(directory)
        report.segments_replayed += len(segments)
    return bool(sessions)


def _replay_segment(path: Path, replay: _SessionReplay, report: _RecoveryFindings) -> None:
    with path.open("rb") as stream:
        reader = SegmentReader(stream)
        for record in reader:
            replay.apply(record)
    if reader.end is not ScanEnd.CLEAN:
        report.damaged_segments.append(
            f"{path.name}: {reader.end.value} record at byte {reader.valid_length}"
        )


def _recover_partition(
    root: Path,
    session: str,
    key: PartitionKey,
    partition: BufferedPartition,
    report: _RecoveryFindings,
) -> None:
    newest = max(
        (newest_event_ms(batch) for batch in partition.batches if batch.num_rows), default=0
    )
    try:
        name = data_file_name(session, partition.first_lsn)
        while (held := published_last_lsn(root, key, name)) is not None and (
            held < partition.last_lsn
        ):
            # The live writer published this partition's older rows as a file of their own
            # (its publisher runs beside the log) and died before their SEALED record: that
            # file holds the rows through `held`, the newer ones go into a file of their own.
            report.files_already_published += 1
            partition.discard_through(held)
            name = data_file_name(session, partition.first_lsn)
        sealed = publish_partition(
            root, key, partition.batches, name, SealReason.RECOVERY, last_lsn=partition.last_lsn
        )
    except UnsafePathError as exc:
        report.problems.append(
            f"{partition.rows} logged rows of an unsafe partition dropped: {exc}"
        )
        return
    if sealed is None:
        report.files_already_published += 1
    else:
        report.files_published.append(sealed)
    report.newest_event_ms[key.symbol] = max(report.newest_event_ms.get(key.symbol, 0), newest)
    _remove_stale_temp_files(partition_dir(root, key.date, key.symbol), session)


def _remove_stale_temp_files(directory: Path, session: str) -> None:
    """Remove temporary files of ``session``'s instance (dead: its lock is held) in ``directory``.

    A publication interrupted by a crash leaves its temporary file behind; the recovered
    partition overwrites or supersedes it, and other temporary files of that instance are stale
    too.
    """
    instance = session_instance_id(session)
    for path in directory.iterdir():
        target = temp_file_target(path.name)
        parsed = None if target is None else parse_data_file_name(target)
        if parsed is not None and parsed.instance_id == instance:
            path.unlink(missing_ok=True)
