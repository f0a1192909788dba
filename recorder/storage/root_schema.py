"""Which schema version a root's data files are written in: the marker ``<root>/_schema.json``.

A reader's glob call cannot read a root whose files disagree on their columns: DuckDB's
``read_parquet('<root>/**/*.parquet')`` refuses a file without a column the first file has,
and polars' ``scan_parquet`` refuses any difference, while pandas and pyarrow silently keep the
first file's columns. So a root never mixes schema versions by the recorder's own doing:

* a root with no data yet is of the current version
  (:data:`~recorder.storage.schema.SCHEMA_VERSION`), and the writer marks it so when it opens it;
* a root with data and no marker was written by a recorder from before the marker (schema
  version 1, no ``source`` column): the recorder keeps writing version 1 files into it, and
  says so, until ``recorder migrate`` has rewritten its files and marked it version 2;
* the marker is read again before each file is published, so a running recorder follows a
  migration without a restart.

The marker is written aside, fsynced and renamed into place, like a data file.
"""

import json
import os
import threading
from pathlib import Path
from typing import Final

from recorder.durable import fsync_dir
from recorder.errors import StorageError
from recorder.hive import DATE_KEY, dir_value
from recorder.ops.logs import get_logger
from recorder.storage.schema import FILE_SCHEMAS, FIRST_SCHEMA_VERSION, SCHEMA_VERSION

log = get_logger(__name__)

MARKER_NAME: Final = "_schema.json"
"""The marker's name in the root; readers skip names that begin with ``_``."""


def marker_path(root: Path) -> Path:
    """Where the marker of ``root`` lies."""
    return root / MARKER_NAME


def _has_data(root: Path) -> bool:
    try:
        with os.scandir(root) as entries:
            return any(dir_value(entry.name, DATE_KEY) is not None for entry in entries)
    except FileNotFoundError:
        return False


def root_schema_version(root: Path) -> int:
    """The schema version files are written in under ``root`` now.

    Raises:
        StorageError: the marker names no version this recorder knows (a newer recorder
            marked it, or it is damaged): writing an older schema into it would mix them.
    """
    try:
        text = marker_path(root).read_text(encoding="utf-8")
    except FileNotFoundError:
        return FIRST_SCHEMA_VERSION if _has_data(root) else SCHEMA_VERSION
    except OSError as exc:
        raise StorageError(f"cannot read {marker_path(root)}: {exc}") from exc
    try:
        version = json.loads(text)["schema_version"]
    except (ValueError, KeyError, TypeError):
        version = None
    if not isinstance(version, int) or version not in FILE_SCHEMAS:
        msg = (
            f"{marker_path(root)} names schema version {version!r}; this recorder writes "
            f"versions {sorted(FILE_SCHEMAS)} (a newer recorder marked the root?)"
        )
        raise StorageError(msg)
    return version


def mark_root(root: Path, version: int = SCHEMA_VERSION) -> None:
    """Mark ``root`` as written in schema ``version``, durably.

    Raises:
        OSError: the marker could not be written.
    """
    final = marker_path(root)
    # Recorders opening one new root together each write their own temporary file.
    temp = final.with_name(f".{MARKER_NAME}.{os.getpid()}.{threading.get_ident()}.tmp")
    with temp.open("w", encoding="utf-8") as stream:
        json.dump({"schema_version": version}, stream)
        stream.write("\n")
        stream.flush()
        os.fsync(stream.fileno())
    temp.replace(final)
    fsync_dir(root)


def claim_root(root: Path) -> int:
    """The version of ``root`` at open: a root with no data and no marker is marked current.

    A root of version 1 is logged (a warning naming ``recorder migrate``).

    Raises:
        StorageError: see :func:`root_schema_version`.
        OSError: a new root's marker could not be written.
    """
    version = root_schema_version(root)
    if version == SCHEMA_VERSION and not marker_path(root).exists():
        mark_root(root)
    if version == FIRST_SCHEMA_VERSION:
        log.warning(
            "the root holds files of schema version 1 (no source column): new files are "
            "written in version 1 too, so that readers see one schema; run `recorder migrate` "
            "to bring the root to the current version",
            root=str(root),
        )
    return version
