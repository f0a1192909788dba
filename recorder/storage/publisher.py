"""Publishing a partition: its buffered rows become one sealed Parquet file, atomically.

The rows are sorted by ``event_time``, written to a temporary name in the partition directory
(:func:`~recorder.storage.paths.temp_file_name`: never ``.parquet``, so no reader's glob sees
it), fsynced, renamed into place, and the directory fsynced. A reader sees the whole file or
nothing; after a crash the file is there, complete, or only a temporary file is, which
recovery removes. A file already published under the name is never rewritten: publication is
idempotent, which is what lets recovery publish again whatever it is unsure of.
"""

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from recorder.durable import fsync_dir, fsync_file, make_dirs
from recorder.storage.paths import PartitionKey, partition_dir, temp_file_name
from recorder.storage.schema import DATA_SCHEMA, ROW_ORDER, parquet_options, write_parquet_file
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
) -> SealedFile | None:
    """Write ``batches`` as ``<partition>/<name>`` atomically; ``None`` if that file exists.

    Args:
        root: the dataset root.
        key: the partition.
        batches: its buffered rows, in :data:`~recorder.storage.schema.DATA_SCHEMA`, any order.
        name: the data file's name (:func:`~recorder.storage.paths.data_file_name`).
        reason: why it is sealed, reported in the result.

    Returns:
        The file published now, or ``None`` when a file of that name was already published
        (its leftover temporary file, if any, is removed).

    Raises:
        UnsafePathError: the partition would lie outside the root.
        OSError: the file could not be written; no partial file is visible.
    """
    directory = partition_dir(root, key.date, key.symbol)
    make_dirs(directory)
    final = directory / name
    temp = directory / temp_file_name(name)
    if final.exists():
        # Published by a writer that may have died (or failed) before it synced the file's
        # name: make it durable now, before the caller lets go of the log that holds its rows.
        fsync_file(final)
        fsync_dir(directory)
        temp.unlink(missing_ok=True)
        return None
    options = parquet_options(key.date, key.symbol)
    table = (
        pa.Table.from_batches(batches, schema=DATA_SCHEMA)
        .sort_by(list(ROW_ORDER))
        .replace_schema_metadata(options.schema.metadata)
    )
    try:
        # "wb": a leftover of an earlier failed attempt under this name is overwritten.
        write_parquet_file(temp, table, options)
        temp.rename(final)
        fsync_dir(directory)
    except OSError:
        temp.unlink(missing_ok=True)
        raise
    event_times = table.column("event_time").cast(pa.int64())
    return SealedFile(
        path=final,
        date=key.date,
        symbol=key.symbol,
        rows=table.num_rows,
        size_bytes=final.stat().st_size,
        first_event_ms=event_times[0].as_py(),
        last_event_ms=event_times[-1].as_py(),
        reason=reason,
    )
