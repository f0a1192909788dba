"""Where the gap log lives under a dataset root: one directory per UTC day, one file per instance.

Layout::

    <root>/_gaps/date=YYYY-MM-DD/<instance_id>.jsonl

The day is the UTC day of the gap's ``to_ms``: a gap becomes known only when the event that
ends it arrives, so a day's files grow only while that day's events arrive, and "what happened
on day D" is one directory.

Why one file per instance rather than one shared ``YYYY-MM-DD.jsonl``: several instances may
write into one root (symbol shards, redundant pairs), and the log must never show an interleaved
or torn line. With one writer per file (an instance id is held by one running process, see
:mod:`recorder.storage.locking`), a failed append can be cut back to the last
complete line without any risk of cutting off another process's record, and a line torn by a
crash is repaired by the only process that could have written it (see
:mod:`recorder.gaps.log`). The leading ``_`` keeps the directory out of Parquet dataset
discovery, and nothing here ends in ``.parquet``.
"""

import datetime as dt
from pathlib import Path

from recorder.clock import event_date
from recorder.gaps.detector import Gap
from recorder.hive import date_dir_name
from recorder.instance import validate_instance_id

GAPS_DIR_NAME = "_gaps"
"""Directory of the gap log under the dataset root."""
GAP_LOG_SUFFIX = ".jsonl"
"""Suffix of gap log files."""


def gap_log_dir(root: Path) -> Path:
    """Return ``<root>/_gaps``."""
    return root / GAPS_DIR_NAME


def gap_log_day_dir(root: Path, day: dt.date) -> Path:
    """Return ``<root>/_gaps/date=YYYY-MM-DD``, the directory of gaps ending on ``day``."""
    return gap_log_dir(root) / date_dir_name(day)


def gap_log_file(root: Path, day: dt.date, instance_id: str) -> Path:
    """Return ``<root>/_gaps/date=YYYY-MM-DD/<instance_id>.jsonl``.

    Raises:
        UnsafePathError: ``instance_id`` is not a safe name.
    """
    return gap_log_day_dir(root, day) / f"{validate_instance_id(instance_id)}{GAP_LOG_SUFFIX}"


def gap_day(gap: Gap) -> dt.date:
    """Return the UTC day whose file holds ``gap``: the day of its ``to_ms``."""
    return event_date(gap.to_ms)
