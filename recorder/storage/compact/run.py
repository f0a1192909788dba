"""One ``recorder compact`` run: lock the root, recover, select the days, compact each, report.

The rules each step follows are described in :mod:`recorder.storage.compact`; this module only
puts the steps in their order and turns what each returns or raises into a
:class:`~recorder.storage.compact.report.CompactReport`.
"""

import dataclasses
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from recorder.clock import US_PER_MS, Clock, event_date
from recorder.errors import StorageError
from recorder.storage.compact.listing import DayListing, PartitionFiles, list_day, list_days
from recorder.storage.compact.merge import PartFooter, merge_parts, read_footer, read_part
from recorder.storage.compact.publish import StepHook, no_step, publish_partition
from recorder.storage.compact.recovery import resolve_leftovers
from recorder.storage.compact.report import (
    CompactReport,
    DayResult,
    DayStatus,
    PartitionOutcome,
    PartitionResult,
)
from recorder.storage.compact.selection import day_deferral, select_days, write_ahead_dates
from recorder.storage.compact.staging import STAGING_ROOT_NAME, choose_holder
from recorder.storage.compact.swap import ExchangeUnsupportedError
from recorder.storage.locking import exclusive_root_lock
from recorder.storage.paths import require_root
from recorder.storage.root_schema import root_schema_version


def compact(
    root: Path,
    *,
    clock: Clock,
    day_grace_ms: int,
    only: dt.date | None = None,
    before: dt.date | None = None,
    dry_run: bool = False,
    on_step: StepHook | None = None,
    on_start: Callable[[int], None] | None = None,
    on_done: Callable[[int], None] | None = None,
) -> CompactReport:
    """Compact the finished days of the dataset under ``root``.

    See :mod:`recorder.storage.compact` for which days are taken, how rows are merged and how
    the result is published.

    Args:
        root: the dataset root, a local directory.
        clock: the wall clock, read once for eligibility, and for the new files' names.
        day_grace_ms: ``storage.day_grace`` in milliseconds.
        only: compact only this day (``--date``).
        before: compact the days strictly before this one (``--before``); default: today.
        dry_run: change nothing; report what would be done.
        on_step: called after each step of each partition's publication.
        on_start: called once with the partitions of the days selected (a progress bar).
        on_done: called with how many of them were just dealt with (compacted, skipped, or
            their day deferred or left).

    Raises:
        StorageError: compaction cannot run: the root is missing or unreadable, another
            compaction is running, or the write-ahead log cannot be read.
    """
    require_root(root)
    now_ms = clock.wall_us() // US_PER_MS
    with exclusive_root_lock(root, "compact"):
        recovered, problems = resolve_leftovers(root, dry_run=dry_run)
        selected = select_days(list_days(root), only=only, before=before or event_date(now_ms))
        try:
            listings = {day: list_day(root, day) for day in selected}
        except OSError as exc:
            raise StorageError(f"cannot list the dataset under {root}: {exc}") from exc
        # Read after the listings: see "Which days" in the package documentation.
        in_log = write_ahead_dates(root)
        holder = root / STAGING_ROOT_NAME if dry_run else choose_holder(root)
        version = root_schema_version(root)
        compaction = _Compaction(
            clock, dry_run, on_step or no_step, holder, version, on_done or _no_progress
        )
        if on_start is not None:
            on_start(sum(len(listing.partitions) for listing in listings.values()))
        for day in selected:
            if compaction.fatal is not None:
                break
            listing = listings[day]
            if not listing.partitions:
                reason = "no partition with data files"
                compaction.days.append(
                    DayResult(day, DayStatus.NO_DATA, reason, notes=listing.notes)
                )
                continue
            deferral = day_deferral(
                day, now_ms=now_ms, day_grace_ms=day_grace_ms, wal_instances=in_log.get(day, ())
            )
            if deferral is not None:
                compaction.days.append(DayResult(day, DayStatus.DEFERRED, deferral))
                compaction.on_done(len(listing.partitions))
                continue
            compaction.days.append(compaction.compact_day(day, listing))
    return CompactReport(
        dry_run=dry_run,
        days=tuple(compaction.days),
        recovered=tuple(recovered),
        problems=tuple(problems),
        fatal=compaction.fatal,
    )


@dataclass(slots=True)
class _Compaction:
    """The compaction of one root: its settings, the days done so far, and why it stopped.

    Attributes:
        clock: the wall clock, for the new files' names.
        dry_run: change nothing.
        on_step: called after each step of each partition's publication.
        on_start: called once with the partitions of the days selected (a progress bar).
        on_done: called with how many of them were just dealt with (compacted, skipped, or
            their day deferred or left).
        holder: where partitions are rebuilt (next to the root where possible).
        version: the root's schema version, which the compacted files are written in.
        on_done: told how many partitions were just dealt with.
        fatal: set when no partition can be compacted here (no atomic exchange): stop.
        days: the outcome of each day taken so far.
    """

    clock: Clock
    dry_run: bool
    on_step: StepHook
    holder: Path
    version: int
    on_done: Callable[[int], None]
    fatal: str | None = None
    days: list[DayResult] = field(default_factory=list)

    def compact_day(self, day: dt.date, listing: DayListing) -> DayResult:
        """Compact the partitions of an eligible day, unless one of its files is unreadable."""
        unreadable: list[str] = []
        footers: dict[Path, PartFooter] = {}
        for partition in listing.partitions:
            for path in partition.files:
                try:
                    footers[path] = read_footer(path)
                except (OSError, ValueError, pa.ArrowException) as exc:
                    unreadable.append(f"{path}: {exc}")
        if unreadable:
            self.on_done(len(listing.partitions))
            return DayResult(
                day,
                DayStatus.REFUSED,
                reason="cannot read "
                + "; ".join(unreadable)
                + ". Nothing of this day was changed: move the damaged file aside (`recorder "
                "verify` lists what is wrong) and run again",
                notes=listing.notes,
            )
        results = []
        for partition in listing.partitions:
            if self.fatal is not None:
                break
            footer = footers[partition.files[0]]
            if len(partition.files) == 1 and footer.compacted:
                results.append(
                    PartitionResult(
                        partition.key,
                        PartitionOutcome.ALREADY_COMPACTED,
                        parts=1,
                        input_rows=footer.rows,
                        rows=footer.rows,
                    )
                )
            else:
                results.append(self.compact_partition(partition))
            self.on_done(1)
        return DayResult(day, DayStatus.DONE, partitions=tuple(results), notes=listing.notes)

    def compact_partition(self, partition: PartitionFiles) -> PartitionResult:
        """Merge one partition's parts and, unless a dry run, publish the result."""
        key, files = partition.key, partition.files
        try:
            merged = merge_parts([read_part(path) for path in files], self.version)
        except (OSError, ValueError, pa.ArrowException) as exc:
            return PartitionResult(
                key,
                PartitionOutcome.UNREADABLE,
                parts=len(files),
                message=f"cannot read its data ({exc}); the partition was left as it was",
            )
        result = PartitionResult(
            key,
            PartitionOutcome.WOULD_COMPACT,
            parts=len(files),
            input_rows=merged.input_rows,
            rows=merged.table.num_rows,
            duplicates=merged.duplicates,
            conflicts=merged.conflicts,
        )
        if self.dry_run:
            return result
        try:
            name = publish_partition(
                partition, merged, clock=self.clock, on_step=self.on_step, holder=self.holder
            )
        except ExchangeUnsupportedError as exc:
            self.fatal = str(exc)
            return dataclasses.replace(
                result, outcome=PartitionOutcome.FAILED, message=f"{exc}; left as it was"
            )
        except OSError as exc:
            return dataclasses.replace(result, outcome=PartitionOutcome.FAILED, message=str(exc))
        return dataclasses.replace(result, outcome=PartitionOutcome.COMPACTED, file_name=name)


def _no_progress(_count: int) -> None:
    """Nobody watches the progress."""
