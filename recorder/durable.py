"""Durable-file primitives shared by every file the recorder appends to or publishes.

The write-ahead log, the gap log, the quarantine, the state files and the published Parquet
files all need the same few steps to survive a crash: write every byte, make the data (and, for
a new name, its directory entry) durable, and after a failed append cut the file back to where
it was so that a retry never leaves a duplicate or a torn record behind.
"""

import errno
import os
import threading
from pathlib import Path
from typing import Final

_MADE_DURABLE_LIMIT: Final = 100_000
# Directories this process has made durable in their parents (or created itself).
_made_durable: set[Path] = set()
_made_durable_lock = threading.Lock()


def fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` (creations, renames, deletions) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Make the data of the existing file ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(directory: Path) -> None:
    """Create ``directory`` and missing parents, each one's entry made durable in its parent.

    A directory that already exists may have been created by a process killed before it
    synced the parent, so the first time this process uses a directory its parent is synced
    too, up to an ancestor already known durable (and still there). An ancestor that existed
    and whose parent cannot be synced (a read-only mount above the root, say) is taken as
    durable.
    """
    chain: list[Path] = []
    current = directory
    while current.parent != current:
        with _made_durable_lock:
            known = current in _made_durable
        # A directory known durable may have been removed since (a closed writer's lock dir).
        if known and current.is_dir():
            break
        chain.append(current)
        current = current.parent
    for path in reversed(chain):  # the outermost first: each parent exists before its child
        existed = path.is_dir()
        if not existed:
            path.mkdir(exist_ok=True)
        try:
            fsync_dir(path.parent)
        except OSError as exc:
            if not existed or exc.errno not in {errno.EACCES, errno.EINVAL, errno.EROFS}:
                raise
        with _made_durable_lock:
            if len(_made_durable) >= _MADE_DURABLE_LIMIT:
                _made_durable.clear()  # only costs a few repeated syncs
            _made_durable.add(path)


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
