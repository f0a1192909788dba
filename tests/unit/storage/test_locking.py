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
from recorder.instance import MAX_INSTANCE_ID_LENGTH
from recorder.storage.locking import claim_instance, lock_idle_instance, numbered_instance_id
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


def test_a_claim_reuses_the_first_id_of_the_series_once_its_recorder_is_gone(
    tmp_path: Path,
) -> None:
    instance_id, lock = claim_instance(tmp_path, "host-a")
    assert instance_id == "host-a"
    lock.release(remove=False)
    again, lock = claim_instance(tmp_path, "host-a")
    lock.release(remove=True)
    assert again == "host-a"


def test_a_second_claim_beside_a_running_recorder_gets_the_next_id(tmp_path: Path) -> None:
    first, first_lock = claim_instance(tmp_path, "host-a")
    first_lock.write_holder(recovering=False)
    second, second_lock = claim_instance(tmp_path, "host-a")
    second_lock.write_holder(recovering=False)
    third, third_lock = claim_instance(tmp_path, "host-a")
    assert (first, second, third) == ("host-a", "host-a-2", "host-a-3")
    second_lock.release(remove=True)
    # The freed id is the first free one again: a restarted second recorder reuses its files.
    fourth, fourth_lock = claim_instance(tmp_path, "host-a")
    assert fourth == "host-a-2"
    for lock in (first_lock, third_lock, fourth_lock):
        lock.release(remove=True)


def test_numbered_ids_stay_valid_for_the_longest_base() -> None:
    base = "h" * MAX_INSTANCE_ID_LENGTH
    assert numbered_instance_id(base, 1) == base
    assert numbered_instance_id(base, 12) == "h" * (MAX_INSTANCE_ID_LENGTH - 3) + "-12"


def test_a_running_instance_cannot_be_locked_for_retirement(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    make_writer(tmp_path).open()
    with pytest.raises(StorageError, match=r"instance alpha is running: .* locked by \d+ "):
        lock_idle_instance(tmp_path, "alpha")
    lock_idle_instance(tmp_path, "beta").release(remove=True)
    assert not (tmp_path / "_wal" / "beta").exists()
