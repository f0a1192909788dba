"""The dataset writer: write-ahead log first, sealed Parquet files later, recovery on start.

How events travel:

1. :meth:`DatasetWriter.write_ahead` builds one Arrow batch from a flush worth of events,
   appends it to the write-ahead log and fsyncs once, whatever the number of symbols. When it
   returns, the events survive a crash. The batch is kept in memory, cut into zero-copy
   per-partition slices: a partition's *run* is its rows logged since it was last sealed.
2. :meth:`DatasetWriter.seal_due` asks :class:`~recorder.storage.sealing.SealPolicy` what is due and
   publishes those runs: rows sorted by ``event_time``, written to a temporary name in the
   partition directory, fsynced, renamed into place, the directory fsynced. Only then is a
   ``SEALED`` record logged. Every ``max_file_age`` the segment rotates: everything is sealed,
   a new segment starts and the old one is deleted.
3. :meth:`DatasetWriter.open` first replays what earlier runs left in the log (this instance's
   and those of dead instances) and publishes every run not marked as sealed.

Why recovery never duplicates: a run's file is named after the writer's session and the log
sequence number of the run's first record (:func:`recorder.storage.paths.data_file_name`),
which replay derives again from the log. A crash between the rename and the ``SEALED`` record
leaves a file whose name replay finds already taken; the run is then known to be published.
Replay only reads the log and publishes, so a crash during recovery just means recovering again,
with the same result.

Failures: an :class:`OSError` (disk full, read-only file system, permission denied) surfaces as
:class:`~recorder.errors.StorageError`. Nothing is lost: events whose append failed stay in
memory and are logged first on the next call, runs whose publication failed stay buffered, and
the segment is cut back to its last good record (or, if even that fails, abandoned for a new
one).

Threading: all methods do blocking I/O and must be called from one thread at a time; the
service calls them through :func:`asyncio.to_thread`, one call at a time.
"""

import contextlib
import dataclasses
import datetime as dt
import enum
import fcntl
import itertools
import json
import os
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recorder.clock import Clock
from recorder.durable import fsync_dir, make_dirs
from recorder.errors import DecodeError, StorageError, UnsafePathError
from recorder.instance import validate_instance_id
from recorder.model import MiniTicker, Rejection
from recorder.storage.paths import (
    LOCK_FILE_NAME,
    WAL_SUFFIX,
    PartitionKey,
    data_file_name,
    instance_wal_dir,
    new_session_token,
    parse_data_file_name,
    parse_segment_file_name,
    partition_dir,
    segment_file_name,
    session_instance_id,
    temp_file_name,
    temp_file_target,
    wal_root,
)
from recorder.storage.schema import (
    DATA_SCHEMA,
    DATE_COLUMN,
    SYMBOL_COLUMN,
    build_wal_batch,
    data_columns,
    parquet_options,
)
from recorder.storage.sealing import OpenPartition, SealPolicy, SealReason
from recorder.storage.wal import (
    FORMAT_VERSION,
    RecordType,
    ScanEnd,
    SealedMarker,
    SegmentHeader,
    SegmentReader,
    WalRecord,
    WalSegment,
    decode_batch,
    decode_sealed,
    decode_segment_header,
    encode_batch,
    encode_json,
)
from recorder.symbols import is_valid_symbol

_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_LOCK_ATTEMPTS = 5
RECOVERER_PREFIX = "recovering "
"""How a recorder that only recovers another instance's segments marks the lock file."""
# A live holder writes its name right after locking: a starting owner that finds the lock
# held with no recoverer's mark retries this long before it gives up.
_OWNER_LOCK_GRACE = 2.0
_OWNER_LOCK_POLL = 0.05
_SORT_KEYS = [("event_time", "ascending"), ("receive_time", "ascending")]


@dataclass(frozen=True, slots=True)
class SealedFile:
    """A data file that was published.

    Attributes:
        path: where it is.
        date: its partition's date.
        symbol: its partition's symbol.
        rows: rows in it.
        size_bytes: its size.
        first_event_ms: the oldest ``E`` in it.
        last_event_ms: the newest ``E`` in it.
        reason: why it was sealed.
    """

    path: Path
    date: dt.date
    symbol: str
    rows: int
    size_bytes: int
    first_event_ms: int
    last_event_ms: int
    reason: SealReason


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What :meth:`DatasetWriter.open` found and did.

    Attributes:
        instances_recovered: instance directories whose log was replayed (this one included
            when it had leftovers).
        instances_skipped: instance directories locked by a running recorder, left alone.
        segments_replayed: segment files read and then deleted.
        damaged_segments: segments that ended in a torn or corrupt record; what followed the
            last good record was dropped (an append that was never acknowledged).
        files_published: runs found unsealed in the log and published now.
        files_already_published: runs whose file existed already (a crash after the rename,
            before the ``SEALED`` record): not published twice.
        problems: things left in place for an operator to look at, one sentence each.
    """

    instances_recovered: tuple[str, ...] = ()
    instances_skipped: tuple[str, ...] = ()
    segments_replayed: int = 0
    damaged_segments: tuple[str, ...] = ()
    files_published: tuple[SealedFile, ...] = ()
    files_already_published: int = 0
    problems: tuple[str, ...] = ()

    @property
    def rows_published(self) -> int:
        """Rows in :attr:`files_published`."""
        return sum(sealed.rows for sealed in self.files_published)


class _Run:
    """A partition's rows logged since it was last sealed, as (lsn, slice) pieces."""

    __slots__ = ("nbytes", "pieces", "rows", "sizes")

    def __init__(self) -> None:
        self.pieces: list[tuple[int, pa.RecordBatch]] = []
        self.sizes: list[int] = []
        self.rows = 0
        self.nbytes = 0

    @property
    def first_lsn(self) -> int:
        return self.pieces[0][0]

    @property
    def last_lsn(self) -> int:
        return self.pieces[-1][0]

    def add(self, lsn: int, piece: pa.RecordBatch, nbytes: int) -> None:
        self.pieces.append((lsn, piece))
        self.sizes.append(nbytes)
        self.rows += piece.num_rows
        self.nbytes += nbytes

    def discard_through(self, lsn: int) -> None:
        kept = [
            (entry, size)
            for entry, size in zip(self.pieces, self.sizes, strict=True)
            if entry[0] > lsn
        ]
        self.pieces = [entry for entry, _ in kept]
        self.sizes = [size for _, size in kept]
        self.rows = sum(piece.num_rows for _, piece in self.pieces)
        self.nbytes = sum(self.sizes)


class _RunBook:
    """Open runs by partition; the same bookkeeping for live writing and for replay."""

    def __init__(self) -> None:
        self.runs: dict[PartitionKey, _Run] = {}

    def add_batch(self, lsn: int, batch: pa.RecordBatch) -> None:
        # A slice's own nbytes walks its buffers (about 17 µs each): share the batch's size
        # out by rows instead, once per batch. It only drives the size-based seal.
        per_row = batch.nbytes / max(batch.num_rows, 1)
        for key, piece in split_by_partition(batch):
            self.runs.setdefault(key, _Run()).add(lsn, piece, round(per_row * piece.num_rows))

    def apply_marker(self, key: PartitionKey, last_lsn: int) -> None:
        run = self.runs.get(key)
        if run is None:
            return
        run.discard_through(last_lsn)
        if not run.pieces:
            del self.runs[key]

    @property
    def rows(self) -> int:
        return sum(run.rows for run in self.runs.values())

    @property
    def nbytes(self) -> int:
        return sum(run.nbytes for run in self.runs.values())


def split_by_partition(batch: pa.RecordBatch) -> list[tuple[PartitionKey, pa.RecordBatch]]:
    """Cut a write-ahead batch into per-partition data slices, without copying.

    Consecutive rows of one partition form one slice; a batch sorted by symbol and event time
    (as :meth:`DatasetWriter.write_ahead` logs them) yields one slice per partition.
    """
    symbols = batch.column(SYMBOL_COLUMN).to_pylist()
    days = batch.column(DATE_COLUMN).cast(pa.int32()).to_pylist()
    data = data_columns(batch)
    pieces = []
    start = 0
    for (symbol, day), group in itertools.groupby(zip(symbols, days, strict=True)):
        length = sum(1 for _ in group)
        date = dt.date.fromordinal(_EPOCH_ORDINAL + day)
        pieces.append((PartitionKey(date, symbol), data.slice(start, length)))
        start += length
    return pieces


@dataclass(slots=True)
class _Unlogged:
    """A record built but not yet durably appended, kept to be re-sent with the same lsn."""

    record: WalRecord
    batch: pa.RecordBatch | None = None


@dataclass(slots=True)
class _RetiredSegment:
    """A segment no longer appended to, deleted once no open run has rows in it."""

    segment: WalSegment
    last_lsn: int


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class _InstanceLock:
    """An exclusive ``flock`` on ``<instance dir>/instance.lock``; held while the fd is open."""

    def __init__(self, directory: Path, fd: int) -> None:
        self.directory = directory
        self._fd = fd

    @classmethod
    def acquire(cls, directory: Path) -> "_InstanceLock | None":
        """Lock ``directory``'s lock file, creating it; ``None`` if a live process holds it.

        Raises:
            OSError: the lock file cannot be opened or the directory has vanished.
        """
        path = directory / LOCK_FILE_NAME
        for _ in range(_LOCK_ATTEMPTS):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            # A recoverer may have removed this lock file between our open and our flock; then
            # we hold a lock on a file nobody else can see, and must try again.
            try:
                same_file = os.path.samestat(os.fstat(fd), path.stat())
            except FileNotFoundError:
                same_file = False
            if same_file:
                return cls(directory, fd)
            os.close(fd)
        raise StorageError(f"could not lock {path}: it keeps being replaced")

    def write_holder(self, *, recovering: bool) -> None:
        """Note who holds the lock (pid and host, and whether it only recovers) in the file.

        Operators read it; a starting owner reads it to tell a recoverer, which it waits
        for, from a live recorder with its own instance id, which it refuses to run beside.
        """
        holder = f"{os.getpid()} {socket.gethostname()}\n"
        if recovering:
            holder = RECOVERER_PREFIX + holder
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, holder.encode(), 0)

    def release(self, *, remove: bool) -> None:
        """Release the lock; with ``remove``, first delete the lock file and empty directory."""
        if remove:
            # Removal is tidiness only: a lock file or directory left behind is harmless.
            with contextlib.suppress(OSError):
                (self.directory / LOCK_FILE_NAME).unlink()
                self.directory.rmdir()
        os.close(self._fd)


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
    ) -> None:
        self._root = root
        self._instance_id = validate_instance_id(instance_id)
        self._policy = SealPolicy(
            max_file_age=max_file_age, max_file_bytes=max_file_bytes, day_grace_ms=day_grace_ms
        )
        self._clock = clock
        self._state = _State.NEW
        self._lock: _InstanceLock | None = None
        self._session = ""
        self._segment: WalSegment | None = None
        self._segment_sequence = 0
        self._segment_last_lsn = 0
        self._retired: list[_RetiredSegment] = []
        self._rotation_started_at = 0.0
        self._next_lsn = 1
        self._runs = _RunBook()
        self._unlogged: list[_Unlogged] = []
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
        return self._runs.rows

    @property
    def buffered_bytes(self) -> int:
        """Arrow bytes of :attr:`buffered_rows`."""
        return self._runs.nbytes

    @property
    def open_partitions(self) -> int:
        """Partitions with buffered rows."""
        return len(self._runs.runs)

    @property
    def pending_rows(self) -> int:
        """Rows whose append failed, held in memory to be logged first on the next call."""
        return sum(item.batch.num_rows for item in self._unlogged if item.batch is not None)

    @property
    def wal_bytes(self) -> int:
        """Bytes of write-ahead segments held by this writer."""
        held = [retired.segment for retired in self._retired]
        if self._segment is not None:
            held.append(self._segment)
        return sum(segment.length for segment in held)

    @property
    def newest_event_ms(self) -> int | None:
        """The newest ``E`` logged by this writer, ``None`` before the first event."""
        return self._newest_event_ms

    def open(self) -> RecoveryReport:
        """Take this instance's lock, recover what earlier runs left, start a new segment.

        Recovers this instance's own leftover segments and those of every other instance
        whose lock is free (its recorder is dead); instances whose lock is held are skipped.

        Raises:
            StorageError: the root cannot be used, this instance's lock is held by another
                process, or recovery could not publish (nothing is lost: the log stays).
        """
        if self._state is not _State.NEW:
            raise StorageError("a DatasetWriter is opened once")
        own_dir = instance_wal_dir(self._root, self._instance_id)
        lock = _lock_own_dir(self._root, own_dir)
        opened = False
        try:
            lock.write_holder(recovering=False)
            report = self._recover_all(own_dir)
            self._session = new_session_token(self._instance_id, self._clock.wall_us())
            self._start_segment()
            opened = True
        except OSError as exc:
            raise StorageError(f"cannot open the dataset writer: {exc}") from exc
        finally:
            if not opened:
                lock.release(remove=False)
        self._lock = lock
        self._rotation_started_at = self._clock.monotonic()
        self._state = _State.OPEN
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
            batch = _build_batch(events, rejections)
            if batch.num_rows:
                record = WalRecord(RecordType.DATA, self._take_lsn(), encode_batch(batch))
                self._unlogged.append(_Unlogged(record, batch))
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
            plan = self._policy.plan(
                now=self._clock.monotonic(),
                segment_started_at=self._rotation_started_at,
                newest_event_ms=self._newest_event_ms,
                partitions=[OpenPartition(key, run.nbytes) for key, run in self._runs.runs.items()],
            )
            self._seal(plan.seals)
            self._log_unlogged()
            if plan.rotate_segment:
                self._rotate()
            self._delete_retired()
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
        if self._state is not _State.OPEN:
            return []
        try:
            self._log_unlogged()
            self._seal([(key, SealReason.CLOSE) for key in sorted(self._runs.runs)])
            self._log_unlogged()
        except OSError as exc:
            raise StorageError(f"closing failed: {exc}") from exc
        sealed = self._take_unreported()
        segments = [retired.segment for retired in self._retired]
        if self._segment is not None:
            segments.append(self._segment)
        for segment in segments:
            segment.close()
            # Every run is sealed, so a segment that cannot be deleted is harmless: replaying
            # it on the next start finds nothing to publish, and deletes it then.
            with contextlib.suppress(OSError):
                segment.path.unlink(missing_ok=True)
        self._segment = None
        self._retired = []
        if self._lock is not None:
            self._lock.release(remove=True)
            self._lock = None
        self._state = _State.CLOSED
        return sealed

    # -- logging ---------------------------------------------------------------------------

    def _require_open(self) -> None:
        if self._state is not _State.OPEN:
            raise StorageError(f"the dataset writer is {self._state.value}, not open")

    def _take_lsn(self) -> int:
        lsn = self._next_lsn
        self._next_lsn += 1
        return lsn

    def _take_unreported(self) -> list[SealedFile]:
        sealed, self._sealed_unreported = self._sealed_unreported, []
        return sealed

    def _log_unlogged(self) -> None:
        """Append every unlogged record with one fsync, then account for them.

        Raises:
            OSError: nothing was appended; the records stay unlogged.
        """
        if not self._unlogged:
            return
        segment = self._segment
        if segment is None or segment.broken:
            self._replace_broken_segment()
            segment = self._segment
        if segment is None:  # pragma: no cover - _replace_broken_segment sets it or raises
            raise StorageError("no write-ahead segment")
        segment.append([item.record for item in self._unlogged])
        for item in self._unlogged:
            self._segment_last_lsn = max(self._segment_last_lsn, item.record.lsn)
            if item.batch is not None:
                self._runs.add_batch(item.record.lsn, item.batch)
                newest = _newest_event_ms(item.batch)
                if self._newest_event_ms is None or newest > self._newest_event_ms:
                    self._newest_event_ms = newest
        self._unlogged = []

    def _start_segment(self) -> None:
        self._segment_sequence += 1
        header = SegmentHeader(FORMAT_VERSION, self._session, self._segment_sequence)
        directory = instance_wal_dir(self._root, self._instance_id)
        name = segment_file_name(self._session, self._segment_sequence)
        self._segment = WalSegment.create(directory, name, header, lsn=0)
        self._segment_last_lsn = 0

    def _replace_broken_segment(self) -> None:
        # The broken segment keeps its good records; the log continues in a new segment and
        # replay reads both, in order.
        if self._segment is not None:
            self._segment.close()
            self._retired.append(_RetiredSegment(self._segment, self._segment_last_lsn))
            self._segment = None
        self._start_segment()

    def _rotate(self) -> None:
        # Every run is sealed now, so the old segment is deleted by _delete_retired.
        old, old_last_lsn = self._segment, self._segment_last_lsn
        self._start_segment()
        if old is not None:
            old.close()
            self._retired.append(_RetiredSegment(old, old_last_lsn))
        self._rotation_started_at = self._clock.monotonic()

    def _delete_retired(self) -> None:
        oldest_open = min((run.first_lsn for run in self._runs.runs.values()), default=None)
        keep: list[_RetiredSegment] = []
        deleted = False
        for retired in self._retired:
            if oldest_open is not None and oldest_open <= retired.last_lsn:
                keep.append(retired)
                continue
            retired.segment.path.unlink(missing_ok=True)
            deleted = True
        self._retired = keep
        if deleted:
            fsync_dir(instance_wal_dir(self._root, self._instance_id))

    # -- sealing ---------------------------------------------------------------------------

    def _seal(self, seals: Iterable[tuple[PartitionKey, SealReason]]) -> None:
        """Publish the runs of ``seals`` and queue their ``SEALED`` records.

        Raises:
            OSError: publishing a run failed; it and the runs after it stay buffered.
        """
        for key, reason in seals:
            run = self._runs.runs.get(key)
            if run is None:
                continue
            name = data_file_name(self._session, run.first_lsn)
            sealed = _publish(self._root, key, run, name, reason)
            del self._runs.runs[key]
            marker = SealedMarker(
                date=key.date.isoformat(),
                symbol=key.symbol,
                file_name=name,
                rows=run.rows,
                first_lsn=run.first_lsn,
                last_lsn=run.last_lsn,
            )
            record = WalRecord(RecordType.SEALED, self._take_lsn(), encode_json(marker))
            self._unlogged.append(_Unlogged(record))
            if sealed is not None:
                self._sealed_unreported.append(sealed)

    # -- recovery --------------------------------------------------------------------------

    def _recover_all(self, own_dir: Path) -> RecoveryReport:
        report = _ReportBuilder()
        if _recover_instance_dir(self._root, own_dir, report):
            report.instances_recovered.append(self._instance_id)
        for directory in sorted(wal_root(self._root).iterdir()):
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
                lock = _InstanceLock.acquire(directory)
            except FileNotFoundError:
                continue  # another recorder recovered and removed it just now
            if lock is None:
                report.instances_skipped.append(directory.name)
                continue
            try:
                lock.write_holder(recovering=True)
                if _recover_instance_dir(self._root, directory, report):
                    report.instances_recovered.append(directory.name)
            finally:
                lock.release(remove=not any(directory.glob(f"*{WAL_SUFFIX}")))
        return report.build()


@dataclass
class _ReportBuilder:
    instances_recovered: list[str] = dataclasses.field(default_factory=list)
    instances_skipped: list[str] = dataclasses.field(default_factory=list)
    segments_replayed: int = 0
    damaged_segments: list[str] = dataclasses.field(default_factory=list)
    files_published: list[SealedFile] = dataclasses.field(default_factory=list)
    files_already_published: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)

    def build(self) -> RecoveryReport:
        return RecoveryReport(
            instances_recovered=tuple(self.instances_recovered),
            instances_skipped=tuple(self.instances_skipped),
            segments_replayed=self.segments_replayed,
            damaged_segments=tuple(self.damaged_segments),
            files_published=tuple(self.files_published),
            files_already_published=self.files_already_published,
            problems=tuple(self.problems),
        )


class _Replay:
    """Rebuild one session's open runs from its records, as the live writer had them."""

    def __init__(self, session: str) -> None:
        self.session = session
        self.runs = _RunBook()
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
            self.runs.add_batch(record.lsn, decode_batch(record.payload))
        elif record.type == RecordType.SEALED:
            marker = decode_sealed(record.payload)
            key = PartitionKey(dt.date.fromisoformat(marker.date), marker.symbol)
            self.runs.apply_marker(key, marker.last_lsn)
        # Other types are for other readers of the log; they hold no rows.


def _recover_instance_dir(root: Path, directory: Path, report: _ReportBuilder) -> bool:
    """Replay and delete every segment in ``directory``; the caller holds its lock.

    Returns:
        Whether there was anything to replay.

    Raises:
        OSError: a file could not be read, published or deleted; the segments stay.
    """
    sessions: dict[str, list[tuple[int, Path]]] = {}
    for path in directory.iterdir():
        if path.name == LOCK_FILE_NAME:
            continue
        parsed = parse_segment_file_name(path.name)
        if parsed is None:
            report.problems.append(f"{path} is not a write-ahead segment; left alone")
            continue
        sessions.setdefault(parsed.session, []).append((parsed.sequence, path))
    for session, numbered in sorted(sessions.items()):
        segments = [path for _, path in sorted(numbered)]
        replay = _Replay(session)
        try:
            for path in segments:
                _replay_segment(path, replay, report)
        except ValueError as exc:
            report.problems.append(f"segments of session {session} left in place: {exc}")
            continue
        for key, run in sorted(replay.runs.runs.items()):
            _recover_run(root, session, key, run, report)
        for path in segments:
            path.unlink()
        fsync_dir(directory)
        report.segments_replayed += len(segments)
    return bool(sessions)


def _replay_segment(path: Path, replay: _Replay, report: _ReportBuilder) -> None:
    with path.open("rb") as stream:
        reader = SegmentReader(stream)
        for record in reader:
            replay.apply(record)
    if reader.end is not ScanEnd.CLEAN:
        report.damaged_segments.append(
            f"{path.name}: {reader.end.value} record at byte {reader.valid_length}"
        )


def _recover_run(
    root: Path, session: str, key: PartitionKey, run: _Run, report: _ReportBuilder
) -> None:
    name = data_file_name(session, run.first_lsn)
    try:
        sealed = _publish(root, key, run, name, SealReason.RECOVERY)
    except UnsafePathError as exc:
        report.problems.append(f"{run.rows} logged rows of an unsafe partition dropped: {exc}")
        return
    if sealed is None:
        report.files_already_published += 1
    else:
        report.files_published.append(sealed)
    _remove_stale_temp_files(partition_dir(root, key.date, key.symbol), session)


def _remove_stale_temp_files(directory: Path, session: str) -> None:
    """Remove temporary files of ``session``'s instance (dead: its lock is held) in ``directory``.

    A publication interrupted by a crash leaves its temporary file behind; the recovered run
    overwrites or supersedes it, and other temporary files of that instance are stale too.
    """
    instance = session_instance_id(session)
    for path in directory.iterdir():
        target = temp_file_target(path.name)
        parsed = None if target is None else parse_data_file_name(target)
        if parsed is not None and parsed.instance_id == instance:
            path.unlink(missing_ok=True)


# -- publishing ------------------------------------------------------------------------------


def _publish(
    root: Path, key: PartitionKey, run: _Run, name: str, reason: SealReason
) -> SealedFile | None:
    """Write ``run`` as ``<partition>/<name>`` atomically; ``None`` if that file exists.

    Raises:
        UnsafePathError: the partition would lie outside the root.
        OSError: the file could not be written; no partial file is visible.
    """
    directory = partition_dir(root, key.date, key.symbol)
    make_dirs(directory)
    final = directory / name
    temp = directory / temp_file_name(name)
    if final.exists():
        temp.unlink(missing_ok=True)
        return None
    options = parquet_options(key.date, key.symbol)
    table = (
        pa.Table.from_batches([piece for _, piece in run.pieces], schema=DATA_SCHEMA)
        .sort_by(_SORT_KEYS)
        .replace_schema_metadata(options.schema.metadata)
    )
    try:
        # "wb": a leftover of an earlier failed attempt under this name is overwritten.
        with temp.open("wb") as stream:
            pq.write_table(table, stream, **options.write_kwargs)
            stream.flush()
            os.fsync(stream.fileno())
        temp.rename(final)
        fsync_dir(directory)
    except OSError:
        temp.unlink(missing_ok=True)
        raise
    event_times = table.column("event_time").cast(pa.int64())
    return SealedFile(
        path=final,
        date=key.date,
        symbol=key.symbol,
        rows=table.num_rows,
        size_bytes=final.stat().st_size,
        first_event_ms=event_times[0].as_py(),
        last_event_ms=event_times[-1].as_py(),
        reason=reason,
    )


def _lock_own_dir(root: Path, own_dir: Path) -> _InstanceLock:
    """Take this instance's lock, waiting while another recorder recovers its old segments.

    Raises:
        StorageError: the root cannot be used, or a live recorder with this instance id
            holds the lock (beyond a short grace, for a holder still writing its name).
    """
    grace_until = time.monotonic() + _OWNER_LOCK_GRACE
    while True:
        try:
            make_dirs(own_dir)
            lock = _InstanceLock.acquire(own_dir)
        except FileNotFoundError:
            # A recoverer that found our old segments removed the emptied directory just now.
            lock = None
        except OSError as exc:
            raise StorageError(f"cannot use dataset root {root}: {exc}") from exc
        if lock is not None:
            return lock
        holder = _read_holder(own_dir)
        if not holder.startswith(RECOVERER_PREFIX) and time.monotonic() >= grace_until:
            raise StorageError(
                f"this instance id is already running: {own_dir / LOCK_FILE_NAME} is locked "
                f"by {holder or 'another process'}; give each recorder its own instance_id"
            )
        time.sleep(_OWNER_LOCK_POLL)


def _read_holder(directory: Path) -> str:
    """What the holder of ``directory``'s lock wrote about itself, ``""`` if nothing yet."""
    try:
        return (directory / LOCK_FILE_NAME).read_text(errors="replace").strip()
    except OSError:
        return ""


# -- batches ---------------------------------------------------------------------------------


def _build_batch(events: Sequence[MiniTicker], rejections: list[Rejection]) -> pa.RecordBatch:
    """Build the write-ahead batch of ``events``; unstorable events go to ``rejections``.

    Rows are ordered by symbol and event time, so each partition is one contiguous slice.
    """
    ordered = sorted(events, key=lambda event: (event.symbol, event.event_time))
    storable = []
    for event in ordered:
        if is_valid_symbol(event.symbol):
            storable.append(event)
        else:
            rejections.append(_reject(event, "unsafe_symbol: not valid as a partition value"))
    try:
        return build_wal_batch(storable)
    except DecodeError:
        pass
    # Rare: the decoder let through a value that does not fit; find it, keep the others.
    fitting = []
    for event in storable:
        try:
            build_wal_batch([event])
        except DecodeError as exc:
            rejections.append(_reject(event, str(exc)))
        else:
            fitting.append(event)
    return build_wal_batch(fitting)


def _reject(event: MiniTicker, reason: str) -> Rejection:
    # The frame's text is gone by now: the event's fields stand in for it.
    raw = json.dumps(dataclasses.asdict(event), ensure_ascii=False)
    return Rejection(raw=raw, reason=reason, receive_time=event.receive_time)


def _newest_event_ms(batch: pa.RecordBatch) -> int:
    newest: int = pc.max(batch.column("event_time").cast(pa.int64())).as_py()
    return newest
