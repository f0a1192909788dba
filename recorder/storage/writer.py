"""The dataset writer: write-ahead log first, sealed Parquet files later, recovery on start.

How events travel:

1. :meth:`DatasetWriter.write_ahead` builds one Arrow batch of a flush (:mod:`.wal_batch`),
   logs it with one fsync whatever the number of symbols: then it survives a crash. The batch is
   kept in memory, cut into zero-copy per-partition slices: a partition's *buffered rows*
   (:mod:`recorder.storage.partition_buffers`) are its rows logged since it was last sealed.
2. :meth:`DatasetWriter.take_seal_jobs` asks :class:`~recorder.storage.sealing.SealPolicy` what
   is due and detaches those partitions as jobs (:mod:`recorder.storage.seal_jobs`), which
   :meth:`DatasetWriter.publish` turns into files (:mod:`recorder.storage.publisher`): rows
   sorted by ``event_time``, written to a temporary name in the partition directory, fsynced,
   renamed into place, the directory fsynced. :meth:`DatasetWriter.finish_seals` takes the
   results back: only then is a ``SEALED`` record logged. Publishing runs beside the
   write-ahead flush (another thread), so a rotation or a day end never holds up durability;
   :meth:`DatasetWriter.seal_due` does all three in one call. Every ``max_file_age`` the
   segment rotates: a new segment starts, every partition with rows in the old one is due, and
   the old one is deleted once they are all sealed.
3. :meth:`DatasetWriter.open` first takes this instance's lock
   (:mod:`recorder.storage.locking`), then replays what earlier sessions left in the log (this
   instance's and those of dead instances) and publishes every partition not marked as sealed
   (:mod:`recorder.storage.recovery`, which also explains why that never duplicates).

Failures: an :class:`OSError` (disk full, read-only file system, permission denied) surfaces as
:class:`~recorder.errors.StorageError`. Nothing is lost silently: events whose append failed
stay in memory (*pending*) and are logged first on the next call, partitions whose publication
failed are retried with backoff, and the segment is cut back to its last good record (or, if
even that fails, abandoned for a new one). Pending rows are bounded by the caller:
:meth:`DatasetWriter.drop_oldest_pending` gives up the oldest and says which.

Threading: every method but :meth:`DatasetWriter.publish` must be called from one thread at a
time (the service's flush thread); :meth:`~DatasetWriter.publish` may run in another thread
beside them, on jobs that :meth:`~DatasetWriter.take_seal_jobs` returned.
"""

import contextlib
import enum
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pyarrow as pa

from recorder.clock import Clock
from recorder.errors import ConfigError, StorageError
from recorder.event_columns import EventRows
from recorder.instance import validate_instance_id
from recorder.model import Rejection
from recorder.storage.held_rows import SymbolRows, rows_by_symbol
from recorder.storage.locking import InstanceLock, lock_own_instance
from recorder.storage.partition_buffers import PartitionBuffers
from recorder.storage.paths import PartitionKey, data_file_name, instance_wal_dir, new_session_token
from recorder.storage.pending import PendingRecords
from recorder.storage.publisher import SealedFile
from recorder.storage.recovery import RecoveryReport, recover_leftovers
from recorder.storage.root_schema import claim_root
from recorder.storage.schema import warm_up
from recorder.storage.seal_jobs import SealJob, SealJobs, SealResult, publish_job, sealed_marker
from recorder.storage.sealing import OpenPartition, SealPolicy, SealReason
from recorder.storage.segment_chain import SegmentChain
from recorder.storage.spill import SPILL_DIR_NAME, SpillFiles
from recorder.storage.wal import RecordType, WalRecord, encode_batch, encode_json
from recorder.storage.wal_batch import build_flush_batch, newest_event_ms


class _WriterState(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class DatasetWriter:
    """Durable writing of miniTicker events into the Hive-partitioned Parquet dataset.

    Blocking I/O; not thread-safe, except :meth:`publish` (see the module docstring). Call
    :meth:`open` first and :meth:`close` at the end.

    The root must be on a local POSIX file system: durability rests on ``fsync`` of files and
    directories, atomic ``rename`` and ``flock``. While the log cannot be written, events are
    held in memory (:attr:`pending_rows`); bounding that is the caller's decision
    (:meth:`drop_oldest_pending`).

    Args:
        root: the dataset root, a local directory (created if missing).
        instance_id: this recorder's name, unique among the recorders writing into ``root``
            at the same time; its write-ahead log lives in ``<root>/_wal/<instance_id>``.
        max_file_age: seconds between write-ahead segment rotations (every partition with rows
            in the old segment is sealed then): the longest data waits before it is sealed.
        max_file_bytes: buffered Arrow bytes above which a partition is sealed early.
        day_grace_ms: how long past midnight of ``E`` a day's partitions stay open.
        clock: monotonic time for the age rule and retries, wall time for the session stamp.
        buffer_budget: buffered Arrow bytes above which the largest partitions are sealed
            early (:class:`~recorder.storage.sealing.SealPolicy`); ``None`` for no budget.
        publish_budget: Arrow bytes of partitions handed over for publication at once (the
            rest stays buffered and due); with ``buffer_budget``, the bound above which the
            largest partitions' rows move to :mod:`recorder.storage.spill` files.

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
        buffer_budget: int | None = None,
        publish_budget: int | None = None,
    ) -> None:
        if publish_budget is not None and publish_budget <= 0:
            raise ConfigError(f"publish_budget={publish_budget!r}: expected bytes > 0")
        self._root = root
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
        wal_dir = instance_wal_dir(root, self._instance_id)
        self._segments = SegmentChain(wal_dir)
        self.spill = SpillFiles(wal_dir / SPILL_DIR_NAME)
        """Where rows go while publication lags: its ``files`` and ``failures`` are counts."""
        self._publish_budget = publish_budget
        self._spill_above = None
        if buffer_budget is not None and publish_budget is not None:
            self._spill_above = buffer_budget + publish_budget
        self._rotation_started_at = 0.0
        self._next_lsn = 1
        self._buffers = PartitionBuffers()
        self._jobs = SealJobs()
        self._unlogged = PendingRecords()
        self._logged: list[pa.RecordBatch] = []
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
        """Rows durable in the log and not yet in a sealed file (being sealed included)."""
        return self._buffers.rows + self._jobs.rows

    @property
    def buffered_bytes(self) -> int:
        """Arrow bytes of the :attr:`buffered_rows` held in memory (spilled rows are not)."""
        return self._buffers.held_nbytes + self._jobs.nbytes

    @property
    def spilled_bytes(self) -> int:
        """Arrow bytes of the buffered rows moved to spill files, waiting for publication."""
        partitions = [*self._buffers.partitions.values(), *(j.partition for j in self._jobs)]
        return sum(partition.spilled_nbytes for partition in partitions)

    @property
    def open_partitions(self) -> int:
        """Partitions with buffered rows."""
        return len(self._buffers.partitions)

    @property
    def sealing_partitions(self) -> int:
        """Partitions handed over for publication and not yet published."""
        return len(self._jobs)

    @property
    def pending_rows(self) -> int:
        """Rows not yet logged (an append failed, or held), kept to be logged first."""
        return self._unlogged.rows

    @property
    def pending_bytes(self) -> int:
        """Arrow bytes of :attr:`pending_rows`."""
        return self._unlogged.nbytes

    @property
    def wal_bytes(self) -> int:
        """Bytes of write-ahead segments held by this writer."""
        return self._segments.length

    @property
    def newest_event_ms(self) -> int | None:
        """The newest ``E`` logged by this writer, ``None`` before the first event."""
        return self._newest_event_ms

    def open(
        self,
        *,
        claimed: InstanceLock | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> RecoveryReport:
        """Take this instance's lock, recover what earlier sessions left, start a new segment.

        Recovers this instance's own leftover segments and those of every other instance
        whose lock is free (its recorder is dead); instances whose lock is held are skipped.

        Args:
            claimed: this instance's lock, already held (:func:`~recorder.storage.locking.
                claim_instance`); taken here when ``None``.
            should_stop: passed to the recovery, which ends early once it answers true.

        Raises:
            StorageError: the root cannot be used, this instance's lock is held by another
                process, or recovery could not publish (nothing is lost: the log stays).
        """
        if self._state is not _WriterState.NEW:
            raise StorageError("a DatasetWriter is opened once")
        own_dir = instance_wal_dir(self._root, self._instance_id)
        lock = claimed or lock_own_instance(self._root, own_dir)
        opened = False
        try:
            lock.write_holder(recovering=False)
            claim_root(self._root)
            report = recover_leftovers(self._root, self._instance_id, should_stop)
            self._session = new_session_token(self._instance_id, self._clock.wall_us())
            self._segments.start(self._session)
            opened = True
        except OSError as exc:
            raise StorageError(f"cannot open the dataset writer: {exc}") from exc
        finally:
            if not opened:
                lock.release(remove=False)
        self._lock, self._state = lock, _WriterState.OPEN
        self._rotation_started_at = self._clock.monotonic()
        warm_up()
        return report

    def write_ahead(self, events: EventRows, *, hold: bool = False) -> list[Rejection]:
        """Log ``events`` durably, with one fsync for all of them.

        Events from an earlier call that are not logged yet are logged first. On return every
        accepted event will survive a crash and appear exactly once in the dataset.

        Args:
            events: the events of one flush.
            hold: keep these events, and every row still pending, out of the log until a call
                without ``hold``: the service holds them while the gap records they (or the
                pending rows) close are not durable.

        Returns:
            Events that cannot be stored (an unsafe symbol, a value that does not fit its
            column), which the decoder normally rejects first; the caller quarantines them.

        Raises:
            StorageError: the log cannot be written. The events are kept in memory and logged
                first on the next call.
        """
        self._require_open()
        rejections: list[Rejection] = []
        if len(events):
            batch = build_flush_batch(events, rejections)
            if batch.num_rows:
                record = WalRecord(RecordType.DATA, self._take_lsn(), encode_batch(batch))
                self._unlogged.append(record, batch)
        self._unlogged.hold(held=hold)
        try:
            self._log_unlogged()
        except OSError as exc:
            raise StorageError(
                f"write-ahead log append failed, {self.pending_rows} rows held in memory: {exc}"
            ) from exc
        return rejections

    def take_durable(self) -> dict[str, SymbolRows]:
        """The rows logged since the last call, per symbol: what became durable."""
        logged, self._logged = self._logged, []
        return rows_by_symbol(logged)

    def first_pending_after(self, after: Mapping[str, int]) -> dict[str, int]:
        """For each symbol of ``after``, the oldest pending ``E`` newer than its value there."""
        return self._unlogged.first_after(after)

    def drop_oldest_pending(
        self, keep_bytes: int, protect: Mapping[str, frozenset[int]] | None = None
    ) -> dict[str, SymbolRows]:
        """Give up the oldest pending rows, a record at a time, until ``keep_bytes`` are left.

        For a storage outage longer than the memory budget allows: the caller logs gaps (cause
        ``storage``) for what is returned. ``SEALED`` records are kept: they hold no rows.

        Args:
            keep_bytes: the Arrow bytes of pending rows that may stay.
            protect: per symbol, the ``E`` of rows kept even in a dropped record: those that
                close a storage gap already logged.

        Returns:
            The rows dropped, per symbol.
        """
        return self._unlogged.drop_oldest(keep_bytes, protect or {})

    def seal_due(self) -> list[SealedFile]:
        """Publish what is due in this thread: take the jobs, publish them, finish them.

        Returns:
            The files sealed now, and those sealed by an earlier call that then failed.

        Raises:
            StorageError: publishing or logging failed; what was not published is retried.
        """
        return self.finish_seals([self.publish(job) for job in self.take_seal_jobs()])

    def take_seal_jobs(self) -> list[SealJob]:
        """Detach the partitions due for publication, rotating the segment when that is due.

        Also issues again the failed jobs whose retry is due. Hand every job to
        :meth:`publish` (in any thread) and its result to :meth:`finish_seals`.

        Raises:
            StorageError: the segment could not be rotated; nothing is lost.
        """
        self._require_open()
        now = self._clock.monotonic()
        plan = self._policy.plan(
            now=now,
            segment_started_at=self._rotation_started_at,
            newest_event_ms=self._newest_event_ms,
            # A partition with a job in flight waits for it: its files are published in order.
            partitions=[
                OpenPartition(key, partition.nbytes, partition.first_lsn)
                for key, partition in self._buffers.partitions.items()
                if key not in self._jobs
            ],
            retired_through_lsn=self._segments.retired_through_lsn,
        )
        if plan.rotate_segment:
            try:
                # The old segment's partitions are due (retired_through_lsn) until sealed; the
                # segment is deleted once they are.
                self._segments.rotate()
            except OSError as exc:
                raise StorageError(f"rotating the write-ahead segment failed: {exc}") from exc
            self._rotation_started_at = now
        jobs = self._jobs.due_retries(now)
        sizes = [(key, self._buffers.partitions[key].held_nbytes) for key, _ in plan.seals]
        room = self._jobs.room_for(sizes, self._publish_budget)
        jobs.extend(self._detach(key, reason) for key, reason in plan.seals[:room])
        self._spill_over_budget()
        return jobs

    def publish(self, job: SealJob) -> SealResult:
        """Publish one job's file; safe to run in another thread beside the other methods."""
        return publish_job(self._root, job)

    def finish_seals(self, results: Iterable[SealResult]) -> list[SealedFile]:
        """Take publication results back: log a ``SEALED`` record for each file, retry failures.

        Returns:
            The files sealed now, and those sealed by an earlier call that then failed.

        Raises:
            StorageError: a job failed (it is retried after a backoff, the others are done), or
                the ``SEALED`` records could not be logged (they are logged on a later call).
        """
        self._require_open()
        failed: list[SealResult] = []
        now = self._clock.monotonic()
        for result in results:
            if result.job.key not in self._jobs:
                continue
            self._jobs.finish(result, now=now)
            if result.error is not None:
                failed.append(result)
                continue
            self.spill.remove(result.job.spilled)
            self._queue_marker(result.job)
            if result.sealed is not None:
                self._sealed_unreported.append(result.sealed)
        try:
            self._log_unlogged()
            self._segments.delete_retired(self._oldest_buffered_lsn())
        except OSError as exc:
            raise StorageError(f"logging the sealed files failed: {exc}") from exc
        if failed:
            first = failed[0]
            raise StorageError(
                f"{len(failed)} partition(s) could not be published (retried later), first "
                f"{first.job.key}: {first.error}"
            ) from first.error
        return self._take_unreported()

    def close(self) -> list[SealedFile]:
        """Seal everything, delete the write-ahead log and release the instance lock.

        Idempotent. No :meth:`publish` may be running: the jobs still unfinished are published
        here, in this thread, before the rest. If sealing fails the writer stays open: call
        again, or exit and let the next :meth:`open` recover from the log.

        Returns:
            The files sealed now, and those sealed by an earlier call that then failed.

        Raises:
            StorageError: logging or publishing failed; nothing is lost.
        """
        if self._state is not _WriterState.OPEN:
            return []
        try:
            self._log_unlogged()
        except OSError as exc:
            raise StorageError(f"closing failed: {exc}") from exc
        # Rounds: a partition with a job in flight kept a newer buffer for after it.
        while len(self._jobs) or self._buffers.partitions:
            for key in sorted(self._buffers.partitions):
                if key not in self._jobs:
                    self._detach(key, SealReason.CLOSE)
            self._sealed_unreported[:0] = self.finish_seals(
                [self.publish(job) for job in list(self._jobs)]
            )
        if self._unlogged:
            # Held rows: the gap records they close never became durable, so neither may they.
            raise StorageError(f"closing failed: {self.pending_rows} rows could not be logged")
        sealed = self._take_unreported()
        self._segments.close_and_delete()
        with contextlib.suppress(OSError):
            # Everything in them is published; a stray copy is removed on the next start.
            self.spill.clear()
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

    def _detach(self, key: PartitionKey, reason: SealReason) -> SealJob:
        """Move ``key``'s buffer into a new job, issued now."""
        partition = self._buffers.partitions.pop(key)
        name = data_file_name(self._session, partition.first_lsn)
        job = SealJob(key, name, reason, partition, tuple(partition.batches), partition.spill_files)
        self._jobs.issue(job)
        return job

    def _spill_over_budget(self) -> None:
        """While publication lags, move the largest partitions' rows out of memory."""
        if self._spill_above is not None:
            self.spill.spill_largest(
                self._buffers.partitions.values(), self.buffered_bytes, self._spill_above
            )

    def _queue_marker(self, job: SealJob) -> None:
        marker = encode_json(sealed_marker(job))
        self._unlogged.append(WalRecord(RecordType.SEALED, self._take_lsn(), marker))

    def _log_unlogged(self) -> None:
        """Append the unlogged records not held, oldest first, then account for them.

        Normally that is one append and one fsync. A backlog left by a storage outage is
        appended in chunks (:meth:`~recorder.storage.pending.PendingRecords.next_chunk`), each
        made durable before the next, so that it goes out as space comes back.

        Raises:
            OSError: a chunk could not be appended; it and the records after it stay unlogged.
        """
        while chunk := self._unlogged.next_chunk():
            self._segments.append([item.record for item in chunk])
            for item in chunk:
                if item.batch is not None:
                    self._buffers.add_batch(item.record.lsn, item.batch)
                    self._logged.append(item.batch)
                    newest = newest_event_ms(item.batch)
                    if self._newest_event_ms is None or newest > self._newest_event_ms:
                        self._newest_event_ms = newest
            self._unlogged.remove_first(len(chunk))

    def _oldest_buffered_lsn(self) -> int | None:
        oldest = [partition.first_lsn for partition in self._buffers.partitions.values()]
        in_flight = self._jobs.oldest_lsn
        return min(oldest if in_flight is None else [*oldest, in_flight], default=None)
