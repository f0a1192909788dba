"""Durable-file primitives shared by every file the recorder appends to or publishes.

The write-ahead log, the gap log, the quarantine, the state files and the published Parquet
files all need the same few steps to survive a crash: write every byte, make the data (and, for
a new name, its directory entry) durable, and after a failed append cut the file back to where
it was so that a retry never leaves a duplicate or a torn record behind.
"""

import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` (creations, renames, deletions) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(directory: Path) -> None:
    """Create ``directory`` and missing parents, each creation made durable in its parent."""
    missing: list[Path] = []
    current = directory
    while not current.is_dir():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        path.mkdir(exist_ok=True)
        fsync_dir(path.parent)


def write_all(fd: int, data: bytes, offset: int | None = None) -> None:
    """Write every byte of ``data`` to ``fd``, at ``offset`` if given, else at its position.

    ``os.write`` may write less than asked (a signal, a nearly full disk); this loops until
    everything is written or an ``OSError`` says why not.
    """
    view = memoryview(data)
    while view:
        if offset is None:
            written = os.write(fd, view)
        else:
            written = os.pwrite(fd, view, offset)
            offset += written
        view = view[written:]


def sync_data(fd: int) -> None:
    """Make the data of ``fd`` durable, with ``fdatasync`` where the platform has it.

    ``fdatasync`` also flushes the file size, which is all the metadata an append changes.
    """
    if hasattr(os, "fdatasync"):
        os.fdatasync(fd)
    else:  # pragma: no cover - macOS
        os.fsync(fd)


def cut_back(fd: int, size: int) -> bool:
    """Cut a file back to ``size`` bytes after a failed append, durably; ``False`` if that failed.

    What a failed append left behind was never acknowledged; a retry that appended after it
    would duplicate the records that did land or leave a torn one in the middle. When even the
    cut-back fails, the caller must not append to the file until it has been cut back.
    """
    try:
        os.ftruncate(fd, size)
        sync_data(fd)
    except OSError:
        return False
    return True
