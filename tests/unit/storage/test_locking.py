"""The instance lock: one process per instance id, recoverers waited for, roots shared."""

import fcntl
import os
import threading
from pathlib import Path

import pytest
from writer_support import (
    DAY_MS,
    WriterFactory,
    crashed_after_writing,
    dataset_rows,
    events_for,
    rows_of,
)

from recorder.errors import StorageError
from recorder.storage.recovery import RecoveryReport
from recorder.storage.writer import DatasetWriter


def test_an_instance_id_can_run_only_once(tmp_path: Path, make_writer: WriterFactory) -> None:
    make_writer(tmp_path).open()
    with pytest.raises(StorageError, match="already running"):
        make_writer(tmp_path).open()


def test_an_instance_id_running_elsewhere_is_named_in_the_error(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    make_writer(tmp_path).open()
    with pytest.raises(StorageError, match=rf"locked by {os.getpid()} "):
        make_writer(tmp_path).open()


def test_the_owner_waits_while_another_recorder_recovers_its_old_segments(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    events = events_for(DAY_MS, 3)
    crashed = crashed_after_writing(make_writer, tmp_path, events)
    lock_path = crashed / "_wal" / "alpha" / "instance.lock"
    opened = threading.Event()
    outcome: list[RecoveryReport | StorageError] = []

    def open_owner() -> None:
        try:
            outcome.append(make_writer(crashed).open())
        except StorageError as exc:
            outcome.append(exc)
        opened.set()

    with lock_path.open("r+b") as recoverer:
        fcntl.flock(recoverer, fcntl.LOCK_EX | fcntl.LOCK_NB)
        recoverer.truncate()
        recoverer.write(b"recovering 4242 elsewhere\n")
        recoverer.flush()
        owner = threading.Thread(target=open_owner)
        owner.start()
        # Well past the grace a live holder gets: a recoverer is waited for, however long.
        assert not opened.wait(3)
        # A recoverer that emptied the directory removes the lock file on its way out.
        lock_path.unlink()
    owner.join(10)

    [report] = outcome
    assert isinstance(report, RecoveryReport), report
    assert report.instances_recovered == ("alpha",)
    assert dataset_rows(crashed) == rows_of(events)


def test_recorders_starting_together_on_one_root_all_open(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    """Each starting recorder scans the others' directories while they are being created."""

    def start(writer: DatasetWriter, barrier: threading.Barrier, failures: list[Exception]) -> None:
        barrier.wait()
        try:
            writer.open()
        except StorageError as exc:
            failures.append(exc)

    for attempt in range(20):
        root = tmp_path / str(attempt)
        writers = [make_writer(root, instance_id=f"i{n}") for n in range(4)]
        barrier = threading.Barrier(len(writers))
        failures: list[Exception] = []
        threads = [
            threading.Thread(target=start, args=(writer, barrier, failures)) for writer in writers
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        assert failures == []
        for writer in writers:
            writer.close()


def test_an_unusable_root_raises_storage_error(tmp_path: Path, make_writer: WriterFactory) -> None:
    root = tmp_path / "file"
    root.write_text("a file, not a directory")
    with pytest.raises(StorageError, match="cannot use dataset root"):
        make_writer(root).open()
