"""When buffered partitions become sealed Parquet files: a pure policy, no I/O.

Three rules, checked together on every tick:

* **Day end.** Partitions of UTC date D are sealed once the newest ``E`` seen across all symbols
  reaches midnight of D+1 plus a grace period (late events of D still arrive for a moment after
  midnight). Exchange time, not the local clock, decides: a recorder catching up after a stall
  seals days in the order the data closes them. An event of D arriving later still simply
  starts a new file for D, sealed at the next tick; ``recorder compact`` merges the parts.
* **Age.** Every ``max_file_age`` seconds (monotonic) the write-ahead segment rotates: every
  open partition is sealed, a new segment starts and the old one is deleted. So a segment can be
  deleted exactly when everything in it is sealed, and no data stays unpublished for longer than
  ``max_file_age``.
* **Size.** A partition whose buffered Arrow data exceeds ``max_file_bytes`` is sealed early,
  bounding memory and file size.
"""

import datetime as dt
import enum
from collections.abc import Iterable
from dataclasses import dataclass

from recorder.clock import day_start_ms
from recorder.errors import ConfigError
from recorder.storage.paths import PartitionKey


class SealReason(enum.StrEnum):
    """Why a data file was sealed."""

    DAY_END = "day_end"
    AGE = "age"
    SIZE = "size"
    BUDGET = "budget"
    CLOSE = "close"
    RECOVERY = "recovery"
    BACKFILL = "backfill"


@dataclass(frozen=True, slots=True)
class OpenPartition:
    """What the policy knows about a partition with buffered, unsealed rows.

    Attributes:
        key: the partition.
        buffered_bytes: Arrow bytes of its buffered rows.
        first_lsn: the log sequence number of the record holding its oldest buffered row.
    """

    key: PartitionKey
    buffered_bytes: int
    first_lsn: int = 0


@dataclass(frozen=True, slots=True)
class SealPlan:
    """What is due now.

    Attributes:
        seals: the partitions to seal, each with its reason, in partition order.
        rotate_segment: after sealing (then every partition is in ``seals``), start a new
            write-ahead segment and delete the old one.
    """

    seals: tuple[tuple[PartitionKey, SealReason], ...]
    rotate_segment: bool


class SealPolicy:
    """Decide which partitions to seal, given the time and what is buffered.

    Args:
        max_file_age: seconds between segment rotations; every open partition is sealed then.
        max_file_bytes: buffered Arrow bytes above which a partition is sealed early.
        day_grace_ms: how far past midnight (in exchange time) a day stays open.
        buffer_budget: buffered Arrow bytes of all partitions above which the largest are
            sealed early (reason ``budget``), down to three quarters of it so that the next
            flush does not seal again; ``None`` for no budget.

    Raises:
        ConfigError: a limit is not positive (``day_grace_ms`` may be 0).
    """

    def __init__(
        self,
        *,
        max_file_age: float,
        max_file_bytes: int,
        day_grace_ms: int,
        buffer_budget: int | None = None,
    ) -> None:
        if not max_file_age > 0:
            raise ConfigError(f"max_file_age={max_file_age!r}: expected seconds > 0")
        if max_file_bytes <= 0:
            raise ConfigError(f"max_file_bytes={max_file_bytes!r}: expected bytes > 0")
        if day_grace_ms < 0:
            raise ConfigError(f"day_grace_ms={day_grace_ms!r}: expected milliseconds >= 0")
        self.max_file_age = max_file_age
        self.max_file_bytes = max_file_bytes
        self.day_grace_ms = day_grace_ms
        if buffer_budget is not None and buffer_budget <= 0:
            raise ConfigError(f"buffer_budget={buffer_budget!r}: expected bytes > 0")
        self.buffer_budget = buffer_budget

    def day_closes_at_ms(self, date: dt.date) -> int:
        """Return the newest ``E`` (ms) from which partitions of ``date`` are sealed.

        >>> SealPolicy(max_file_age=3600, max_file_bytes=1, day_grace_ms=5000).day_closes_at_ms(
        ...     dt.date(1970, 1, 1)
        ... )
        86405000
        """
        return day_start_ms(date + dt.timedelta(days=1)) + self.day_grace_ms

    def rotation_due(self, *, now: float, segment_started_at: float) -> bool:
        """Tell whether the write-ahead segment started at ``segment_started_at`` is due."""
        return now - segment_started_at >= self.max_file_age

    def plan(
        self,
        *,
        now: float,
        segment_started_at: float,
        newest_event_ms: int | None,
        partitions: Iterable[OpenPartition],
        retired_through_lsn: int | None = None,
    ) -> SealPlan:
        """Return what to seal now.

        Args:
            now: monotonic seconds.
            segment_started_at: monotonic seconds when the current segment was started.
            newest_event_ms: the newest ``E`` logged so far, ``None`` before the first event.
            partitions: the partitions with buffered rows.
            retired_through_lsn: the newest record of a retired segment, if any: a partition
                with rows that old is still due for its age (its seal was spread over later
                calls after the rotation).
        """
        rotate = self.rotation_due(now=now, segment_started_at=segment_started_at)
        seals: list[tuple[PartitionKey, SealReason]] = []
        open_partitions = list(partitions)
        for partition in sorted(open_partitions, key=lambda p: p.key):
            reason = self._reason(partition, newest_event_ms)
            aged = retired_through_lsn is not None and partition.first_lsn <= retired_through_lsn
            if reason is None and (rotate or aged):
                reason = SealReason.AGE
            if reason is not None:
                seals.append((partition.key, reason))
        seals.extend(self._over_budget(open_partitions, {key for key, _ in seals}))
        return SealPlan(tuple(seals), rotate)

    def _over_budget(
        self, partitions: list[OpenPartition], due: set[PartitionKey]
    ) -> list[tuple[PartitionKey, SealReason]]:
        """The largest partitions not yet due whose seal brings the buffer under budget."""
        if self.buffer_budget is None:
            return []
        staying = [p for p in partitions if p.key not in due]
        buffered = sum(p.buffered_bytes for p in staying)
        if buffered <= self.buffer_budget:
            return []
        target = self.buffer_budget * 3 // 4
        chosen: list[tuple[PartitionKey, SealReason]] = []
        for partition in sorted(staying, key=lambda p: (-p.buffered_bytes, p.key)):
            if buffered <= target:
                break
            chosen.append((partition.key, SealReason.BUDGET))
            buffered -= partition.buffered_bytes
        return chosen

    def _reason(self, partition: OpenPartition, newest_event_ms: int | None) -> SealReason | None:
        if newest_event_ms is not None and newest_event_ms >= self.day_closes_at_ms(
            partition.key.date
        ):
            return SealReason.DAY_END
        if partition.buffered_bytes > self.max_file_bytes:
            return SealReason.SIZE
        return None
