"""Which days a run takes, and whether each is finished enough to be compacted now.

A day is taken by ``--date D`` (exactly ``D``) or ``--before D`` (every day before ``D``,
today by default), and compacted only when :func:`day_deferral` finds no reason to wait: the
day is over (UTC), ``storage.day_grace`` has passed since, and no write-ahead segment of any
instance still holds a row of it (:func:`write_ahead_dates`). See
:mod:`recorder.storage.compact` for why each rule is needed.
"""

import datetime as dt
import re
from collections.abc import Collection, Iterable
from pathlib import Path

import pyarrow.compute as pc

from recorder.clock import day_start_ms, event_date, format_utc_ms
from recorder.errors import ConfigError, StorageError
from recorder.storage.paths import parse_segment_file_name, wal_root
from recorder.storage.schema import DATE_COLUMN
from recorder.storage.wal import RecordType, SegmentReader, decode_batch


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
    raise ConfigError(
        f"{text!r} is not a day: expected 'today', 'yesterday' or a UTC day written YYYY-MM-DD, "
        "such as 2024-05-01"
    )


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
