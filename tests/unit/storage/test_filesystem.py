"""The publication target: each step of publishing, on the real local file system.

The durability steps are checked under :func:`power_loss.watch`, which forwards every call to
the real file system: bytes written by pyarrow's C++ stream are not seen as they are written,
only when a sync reads the file back, so these show that the local target's syncs are the ones
that make a file and its name survive a power loss.
"""

from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from power_loss import SYNCS, Disk, new_root, watch
from writer_support import DAY, DAY_MS, events_for

from recorder.errors import UnsafePathError
from recorder.storage.filesystem import PublicationTarget, publication_target
from recorder.storage.schema import DATA_SCHEMA, build_wal_batch, data_columns, parquet_options

DATE_DIR = f"date={DAY.isoformat()}"
PARTITION = f"{DATE_DIR}/symbol=BTCUSDT"
TEMP = f"{PARTITION}/.part.parquet.tmp"
FINAL = f"{PARTITION}/part.parquet"


def table_of(rows: int) -> pa.Table:
    batch = data_columns(build_wal_batch(events_for(DAY_MS, rows, symbols=("BTCUSDT",))))
    options = parquet_options(DAY, "BTCUSDT")
    return pa.Table.from_batches([batch], DATA_SCHEMA).replace_schema_metadata(
        options.schema.metadata
    )


def write(target: PublicationTarget, path: str, rows: int = 5) -> pa.Table:
    table = table_of(rows)
    target.write_aside(path, table, parquet_options(DAY, "BTCUSDT"))
    return table


def synced_tree(disk: Disk) -> dict[str, bytes | None]:
    return dict(next(i for i in reversed(disk.images) if i.mode == "synced").tree)


# -- building the target -----------------------------------------------------------------------


def test_a_local_root_becomes_the_local_file_system_and_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    target = publication_target(Path("live"))
    assert isinstance(target.filesystem, pafs.LocalFileSystem)
    assert target.base == str(tmp_path / "live")
    assert target.path(FINAL) == f"{tmp_path}/live/{FINAL}"


@pytest.mark.parametrize("relative", ["/etc/passwd", "../outside", f"{PARTITION}/../../../x"])
def test_a_path_outside_the_root_is_refused(tmp_path: Path, relative: str) -> None:
    with pytest.raises(UnsafePathError):
        publication_target(tmp_path).path(relative)


# -- each step ------------------------------------------------------------------------------------


def test_a_table_written_aside_reads_back_whole_with_its_metadata(tmp_path: Path) -> None:
    target = publication_target(tmp_path)
    target.make_dir(PARTITION)
    table = write(target, TEMP)
    written = pq.read_table(tmp_path / TEMP)
    assert written.equals(table)
    assert written.schema.metadata == table.schema.metadata
    assert pq.read_metadata(tmp_path / TEMP).row_group(0).column(1).compression == "ZSTD"


def test_writing_aside_overwrites_the_leftover_of_an_earlier_attempt(tmp_path: Path) -> None:
    target = publication_target(tmp_path)
    target.make_dir(PARTITION)
    (tmp_path / TEMP).write_bytes(b"x" * 1_000_000)
    table = write(target, TEMP)
    assert pq.read_table(tmp_path / TEMP).equals(table)
    assert target.size(TEMP) < 1_000_000


def test_a_name_ending_like_a_compressed_file_is_not_compressed_again(tmp_path: Path) -> None:
    # pyarrow's streams guess a codec from the extension unless told not to.
    target = publication_target(tmp_path)
    target.make_dir(PARTITION)
    table = write(target, f"{PARTITION}/.part.parquet.gz")
    assert (tmp_path / PARTITION / ".part.parquet.gz").read_bytes()[:4] == b"PAR1"
    assert pq.read_table(tmp_path / PARTITION / ".part.parquet.gz").equals(table)


def test_a_write_that_fails_raises_an_os_error(tmp_path: Path) -> None:
    target = publication_target(tmp_path)
    with pytest.raises(FileNotFoundError):
        write(target, TEMP)  # its directory was never made
    (tmp_path / DATE_DIR).write_text("a file where a directory should be")
    with pytest.raises(FileExistsError):
        target.make_dir(PARTITION)


def test_exists_and_size_see_what_is_there(tmp_path: Path) -> None:
    target = publication_target(tmp_path)
    assert not target.exists(FINAL)
    target.make_dir(PARTITION)
    assert target.exists(PARTITION)
    write(target, FINAL)
    assert target.exists(FINAL)
    assert target.size(FINAL) == (tmp_path / FINAL).stat().st_size > 0
    with pytest.raises(FileNotFoundError):
        target.size(TEMP)
    with pytest.raises(FileNotFoundError):
        target.size(PARTITION)  # a directory has no file size


def test_moving_into_place_renames_and_removing_tolerates_a_missing_file(tmp_path: Path) -> None:
    target = publication_target(tmp_path)
    target.make_dir(PARTITION)
    table = write(target, TEMP)
    target.move_into_place(TEMP, FINAL)
    assert not target.exists(TEMP)
    assert pq.read_table(tmp_path / FINAL).equals(table)
    target.remove(TEMP)  # nothing there: no error
    target.remove(FINAL)
    assert list((tmp_path / PARTITION).iterdir()) == []


# -- durability on the local file system -------------------------------------------------------


def test_a_file_written_aside_is_durable_only_once_made_durable(tmp_path: Path) -> None:
    live = new_root(tmp_path)
    target = publication_target(live)
    target.make_dir(PARTITION)
    with watch(live) as disk:
        write(target, TEMP)
        assert disk.durable_content(live / TEMP) is None
        assert not [op for op in disk.ops if op.kind in SYNCS]
        target.make_durable(TEMP)
        assert disk.durable_content(live / TEMP) == (live / TEMP).read_bytes()


def test_a_moved_file_keeps_its_name_after_a_power_loss_once_its_directory_is_synced(
    tmp_path: Path,
) -> None:
    live = new_root(tmp_path)
    target = publication_target(live)
    with watch(live) as disk:
        target.make_dir(PARTITION)
        write(target, TEMP)
        target.make_durable(TEMP)
        target.move_into_place(TEMP, FINAL)
        disk.mark("moved")
        assert FINAL not in synced_tree(disk)
        target.make_entry_durable(PARTITION)
        disk.mark("named")
        assert synced_tree(disk).get(FINAL) == (live / FINAL).read_bytes()
    kinds = [(op.kind, op.path) for op in disk.ops if op.kind in {"fsync", "rename"}]
    assert kinds[-3:] == [("fsync", TEMP), ("rename", TEMP), ("fsync", PARTITION)]


def test_making_a_directory_names_each_new_one_durably_in_its_parent(tmp_path: Path) -> None:
    live = new_root(tmp_path)
    target = publication_target(live)
    with watch(live) as disk:
        target.make_dir(PARTITION)
        disk.mark("made")
    assert synced_tree(disk) == {DATE_DIR: None, PARTITION: None}
    ops = [(op.kind, op.path) for op in disk.ops]
    assert ops == [("mkdir", DATE_DIR), ("fsync", "."), ("mkdir", PARTITION), ("fsync", DATE_DIR)]


def test_removing_a_file_is_a_change_of_names_the_power_loss_model_sees(tmp_path: Path) -> None:
    live = new_root(tmp_path)
    target = publication_target(live)
    target.make_dir(PARTITION)
    write(target, TEMP)
    with watch(live) as disk:
        target.remove(TEMP)
    assert [(op.kind, op.path) for op in disk.ops] == [("unlink", TEMP)]


# -- a file system other than the local one -----------------------------------------------------


def test_any_other_file_system_publishes_through_pyarrow_alone(tmp_path: Path) -> None:
    # A sub-tree file system stands in for an object store: every step goes through pyarrow,
    # and the durability steps are left to the file system (none of them syncs anything).
    live = new_root(tmp_path)
    target = PublicationTarget(pafs.SubTreeFileSystem(str(live), pafs.LocalFileSystem()), "")
    with watch(live) as disk:
        target.make_dir(PARTITION)
        table = write(target, TEMP)
        target.make_durable(TEMP)
        target.move_into_place(TEMP, FINAL)
        target.make_entry_durable(PARTITION)
        assert target.exists(FINAL)
        assert not target.exists(TEMP)
        assert target.size(FINAL) == (live / FINAL).stat().st_size
        target.remove(TEMP)  # nothing there: no error
    assert disk.ops == []  # nothing went through os: not the local target's steps
    assert pq.read_table(live / FINAL).equals(table)
    target.remove(FINAL)
    assert not (live / FINAL).exists()


def test_a_target_describes_itself(tmp_path: Path) -> None:
    assert repr(publication_target(tmp_path)) == f"PublicationTarget(local, {str(tmp_path)!r})"
