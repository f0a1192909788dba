"""Publishing a partition: its buffered rows become one sealed Parquet file, atomically.

The rows are sorted by ``event_time``, written to a temporary name in the partition directory
(:func:`~recorder.storage.paths.temp_file_name`: never ``.parquet``, so no reader's glob sees
it), fsynced, renamed into place, and the directory fsynced. A reader sees the whole file or
nothing; after a crash the file is there, complete, or only a temporary file is, which
recovery removes. A file already published under the name is never rewritten: publication is
idempotent, which is what lets recovery publish again whatever it is unsure of.

Each step goes through the root's :class:`~recorder.storage.filesystem.PublicationTarget`
(a :mod:`pyarrow.fs` file system; the local one fsyncs), so this order is the same for any
file system a root may live in.
"""

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from recorder.errors import StorageError
from recorder.storage.filesystem import publication_target
from recorder.storage.paths import PartitionKey, partition_dir, temp_file_name
from recorder.storage.root_schema import root_schema_version
from recorder.storage.schema import (
    DATA_SCHEMA,
    FIRST_SCHEMA_VERSION,
    METADATA_LAST_LSN,
    ROW_ORDER,
    SOURCE_STREAM,
    parquet_options,
    with_source,
)
from recorder.storage.sealing import SealReason


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


def publish_partition(
    root: Path,
    key: PartitionKey,
    batches: Sequence[pa.RecordBatch],
    name: str,
    reason: SealReason,
    *,
    last_lsn: int | None = None,
    source: str = SOURCE_STREAM,
) -> SealedFile | None:
    """Write ``batches`` as ``<partition>/<name>`` atomically; ``None`` if that file exists.

    Args:
        root: the dataset root.
        key: the partition.
        batches: its buffered rows, in :data:`~recorder.storage.schema.DATA_SCHEMA`, any order.
        name: the data file's name (:func:`~recorder.storage.paths.data_file_name`).
        reason: why it is sealed, reported in the result.
        last_lsn: the newest write-ahead record with rows in ``batches``, kept in the file's
            metadata (:func:`published_last_lsn`).
        source: the rows' ``source``: recorded (``stream``) or rebuilt (``backfill``, which a
            root of schema version 1 cannot hold).

    Returns:
        The file published now, or ``None`` when a file of that name was already published
        (its leftover temporary file, if any, is removed).

    Raises:
        UnsafePathError: the partition would lie outside the root.
        StorageError: the root's schema marker is unreadable or names an unknown version.
        OSError: the file could not be written; no partial file is visible.
    """
    directory = partition_dir(root, key.date, key.symbol)
    target = publication_target(root)
    partition = str(key)  # `directory` as the target names it: relative to the root
    final = f"{partition}/{name}"
    temp = f"{partition}/{temp_file_name(name)}"
    target.make_dir(partition)
    if target.exists(final):
        # Published by a writer that may have died (or failed) before it synced the file's
        # name: make it durable now, before the caller lets go of the log that holds its rows.
        target.make_durable(final)
        target.make_entry_durable(partition)
        target.remove(temp)
        return None
    # Read again for every file: a migration of the root takes effect from the next one.
    version = root_schema_version(root)
    options = parquet_options(key.date, key.symbol, version)
    metadata = dict(options.schema.metadata or {})
    if last_lsn is not None:
        metadata[METADATA_LAST_LSN.encode()] = str(last_lsn).encode()
    table = pa.Table.from_batches(batches, schema=DATA_SCHEMA).sort_by(list(ROW_ORDER))
    if version != FIRST_SCHEMA_VERSION:
        table = with_source(table, source)
    elif source != SOURCE_STREAM:
        raise StorageError(f"{root} is of schema version 1: run `recorder migrate` first")
    table = table.replace_schema_metadata(metadata)
    try:
        # A leftover of an earlier failed attempt under this name is overwritten.
        target.write_aside(temp, table, options)
        target.make_durable(temp)
        target.move_into_place(temp, final)
        target.make_entry_durable(partition)
    except OSError:
        target.remove(temp)
        raise
    event_times = table.column("event_time").cast(pa.int64())
    return SealedFile(
        path=directory / name,
        date=key.date,
        symbol=key.symbol,
        rows=table.num_rows,
        size_bytes=target.size(final),
        first_event_ms=event_times[0].as_py(),
        last_event_ms=event_times[-1].as_py(),
        reason=reason,
    )


def published_last_lsn(root: Path, key: PartitionKey, name: str) -> int | None:
    """The newest write-ahead record a published file holds rows of; ``None`` if unknown.

    ``None`` when the file does not exist, or was written without the metadata (by a recorder
    before it, or by compaction).
    """
    target = publication_target(root)
    final = f"{key}/{name}"
    if not target.exists(final):
        return None
    raw = target.file_metadata(final).get(METADATA_LAST_LSN.encode())
    return None if raw is None else int(raw)
