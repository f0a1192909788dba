import datetime as dt
import random
from decimal import Decimal
from pathlib import Path
from typing import cast

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import recorder
from recorder.clock import day_start_ms, event_date
from recorder.errors import DecodeError
from recorder.model import MiniTicker
from recorder.storage.paths import partition_dir
from recorder.storage.schema import (
    DATA_COLUMNS,
    DATA_SCHEMA,
    DECIMAL_COLUMNS,
    PARQUET_COMPRESSION_LEVEL,
    SCHEMA_VERSION,
    WAL_SCHEMA,
    build_wal_batch,
    data_columns,
    parquet_options,
)

# Exact values as the exchange sends them: trailing zeros, integers, 8+ decimals, the extremes
# of decimal128(38, 18).
PRICES = [
    "30180.00",
    "0.0721000",
    "6878775288",
    "440826743.1200000",
    "0.00000031",
    "99999999999999999999.999999999999999999",
    "0.000000000000000001",
    "0",
]
SYMBOLS = ["币安人生USDT", "BTCUSDT_260327", "BTCUSDT"]
DAY_MS = day_start_ms(dt.date(2026, 3, 27))
EXPECTED_COLUMNS = [*DATA_COLUMNS, "date", "symbol"]


def make_events() -> list[MiniTicker]:
    events = []
    for index, price in enumerate(PRICES):
        for offset, symbol in enumerate(SYMBOLS):
            # Half the rows fall on the next UTC day.
            event_time = DAY_MS + 86_400_000 - 4 + index + offset * 1000 * (index % 2)
            events.append(
                MiniTicker(
                    symbol=symbol,
                    event_time=event_time,
                    close=price,
                    open=PRICES[-1 - index],
                    high=PRICES[(index + 3) % len(PRICES)],
                    low=PRICES[(index + 5) % len(PRICES)],
                    volume=price,
                    quote_volume=PRICES[-1 - index],
                    receive_time=event_time * 1000 + 123,
                    pair="BTCUSDT" if index % 2 else None,
                    contract_type=2 if index % 3 else None,
                )
            )
    return events


def units(value: int, decimals: int) -> str:
    """Write ``value * 10**-decimals`` with exactly ``decimals`` decimals."""
    return f"{value // 10**decimals}.{value % 10**decimals:0{decimals}d}"


def make_hour_events() -> list[MiniTicker]:
    """An hour of one symbol at the 2 s pace, as the encodings of a real file see it.

    1,800 rows span many ``DELTA_BINARY_PACKED`` blocks (128 values); every 97th frame arrives
    5 s late, so ``receive_time`` steps back after it (negative deltas); prices and volumes
    move every row, with 2, 3 and 18 decimals and the extremes of decimal(38, 18) mixed in.
    """
    rng = random.Random(11)
    start = DAY_MS + 3_600_000
    close, volume, quote = 3_018_000, 315_252_128, 9_537_613_226_330_000_000_000
    high = low = close
    events = []
    for index in range(1_800):
        event_time = start + index * 2_000 + rng.randint(0, 150)
        late = 5_000_000 if index % 97 == 0 else 0
        close += rng.randint(-200, 200) * 10
        high, low = max(high, close), min(low, close)
        volume += rng.randint(1, 40_000)
        quote += rng.randint(1, 10**24)
        extreme = PRICES[5 + index % 3] if index % 450 == 7 else None
        events.append(
            MiniTicker(
                symbol="BTCUSDT",
                event_time=event_time,
                close=units(close, 2),
                open="30463.50",
                high=units(high, 2),
                low=units(low, 2),
                volume=extreme or units(volume, 3),
                quote_volume=units(quote, 18),
                receive_time=event_time * 1000 + rng.randint(1_000, 80_000) + late,
                pair=None if index % 5 == 0 else "BTCUSDT",
                contract_type=None if index % 7 == 0 else 1,
            )
        )
    return events


def expected_rows(events: list[MiniTicker]) -> set[tuple[object, ...]]:
    return {
        (
            event.symbol,
            event_date(event.event_time),
            event.event_time,
            Decimal(event.close),
            Decimal(event.open),
            Decimal(event.high),
            Decimal(event.low),
            Decimal(event.volume),
            Decimal(event.quote_volume),
            event.receive_time,
            event.pair,
            event.contract_type,
        )
        for event in events
    }


def write_dataset(root: Path, events: list[MiniTicker]) -> None:
    """Write one file per partition the way the writer does, using only the schema module."""
    batch = build_wal_batch(events)
    table = pa.Table.from_batches([batch])
    keys = {(event_date(event.event_time), event.symbol) for event in events}
    for date, symbol in keys:
        mask = pc.and_(pc.equal(table["symbol"], symbol), pc.equal(table["date"], date))
        rows = pa.Table.from_batches(
            [data_columns(part) for part in table.filter(mask).to_batches()], DATA_SCHEMA
        )
        options = parquet_options(date, symbol)
        directory = partition_dir(root, date, symbol)
        directory.mkdir(parents=True)
        pq.write_table(
            rows.replace_schema_metadata(options.schema.metadata),
            directory / "part.parquet",
            **options.write_kwargs,
        )


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, list[MiniTicker]]:
    events = make_events()
    write_dataset(tmp_path, events)
    return tmp_path, events


@pytest.fixture(params=["edge_values", "an_hour"])
def any_dataset(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, list[MiniTicker]]:
    """Both datasets: edge values in small files, and one hour-long file."""
    events = make_events() if request.param == "edge_values" else make_hour_events()
    write_dataset(tmp_path, events)
    return tmp_path, events


def as_ms(value: dt.datetime) -> int:
    return round(value.timestamp() * 1000)


def as_us(value: dt.datetime) -> int:
    delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def normalise(records: list[dict[str, object]]) -> set[tuple[object, ...]]:
    """Reader-specific Python values to the tuples of expected_rows."""
    result: set[tuple[object, ...]] = set()
    for record in records:
        date = record["date"]
        event_time = record["event_time"]
        receive_time = record["receive_time"]
        contract_type = record["contract_type"]
        assert isinstance(event_time, dt.datetime)
        assert isinstance(receive_time, dt.datetime)
        assert event_time.utcoffset() == dt.timedelta(0)
        result.add(
            (
                str(record["symbol"]),
                date if isinstance(date, dt.date) else dt.date.fromisoformat(str(date)),
                as_ms(event_time),
                record["close"],
                record["open"],
                record["high"],
                record["low"],
                record["volume"],
                record["quote_volume"],
                as_us(receive_time),
                record["pair"],
                None
                if contract_type is None or pd.isna(contract_type)
                else int(cast("float", contract_type)),
            )
        )
    return result


def test_wal_batch_has_the_wal_schema_and_exact_decimals() -> None:
    events = make_events()
    batch = build_wal_batch(events)
    assert batch.schema.equals(WAL_SCHEMA)
    assert batch.num_rows == len(events)
    for name in DECIMAL_COLUMNS:
        values = batch.column(name).to_pylist()
        assert values == [Decimal(getattr(event, name)) for event in events]


def test_wal_batch_partition_columns_follow_the_utc_day_of_e() -> None:
    events = [
        MiniTicker("A", DAY_MS - 1, "1", "1", "1", "1", "1", "1", 0),
        MiniTicker("A", DAY_MS, "1", "1", "1", "1", "1", "1", 0),
    ]
    batch = build_wal_batch(events)
    assert batch.column("date").to_pylist() == [dt.date(2026, 3, 26), dt.date(2026, 3, 27)]
    assert batch.column("symbol").to_pylist() == ["A", "A"]


def test_data_columns_drop_only_the_partition_keys() -> None:
    batch = data_columns(build_wal_batch(make_events()))
    assert batch.schema.equals(DATA_SCHEMA)
    assert "date" not in batch.schema.names
    assert "symbol" not in batch.schema.names


def test_every_data_field_is_documented() -> None:
    assert all(field.metadata and field.metadata[b"doc"] for field in DATA_SCHEMA)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("close", "1.0000000000000000001"),  # 19 decimals would be rounded
        ("volume", "123456789012345678901"),  # 21 integer digits do not fit
        ("low", "NaN"),
        ("high", ""),
    ],
)
def test_a_decimal_that_does_not_fit_raises_instead_of_rounding(column: str, value: str) -> None:
    texts = dict.fromkeys(DECIMAL_COLUMNS, "1") | {column: value}
    event = MiniTicker(
        "A",
        DAY_MS,
        texts["close"],
        texts["open"],
        texts["high"],
        texts["low"],
        texts["volume"],
        texts["quote_volume"],
        0,
    )
    with pytest.raises(DecodeError, match=column):
        build_wal_batch([event])


def test_a_contract_type_outside_int8_raises() -> None:
    event = MiniTicker("A", DAY_MS, "1", "1", "1", "1", "1", "1", 0, contract_type=300)
    with pytest.raises(DecodeError, match="contract_type"):
        build_wal_batch([event])


def test_an_empty_batch_is_valid() -> None:
    assert build_wal_batch([]).num_rows == 0


def test_event_date_and_day_start_agree_at_midnight() -> None:
    assert event_date(DAY_MS) == dt.date(2026, 3, 27)
    assert event_date(DAY_MS - 1) == dt.date(2026, 3, 26)
    assert day_start_ms(event_date(DAY_MS + 86_399_999)) == DAY_MS


def test_files_carry_metadata_compression_statistics_and_no_partition_columns(
    dataset: tuple[Path, list[MiniTicker]],
) -> None:
    root, _ = dataset
    path = root / "date=2026-03-28" / "symbol=币安人生USDT" / "part.parquet"
    file = pq.ParquetFile(path)
    assert file.schema_arrow.names == list(DATA_COLUMNS)
    metadata = file.schema_arrow.metadata
    assert metadata[b"recorder.schema_version"] == str(SCHEMA_VERSION).encode()
    assert metadata[b"recorder.version"] == recorder.__version__.encode()
    assert metadata[b"recorder.symbol"] == "币安人生USDT".encode()
    assert metadata[b"recorder.date"] == b"2026-03-28"
    row_group = file.metadata.row_group(0)
    columns = {row_group.column(i).path_in_schema: row_group.column(i) for i in range(10)}
    assert {column.compression for column in columns.values()} == {"ZSTD"}
    assert columns["event_time"].statistics.has_min_max
    assert "RLE_DICTIONARY" in columns["pair"].encodings
    assert "RLE_DICTIONARY" not in columns["close"].encodings


def test_files_use_the_measured_encodings_and_keep_decimal_38_18(tmp_path: Path) -> None:
    # The choices of parquet_options (docs/performance.md, "Bytes per event on disk"), as
    # written in the file: a change of encoding shows here, and the decimals' Parquet type is
    # the readers' contract.
    write_dataset(tmp_path, make_hour_events())
    (path,) = tmp_path.glob("date=*/symbol=*/*.parquet")
    file = pq.ParquetFile(path)
    row_group = file.metadata.row_group(0)
    columns = {
        row_group.column(i).path_in_schema: row_group.column(i)
        for i in range(row_group.num_columns)
    }
    assert list(columns) == list(DATA_COLUMNS)
    assert {column.compression for column in columns.values()} == {"ZSTD"}
    for name in ("event_time", "receive_time"):
        assert columns[name].physical_type == "INT64"
        assert "DELTA_BINARY_PACKED" in columns[name].encodings
        assert "PLAIN" not in columns[name].encodings
    for name in DECIMAL_COLUMNS:
        column = file.schema.column(list(DATA_COLUMNS).index(name))
        assert column.physical_type == "FIXED_LEN_BYTE_ARRAY"
        assert column.logical_type.to_json() == '{"Type":"Decimal","precision":38,"scale":18}'
        # PLAIN values (RLE is listed for the levels): no dictionary, no byte-stream split.
        assert set(columns[name].encodings) <= {"PLAIN", "RLE"}
    assert "RLE_DICTIONARY" in columns["pair"].encodings
    assert set(columns["contract_type"].encodings) <= {"PLAIN", "RLE"}
    # The zstd level is not recorded in the file; it is in the options.
    options = parquet_options(dt.date(2026, 3, 27), "BTCUSDT").write_kwargs
    assert options["compression_level"] == PARQUET_COMPRESSION_LEVEL == 9


def test_pyarrow_dataset_reads_exact_values_and_types(
    any_dataset: tuple[Path, list[MiniTicker]],
) -> None:
    root, events = any_dataset
    table = ds.dataset(root, partitioning="hive").to_table()
    assert table.schema.names == EXPECTED_COLUMNS
    assert table.schema.field("event_time").type == pa.timestamp("ms", tz="UTC")
    assert table.schema.field("receive_time").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("close").type == pa.decimal128(38, 18)
    assert normalise(table.to_pylist()) == expected_rows(events)
    assert table.num_rows == len(events)


def test_pandas_reads_exact_values_and_types(
    any_dataset: tuple[Path, list[MiniTicker]],
) -> None:
    root, events = any_dataset
    frame = pd.read_parquet(root)
    assert list(frame.columns) == EXPECTED_COLUMNS
    assert str(frame["event_time"].dtype) == "datetime64[ms, UTC]"
    assert str(frame["receive_time"].dtype) == "datetime64[us, UTC]"
    records = [
        {
            **record,
            "event_time": record["event_time"].to_pydatetime(),
            "receive_time": record["receive_time"].to_pydatetime(),
            "pair": None if pd.isna(record["pair"]) else record["pair"],
        }
        for record in frame.to_dict("records")
    ]
    assert normalise(records) == expected_rows(events)
    assert len(frame) == len(events)


def test_duckdb_reads_exact_values_and_types(
    any_dataset: tuple[Path, list[MiniTicker]],
) -> None:
    root, events = any_dataset
    connection = duckdb.connect()
    query = "SELECT * FROM read_parquet($glob, hive_partitioning=true)"
    glob = {"glob": f"{root}/**/*.parquet"}
    relation = connection.sql(query, params=glob)
    assert relation.columns == EXPECTED_COLUMNS
    types = dict(zip(relation.columns, map(str, relation.types), strict=True))
    assert types["event_time"] == "TIMESTAMP WITH TIME ZONE"
    assert types["receive_time"] == "TIMESTAMP WITH TIME ZONE"
    assert types["close"] == "DECIMAL(38,18)"
    assert types["contract_type"] == "TINYINT"
    connection.execute("SET TimeZone = 'UTC'")
    rows = connection.sql(query, params=glob).fetchall()
    records = [dict(zip(relation.columns, row, strict=True)) for row in rows]
    assert normalise(records) == expected_rows(events)
    assert len(rows) == len(events)


def test_polars_reads_exact_values_and_types(
    any_dataset: tuple[Path, list[MiniTicker]],
) -> None:
    root, events = any_dataset
    frame = pl.scan_parquet(f"{root}/**/*.parquet", hive_partitioning=True).collect()
    assert frame.columns == EXPECTED_COLUMNS
    assert frame.schema["event_time"] == pl.Datetime("ms", "UTC")
    assert frame.schema["receive_time"] == pl.Datetime("us", "UTC")
    assert frame.schema["close"] == pl.Decimal(38, 18)
    assert normalise(frame.to_dicts()) == expected_rows(events)
    assert frame.height == len(events)
