"""The gap log's writer: this instance's gaps appended to its own JSON Lines files, durably.

Where the files are is :mod:`recorder.gaps.layout`; what a line holds is
:mod:`recorder.gaps.records`; reading the whole log back is :mod:`recorder.gaps.scan`.

Durability and idempotence: :meth:`GapLog.append` only buffers; :meth:`GapLog.flush` writes
each day's new lines with one ``write`` and one ``fsync`` (plus the directory's on creation).
A gap is identified by ``(symbol, from_ms, to_ms)``: a key already present in that day's
directory, written by this or any other instance, is skipped, so gaps recovered from the
write-ahead log after a crash can be appended again without duplicates. A failed append is cut
back to the file's last complete line, and a line torn by a crash is cut before the next append:
each instance writes only its own files, so no other process's record can be cut.
"""

import datetime as dt
import json
import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path

from recorder.durable import cut_back, fsync_dir, make_dirs, write_all
from recorder.errors import StorageError
from recorder.gaps.detector import Gap
from recorder.gaps.layout import GAP_LOG_SUFFIX, gap_day, gap_log_day_dir, gap_log_file
from recorder.gaps.records import RecordKey, gap_from_record, gap_to_line
from recorder.instance import validate_instance_id
from recorder.ops.logs import get_logger

log = get_logger(__name__)

# Days whose keys stay in memory; older ones are read again if a gap of theirs comes back.
_CACHED_DAYS = 4
_TAIL_CHUNK = 64 * 1024


class GapLog:
    """Appends this instance's gaps to the gap log under ``root``. Not thread-safe.

    Args:
        root: the dataset root.
        instance_id: this recorder instance; names its files.

    Raises:
        UnsafePathError: ``instance_id`` is not a safe name.
    """

    def __init__(self, root: Path, instance_id: str) -> None:
        self._root = root
        self._instance_id = validate_instance_id(instance_id)
        self._pending: list[Gap] = []
        self._keys: OrderedDict[dt.date, set[RecordKey]] = OrderedDict()

    @property
    def root(self) -> Path:
        """The dataset root."""
        return self._root

    @property
    def instance_id(self) -> str:
        """The instance whose files this log appends to."""
        return self._instance_id

    @property
    def pending(self) -> int:
        """Gaps appended but not yet durable."""
        return len(self._pending)

    def path_for(self, day: dt.date) -> Path:
        """Return this instance's file for gaps ending on ``day``."""
        return gap_log_file(self._root, day, self._instance_id)

    def append(self, gaps: Iterable[Gap]) -> None:
        """Buffer ``gaps`` until the next :meth:`flush`; nothing is written here."""
        self._pending.extend(gaps)

    def flush(self) -> int:
        """Write every pending gap not already in its day's directory, durably.

        Days are written oldest first, each with one write and one fsync. On failure the days
        already written stay written; the failed day and later ones stay pending, and the
        failed day's file is cut back to its last complete line, so a retry neither duplicates
        nor tears a record.

        Returns:
            The number of records written.

        Raises:
            StorageError: a file or directory could not be read, written or synced.
        """
        by_day: dict[dt.date, list[Gap]] = {}
        for gap in self._pending:
            by_day.setdefault(gap_day(gap), []).append(gap)
        written = 0
        for day in sorted(by_day):
            keys = self._keys_for(day)
            fresh: dict[RecordKey, Gap] = {}
            for gap in by_day[day]:
                if gap.key not in keys and gap.key not in fresh:
                    fresh[gap.key] = gap
            if fresh:
                data = b"".join(gap_to_line(gap, self._instance_id) for gap in fresh.values())
                append_lines_durably(self.path_for(day), data)
                keys.update(fresh)
                written += len(fresh)
            self._pending = [gap for gap in self._pending if gap_day(gap) != day]
        return written

    def _keys_for(self, day: dt.date) -> set[RecordKey]:
        keys = self._keys.get(day)
        if keys is not None:
            self._keys.move_to_end(day)
            return keys
        directory = gap_log_day_dir(self._root, day)
        keys = set()
        try:
            paths = sorted(directory.glob(f"*{GAP_LOG_SUFFIX}")) if directory.is_dir() else []
            for path in paths:
                for _, line in complete_lines(path):
                    try:
                        keys.add(gap_from_record(json.loads(line)).key)
                    except ValueError as exc:
                        log.warning("gap log line ignored", path=str(path), error=str(exc))
        except OSError as exc:
            raise StorageError(f"cannot read the gap log in {directory}: {exc}") from exc
        self._keys[day] = keys
        while len(self._keys) > _CACHED_DAYS:
            self._keys.popitem(last=False)
        return keys


def append_lines_durably(path: Path, data: bytes, what: str = "gap log") -> None:
    """Append complete lines to ``path``, fsynced; a torn tail is cut first, a failure cut back.

    Only the one process that writes ``path`` may call this (each instance has its own files).

    Raises:
        StorageError: the file or its directory could not be written or synced.
    """
    try:
        make_dirs(path.parent)
        existed = path.exists()
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            size = _cut_torn_tail(fd)
            try:
                write_all(fd, data)
                os.fsync(fd)
            except OSError:
                if not cut_back(fd, size):
                    # The next append cuts the torn tail before it writes.
                    log.warning("append cut-back failed", log=what, path=str(path))
                raise
        finally:
            os.close(fd)
        if not existed:
            fsync_dir(path.parent)
    except OSError as exc:
        raise StorageError(f"cannot append to the {what} {path}: {exc}") from exc


def _cut_torn_tail(fd: int) -> int:
    """Cut the file back to its last complete line; return its length afterwards.

    A torn tail is what a crash (or a failed cut-back) left of an append that never
    completed: it was never acknowledged, and the gap it held is appended again.
    """
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    end = size
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            end = start + newline + 1
            break
        end = start
    log.warning("gap log torn tail cut", bytes=size - end)
    os.ftruncate(fd, end)
    os.fsync(fd)
    return end


def complete_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line number, line)`` of every newline-terminated, non-blank line."""
    with path.open("rb") as stream:
        for number, line in enumerate(stream, start=1):
            if line.endswith(b"\n") and line.strip():
                yield number, line
