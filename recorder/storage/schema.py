"""The Arrow schema of the dataset, the batch builder, and the Parquet write options.

Three schemas:

* :data:`FILE_SCHEMA`: the columns of a sealed Parquet file of schema version 2: the recorded
  columns and ``source`` (``stream`` for a recorded row, ``backfill`` for one rebuilt by
  ``recorder backfill``). It has no ``date`` or ``symbol`` column: those come from the Hive
  partition directories, and a file column of the same name would clash with them in every
  reader. The file's key-value metadata names its partition and its schema version.
* :data:`DATA_SCHEMA`: the recorded columns, as rows are held in memory, and the columns of a
  file of schema version 1 (written before ``source`` existed, or into a root that has not been
  migrated yet: see :mod:`recorder.storage.root_schema`).
* :data:`WAL_SCHEMA`: the recorded columns plus ``symbol`` and ``date``, as logged in the
  write-ahead log, where rows of every partition travel together in one batch. Only recorded
  rows go through the log, so it has no ``source``.

Prices and volumes are ``decimal128(38, 18)``: exact. The cast from the received string is
Arrow's *safe* cast, which raises instead of rounding; the decoder quarantines values that do not
fit before they get here, and :func:`build_wal_batch` turns a value that slipped through into a
:class:`~recorder.errors.DecodeError` rather than a rounded number.
"""

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import recorder
from recorder.errors import DecodeError
from recorder.event_columns import EventColumns, EventRows, as_columns
from recorder.model import DECIMAL_PRECISION, DECIMAL_SCALE

SCHEMA_VERSION = 2
"""The schema version of the files written now: 2 added the nullable ``source`` column."""
FIRST_SCHEMA_VERSION = 1
"""The schema of the files written before ``source`` existed."""
DECIMAL_TYPE = pa.decimal128(DECIMAL_PRECISION, DECIMAL_SCALE)
# One row group per file is the norm; the cap keeps a reader's memory per row group bounded.
MAX_ROW_GROUP_ROWS = 1_000_000
PARQUET_COMPRESSION = "zstd"
PARQUET_COMPRESSION_LEVEL = 9
"""zstd level of every column: about 90 % of level 19's saving over Arrow's default level 1."""
PARQUET_COLUMN_ENCODING: Final[Mapping[str, str]] = {
    "event_time": "DELTA_BINARY_PACKED",
    "receive_time": "DELTA_BINARY_PACKED",
}
"""Encodings other than the default PLAIN, by column (``pair`` is dictionary-encoded)."""

METADATA_SCHEMA_VERSION = "recorder.schema_version"
METADATA_RECORDER_VERSION = "recorder.version"
METADATA_SYMBOL = "recorder.symbol"
METADATA_LAST_LSN = "recorder.last_lsn"
"""The newest write-ahead record with rows in a file written by the recorder (not compaction):
recovery reads it to tell which logged rows a file already holds."""
METADATA_DATE = "recorder.date"

DECIMAL_COLUMNS = ("close", "open", "high", "low", "volume", "quote_volume")
SOURCE_COLUMN = "source"
SOURCE_STREAM = "stream"
"""``source`` of a row recorded from the exchange's stream."""
SOURCE_BACKFILL = "backfill"
"""``source`` of a row rebuilt by ``recorder backfill`` from klines."""
SYMBOL_COLUMN = "symbol"
DATE_COLUMN = "date"


def _field(name: str, type_: pa.DataType, doc: str, *, nullable: bool = False) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"doc": doc})


DATA_SCHEMA: pa.Schema = pa.schema(
    [
        _field(
            "event_time",
            pa.timestamp("ms", tz="UTC"),
            "Exchange event time E of the miniTicker update, UTC.",
        ),
        _field("close", DECIMAL_TYPE, "Last price c, exact."),
        _field("open", DECIMAL_TYPE, "Open price o of the rolling 24 h window, exact."),
        _field("high", DECIMAL_TYPE, "High price h of the rolling 24 h window, exact."),
        _field("low", DECIMAL_TYPE, "Low price l of the rolling 24 h window, exact."),
        _field("volume", DECIMAL_TYPE, "Base asset volume v of the rolling 24 h window, exact."),
        _field(
            "quote_volume", DECIMAL_TYPE, "Quote asset volume q of the rolling 24 h window, exact."
        ),
        _field(
            "receive_time",
            pa.timestamp("us", tz="UTC"),
            "Local wall clock when the frame arrived, UTC.",
        ),
        _field("pair", pa.string(), "Pair ps, when the exchange sent it.", nullable=True),
        _field(
            "contract_type",
            pa.int8(),
            "Contract type st (1 = USD-M, 2 = COIN-M), when the exchange sent it.",
            nullable=True,
        ),
    ]
)
"""The recorded columns (those of a file of schema version 1), each with a ``doc`` entry."""

DATA_COLUMNS: tuple[str, ...] = tuple(DATA_SCHEMA.names)

FILE_SCHEMA: pa.Schema = DATA_SCHEMA.append(
    _field(
        SOURCE_COLUMN,
        pa.string(),
        "Where the row comes from: stream (recorded) or backfill (rebuilt from 1-minute klines "
        "by recorder backfill); null never written.",
        nullable=True,
    )
)
"""Columns of a sealed data file of schema version 2 (:data:`SCHEMA_VERSION`)."""

FILE_SCHEMAS: Final[Mapping[int, pa.Schema]] = {FIRST_SCHEMA_VERSION: DATA_SCHEMA, 2: FILE_SCHEMA}
"""The columns of a data file, by its schema version."""


def file_schema_version(schema: pa.Schema) -> int | None:
    """The schema version whose columns ``schema`` has (metadata ignored), or ``None``.

    >>> file_schema_version(FILE_SCHEMA), file_schema_version(DATA_SCHEMA)
    (2, 1)
    """
    for version, columns in FILE_SCHEMAS.items():
        if schema.equals(columns, check_metadata=False):
            return version
    return None


def with_source(table: pa.Table, source: str) -> pa.Table:
    """``table`` (recorded columns) with a ``source`` column of ``source`` in every row."""
    column = pa.repeat(pa.scalar(source, pa.string()), table.num_rows)
    return table.append_column(FILE_SCHEMA.field(SOURCE_COLUMN), column)


def as_file_table(table: pa.Table) -> pa.Table:
    """A data file's rows in :data:`FILE_SCHEMA`: a file of version 1 holds recorded rows only.

    Raises:
        ValueError: ``table`` has the columns of no schema version.
    """
    version = file_schema_version(table.schema)
    if version is None:
        raise ValueError(f"not the recorder's schema: {table.schema}")
    if version == FIRST_SCHEMA_VERSION:
        table = with_source(table, SOURCE_STREAM)
    return table.cast(FILE_SCHEMA)


def for_version(table: pa.Table, version: int) -> pa.Table:
    """``table`` in :data:`FILE_SCHEMA` as written into a root of schema ``version``.

    Raises:
        ValueError: a root of version 1 would lose a backfilled row's mark.
    """
    if version != FIRST_SCHEMA_VERSION:
        return table
    sources = table.column(SOURCE_COLUMN)
    if table.num_rows and not pc.all(pc.equal(sources, SOURCE_STREAM)).as_py():
        raise ValueError("a root of schema version 1 cannot hold backfilled rows")
    return table.drop_columns([SOURCE_COLUMN]).cast(DATA_SCHEMA)


# The log repeats its schema in every record: field docs would only make each record bigger.
WAL_SCHEMA: pa.Schema = pa.schema(
    [field.remove_metadata() for field in DATA_SCHEMA]
    + [pa.field(SYMBOL_COLUMN, pa.string(), nullable=False)]
    + [pa.field(DATE_COLUMN, pa.date32(), nullable=False)]
)
"""Columns of a write-ahead batch: the data columns plus the partition keys."""


@dataclass(frozen=True, slots=True)
class ParquetOptions:
    """Everything :func:`pyarrow.parquet.write_table` needs besides the table and the file.

    Attributes:
        schema: :data:`DATA_SCHEMA` carrying the file's key-value metadata.
        write_kwargs: keyword arguments for :func:`pyarrow.parquet.write_table`.
    """

    schema: pa.Schema
    write_kwargs: Mapping[str, Any]


def _decimal_column(name: str, texts: list[str]) -> pa.Array:
    try:
        return pa.array(texts, pa.string()).cast(DECIMAL_TYPE)
    except pa.ArrowInvalid as exc:
        raise DecodeError(f"decimal_unfit: column {name!r}: {exc}") from exc


def build_wal_batch(events: EventRows) -> pa.RecordBatch:
    """Build one :data:`WAL_SCHEMA` record batch from ``events``, in the given order.

    Column-wise: one :func:`pyarrow.array` per column, one safe cast per decimal column, and
    the partition day computed by Arrow from ``event_time``.

    Raises:
        DecodeError: a value does not fit its column (a decimal that would lose digits or
            exceed 38 digits, a contract type outside int8); no batch is built.
    """
    rows = as_columns(events)
    # The day from the naive timestamps: a cast of UTC ones needs a time zone database, which
    # a slim container image lacks. The column is the same values seen as UTC, not a copy.
    naive_times = pa.array(rows.event_time, pa.timestamp("ms"))
    columns: dict[str, pa.Array] = {
        "event_time": naive_times.view(pa.timestamp("ms", tz="UTC")),
        "close": _decimal_column("close", rows.close),
        "open": _decimal_column("open", rows.open),
        "high": _decimal_column("high", rows.high),
        "low": _decimal_column("low", rows.low),
        "volume": _decimal_column("volume", rows.volume),
        "quote_volume": _decimal_column("quote_volume", rows.quote_volume),
        "receive_time": pa.array(rows.receive_time, pa.timestamp("us", tz="UTC")),
        "pair": pa.array(rows.pair, pa.string()),
        SYMBOL_COLUMN: pa.array(rows.symbol, pa.string()),
        DATE_COLUMN: naive_times.cast(pa.date32()),
    }
    try:
        columns["contract_type"] = pa.array(rows.contract_type, pa.int8())
    except (pa.ArrowInvalid, OverflowError) as exc:
        raise DecodeError(f"contract_type_unfit: {exc}") from exc
    return pa.RecordBatch.from_arrays(
        [columns[name] for name in WAL_SCHEMA.names], schema=WAL_SCHEMA
    )


def warm_up() -> None:
    """Make pyarrow's first conversion of Python values now, at start-up, not in a flush.

    When pandas is installed, pyarrow imports it on that first conversion: a fifth of a second
    here, holding the GIL, so it would stall the first flush and the event loop with it.
    """
    build_wal_batch(EventColumns())


def data_columns(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Return the :data:`DATA_SCHEMA` view of a write-ahead batch, without copying data."""
    return pa.RecordBatch.from_arrays(
        [batch.column(name) for name in DATA_COLUMNS], schema=DATA_SCHEMA
    )


def file_metadata(date: dt.date, symbol: str, version: int = SCHEMA_VERSION) -> dict[str, str]:
    """Return the key-value metadata of the data file of one partition, of schema ``version``."""
    return {
        METADATA_SCHEMA_VERSION: str(version),
        METADATA_RECORDER_VERSION: recorder.__version__,
        METADATA_SYMBOL: symbol,
        METADATA_DATE: date.isoformat(),
    }


ROW_ORDER: Final = (("event_time", "ascending"), ("receive_time", "ascending"))
"""How rows are sorted within a data file: by ``event_time``, ties in order of arrival."""


def write_parquet_file(path: Path, table: pa.Table, options: ParquetOptions) -> None:
    """Write ``table`` to ``path`` (overwriting it) with ``options``, flushed and fsynced.

    The caller renames it into place and fsyncs the directory: a file is written aside first.

    Raises:
        OSError: it could not be written or synced.
    """
    with path.open("wb") as stream:
        pq.write_table(table, stream, **options.write_kwargs)
        stream.flush()
        os.fsync(stream.fileno())


def parquet_options(date: dt.date, symbol: str, version: int = SCHEMA_VERSION) -> ParquetOptions:
    """Return how partition (``date``, ``symbol``)'s data file of schema ``version`` is written.

    Chosen by measurement (``scripts/file_size.py``; figures in ``docs/performance.md``,
    "Bytes per event on disk"), every choice read back exactly by the four readers of the SPEC:

    * zstd at level :data:`PARQUET_COMPRESSION_LEVEL` (9) for every column: about 90 % of
      what level 19 saves over Arrow's default level 1, for a sixth or less of 19's CPU, so
      an hourly seal of hundreds of symbols stays short.
    * ``DELTA_BINARY_PACKED`` for ``event_time`` and ``receive_time``
      (:data:`PARQUET_COLUMN_ENCODING`): sorted timestamps become small deltas.
    * ``PLAIN`` for the six decimals, which stay ``FIXED_LEN_BYTE_ARRAY(16)``
      ``decimal(38, 18)``: ``BYTE_STREAM_SPLIT`` is unreadable by DuckDB and polars for that
      physical type, ``DELTA_BYTE_ARRAY`` by polars, dictionaries make files larger, and
      ``store_decimal_as_integer`` applies only up to 18 digits of precision (no effect here).
    * A dictionary for ``pair`` and ``source`` only (for ``open``, ``high``, ``low`` it did not
      pay); ``source`` is a plain string column to readers, a few bytes a file on disk.
    * Column statistics for predicate push-down, row groups of up to
      :data:`MAX_ROW_GROUP_ROWS` rows, and the Arrow schema (with each column's ``doc``) kept;
      key-value metadata with the schema version, the recorder version, the symbol and the date.
    """
    return ParquetOptions(
        schema=FILE_SCHEMAS[version].with_metadata(file_metadata(date, symbol, version)),
        write_kwargs={
            "compression": PARQUET_COMPRESSION,
            "compression_level": PARQUET_COMPRESSION_LEVEL,
            "use_dictionary": ["pair", SOURCE_COLUMN] if version > 1 else ["pair"],
            "column_encoding": dict(PARQUET_COLUMN_ENCODING),
            "write_statistics": True,
            "row_group_size": MAX_ROW_GROUP_ROWS,
        },
    )
