"""What one ``recorder compact`` run did, and its rendering as text lines and as JSON.

The run builds a :class:`CompactReport` of :class:`DayResult` and :class:`PartitionResult`
values; the command prints :meth:`CompactReport.render_text` or
:meth:`CompactReport.to_document` and exits with :attr:`CompactReport.exit_code`.
"""

import datetime as dt
import enum
from dataclasses import dataclass

from recorder.storage.paths import PartitionKey


class CompactExitCode(enum.IntEnum):
    """Exit codes of ``recorder compact``, for cron."""

    OK = 0
    """Done, or nothing to do."""
    FAILED = 1
    """A partition could not be compacted; see its message."""
    CANNOT_RUN = 2
    """Compaction could not run, or refused a day or partition it cannot read."""


class DayStatus(enum.StrEnum):
    """What became of a selected day."""

    DONE = "done"
    """Its partitions were processed; each has its own outcome."""
    DEFERRED = "deferred"
    """Not eligible yet (see :mod:`recorder.storage.compact`); nothing touched."""
    REFUSED = "refused"
    """A file of the day cannot be read; nothing touched."""
    NO_DATA = "no_data"
    """The day has no partition with data files."""


class PartitionOutcome(enum.StrEnum):
    """What became of one partition of a processed day."""

    COMPACTED = "compacted"
    """Its parts are now one file."""
    ALREADY_COMPACTED = "already_compacted"
    """It already is one compacted file."""
    WOULD_COMPACT = "would_compact"
    """Dry run: it would be compacted."""
    FAILED = "failed"
    """An error; the partition is as it was, or the next run finishes it (see the message)."""
    UNREADABLE = "unreadable"
    """A file's data cannot be read; the partition is as it was."""


@dataclass(frozen=True, slots=True)
class PartitionResult:
    """The outcome for one partition.

    Attributes:
        key: the partition.
        outcome: what happened.
        parts: files found in it.
        input_rows: rows in those files.
        rows: rows in the compacted file.
        duplicates: rows dropped as duplicates.
        conflicts: rows dropped as conflicting (see
            :class:`~recorder.storage.compact.merge.MergedPartition`).
        file_name: the compacted file's name.
        message: why it failed or could not be read.
    """

    key: PartitionKey
    outcome: PartitionOutcome
    parts: int = 0
    input_rows: int = 0
    rows: int = 0
    duplicates: int = 0
    conflicts: int = 0
    file_name: str | None = None
    message: str = ""

    def to_document(self) -> dict[str, object]:
        """The partition's entry in the JSON report."""
        return {
            "symbol": self.key.symbol,
            "outcome": self.outcome.value,
            "parts": self.parts,
            "input_rows": self.input_rows,
            "rows": self.rows,
            "duplicates": self.duplicates,
            "conflicts": self.conflicts,
            "file": self.file_name,
            "message": self.message or None,
        }


@dataclass(frozen=True, slots=True)
class DayResult:
    """The outcome for one selected day.

    Attributes:
        date: the UTC day.
        status: what happened to it.
        reason: why it was deferred or refused.
        partitions: outcomes of its partitions, when it was processed.
        notes: directories of the day that were left alone, and why.
    """

    date: dt.date
    status: DayStatus
    reason: str = ""
    partitions: tuple[PartitionResult, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CompactReport:
    """The outcome of one ``compact`` run.

    Attributes:
        dry_run: nothing was changed; outcomes say what would have been done.
        days: the selected days, oldest first.
        recovered: what was finished or cleaned up after an interrupted earlier run.
        problems: leftovers that could not be resolved, one sentence each.
        fatal: why the run stopped early (no atomic exchange on this file system).
    """

    dry_run: bool
    days: tuple[DayResult, ...]
    recovered: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    fatal: str | None = None

    @property
    def partitions(self) -> list[PartitionResult]:
        """Every partition outcome, day by day."""
        return [result for day in self.days for result in day.partitions]

    @property
    def exit_code(self) -> CompactExitCode:
        """2 if stopped early or anything was refused as unreadable, else 1 on a failure."""
        outcomes = {result.outcome for result in self.partitions}
        refused = any(day.status is DayStatus.REFUSED for day in self.days)
        if self.fatal is not None or refused or PartitionOutcome.UNREADABLE in outcomes:
            return CompactExitCode.CANNOT_RUN
        if self.problems or PartitionOutcome.FAILED in outcomes:
            return CompactExitCode.FAILED
        return CompactExitCode.OK

    def render_text(self) -> list[str]:
        """One line per thing worth reading, then a summary line."""
        lines = [f"recovered: {text}" for text in self.recovered]
        lines += [f"problem: {text}" for text in self.problems]
        for day in self.days:
            lines.extend(_day_lines(day, dry_run=self.dry_run))
        if self.fatal is not None:
            lines.append(f"stopped: {self.fatal}")
        lines.append(self._summary())
        return lines

    def render_brief(self) -> list[str]:
        """What needs a reader off a terminal: problems and failures, then the summary line."""
        lines = [f"problem: {text}" for text in self.problems]
        for day in self.days:
            if day.status is DayStatus.REFUSED:
                lines.extend(_day_lines(day, dry_run=self.dry_run))
            lines.extend(
                f"{result.outcome.value} {result.key}: {result.message}"
                for result in day.partitions
                if result.outcome not in _ROUTINE
            )
        if self.fatal is not None:
            lines.append(f"stopped: {self.fatal}")
        lines.append(self._summary())
        return lines

    def _summary(self) -> str:
        counts: dict[PartitionOutcome, int] = {}
        for result in self.partitions:
            counts[result.outcome] = counts.get(result.outcome, 0) + 1
        by_status: dict[DayStatus, int] = {}
        for day in self.days:
            by_status[day.status] = by_status.get(day.status, 0) + 1
        parts = [
            f"{count} {'partition' if count == 1 else 'partitions'} "
            f"{outcome.value.replace('_', ' ')}"
            for outcome, count in sorted(counts.items())
        ]
        parts += [
            f"{count} {'day' if count == 1 else 'days'} {_DAY_STATUS_TEXT[status]}"
            for status, count in sorted(by_status.items())
            if status is not DayStatus.DONE
        ]
        verdict = {
            CompactExitCode.OK: "OK",
            CompactExitCode.FAILED: "FAILED",
            CompactExitCode.CANNOT_RUN: "CANNOT RUN",
        }[self.exit_code]
        prefix = "dry run, " if self.dry_run else ""
        return f"{verdict}: {prefix}{', '.join(parts) or 'nothing to do'}"

    def to_document(self) -> dict[str, object]:
        """The machine-readable report (``--format json``)."""
        status = {
            CompactExitCode.OK: "ok",
            CompactExitCode.FAILED: "failed",
            CompactExitCode.CANNOT_RUN: "cannot_run",
        }[self.exit_code]
        return {
            "status": status,
            "exit_code": int(self.exit_code),
            "dry_run": self.dry_run,
            "recovered": list(self.recovered),
            "problems": list(self.problems),
            "fatal": self.fatal,
            "days": [
                {
                    "date": day.date.isoformat(),
                    "status": day.status.value,
                    "reason": day.reason or None,
                    "notes": list(day.notes),
                    "partitions": [result.to_document() for result in day.partitions],
                }
                for day in self.days
            ],
        }


_DAY_STATUS_TEXT = {
    DayStatus.DONE: "done",
    DayStatus.DEFERRED: "deferred",
    DayStatus.REFUSED: "refused",
    DayStatus.NO_DATA: "without data",
}


_ROUTINE = frozenset(
    {
        PartitionOutcome.COMPACTED,
        PartitionOutcome.WOULD_COMPACT,
        PartitionOutcome.ALREADY_COMPACTED,
    }
)
"""Partition outcomes a summary line says enough about."""


def _day_lines(day: DayResult, *, dry_run: bool) -> list[str]:
    if day.status is not DayStatus.DONE:
        return [f"{_DAY_STATUS_TEXT[day.status]} {day.date.isoformat()}: {day.reason}"]
    lines = [f"note {day.date.isoformat()}: {note}" for note in day.notes]
    for result in day.partitions:
        where = str(result.key)
        if result.outcome in {PartitionOutcome.COMPACTED, PartitionOutcome.WOULD_COMPACT}:
            dropped = []
            if result.duplicates:
                dropped.append(f"{result.duplicates} duplicates")
            if result.conflicts:
                dropped.append(f"{result.conflicts} conflicting rows")
            detail = f" ({' and '.join(dropped)} dropped)" if dropped else ""
            verb = "would compact" if dry_run else "compacted"
            target = "" if result.file_name is None else f" into {result.file_name}"
            lines.append(
                f"{verb} {where}: {result.parts} parts, {result.input_rows} rows -> "
                f"{result.rows}{detail}{target}"
            )
        elif result.outcome is PartitionOutcome.ALREADY_COMPACTED:
            lines.append(f"skipped {where}: already one compacted file")
        else:
            lines.append(f"{result.outcome.value} {where}: {result.message}")
    return lines
