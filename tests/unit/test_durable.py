"""The durable-file primitives every append-only file and published file relies on."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from recorder.durable import cut_back, fsync_dir, make_dirs, sync_data, write_all


@pytest.fixture
def fd(tmp_path: Path) -> Iterator[int]:
    descriptor = os.open(tmp_path / "log", os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    yield descriptor
    os.close(descriptor)


def test_write_all_writes_every_byte_even_when_the_kernel_takes_a_few(
    fd: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    calls: list[int] = []

    def short_write(target: int, data: bytes | memoryview) -> int:
        calls.append(len(data))
        return real_write(target, bytes(data)[:3])

    monkeypatch.setattr(os, "write", short_write)
    write_all(fd, b"0123456789")
    monkeypatch.undo()
    assert os.pread(fd, 100, 0) == b"0123456789"
    assert calls == [10, 7, 4, 1]


def test_write_all_at_an_offset_overwrites_in_place(tmp_path: Path) -> None:
    path = tmp_path / "segment"
    path.write_bytes(b"aaaaaaaa")
    descriptor = os.open(path, os.O_RDWR)
    try:
        write_all(descriptor, b"bbb", 2)
        sync_data(descriptor)
    finally:
        os.close(descriptor)
    assert path.read_bytes() == b"aabbbaaa"


def test_cut_back_removes_a_failed_append(fd: int) -> None:
    write_all(fd, b"line 1\n")
    write_all(fd, b"line 2 torn")
    assert cut_back(fd, 7)
    assert os.fstat(fd).st_size == 7
    write_all(fd, b"line 2\n")
    assert os.pread(fd, 100, 0) == b"line 1\nline 2\n"


def test_cut_back_reports_failure_instead_of_raising(tmp_path: Path) -> None:
    path = tmp_path / "read-only"
    path.write_bytes(b"abc")
    descriptor = os.open(path, os.O_RDONLY)
    try:
        assert cut_back(descriptor, 1) is False
    finally:
        os.close(descriptor)
    assert path.read_bytes() == b"abc"


def test_make_dirs_creates_missing_parents_and_syncs_each_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[Path] = []
    monkeypatch.setattr("recorder.durable.fsync_dir", synced.append)
    make_dirs(tmp_path / "a" / "b" / "c")
    assert (tmp_path / "a" / "b" / "c").is_dir()
    # Outermost first; the existing ancestors' parents too, the first time this process uses them.
    assert synced[-3:] == [tmp_path, tmp_path / "a", tmp_path / "a" / "b"]
    assert tmp_path.parent in synced
    synced.clear()
    make_dirs(tmp_path / "a" / "b")
    assert synced == []  # known durable now


def test_make_dirs_recreates_a_known_directory_that_was_removed(tmp_path: Path) -> None:
    make_dirs(tmp_path / "lock")
    (tmp_path / "lock").rmdir()
    make_dirs(tmp_path / "lock")
    assert (tmp_path / "lock").is_dir()


def test_fsync_dir_refuses_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    fsync_dir(tmp_path)
    with pytest.raises(NotADirectoryError):
        fsync_dir(tmp_path / "file")
