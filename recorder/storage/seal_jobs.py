"""Partitions handed over for publication, so that sealing runs beside the write-ahead flush.

The writer detaches a due partition from its buffers into a :class:`SealJob`: from then on
nothing adds to it, so another thread can publish it (:func:`publish_job`) while the flush goes
on appending to the log. New rows of the same partition start a fresh buffer, which is not
sealed before the job is finished: a partition's files are published in log order, so the
``SEALED`` record of a later file never covers rows of an earlier one still unpublished.

A job that fails keeps its rows and its file name and is retried as it is, with backoff
(:class:`SealJobs`): re-publishing under the same name is what makes publication idempotent, so
rows must never join a job after a failed attempt (that attempt may have left the file in place
before failing to sync its directory).
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from recorder.storage.partition_buffers import BufferedPartition
from recorder.storage.paths import PartitionKey
from recorder.storage.publisher import SealedFile, publish_partition
from recorder.storage.sealing import SealReason
from recorder.storage.spill import read_spilled
from recorder.storage.wal import SealedMarker

RETRY_FIRST = 1.0
"""Seconds before a failed publication is tried again, doubled on each further failure."""
RETRY_MAX = 60.0
"""The longest wait between two attempts to publish the same partition."""


@dataclass(frozen=True, slots=True, eq=False)
class SealJob:
    """One partition's rows to publish as one file.

    Attributes:
        key: the partition.
        name: the data file's name (from the log sequence number of its first record).
        reason: why it is sealed.
        partition: the detached buffer: its rows and the records they came from.
        batches: its rows held in memory, captured when the job was made.
        spilled: the spill files holding its older rows (:mod:`recorder.storage.spill`).
    """

    key: PartitionKey
    name: str
    reason: SealReason
    partition: BufferedPartition
    batches: tuple[pa.RecordBatch, ...]
    spilled: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        """Rows in the job."""
        return self.partition.rows


@dataclass(frozen=True, slots=True)
class SealResult:
    """How publishing one job went.

    Attributes:
        job: the job.
        sealed: the file published, or ``None`` when it was already there (published earlier)
            or when publishing failed.
        error: why publishing failed, ``None`` when it succeeded.
    """

    job: SealJob
    sealed: SealedFile | None = None
    error: OSError | None = None


def sealed_marker(job: SealJob) -> SealedMarker:
    """The ``SEALED`` record's content for ``job``, once its file is published."""
    return SealedMarker(
        date=job.key.date.isoformat(),
        symbol=job.key.symbol,
        file_name=job.name,
        rows=job.rows,
        first_lsn=job.partition.first_lsn,
        last_lsn=job.partition.last_lsn,
    )


def publish_job(root: Path, job: SealJob) -> SealResult:
    """Publish ``job`` under ``root``; safe to call from any thread (it touches only files).

    An :class:`OSError` (disk full, permission denied, ...) is returned in the result, for the
    writer to retry; anything else is a bug and propagates.
    """
    try:
        batches = [*read_spilled(job.spilled), *job.batches] if job.spilled else job.batches
        sealed = publish_partition(
            root, job.key, batches, job.name, job.reason, last_lsn=job.partition.last_lsn
        )
    except OSError as exc:
        return SealResult(job, error=exc)
    return SealResult(job, sealed)


@dataclass(slots=True)
class _Tracked:
    job: SealJob
    failures: int = 0
    retry_at: float | None = None  # set while the job waits for its retry


@dataclass(slots=True)
class SealJobs:
    """The jobs made and not yet published, at most one per partition; sans-IO.

    A job is *issued* when it is handed to a publisher, and stays tracked until a successful
    result comes back. A failed job waits ``RETRY_FIRST`` seconds, doubling up to
    ``RETRY_MAX``, before :meth:`due_retries` issues it again.
    """

    retry_first: float = RETRY_FIRST
    retry_max: float = RETRY_MAX
    _tracked: dict[PartitionKey, _Tracked] = field(default_factory=dict)

    def __contains__(self, key: object) -> bool:
        return key in self._tracked

    def __len__(self) -> int:
        return len(self._tracked)

    def __iter__(self) -> Iterator[SealJob]:
        """The tracked jobs, in partition order."""
        return iter([self._tracked[key].job for key in sorted(self._tracked)])

    def issue(self, job: SealJob) -> None:
        """Track a new job, issued now."""
        if job.key in self._tracked:
            raise ValueError(f"a job for {job.key} is already in flight")
        self._tracked[job.key] = _Tracked(job)

    def finish(self, result: SealResult, *, now: float) -> None:
        """Take a publisher's result: forget the job, or schedule its retry."""
        tracked = self._tracked.get(result.job.key)
        if tracked is None or tracked.job is not result.job:
            return  # a result for a job already settled (the writer sealed it at close)
        if result.error is None:
            del self._tracked[result.job.key]
            return
        tracked.failures += 1
        delay = min(self.retry_max, self.retry_first * 2 ** (tracked.failures - 1))
        tracked.retry_at = now + delay

    def due_retries(self, now: float) -> list[SealJob]:
        """The failed jobs whose wait is over, issued again, in partition order."""
        due = []
        for job in self:
            tracked = self._tracked[job.key]
            if tracked.retry_at is not None and tracked.retry_at <= now:
                tracked.retry_at = None
                due.append(job)
        return due

    def room_for(self, sizes: Sequence[tuple[PartitionKey, int]], budget: int | None) -> int:
        """How many of the due partitions ``sizes`` (key, bytes held) to hand over now.

        The leading ones whose bytes fit in ``budget`` beside the jobs in flight, at least one
        when none is. The rest stays buffered and due, handed over as the publisher makes
        room, in partition order, so that none waits behind later ones for good.
        """
        if budget is None:
            return len(sizes)
        in_flight = self.in_flight_nbytes
        for count, (_, held) in enumerate(sizes):
            if in_flight and in_flight + held > budget:
                return count
            in_flight += held
        return len(sizes)

    @property
    def rows(self) -> int:
        """Rows of every tracked job."""
        return sum(tracked.job.rows for tracked in self._tracked.values())

    @property
    def nbytes(self) -> int:
        """Arrow bytes accounted to the rows of every tracked job held in memory (not spilled)."""
        return sum(tracked.job.partition.held_nbytes for tracked in self._tracked.values())

    @property
    def in_flight_nbytes(self) -> int:
        """Like :attr:`nbytes`, for the jobs issued and not yet answered (none waiting to retry).

        A job that keeps failing waits for its retry outside this figure, so it never takes
        the room in which the other partitions are handed over.
        """
        return sum(
            tracked.job.partition.held_nbytes
            for tracked in self._tracked.values()
            if tracked.retry_at is None
        )

    @property
    def oldest_lsn(self) -> int | None:
        """The log sequence number of the oldest record a tracked job has rows of."""
        return min((t.job.partition.first_lsn for t in self._tracked.values()), default=None)
