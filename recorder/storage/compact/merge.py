"""The merge of one partition: read its parts, sort and de-duplicate them, write and check the file.

Rows of every part are sorted by ``event_time`` (then ``receive_time``) and one row is kept per
``event_time``, the one received first. Dropped rows that carry the kept row's values are
*duplicates*; dropped rows with other values are *conflicts*, counted apart so that an operator
sees them. The merged rows are written as one file with the recorder's Parquet options and
metadata plus :data:`METADATA_COMPACTED_FROM`, then read back from disk and compared with the
merge (:func:`check_compacted`) before anything is published.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recorder.errors import StorageError
from recorder.storage.paths import PartitionKey
from recorder.storage.schema import (
    FILE_SCHEMA,
    FILE_SCHEMAS,
    ROW_ORDER,
    SCHEMA_VERSION,
    as_file_table,
    file_metadata,
    file_schema_version,
    for_version,
    parquet_options,
    write_parquet_file,
)

METADATA_COMPACTED_FROM = "recorder.compacted_from"
"""Key-value metadata of a compacted file: how many files were merged into it."""

_EVENT_TIME = "event_time"
# Columns that must agree for two rows of one event time to be the same event.
_VALUE_COLUMNS = tuple(
    name for name in FILE_SCHEMA.names if name not in {_EVENT_TIME, "receive_time"}
)


@dataclass(frozen=True, slots=True)
class MergedPartition:
    """The rows of a partition's parts, merged.

    Attributes:
        table: the rows, with the columns of the schema version they are written in (see
            :func:`merge_parts`) and no key-value metadata, sorted by ``event_time``, one row
            per ``event_time``.
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
class PartFooter:
    """What a data file's footer says about it.

    Attributes:
        rows: rows in the file.
        compacted: it carries :data:`METADATA_COMPACTED_FROM`, so compaction wrote it.
    """

    rows: int
    compacted: bool


def read_footer(path: Path) -> PartFooter:
    """Read a file's footer and check its schema.

    Raises:
        OSError: the file cannot be opened.
        pa.ArrowException: the footer cannot be parsed.
        ValueError: the file does not have the recorder's schema.
    """
    metadata = pq.read_metadata(path)
    schema = metadata.schema.to_arrow_schema()
    if file_schema_version(schema) is None:
        raise ValueError(f"not the recorder's schema: {schema}")
    compacted = METADATA_COMPACTED_FROM.encode() in (metadata.metadata or {})
    return PartFooter(rows=metadata.num_rows, compacted=compacted)


def read_part(path: Path) -> pa.Table:
    """Read every row of the data file at ``path``.

    Raises:
        OSError: the file cannot be opened.
        pa.ArrowException: its data cannot be decoded.
    """
    with pq.ParquetFile(path) as parquet:
        return parquet.read()


def merge_parts(parts: Sequence[pa.Table], version: int = SCHEMA_VERSION) -> MergedPartition:
    """Merge the rows of one partition's files: sorted, one row per ``event_time``.

    Rows are ordered by ``event_time``, then ``receive_time``, then input order (the sort is
    stable), and the first row of each ``event_time`` is kept: the one received first. Parts
    of either schema version may be merged (the rows of a version 1 file are recorded ones);
    the result has the columns of schema ``version``, the root's.

    Args:
        parts: the files' tables, each with the columns of a schema version
            (:data:`~recorder.storage.schema.FILE_SCHEMAS`; key-value metadata is ignored).
        version: the schema version the merged file is written in.

    Raises:
        ValueError: a table does not have the recorder's columns and types, or backfilled
            rows would go into a file of version 1.
    """
    if not parts:
        empty = FILE_SCHEMAS[version].remove_metadata().empty_table()
        return MergedPartition(empty, 0, 0, 0, 0)
    combined = pa.concat_tables(
        [as_file_table(part).replace_schema_metadata(None) for part in parts]
    ).combine_chunks()
    ordered = combined.take(pc.sort_indices(combined, sort_keys=ROW_ORDER))
    times = ordered.column(_EVENT_TIME).cast(pa.int64()).combine_chunks()
    count = len(times)
    if count == 0:
        return MergedPartition(for_version(ordered, version), 0, 0, 0, 0)
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
    merged = for_version(ordered.take(kept_positions), version)
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


def write_merged(path: Path, key: PartitionKey, merged: MergedPartition, *, inputs: int) -> None:
    """Write the merged rows of partition ``key`` as a file at ``path``, fsynced.

    Args:
        path: where to write it; an existing file is overwritten.
        key: the partition, for the file's options and metadata.
        merged: the rows.
        inputs: how many files were merged, for :data:`METADATA_COMPACTED_FROM`.

    Raises:
        OSError: it could not be written.
    """
    version = file_schema_version(merged.table.schema) or SCHEMA_VERSION
    options = parquet_options(key.date, key.symbol, version)
    metadata = {
        **file_metadata(key.date, key.symbol, version),
        METADATA_COMPACTED_FROM: str(inputs),
    }
    table = merged.table.cast(FILE_SCHEMAS[version]).replace_schema_metadata(metadata)
    write_parquet_file(path, table, options)


def verify_written(path: Path, merged: MergedPartition) -> None:
    """Read the file at ``path`` back from disk and check it with :func:`check_compacted`.

    Raises:
        OSError: it cannot be opened.
        StorageError: it cannot be decoded, or does not hold the merged rows.
    """
    try:
        written = read_part(path)
    except pa.ArrowException as exc:
        raise StorageError(f"the new file {path} cannot be read back: {exc}") from exc
    check_compacted(written, merged)
