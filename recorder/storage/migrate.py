"""``recorder migrate``: bring every data file of a root to the current schema version.

A root written before the ``source`` column existed (schema version 1) keeps receiving
version 1 files (:mod:`recorder.storage.root_schema`), because the readers' glob calls refuse
a root that mixes versions. Migrating it:

1. takes the root's maintenance lock (no ``compact`` runs beside it);
2. marks the root current, so that every running recorder writes its next files in the current
   version (each reads the marker before it publishes a file);
3. rewrites each version 1 file in place: its rows with ``source = "stream"`` (every row of
   such a file was recorded: backfill did not exist), its key-value metadata kept but for the
   schema version, written aside under the file's temporary name, fsynced, and renamed over the
   old file, whose directory is then fsynced. A reader sees the old file or the new one, never
   a partial one; a kill at any moment leaves every file readable, and a rerun goes on where
   it stopped;
4. lists the root again until a pass finds no version 1 file (a recorder may have been
   publishing one as the marker changed).

While it runs, the root mixes versions: pandas and pyarrow read it, DuckDB's and polars' glob
calls may refuse it until it is done.
"""

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.parquet as pq

from recorder.durable import fsync_dir
from recorder.storage.compact.listing import list_day, list_days
from recorder.storage.locking import exclusive_root_lock
from recorder.storage.paths import PartitionKey, require_root, temp_file_name
from recorder.storage.root_schema import mark_root, root_schema_version
from recorder.storage.schema import (
    FIRST_SCHEMA_VERSION,
    METADATA_SCHEMA_VERSION,
    SCHEMA_VERSION,
    as_file_table,
    file_schema_version,
    parquet_options,
    write_parquet_file,
)

MAX_PASSES: Final = 5
"""Listings of the root before giving up on files that keep appearing in version 1."""
PASS_PAUSE: Final = 1.0
"""Seconds between two listings: a recorder's publication in flight ends meanwhile."""

FileHook = Callable[[Path], None]
"""Called with each file once it is dealt with (a progress bar)."""


@dataclass(slots=True)
class MigrationReport:
    """What a migration did.

    Attributes:
        version_before: the root's schema version when it started.
        files_checked: data files looked at (each pass).
        files_migrated: version 1 files rewritten (or, in a dry run, to rewrite).
        rows_migrated: rows in them.
        unreadable: files that could not be read or rewritten, with why; they stay as they were.
        passes: listings of the root.
    """

    version_before: int
    files_checked: int = 0
    files_migrated: int = 0
    rows_migrated: int = 0
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    passes: int = 0

    @property
    def complete(self) -> bool:
        """Every file of the root is in the current version."""
        return not self.unreadable


def _data_files(root: Path) -> Iterator[tuple[PartitionKey, Path]]:
    for day in list_days(root):
        for partition in list_day(root, day).partitions:
            for path in partition.files:
                yield partition.key, path


def migrate_file(path: Path, key: PartitionKey) -> int | None:
    """Rewrite one data file in the current schema version, in place, atomically.

    Returns:
        The rows rewritten, or ``None`` when the file is in the current version already.

    Raises:
        OSError: it could not be read or written (the old file stays).
        pa.ArrowException, ValueError: it is not a readable data file of the recorder.
    """
    with pq.ParquetFile(path) as parquet:
        version = file_schema_version(parquet.schema_arrow)
        if version is None:
            raise ValueError(f"not the recorder's schema: {parquet.schema_arrow}")
        if version != FIRST_SCHEMA_VERSION:
            return None
        table = parquet.read()
    metadata = dict(table.schema.metadata or {})
    metadata[METADATA_SCHEMA_VERSION.encode()] = str(SCHEMA_VERSION).encode()
    migrated = as_file_table(table).replace_schema_metadata(metadata)
    temp = path.with_name(temp_file_name(path.name))
    try:
        write_parquet_file(temp, migrated, parquet_options(key.date, key.symbol, SCHEMA_VERSION))
        temp.replace(path)
    except OSError:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    rows: int = migrated.num_rows
    return rows


def migrate_root(
    root: Path,
    *,
    dry_run: bool = False,
    on_file: FileHook | None = None,
    pause: float = PASS_PAUSE,
) -> MigrationReport:
    """Bring every data file under ``root`` to :data:`~recorder.storage.schema.SCHEMA_VERSION`.

    Args:
        root: the dataset root, a local directory.
        dry_run: count what would be rewritten; change nothing (the marker neither).
        on_file: called after each file.
        pause: seconds between two listings of the root.

    Raises:
        StorageError: the root cannot be used, its marker names an unknown version, or a
            ``compact`` or another ``migrate`` runs on it.
    """
    require_root(root)
    with exclusive_root_lock(root, "migrate"):
        report = MigrationReport(version_before=root_schema_version(root))
        if not dry_run:
            mark_root(root, SCHEMA_VERSION)
        failed: set[Path] = set()
        while report.passes < MAX_PASSES:
            report.passes += 1
            found = 0
            for key, path in _data_files(root):
                if path in failed:
                    continue
                report.files_checked += 1
                try:
                    rows = _count_v1(path) if dry_run else migrate_file(path, key)
                except (OSError, ValueError, pa.ArrowException) as exc:
                    failed.add(path)
                    report.unreadable.append((path, str(exc)))
                    rows = None
                if rows is not None:
                    found += 1
                    report.files_migrated += 1
                    report.rows_migrated += rows
                if on_file is not None:
                    on_file(path)
            if dry_run or not found:
                break
            time.sleep(pause)
        return report


def _count_v1(path: Path) -> int | None:
    """The rows of a version 1 file (what a migration would rewrite), else ``None``."""
    metadata = pq.read_metadata(path)
    version = file_schema_version(metadata.schema.to_arrow_schema())
    if version is None:
        raise ValueError(f"not the recorder's schema: {metadata.schema.to_arrow_schema()}")
    return metadata.num_rows if version == FIRST_SCHEMA_VERSION else None
