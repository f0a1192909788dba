"""Schema versions of a root: the marker, what is published into it, and `recorder migrate`."""

import datetime as dt
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from recorded_dataset import BTC, ETH, T0, every, write_data_file
from writer_support import events_for

from recorder.errors import StorageError
from recorder.reports.findings import FindingKind
from recorder.reports.verify import run_verify
from recorder.storage.compact.merge import merge_parts, read_part
from recorder.storage.migrate import migrate_file, migrate_root
from recorder.storage.paths import PartitionKey, data_file_name, new_session_token
from recorder.storage.publisher import publish_partition
from recorder.storage.root_schema import (
    claim_root,
    mark_root,
    marker_path,
    root_schema_version,
)
from recorder.storage.schema import (
    DATA_SCHEMA,
    FILE_SCHEMA,
    METADATA_LAST_LSN,
    METADATA_SCHEMA_VERSION,
    METADATA_SYMBOL,
    SCHEMA_VERSION,
    build_wal_batch,
    data_columns,
    file_schema_version,
    with_source,
)
from recorder.storage.sealing import SealReason

DAY = dt.date(2024, 5, 1)
KEY = PartitionKey(DAY, BTC)


def publish(root: Path, lsn: int = 7) -> pq.ParquetFile:
    """Publish, as the writer does, three events of BTCUSDT from ``3 * lsn`` s after T0."""
    batch = data_columns(build_wal_batch(events_for(T0 + lsn * 3_000, 3, symbols=(BTC,))))
    name = data_file_name(new_session_token("host-a", T0 * 1000), lsn)
    sealed = publish_partition(root, KEY, [batch], name, SealReason.AGE, last_lsn=lsn)
    assert sealed is not None
    return pq.ParquetFile(sealed.path)


def versions(root: Path) -> list[int]:
    """The schema version of every data file under ``root``, lowest first (-1: none)."""
    found = (file_schema_version(pq.read_schema(path)) for path in root.rglob("*.parquet"))
    return sorted(-1 if version is None else version for version in found)


def test_a_new_root_is_marked_current_and_gets_files_with_source(tmp_path: Path) -> None:
    assert claim_root(tmp_path) == SCHEMA_VERSION
    assert json.loads(marker_path(tmp_path).read_text()) == {"schema_version": 2}
    parquet = publish(tmp_path)
    assert parquet.schema_arrow.equals(FILE_SCHEMA, check_metadata=False)
    assert parquet.read().column("source").to_pylist() == ["stream"] * 3
    assert parquet.metadata.metadata[METADATA_SCHEMA_VERSION.encode()] == b"2"


def test_a_root_of_version_1_keeps_getting_version_1_files(tmp_path: Path) -> None:
    write_data_file(tmp_path, ETH, every(T0, T0 + 10_000), version=1)
    assert claim_root(tmp_path) == 1
    assert not marker_path(tmp_path).exists()
    parquet = publish(tmp_path)
    assert parquet.schema_arrow.equals(DATA_SCHEMA, check_metadata=False)
    assert parquet.metadata.metadata[METADATA_SCHEMA_VERSION.encode()] == b"1"
    assert versions(tmp_path) == [1, 1]
    assert not run_verify(tmp_path).findings


def test_an_unknown_marker_is_refused(tmp_path: Path) -> None:
    marker_path(tmp_path).write_text('{"schema_version": 9}\n')
    with pytest.raises(StorageError, match="names schema version 9"):
        root_schema_version(tmp_path)
    marker_path(tmp_path).write_text("not json")
    with pytest.raises(StorageError, match="names schema version None"):
        claim_root(tmp_path)


def test_migrate_rewrites_version_1_files_in_place_and_keeps_their_metadata(
    tmp_path: Path,
) -> None:
    old = write_data_file(tmp_path, ETH, every(T0, T0 + 10_000), version=1)
    publish(tmp_path, lsn=42)  # version 1 as well: the root is not migrated yet
    before = {path: pq.read_table(path) for path in tmp_path.rglob("*.parquet")}

    dry = migrate_root(tmp_path, dry_run=True)
    assert (dry.files_migrated, dry.rows_migrated) == (2, 8)
    assert versions(tmp_path) == [1, 1]
    assert not marker_path(tmp_path).exists()

    report = migrate_root(tmp_path, pause=0)
    assert (report.version_before, report.files_migrated, report.rows_migrated) == (1, 2, 8)
    assert report.complete
    assert root_schema_version(tmp_path) == SCHEMA_VERSION
    for path, table in before.items():
        migrated = pq.ParquetFile(path)
        assert migrated.schema_arrow.equals(FILE_SCHEMA, check_metadata=False)
        rows = migrated.read()
        assert rows.drop_columns(["source"]).to_pylist() == table.to_pylist()
        assert rows.column("source").to_pylist() == ["stream"] * table.num_rows
        metadata = migrated.metadata.metadata
        assert metadata[METADATA_SCHEMA_VERSION.encode()] == b"2"
        assert (
            metadata[METADATA_SYMBOL.encode()] == path.parent.name.removeprefix("symbol=").encode()
        )
    lsn_file = next(path for path in before if path != old)
    assert pq.ParquetFile(lsn_file).metadata.metadata[METADATA_LAST_LSN.encode()] == b"42"
    assert not list(tmp_path.rglob("*.tmp"))
    assert migrate_root(tmp_path, pause=0).files_migrated == 0
    # Files published from now on carry source too.
    publish(tmp_path, lsn=43)
    assert versions(tmp_path) == [2, 2, 2]
    assert not run_verify(tmp_path).findings


def test_an_interrupted_migration_leaves_a_mixed_root_that_a_rerun_finishes(
    tmp_path: Path,
) -> None:
    first = write_data_file(tmp_path, BTC, every(T0, T0 + 10_000), version=1)
    write_data_file(tmp_path, ETH, every(T0, T0 + 10_000), version=1)
    # As a kill after the marker and the first file would leave it.
    mark_root(tmp_path)
    assert migrate_file(first, KEY) == 5
    assert versions(tmp_path) == [1, 2]
    mixed = run_verify(tmp_path)
    assert [finding.kind for finding in mixed.findings] == [FindingKind.MIXED_SCHEMA]
    assert "1 of version 1, 1 of version 2" in mixed.findings[0].message

    report = migrate_root(tmp_path, pause=0)
    assert (report.files_migrated, report.version_before) == (1, 2)
    assert versions(tmp_path) == [2, 2]
    assert not run_verify(tmp_path).findings


def test_a_file_that_cannot_be_read_is_named_and_the_rest_migrated(tmp_path: Path) -> None:
    write_data_file(tmp_path, BTC, every(T0, T0 + 10_000), version=1)
    broken = write_data_file(tmp_path, ETH, every(T0, T0 + 10_000), version=1)
    broken.write_bytes(broken.read_bytes()[:100])
    report = migrate_root(tmp_path, pause=0)
    assert report.files_migrated == 1
    assert [path for path, _ in report.unreadable] == [broken]
    assert not report.complete


def test_compaction_merges_parts_of_both_versions_into_the_roots_version(
    tmp_path: Path,
) -> None:
    old = write_data_file(tmp_path, BTC, every(T0, T0 + 6_000), version=1, name="a.parquet")
    new = write_data_file(tmp_path, BTC, every(T0 + 6_000, T0 + 12_000), name="b.parquet")
    parts = [read_part(old), read_part(new)]
    merged = merge_parts(parts, SCHEMA_VERSION)
    assert merged.table.schema.equals(FILE_SCHEMA, check_metadata=False)
    assert merged.table.num_rows == 6
    assert merged.table.column("source").to_pylist() == ["stream"] * 6
    as_v1 = merge_parts(parts, 1)
    assert as_v1.table.schema.equals(DATA_SCHEMA, check_metadata=False)
    backfilled = with_source(read_part(old), "backfill")
    with pytest.raises(ValueError, match="cannot hold backfilled rows"):
        merge_parts([backfilled], 1)
