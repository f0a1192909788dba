"""The dataset writer: write-ahead log first, sealed Parquet files later, recovery on start.

How events travel:

1. :meth:`DatasetWriter.write_ahead` builds one Arrow batch from a flush worth of events
   (:mod:`recorder.storage.wal_batch`), appends it to the write-ahead log and fsyncs once,
   whatever the number of symbols. When it returns, the events survive a crash. The batch is
   kept in memory, cut into zero-copy per-partition slices: a partition's *buffered rows*
   (:mod:`recorder.storage.partition_buffers`) are its rows logged since it was last sealed.
2. :meth:`DatasetWriter.seal_due` asks :class:`~recorder.storage.sealing.SealPolicy` what is due and
   publishes those partitions (:mod:`recorder.storage.publisher`): rows sorted by
   ``event_time``, written to a temporary name in the partition directory, fsynced, renamed
   into place, the directory fsynced. Only then is a ``SEALED`` record logged. Every
   ``max_file_age`` the segment rotates: everything is sealed, a new segment starts and the old
   one is deleted.
3. :meth:`DatasetWriter.open` first takes this instance's lock
   (:mod:`recorder.storage.locking`), then replays what earlier sessions left in the log (this
   instance's and those of dead instances) and publishes every partition not marked as sealed
   (:mod:`recorder.storage.recovery`, which also explains why that never duplicates).

Failures: an :class:`OSError` (disk full, read-only file system, permission denied) surfaces as
:class:`~recorder.errors.StorageError`. Nothing is lost: events whose append failed stay in
memory and are logged first on the next call, partitions whose publication failed stay
buffered, and the segment is cut back to its last good record (or, if even that fails,
abandoned for a new one).

Threading: all methods do blocking I/O and must be called from one thread at a time; the
service calls them through :func:`asyncio.to_thread`, one call at a time.
"""

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from recorder.clock import Clock
from recorder.errors import StorageError
from recorder.instance import validate_instance_id
from recorder.model import MiniTicker, Rejection
from recorder.storage.locking import InstanceLock, lock_own_instance
from recorder.storage.partition_buffers import PartitionBuffers
from recorder.storage.paths import PartitionKey, data_file_name, instance_wal_dir, new_session_token
from recorder.storage.publisher import SealedFile, publish_partition
from recorder.storage.recovery import RecoveryReport, recover_leftovers
from recorder.storage.sealing import OpenPartition, SealPolicy, SealReason
from recorder.storage.segment_chain import SegmentChain
from recorder.storage.wal import RecordType, SealedMarker, WalRecord, encode_batch, encode_json
from recorder.storage.wal_batch import build_flush_batch, newest_event_ms


@dataclass(slots=True)
class _UnloggedRecord:
    """A record built but not yet durably appended, kept to be re-sent with the same lsn."""

    record: WalRecord
    batch: pa.RecordBatch | None = None


class _WriterState(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


MAX_APPEND_BYTES = 4 * 1024 * 1024
"""The most one write-ahead append carries when a backlog is logged (always one record at least)."""


def _leading_chunk(records: list[_UnloggedRecord], limit: int) -> list[_UnloggedRecord]:
    """The oldest records whose payloads fit in ``limit`` bytes, at least one."""
    size = 0
    for count, item in enumerate(records):
        size += len(item.record.payload)
        if size > limit and count:
            return records[:count]
    return records[:]


class DatasetWriter:
    """Durable writing of miniTicker events into the Hive-partitioned Parquet dataset.

    Blocking I/O; not thread-safe: call from one thread at a time (the service uses
    :func:`asyncio.to_thread`). Call :meth:`open` first and :meth:`close` at the end.

    The root must be on a local POSIX file system: durability rests on ``fsync`` of files and
    directories, atomic ``rename`` and ``flock``. While the log cannot be written, events are
    held in memory (:attr:`pending_rows`); bounding that is the caller's decision.

    Args:
        root: the dataset root, a local directory (created if missing).
        instance_id: this recorder's name, unique among the recorders writing into ``root``
            at the same time; its write-ahead log lives in ``<root>/_wal/<instance_id>``.
        max_file_age: seconds between write-ahead segment rotations (every open partition is
            sealed then): the longest data waits before it is in a sealed file.
        max_file_bytes: buffered Arrow bytes above which a partition is sealed early.
        day_grace_ms: how long past midnight of ``E`` a day's partitions stay open.
        clock: monotonic time for the age rule, wall time for the session stamp.
        seal_budget: seconds one :meth:`seal_due` call may spend publishing before it leaves
            the remaining due partitions for the next call (at least one is published per
            call); ``None`` publishes everything due at once. A rotation or a day end, when
            every partition is due together, is then spread over several flushes instead of
            holding up the next write-ahead flush.
        buffer_budget: buffered Arrow bytes above which the largest partitions are sealed
            early (:class:`~recorder.storage.sealing.SealPolicy`); ``None`` for no budget.

    Raises:
        ConfigError: a limit is not positive.
        UnsafePathError: ``instance_id`` is not a safe name.
    """

    def __init__(
        self,
        root: Path,
        *,
        instance_id: str,
        max_file_age: float,
        max_file_bytes: int,
        day_grace_ms: int,
        clock: Clock,
        seal_budget: float | None = None,
        buffer_budget: int | None = None,
    ) -> None:
        self._root = root
        self._seal_budget = seal_budget
        self._instance_id = validate_instance_id(instance_id)
        self._policy = SealPolicy(
            max_file_age=max_file_age,
            max_file_bytes=max_file_bytes,
            day_grace_ms=day_grace_ms,
            buffer_budget=buffer_budget,
        )
        self._clock = clock
        self._state = _WriterState.NEW
        self._lock: InstanceLock | None = None
        self._session = ""
        self._segments = SegmentChain(instance_wal_dir(root, self._instance_id))
        self._rotation_started_at = 0.0
        self._next_lsn = 1
        self._buffers = PartitionBuffers()
        self._unlogged: list[_UnloggedRecord] = []
        self._sealed_unreported: list[SealedFile] = []
        self._newest_event_ms: int | None = None

    @property
    def root(self) -> Path:
        """The dataset root."""
        return self._root

    @property
    def instance_id(self) -> str:
        """This writer's instance id."""
        return self._instance_id

    @property
    def session(self) -> str:
        """The session token naming this writer's files; empty before :meth:`open`."""
        return self._session

    @property
    def buffered_rows(self) -> int:
        """Rows durable in the log and not yet in a sealed file."""
        return self._buffers.rows

    @property
    def buffered_bytes(self) -> int:
        """Arrow bytes of :attr:`buffered_rows`."""
        return self._buffers.nbytes

    @property
    def open_partitions(self) -> int:
        """Partitions with buffered rows."""
        return len(self._buffers.partitions)

    @property
    def pending_rows(self) -> int:
        """Rows whose append failed, held in memory to be logged first on the next call."""
        return sum(item.batch.num_rows for item in self._unlogged if item.batch is not None)

    @property
    def wal_bytes(self) -> int:
        """Bytes of write-ahead segments held by this writer."""
        return self._segments.length

    @property
    def newest_event_ms(self) -> int | None:
        """The newest ``E`` logged by this writer, ``None`` before the first event."""
        return self._newest_event_ms

    def open(self) -> RecoveryReport:
        """Take this instance's lock, recover what earlier sessions left, start a new segment.

        Recovers this instance's own leftover segments and those of every other instance
        whose lock is free (its recorder is dead); instances whose lock is held are skipped.

        Raises:
            StorageError: the root cannot be used, this instance's lock is held by another
                process, or recovery could not publish (nothing is lost: the log stays).
        """
        if self._state is not _WriterState.NEW:
            raise StorageError("a DatasetWriter is opened once")
        own_dir = instance_wal_dir(self._root, self._instance_id)
        lock = lock_own_instance(self._root, own_dir)
        opened = False
        try:
            lock.write_holder(recovering=False)
            report = recover_leftovers(self._root, self._instance_id)
            self._session = new_session_token(self._instance_id, self._clock.wall_us())
            self._segments.start(self._session)
            opened = True
        except OSError as exc:
            raise StorageError(f"cannot open the dataset writer: {exc}") from exc
        finally:
            if not opened:
                lock.release(remove=False)
        self._lock = lock
        self._rotation_started_at = self._clock.monotonic()
        self._state = _WriterState.OPEN
        return report

    def write_ahead(self, events: Sequence[MiniTicker]) -> list[Rejection]:
        """Log ``events`` durably, with one fsync for all of them.

        Events from an earlier call whose append failed are logged first. On return every
        accepted event will survive a crash and appear exactly once in the dataset.

        Returns:
            Events that cannot be stored (a symbol unsafe as a directory name, a value that
            does not fit its column); the decoder normally rejects those first. The caller
            quarantines them.

        Raises:
            StorageError: the log cannot be written. The events are kept in memory and logged
                first on the next call.
        """
        self._require_open()
        rejections: list[Rejection] = []
        if events:
            batch = build_flush_batch(events, rejections)
            if batch.num_rows:
                record = WalRecord(RecordType.DATA, self._take_lsn(), encode_batch(batch))
                self._unlogged.append(_UnloggedRecord(record, batch))
        try:
            self._log_unlogged()
        except OSError as exc:
            raise StorageError(
                f"write-ahead log append failed, {self.pending_rows} rows held in memory: {exc}"
            ) from exc
        return rejections

    def seal_due(self) -> list[SealedFile]:
        """Publish the partitions that are due, and rotate the segment when it is due.

        Returns:
            The files sealed now, and those sealed by an earlier call that then failed.

        Raises:
            StorageError: publishing or logging failed. What was not published stays buffered
                and is tried again on the next call.
        """
        self._require_open()
        try:
            self._log_unlogged()
            now = self._clock.monotonic()
            plan = self._policy.plan(
                now=now,
                segment_started_at=self._rotation_started_at,
                newest_event_ms=self._newest_event_ms,
                partitions=[
                    OpenPartition(key, partition.nbytes, partition.first_lsn)
                    for key, partition in self._buffers.partitions.items()
                ],
                retired_through_lsn=self._segments.retired_through_lsn,
            )
            if plan.rotate_segment:
                # Rotate first: the old segment's partitions stay due (retired_through_lsn)
                # and are sealed over the next calls, and the segment is deleted once they are.
                self._segments.rotate()
                self._rotation_started_at = now
            deadline = None if self._seal_budget is None else now + self._seal_budget
            self._seal(plan.seals, deadline=deadline)
            self._log_unlogged()
            self._segments.delete_retired(self._oldest_buffered_lsn())
        except OSError as exc:
            raise StorageError(f"sealing failed: {exc}") from exc
        return self._take_unreported()

    def close(self) -> list[SealedFile]:
        """Seal everything, delete the write-ahead log and release the instance lock.

        Idempotent. If sealing fails the writer stays open: call again, or exit and let the
        next :meth:`open` recover from the log.

        Returns:
            The files sealed now, and those sealed by an earlier call that then failed.

        Raises:
            StorageError: logging or publishing failed; nothing is lost.
        """
        if self._state is not _WriterState.OPEN:
            return []
        try:
            self._log_unlogged()
            self._seal([(key, SealReason.CLOSE) for key in sorted(self._buffers.partitions)])
            self._log_unlogged()
        except OSError as exc:
            raise StorageError(f"closing failed: {exc}") from exc
        sealed = self._take_unreported()
        self._segments.close_and_delete()
        if self._lock is not None:
            self._lock.release(remove=True)
            self._lock = None
        self._state = _WriterState.CLOSED
        return sealed

    # -- logging ---------------------------------------------------------------------------

    def _require_open(self) -> None:
        if self._state is not _WriterState.OPEN:
            raise StorageError(f"the dataset writer is {self._state.value}, not open")

    def _take_lsn(self) -> int:
        lsn = self._next_lsn
        self._next_lsn += 1
        return lsn

    def _take_unreported(self) -> list[SealedFile]:
        sealed, self._sealed_unreported = self._sealed_unreported, []
        return sealed

    def _log_unlogged(self) -> None:
        """Append the unlogged records, oldest first, then account for them.

        Normally that is one append and one fsync. A backlog left by a storage outage is
        appended in chunks of at most :data:`MAX_APPEND_BYTES`, each made durable before the
        next, so that it goes out as space comes back instead of needing all of it at once.

        Raises:
            OSError: a chunk could not be appended; it and the records after it stay unlogged.
        """
        while self._unlogged:
            chunk = _leading_chunk(self._unlogged, MAX_APPEND_BYTES)
            self._segments.append([item.record for item in chunk])
            for item in chunk:
                if item.batch is not None:
                    self._buffers.add_batch(item.record.lsn, item.batch)
                    newest = newest_event_ms(item.batch)
                    if self._newest_event_ms is None or newest > self._newest_event_ms:
                        self._newest_event_ms = newest
            del self._unlogged[: len(chunk)]

    def _oldest_buffered_lsn(self) -> int | None:
        partitions = self._buffers.partitions.values()
        return min((partition.first_lsn for partition in partitions), default=None)

    # -- sealing ---------------------------------------------------------------------------

    def _seal(
        self, seals: Iterable[tuple[PartitionKey, SealReason]], *, deadline: float | None = None
    ) -> None:
        """Publish the partitions of ``seals`` and queue their ``SEALED`` records.

        With a ``deadline`` (monotonic seconds), stop once it has passed: the partitions left
        stay buffered and due, for the next call.

        Raises:
            OSError: publishing a partition failed; it stays buffered, and every other
                partition was still published (one partition that cannot be written never
                holds up the others).
        """
        failures: list[tuple[PartitionKey, OSError]] = []
        for attempted, (key, reason) in enumerate(seals):
            if attempted and deadline is not None and self._clock.monotonic() >= deadline:
                break
            partition = self._buffers.partitions.get(key)
            if partition is None:
                continue
            name = data_file_name(self._session, partition.first_lsn)
            try:
                sealed = publish_partition(self._root, key, partition.batches, name, reason)
            except OSError as exc:
                failures.append((key, exc))
                continue
            del self._buffers.partitions[key]
            marker = SealedMarker(
                date=key.date.isoformat(),
                symbol=key.symbol,
                file_name=name,
                rows=partition.rows,
                first_lsn=partition.first_lsn,
                last_lsn=partition.last_lsn,
            )
            record = WalRecord(RecordType.SEALED, self._take_lsn(), encode_json(marker))
            self._unlogged.append(_UnloggedRecord(record))
            if sealed is not None:
                self._sealed_unreported.append(sealed)
        if failures:
            key, first = failures[0]
            raise OSError(
                first.errno,
                f"{len(failures)} partition(s) could not be published, first {key}: "
                f"{first.strerror or first}",
            ) from first
