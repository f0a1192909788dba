"""``recorder compact``: merge each finished UTC day's part files into one file per symbol-day.

A symbol-day partition collects many part files: one per seal (hourly, day end, stop) of every
recorder instance that wrote it, and redundant instances write the same events. Compaction
rewrites each partition of a finished day as one sorted, de-duplicated file.

**Which days.** By default every day strictly before today (``--before today``); ``--before D``
takes the days before ``D``, ``--date D`` exactly ``D``. A selected day is compacted only when
all of these hold, and is otherwise *deferred* (nothing touched, exit 0; a later run takes it):

1. it is strictly before today, UTC (by the wall clock of the machine running ``compact``);
2. the wall clock has passed midnight at its end plus ``storage.day_grace``, the time after
   which a recorder seals the day's partitions;
3. no write-ahead segment under ``<root>/_wal/`` (of any instance, running or not) holds a row
   of that day. A running recorder deletes a segment at its next rotation
   (``storage.max_file_age``) once everything in it is sealed; a stopped or crashed instance's
   segments are recovered, published and deleted by the next ``recorder run`` on the root.
   Rows still in the log would otherwise be published after compaction, and a part file that
   its crashed writer had not yet marked as sealed would be published a second time.

The segments are read *after* the day's part files are listed, so every listed file is either
marked sealed or still visible in a segment. An event of a compacted day that arrives later
(the recorder accepts late events) becomes a new part next to the compacted file; the next run
merges the two.

**Merge.** Rows of every part are sorted by ``event_time`` (then ``receive_time``) and one row is
kept per ``event_time``: an event is ``(symbol, E)``, and the symbol is the partition's. The kept
row is the one received first. Rows of other instances that carry the same values (only
``receive_time`` differs) are *duplicates*; rows with the same ``E`` but another value are
*conflicts*: they are dropped too, because no event may appear twice, and counted in the report
so that an operator sees them. Before anything is published the new file is read back from disk
and compared with the merged rows value for value, and its event times must be exactly the
distinct event times of the inputs, strictly increasing.

The new file is written with the recorder's Parquet options and key-value metadata (schema
version, recorder version, symbol, date) plus :data:`METADATA_COMPACTED_FROM`, the number of
files merged. It is named like any data file (:func:`recorder.storage.paths.data_file_name`), with
:data:`COMPACTOR_ID` in the instance position. A partition that already is a single file
carrying that key is skipped, so running ``compact`` twice is a no-op the second time.

**Publication.** For partition ``date=D/symbol=X``:

1. the new file is written in a staging directory ``date=D/.symbol=X.compact`` under a
   temporary name, fsynced, read back and verified; a manifest (:data:`MANIFEST_NAME`: output
   and input names) is written beside it; the file is renamed to its final name and the
   staging directory fsynced;
2. the staging directory and the live ``symbol=X`` directory are swapped in one atomic step,
   ``renameat2(RENAME_EXCHANGE)``, and the parent is fsynced: ``symbol=X`` now holds the new
   file, ``.symbol=X.compact`` the old parts;
3. the old parts are deleted (any other file found there, such as a part a recorder published
   in the meantime, is moved back into ``symbol=X``), the staging directory is removed, and
   finally the manifest.

So a reader that lists ``symbol=X`` sees either every old part or the new file, never both and
never neither. That holds for readers that skip names starting with ``.`` or ``_``:
:func:`pyarrow.dataset.dataset`, :func:`pandas.read_parquet`, Spark, and the glob
``<root>/date=*/symbol=*/*.parquet``. A ``<root>/**/*.parquet`` glob (DuckDB, polars) also
enters ``.symbol=X.compact``: from step 1's final rename to the end of step 3's deletions (two
directory fsyncs, the swap and one unlink per part), it can list the new file and the old parts
together. A query
that listed the old parts just before the swap and opens one after its deletion fails with
"file not found"; running it again reads the new file. Platforms without ``renameat2`` (it
needs Linux 3.15 and a file system that supports the exchange) are refused with a clear error:
there is no other way to switch without a moment of both or neither.

**Crash safety.** Whatever step a crash (kill -9, power loss) interrupts, the live directory
holds a complete partition, old or new. Every run first finishes what an interrupted run left:
a staging directory whose live sibling holds no manifest was never swapped and is removed; one
whose sibling holds the manifest was swapped, and its cleanup is completed. Runs are serialised
by an exclusive ``flock`` on the root directory.

**Refusal.** Before touching a day, the footer and schema of every file in it are read; if one
cannot be read or is not the recorder's schema, the whole day is *refused* and left as it is.
Damage found only later, in a file's data pages, refuses that partition, untouched.

**Exit codes** (:class:`CompactExitCode`): 0 done or nothing to do (deferred days included),
1 a partition failed (an I/O error, a failed verification; it is left as it was or, if the
new file is already live, finished by the next run), 2 cannot run (bad root, another
compaction running, unreadable write-ahead log, no atomic exchange) or a day or partition was
refused as unreadable.
"""

import contextlib
import ctypes
import ctypes.util
import datetime as dt
import enum
import errno
import fcntl
import functools
import json
import os
import re
import sys
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recorder.clock import Clock, day_start_ms, event_date, format_utc_ms
from recorder.durable import fsync_dir
from recorder.errors import ConfigError, StorageError, UnsafePathError
from recorder.storage.paths import (
    DATA_SUFFIX,
    DATE_KEY,
    SYMBOL_KEY,
    PartitionKey,
    data_file_name,
    is_temp_file_name,
    new_session_token,
    parse_data_file_name,
    parse_segment_file_name,
    partition_dir,
    require_root,
    temp_file_name,
    wal_root,
)
from recorder.storage.schema import (
    DATA_COLUMNS,
    DATA_SCHEMA,
    DATE_COLUMN,
    file_metadata,
    parquet_options,
)
from recorder.storage.wal import RecordType, SegmentReader, decode_batch

METADATA_COMPACTED_FROM = "recorder.compacted_from"
"""Key-value metadata of a compacted file: how many files were merged into it."""
COMPACTOR_ID = "compact"
"""Stands in for the instance id in the names of compacted files."""
STAGING_SUFFIX = ".compact"
"""``date=D/.symbol=X.compact`` is where partition ``date=D/symbol=X`` is rebuilt."""
MANIFEST_NAME = ".compact-manifest.json"
"""The manifest of a compaction in progress: in the staging directory before the swap, in the
live partition after it, until the old parts are gone."""
MANIFEST_FORMAT = 1
"""Version of the manifest document."""

_EVENT_TIME = "event_time"
_SORT_KEYS = [(_EVENT_TIME, "ascending"), ("receive_time", "ascending")]
# Columns that must agree for two rows of one event time to be the same event.
_VALUE_COLUMNS = tuple(name for name in DATA_COLUMNS if name not in {_EVENT_TIME, "receive_time"})
_DATE_DIR = re.compile(rf"{DATE_KEY}=(?P<date>\d{{4}}-\d{{2}}-\d{{2}})")
_SYMBOL_PREFIX = f"{SYMBOL_KEY}="
_STAGING_PREFIX = f".{_SYMBOL_PREFIX}"
_US_PER_MS = 1000
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_EXCHANGE_UNSUPPORTED = frozenset({errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP})


class ExchangeUnsupportedError(StorageError):
    """The platform or file system cannot swap two directories atomically."""


class CompactExitCode(enum.IntEnum):
    """Exit codes of ``recorder compact``, for cron."""

    OK = 0
    """Done, or nothing to do."""
    FAILED = 1
    """A partition could not be compacted; see its message."""
    CANNOT_RUN = 2
    """Compaction could not run, or refused a day or partition it cannot read."""


class CompactStep(enum.StrEnum):
    """Points in the publication of one partition, reported to a :data:`StepHook`."""

    TEMP_WRITTEN = "temp_written"
    """The new file is written and fsynced under its temporary name in the staging directory."""
    STAGED = "staged"
    """The new file was read back from disk and checked against the merged rows."""
    PREPARED = "prepared"
    """The manifest is written, the new file has its final name, the staging directory is
    fsynced: ready to swap."""
    EXCHANGED = "exchanged"
    """The live directory holds the new file, the staging directory the old parts."""
    PART_REMOVED = "part_removed"
    """One old part (or a stale temporary file) was deleted from the staging directory."""
    CLEANED = "cleaned"
    """The staging directory is gone; the manifest is still in the live directory."""
    DONE = "done"
    """The manifest is gone too: the partition is one compacted file."""


StepHook = Callable[[CompactStep, PartitionKey], None]
"""Called after each :class:`CompactStep`; for progress reporting and crash tests."""


class DayStatus(enum.StrEnum):
    """What became of a selected day."""

    DONE = "done"
    """Its partitions were processed; each has its own outcome."""
    DEFERRED = "deferred"
    """Not eligible yet (see the module documentation); nothing touched."""
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
class MergedPartition:
    """The rows of a partition's parts, merged.

    Attributes:
        table: the rows, with the columns of :data:`~recorder.storage.schema.DATA_SCHEMA` and no
            key-value metadata, sorted by ``event_time``, one row per ``event_time``.
        input_rows: rows in all parts together.
        duplicates: rows dropped because an earlier-received row of the same ``event_time``
            has the same values.
        conflicts: rows dropped although their values differ from the kept row of their
            ``event_time``.
        distinct_event_times: distinct ``event_time`` values of the inputs, counted apart from
            the merge, as a cross-check.
    """

    table: pa.Table
    input_rows: int
    duplicates: int
    conflicts: int
    distinct_event_times: int


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
        conflicts: rows dropped as conflicting (see :class:`MergedPartition`).
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


# -- pure rules ------------------------------------------------------------------------------


def parse_before(text: str, today: dt.date) -> dt.date:
    """Parse ``--before``: ``today``, ``yesterday`` or ``YYYY-MM-DD``.

    >>> parse_before("yesterday", dt.date(2024, 5, 2))
    datetime.date(2024, 5, 1)

    Raises:
        ConfigError: anything else.
    """
    word = text.strip().lower()
    if word == "today":
        return today
    if word == "yesterday":
        return today - dt.timedelta(days=1)
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", word):
            return dt.date.fromisoformat(word)
    except ValueError:
        pass
    raise ConfigError(f"--before {text!r}: expected 'today', 'yesterday' or a date YYYY-MM-DD")


def select_days(
    available: Iterable[dt.date], *, only: dt.date | None, before: dt.date
) -> list[dt.date]:
    """Return the days a run looks at, oldest first.

    Args:
        available: the days that have a ``date=`` directory.
        only: ``--date``: exactly this day, whether or not it has data.
        before: otherwise, every available day strictly before this one.

    >>> may_1, may_2 = dt.date(2024, 5, 1), dt.date(2024, 5, 2)
    >>> select_days([may_2, may_1], only=None, before=may_2)
    [datetime.date(2024, 5, 1)]
    """
    if only is not None:
        return [only]
    return sorted(day for day in set(available) if day < before)


def day_deferral(
    date: dt.date, *, now_ms: int, day_grace_ms: int, wal_instances: Collection[str] = ()
) -> str | None:
    """Return why ``date`` cannot be compacted now, or ``None`` if it can.

    Args:
        date: the UTC day.
        now_ms: the wall clock, milliseconds since the epoch.
        day_grace_ms: ``storage.day_grace``: how long past its end a day stays open.
        wal_instances: instances whose write-ahead segments hold rows of ``date``.

    >>> day_deferral(dt.date(1970, 1, 1), now_ms=86_400_000 + 9_999, day_grace_ms=10_000)[-30:]
    'until 1970-01-02T00:00:10.000Z'
    >>> day_deferral(dt.date(1970, 1, 1), now_ms=86_400_000 + 10_000, day_grace_ms=10_000)
    """
    if date >= event_date(now_ms):
        return "not finished: it is today or later (UTC)"
    closes_ms = day_start_ms(date + dt.timedelta(days=1)) + day_grace_ms
    if now_ms < closes_ms:
        return (
            "the day grace has not passed: a recorder may still seal files of it until "
            f"{format_utc_ms(closes_ms)}"
        )
    if wal_instances:
        names = ", ".join(sorted(wal_instances))
        return (
            f"rows of this day are still in the write-ahead log of instance {names}: a running "
            "recorder publishes them and deletes its segment at its next rotation "
            "(storage.max_file_age); a stopped one does so when `recorder run` starts again"
        )
    return None


def merge_parts(parts: Sequence[pa.Table]) -> MergedPartition:
    """Merge the rows of one partition's files: sorted, one row per ``event_time``.

    Rows are ordered by ``event_time``, then ``receive_time``, then input order (the sort is
    stable), and the first row of each ``event_time`` is kept: the one received first.

    Args:
        parts: the files' tables, each with the columns of
            :data:`~recorder.storage.schema.DATA_SCHEMA` (key-value metadata is ignored).

    Raises:
        ValueError: a table does not have the recorder's columns and types.
    """
    for part in parts:
        if not part.schema.equals(DATA_SCHEMA, check_metadata=False):
            raise ValueError(f"a part does not have the recorder schema: {part.schema}")
    if not parts:
        return MergedPartition(DATA_SCHEMA.remove_metadata().empty_table(), 0, 0, 0, 0)
    combined = pa.concat_tables(
        [part.cast(DATA_SCHEMA).replace_schema_metadata(None) for part in parts]
    ).combine_chunks()
    ordered = combined.take(pc.sort_indices(combined, sort_keys=_SORT_KEYS))
    times = ordered.column(_EVENT_TIME).cast(pa.int64()).combine_chunks()
    count = len(times)
    if count == 0:
        return MergedPartition(ordered, 0, 0, 0, 0)
    is_first = pa.concat_arrays([pa.array([True]), pc.not_equal(times[1:], times[:-1])])
    kept_positions = pc.indices_nonzero(is_first)
    # Every row is compared with the kept row of its event time; a kept row equals itself.
    group = pc.subtract(pc.cumulative_sum(is_first.cast(pa.int64())), 1)
    kept_of_row = kept_positions.take(group)
    differs = pa.array([False] * count)
    for name in _VALUE_COLUMNS:
        column = ordered.column(name).combine_chunks()
        reference = column.take(kept_of_row)
        both_null = pc.and_(pc.is_null(column), pc.is_null(reference))
        same = pc.fill_null(pc.equal(column, reference), both_null)
        differs = pc.or_(differs, pc.invert(same))
    conflicts = int(pc.sum(differs.cast(pa.int64())).as_py() or 0)
    merged = ordered.take(kept_positions)
    return MergedPartition(
        table=merged,
        input_rows=count,
        duplicates=count - merged.num_rows - conflicts,
        conflicts=conflicts,
        distinct_event_times=int(pc.count_distinct(times).as_py()),
    )


def check_compacted(written: pa.Table, merged: MergedPartition) -> None:
    """Check a compacted file's rows, as read back from disk, against the merge of its inputs.

    Raises:
        StorageError: the rows differ from the merged rows, are not strictly increasing in
            ``event_time``, or are not one per distinct input event time.
    """
    expected = merged.table
    if written.num_rows != expected.num_rows:
        raise StorageError(
            f"the new file holds {written.num_rows} rows, expected {expected.num_rows}"
        )
    if written.num_rows != merged.distinct_event_times:
        raise StorageError(
            f"the new file holds {written.num_rows} rows for "
            f"{merged.distinct_event_times} distinct event times in the inputs"
        )
    plain = written.replace_schema_metadata(None)
    if not plain.schema.equals(expected.schema) or not plain.equals(expected):
        raise StorageError("the new file's rows differ from the merged rows of its inputs")
    times = written.column(_EVENT_TIME).cast(pa.int64()).combine_chunks()
    if len(times) > 1 and not pc.all(pc.less(times[:-1], times[1:])).as_py():
        raise StorageError("the new file's event times are not strictly increasing")


def staging_dir(live: Path) -> Path:
    """Return the staging directory of live partition directory ``live`` (``.symbol=X.compact``).

    >>> staging_dir(Path("date=2024-05-01/symbol=BTCUSDT")).as_posix()
    'date=2024-05-01/.symbol=BTCUSDT.compact'
    """
    return live.with_name(f".{live.name}{STAGING_SUFFIX}")


def _staging_target(name: str) -> str | None:
    """Return the live directory name a staging directory name stands for, else ``None``."""
    if name.startswith(_STAGING_PREFIX) and name.endswith(STAGING_SUFFIX):
        return name[1 : -len(STAGING_SUFFIX)]
    return None


def _is_data_file(name: str) -> bool:
    return name.endswith(DATA_SUFFIX) and not name.startswith((".", "_"))


# -- file system -----------------------------------------------------------------------------


@functools.cache
def _renameat2() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    # find_library returns None where the C library is linked statically; the process's own
    # symbols then include it.
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    function = getattr(libc, "renameat2", None)
    if function is None:
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    function.restype = ctypes.c_int
    exchange: Callable[..., int] = function
    return exchange


def exchange_directories(first: Path, second: Path) -> None:
    """Swap two directory entries on one file system in one atomic step.

    Raises:
        ExchangeUnsupportedError: the platform (not Linux, or a C library without
            ``renameat2``) or the file system cannot do it.
        OSError: the swap failed (a path does not exist, permission denied); nothing changed.
    """
    renameat2 = _renameat2()
    if renameat2 is None:
        raise ExchangeUnsupportedError(
            f"cannot swap {first} and {second} atomically: renameat2 is not available on "
            f"{sys.platform}; compaction needs Linux"
        )
    result = renameat2(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    if result != 0:
        code = ctypes.get_errno()
        if code in _EXCHANGE_UNSUPPORTED:
            raise ExchangeUnsupportedError(
                f"cannot swap {first} and {second} atomically: the file system does not "
                f"support RENAME_EXCHANGE ({os.strerror(code)})"
            )
        raise OSError(code, os.strerror(code), str(first), None, str(second))


@contextlib.contextmanager
def _exclusive_lock(root: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the root directory: one compaction at a time."""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise StorageError(f"cannot open the dataset root {root}: {exc}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StorageError(
                f"another `recorder compact` is running on {root}; try again when it is done"
            ) from None
        yield
    finally:
        os.close(fd)


def write_ahead_dates(root: Path) -> dict[dt.date, frozenset[str]]:
    """Return each UTC day with rows in a write-ahead segment, with the instances holding them.

    Every instance directory under ``<root>/_wal`` is read, locked (running) or not. A segment
    deleted while being read was fully sealed and counts for nothing. A record that fails its
    checksum ends the segment there, and a batch the recorder cannot decode is skipped: recovery
    ignores both too, so they are never published.

    Raises:
        StorageError: a segment or directory cannot be read.
    """
    found: dict[dt.date, set[str]] = {}
    directory = wal_root(root)
    try:
        instance_dirs = sorted(path for path in directory.iterdir() if path.is_dir())
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise StorageError(f"cannot list the write-ahead log {directory}: {exc}") from exc
    for instance_dir in instance_dirs:
        try:
            segments = sorted(instance_dir.iterdir())
        except FileNotFoundError:
            continue  # recovered and removed by a starting recorder just now
        except OSError as exc:
            raise StorageError(f"cannot list the write-ahead log {instance_dir}: {exc}") from exc
        for segment in segments:
            if parse_segment_file_name(segment.name) is None:
                continue
            for day in _segment_dates(segment):
                found.setdefault(day, set()).add(instance_dir.name)
    return {day: frozenset(names) for day, names in found.items()}


def _segment_dates(segment: Path) -> set[dt.date]:
    days: set[dt.date] = set()
    try:
        with segment.open("rb") as stream:
            for record in SegmentReader(stream):
                if record.type != RecordType.DATA:
                    continue
                try:
                    batch = decode_batch(record.payload)
                except ValueError:
                    continue
                days.update(pc.unique(batch.column(DATE_COLUMN)).to_pylist())
    except FileNotFoundError:
        return set()
    except OSError as exc:
        raise StorageError(f"cannot read write-ahead segment {segment}: {exc}") from exc
    return days


def list_days(root: Path) -> list[dt.date]:
    """Return the days that have a ``date=YYYY-MM-DD`` directory under ``root``, oldest first.

    Raises:
        StorageError: the root cannot be listed.
    """
    days = []
    try:
        for entry in root.iterdir():
            day = _day_of(entry.name)
            if day is not None and entry.is_dir():
                days.append(day)
    except OSError as exc:
        raise StorageError(f"cannot list the dataset root {root}: {exc}") from exc
    return sorted(days)


def _day_of(name: str) -> dt.date | None:
    match = _DATE_DIR.fullmatch(name)
    if match is None:
        return None
    try:
        return dt.date.fromisoformat(match["date"])
    except ValueError:
        return None


def _day_dir(root: Path, day: dt.date) -> Path:
    return root / f"{DATE_KEY}={day.isoformat()}"


@dataclass(frozen=True, slots=True)
class _Partition:
    key: PartitionKey
    directory: Path
    files: tuple[Path, ...]


@dataclass(frozen=True, slots=True)
class _DayListing:
    partitions: tuple[_Partition, ...]
    notes: tuple[str, ...]


def _list_day(root: Path, day: dt.date) -> _DayListing:
    """List a day's partitions and their data files.

    Raises:
        OSError: a directory cannot be listed.
    """
    day_dir = _day_dir(root, day)
    partitions: list[_Partition] = []
    notes: list[str] = []
    if not day_dir.is_dir():
        return _DayListing((), ())
    for entry in sorted(day_dir.iterdir()):
        if not entry.name.startswith(_SYMBOL_PREFIX) or not entry.is_dir():
            continue
        if entry.is_symlink():
            # Swapping would replace the link, not the directory it points to.
            notes.append(f"{entry} left alone: a symbolic link")
            continue
        symbol = entry.name.removeprefix(_SYMBOL_PREFIX)
        try:
            directory = partition_dir(root, day, symbol)
        except UnsafePathError as exc:
            notes.append(f"{entry} left alone: {exc}")
            continue
        files = tuple(sorted(path for path in directory.iterdir() if _is_data_file(path.name)))
        if files:
            partitions.append(_Partition(PartitionKey(day, symbol), directory, files))
    return _DayListing(tuple(partitions), tuple(notes))


# -- interrupted runs ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Manifest:
    output: str
    inputs: frozenset[str]


def _write_manifest(directory: Path, key: PartitionKey, manifest: _Manifest) -> None:
    document = {
        "format": MANIFEST_FORMAT,
        "date": key.date.isoformat(),
        "symbol": key.symbol,
        "output": manifest.output,
        "inputs": sorted(manifest.inputs),
    }
    final = directory / MANIFEST_NAME
    temp = directory / temp_file_name(MANIFEST_NAME)
    with temp.open("wb") as stream:
        stream.write(json.dumps(document, ensure_ascii=False, indent=1).encode())
        stream.flush()
        os.fsync(stream.fileno())
    temp.rename(final)


def _read_manifest(directory: Path) -> _Manifest | None:
    """Read the manifest in ``directory``; ``None`` if there is none.

    Raises:
        OSError: it cannot be read.
        ValueError: it is not a manifest.
    """
    path = directory / MANIFEST_NAME
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    output = document.get("output") if isinstance(document, dict) else None
    inputs = document.get("inputs") if isinstance(document, dict) else None
    if (
        not isinstance(output, str)
        or not isinstance(inputs, list)
        or not all(isinstance(name, str) for name in inputs)
    ):
        raise ValueError(f"{path} is not a compaction manifest")
    return _Manifest(output, frozenset(inputs))


def _finish_swap(
    live: Path, staging: Path, manifest: _Manifest, key: PartitionKey, on_step: StepHook
) -> None:
    """Complete a swapped compaction: the old parts in ``staging`` go, then the manifest.

    Anything in ``staging`` that is neither an input nor a temporary file (a part a recorder
    published while the new file was being built) is moved back into ``live``.

    Raises:
        OSError: a file could not be deleted or moved; rerunning finishes the job.
    """
    if staging.is_dir():
        rescued = False
        for entry in sorted(staging.iterdir()):
            if entry.name in manifest.inputs or is_temp_file_name(entry.name):
                entry.unlink()
                on_step(CompactStep.PART_REMOVED, key)
            else:
                # File names are unique, so this replaces nothing, unless recovery published
                # the very same file again meanwhile.
                entry.rename(live / entry.name)
                rescued = True
        if rescued:
            fsync_dir(live)
        staging.rmdir()
        fsync_dir(live.parent)
    on_step(CompactStep.CLEANED, key)
    (live / MANIFEST_NAME).unlink(missing_ok=True)
    fsync_dir(live)
    on_step(CompactStep.DONE, key)


def _discard_staging(staging: Path) -> list[str]:
    """Remove an unswapped staging directory: only what compaction itself puts there.

    Returns:
        Entries left in place because compaction did not make them.

    Raises:
        OSError: an entry could not be removed.
    """
    foreign: list[str] = []
    for entry in sorted(staging.iterdir()):
        parsed = parse_data_file_name(entry.name)
        ours = (
            entry.name == MANIFEST_NAME
            or is_temp_file_name(entry.name)
            or (parsed is not None and parsed.instance_id == COMPACTOR_ID)
        )
        if ours and not entry.is_dir():
            entry.unlink()
        else:
            foreign.append(entry.name)
    if not foreign:
        staging.rmdir()
    fsync_dir(staging.parent)
    return foreign


def _no_step(step: CompactStep, key: PartitionKey) -> None:
    """A :data:`StepHook` that does nothing."""


def resolve_leftovers(root: Path, *, dry_run: bool = False) -> tuple[list[str], list[str]]:
    """Finish or undo what interrupted runs left under ``root``.

    A staging directory whose live partition holds a manifest was swapped: the old parts in
    it are deleted. One whose live partition holds none was never swapped: it is removed. A
    manifest left alone in a live partition (a crash after the cleanup) is deleted.

    Args:
        root: the dataset root.
        dry_run: only say what would be done.

    Returns:
        What was done (or would be), and what could not be resolved, one sentence each.

    Raises:
        StorageError: the root cannot be listed.
    """
    done: list[str] = []
    problems: list[str] = []
    for day in list_days(root):
        day_dir = _day_dir(root, day)
        try:
            entries = sorted(day_dir.iterdir())
        except OSError as exc:
            problems.append(f"cannot list {day_dir}: {exc}")
            continue
        for entry in entries:
            live_name = _staging_target(entry.name)
            if live_name is not None and entry.is_dir():
                key = PartitionKey(day, live_name.removeprefix(_SYMBOL_PREFIX))
                text, solved = _resolve_staging(key, day_dir / live_name, entry, dry_run=dry_run)
            elif (
                entry.name.startswith(_SYMBOL_PREFIX)
                and (entry / MANIFEST_NAME).exists()
                and not staging_dir(entry).exists()
            ):
                text, solved = _remove_manifest(entry, dry_run=dry_run)
            else:
                continue
            (done if solved else problems).append(text)
    return done, problems


def _remove_manifest(live: Path, *, dry_run: bool) -> tuple[str, bool]:
    """Delete a manifest whose compaction was cleaned up; ``(what, whether it was done)``."""
    path = live / MANIFEST_NAME
    if dry_run:
        return f"would remove {path}, left by an interrupted run", True
    try:
        path.unlink()
        fsync_dir(live)
    except OSError as exc:
        return f"cannot remove {path}: {exc}", False
    return f"removed {path}, left by an interrupted run", True


def _resolve_staging(
    key: PartitionKey, live: Path, staging: Path, *, dry_run: bool
) -> tuple[str, bool]:
    """Finish or undo one interrupted compaction; ``(what, whether it was resolved)``."""
    try:
        manifest = _read_manifest(live) if live.is_dir() else None
    except (OSError, ValueError) as exc:
        return f"{staging} left alone: cannot read {live / MANIFEST_NAME}: {exc}", False
    if manifest is None:
        return _undo_staging(staging, dry_run=dry_run)
    if not (live / manifest.output).is_file():
        return f"{staging} left alone: {live} has a manifest but not its file", False
    if dry_run:
        return f"would delete the old parts of {live} left in {staging}", True
    try:
        _finish_swap(live, staging, manifest, key, _no_step)
    except OSError as exc:
        return f"cannot delete the old parts of {live} left in {staging}: {exc}", False
    return f"deleted the old parts of {live} left in {staging} by an interrupted run", True


def _undo_staging(staging: Path, *, dry_run: bool) -> tuple[str, bool]:
    """Remove a staging directory that was never swapped in; ``(what, whether it was done)``."""
    if dry_run:
        return f"would remove {staging}, an unfinished compaction never swapped in", True
    try:
        foreign = _discard_staging(staging)
    except OSError as exc:
        return f"cannot remove {staging}: {exc}", False
    if foreign:
        names = ", ".join(foreign)
        return f"{staging} kept: it holds files compaction did not make: {names}", False
    return f"removed {staging}, an unfinished compaction never swapped in", True


# -- compaction ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Footer:
    rows: int
    compacted: bool


def _read_footer(path: Path) -> _Footer:
    """Read a file's footer and check its schema.

    Raises:
        OSError: the file cannot be opened.
        pa.ArrowException: the footer cannot be parsed.
        ValueError: the file does not have the recorder's schema.
    """
    metadata = pq.read_metadata(path)
    schema = metadata.schema.to_arrow_schema()
    if not schema.equals(DATA_SCHEMA, check_metadata=False):
        raise ValueError(f"not the recorder's schema: {schema}")
    compacted = METADATA_COMPACTED_FROM.encode() in (metadata.metadata or {})
    return _Footer(rows=metadata.num_rows, compacted=compacted)


def _read_table(path: Path) -> pa.Table:
    with pq.ParquetFile(path) as parquet:
        return parquet.read()


@dataclass(slots=True)
class _Run:
    """One run's settings and what it has done so far."""

    clock: Clock
    dry_run: bool
    on_step: StepHook
    fatal: str | None = None
    days: list[DayResult] = field(default_factory=list)

    def compact_day(self, day: dt.date, listing: _DayListing) -> DayResult:
        unreadable: list[str] = []
        footers: dict[Path, _Footer] = {}
        for partition in listing.partitions:
            for path in partition.files:
                try:
                    footers[path] = _read_footer(path)
                except (OSError, ValueError, pa.ArrowException) as exc:
                    unreadable.append(f"{path}: {exc}")
        if unreadable:
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
        return DayResult(day, DayStatus.DONE, partitions=tuple(results), notes=listing.notes)

    def compact_partition(self, partition: _Partition) -> PartitionResult:
        key, files = partition.key, partition.files
        try:
            merged = merge_parts([_read_table(path) for path in files])
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
            name = self.publish(partition, merged)
        except ExchangeUnsupportedError as exc:
            self.fatal = str(exc)
            return _replace(result, PartitionOutcome.FAILED, message=f"{exc}; left as it was")
        except OSError as exc:
            return _replace(result, PartitionOutcome.FAILED, message=str(exc))
        return _replace(result, PartitionOutcome.COMPACTED, file_name=name)

    def publish(self, partition: _Partition, merged: MergedPartition) -> str:
        """Build the new partition aside, swap it in, delete the old parts.

        Raises:
            ExchangeUnsupportedError: no atomic swap here; nothing changed.
            OSError: before the swap: nothing changed (the staging directory is removed).
            StorageError: after the swap: the new file is live; the next run finishes.
        """
        key, live = partition.key, partition.directory
        staging = staging_dir(live)
        name = data_file_name(new_session_token(COMPACTOR_ID, self.clock.wall_us()), 0)
        manifest = _Manifest(name, frozenset(path.name for path in partition.files))
        staging.mkdir()
        try:
            fsync_dir(live.parent)
            temp = self.stage(staging, key, merged, manifest)
            _write_manifest(staging, key, manifest)
            # A `**/*.parquet` glob sees the new file from here until the old parts are
            # deleted after the swap: everything slow happened before.
            temp.rename(staging / manifest.output)
            fsync_dir(staging)
            self.on_step(CompactStep.PREPARED, key)
            exchange_directories(live, staging)
        except OSError:
            # Not swapped: the live partition is untouched. A failed removal is retried by
            # the next run, which finds the staging directory and no manifest in live.
            with contextlib.suppress(OSError):
                _discard_staging(staging)
            raise
        self.on_step(CompactStep.EXCHANGED, key)
        try:
            fsync_dir(live.parent)
            _finish_swap(live, staging, manifest, key, self.on_step)
        except OSError as exc:
            raise StorageError(
                f"the compacted file {name} is live, but the old parts could not be removed "
                f"from {staging} ({exc}); the next run removes them"
            ) from exc
        return name

    def stage(
        self, staging: Path, key: PartitionKey, merged: MergedPartition, manifest: _Manifest
    ) -> Path:
        """Write the new file in ``staging`` under its temporary name, fsync it, check it.

        Returns:
            The temporary file; it is renamed to its final name just before the swap.

        Raises:
            OSError: it could not be written.
            StorageError: it does not read back as the merged rows.
        """
        options = parquet_options(key.date, key.symbol)
        metadata = {
            **file_metadata(key.date, key.symbol),
            METADATA_COMPACTED_FROM: str(len(manifest.inputs)),
        }
        table = merged.table.cast(DATA_SCHEMA).replace_schema_metadata(metadata)
        temp = staging / temp_file_name(manifest.output)
        with temp.open("wb") as stream:
            pq.write_table(table, stream, **options.write_kwargs)
            stream.flush()
            os.fsync(stream.fileno())
        self.on_step(CompactStep.TEMP_WRITTEN, key)
        try:
            written = _read_table(temp)
        except pa.ArrowException as exc:
            raise StorageError(f"the new file {temp} cannot be read back: {exc}") from exc
        check_compacted(written, merged)
        self.on_step(CompactStep.STAGED, key)
        return temp


def _replace(
    result: PartitionResult,
    outcome: PartitionOutcome,
    *,
    file_name: str | None = None,
    message: str = "",
) -> PartitionResult:
    return PartitionResult(
        result.key,
        outcome,
        parts=result.parts,
        input_rows=result.input_rows,
        rows=result.rows,
        duplicates=result.duplicates,
        conflicts=result.conflicts,
        file_name=file_name,
        message=message,
    )


def compact(
    root: Path,
    *,
    clock: Clock,
    day_grace_ms: int,
    only: dt.date | None = None,
    before: dt.date | None = None,
    dry_run: bool = False,
    on_step: StepHook | None = None,
) -> CompactReport:
    """Compact the finished days of the dataset under ``root``.

    See the module documentation for which days are taken, how rows are merged and how the
    result is published.

    Args:
        root: the dataset root, a local directory.
        clock: the wall clock, read once for eligibility, and for the new files' names.
        day_grace_ms: ``storage.day_grace`` in milliseconds.
        only: compact only this day (``--date``).
        before: compact the days strictly before this one (``--before``); default: today.
        dry_run: change nothing; report what would be done.
        on_step: called after each step of each partition's publication.

    Raises:
        StorageError: compaction cannot run: the root is missing or unreadable, another
            compaction is running, or the write-ahead log cannot be read.
    """
    require_root(root)
    now_ms = clock.wall_us() // _US_PER_MS
    with _exclusive_lock(root):
        recovered, problems = resolve_leftovers(root, dry_run=dry_run)
        selected = select_days(list_days(root), only=only, before=before or event_date(now_ms))
        try:
            listings = {day: _list_day(root, day) for day in selected}
        except OSError as exc:
            raise StorageError(f"cannot list the dataset under {root}: {exc}") from exc
        # Read after the listings: see "Which days" in the module documentation.
        in_log = write_ahead_dates(root)
        run = _Run(clock, dry_run, on_step or _no_step)
        for day in selected:
            if run.fatal is not None:
                break
            listing = listings[day]
            if not listing.partitions:
                reason = "no partition with data files"
                run.days.append(DayResult(day, DayStatus.NO_DATA, reason, notes=listing.notes))
                continue
            deferral = day_deferral(
                day, now_ms=now_ms, day_grace_ms=day_grace_ms, wal_instances=in_log.get(day, ())
            )
            if deferral is not None:
                run.days.append(DayResult(day, DayStatus.DEFERRED, deferral))
                continue
            run.days.append(run.compact_day(day, listing))
    return CompactReport(
        dry_run=dry_run,
        days=tuple(run.days),
        recovered=tuple(recovered),
        problems=tuple(problems),
        fatal=run.fatal,
    )
