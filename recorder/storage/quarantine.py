r"""The quarantine: rejected frames, kept raw with their reason, as JSON Lines.

Layout: ``<root>/_quarantine/<YYYY-MM-DD>-<instance_id>.jsonl``, one file per UTC day of
``receive_time`` and per recorder instance, so instances sharing a root never write into the
same file. One line per rejection (wrapped here)::

    {"received_at": "2022-06-09T16:22:04.000123+00:00",
     "reason": "wrong_type:c: Expected `str`, got `float` - at `$.c`",
     "reason_code": "wrong_type:c", "connection_id": "0.1", "raw_bytes": 187,
     "raw_sha256": "9f86d0...", "raw": "{\"e\": ...}"}

``raw`` is at most a few KiB (the decoder cuts it and says so in ``reason``); ``raw_bytes`` and
``raw_sha256`` are the size and hash of the whole text as received.

Bounded: the decoder makes one rejection per frame, and each day's file stops growing at
``max_day_bytes`` (``[storage] quarantine_max_day_bytes``): what would pass it is dropped,
counted (``recorder_quarantine_dropped_total`` and ``_bytes_total``) and logged when the day's
count of drops reaches 1, 10, 100... The size already on disk counts, so restarts do not reset
the bound.

Text is written as UTF-8 and stays readable (``币安人生`` as is); characters with no UTF-8
form (lone surrogates) and line separators other than ``\n`` are written as JSON ``\uXXXX``
escapes, so every reader splits lines the same way. A line torn by a crash is never glued to
the next record: an append that finds the file not ending in a newline starts with one.

Threading: :meth:`QuarantineLog.add` is cheap and meant for the event loop (it serialises
each line, of a few KiB at most, so that the bound is exact and a flood holds no more memory
than the bound);
:meth:`QuarantineLog.flush` does blocking I/O and is meant for a worker thread
(``asyncio.to_thread``). The service calls them one after the other, never at the same time,
but both swap the pending list under one lock and flushes are serialised, so an overlap
would lose or duplicate nothing.
"""

import hashlib
import json
import os
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Final

from recorder.durable import cut_back, fsync_dir, write_all
from recorder.errors import ConfigError, StorageError
from recorder.instance import INSTANCE_ID_RULE, is_valid_instance_id
from recorder.model import Rejection, reason_code
from recorder.ops.logs import get_logger
from recorder.ops.metrics import RecorderMetrics

log = get_logger(__name__)

QUARANTINE_DIR: Final = "_quarantine"
"""The quarantine's directory under the dataset root; ``_`` hides it from dataset discovery."""
QUARANTINE_SUFFIX: Final = ".jsonl"
"""Quarantine files are JSON Lines; never ``.parquet``, which dataset globs would pick up."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_LINE_BREAK_ESCAPES: Final = {ord(c): f"\\u{ord(c):04x}" for c in "\x85\u2028\u2029"}


class QuarantineLog:
    """Rejections buffered in memory and appended durably to the day's quarantine file.

    Args:
        root: the dataset root; files go to ``root / "_quarantine"``.
        instance_id: this recorder instance's identifier, part of every file name: ASCII
            letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit, at most
            64 characters.
        max_day_bytes: the size a day's file never grows beyond; ``None`` for no bound.
        metrics: counters of what the bound dropped, if any.

    Raises:
        ConfigError: ``instance_id`` is not usable in a file name.
    """

    def __init__(
        self,
        root: Path,
        instance_id: str,
        *,
        max_day_bytes: int | None = None,
        metrics: RecorderMetrics | None = None,
    ) -> None:
        if not is_valid_instance_id(instance_id):
            msg = (
                f"instance_id {instance_id!r} cannot name a quarantine file: "
                f"expected {INSTANCE_ID_RULE}"
            )
            raise ConfigError(msg)
        self._directory = root / QUARANTINE_DIR
        self._instance_id = instance_id
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._max_day_bytes = max_day_bytes
        self._metrics = metrics
        # Lines serialized on add, with the UTC day of the file they go to.
        self._pending: list[tuple[date, bytes]] = []
        self._counts: dict[str, int] = {}
        # Bytes each day's file holds or will once pending lines are written; the size found
        # on disk is added when flush first opens the file.
        self._day_bytes: dict[date, int] = {}
        self._measured_days: set[date] = set()
        self._dropped_by_day: dict[date, int] = {}
        self._dropped_records = 0
        self._dropped_bytes = 0
        # Files a failed append could not cut back: path -> size before that append.
        self._torn: dict[Path, int] = {}
        # Directories that gained an entry (our directory, a new day file) not yet fsynced.
        self._unsynced_directories: set[Path] = set()
        # Files this process has appended to (their names are durable once it has synced).
        self._opened: set[Path] = set()

    @property
    def directory(self) -> Path:
        """The directory holding the quarantine files."""
        return self._directory

    @property
    def counts(self) -> Mapping[str, int]:
        """Rejections added since start, by reason code (a snapshot)."""
        with self._lock:
            return dict(self._counts)

    @property
    def dropped(self) -> tuple[int, int]:
        """Rejections and bytes dropped since start because a day's file was full."""
        with self._lock:
            return self._dropped_records, self._dropped_bytes

    @property
    def pending(self) -> int:
        """How many rejections wait for the next :meth:`flush`."""
        with self._lock:
            return len(self._pending)

    def path_for(self, day: date) -> Path:
        """Return the file this instance appends the rejections received on ``day`` (UTC) to."""
        return self._directory / f"{day.isoformat()}-{self._instance_id}{QUARANTINE_SUFFIX}"

    def add(self, rejections: Iterable[Rejection]) -> None:
        """Buffer rejections for the next :meth:`flush` and count them; no I/O.

        A rejection that would take its day's file past ``max_day_bytes`` is dropped here,
        so a flood holds no more memory than the bound either.
        """
        lines = [(r, _utc_day(r.receive_time), _line(r)) for r in rejections]
        limit = self._max_day_bytes
        with self._lock:
            counts = self._counts
            day_bytes = self._day_bytes
            for rejection, day, line in lines:
                code = reason_code(rejection.reason)
                counts[code] = counts.get(code, 0) + 1
                used = day_bytes.get(day, 0) + len(line)
                if limit is not None and used > limit:
                    self._drop(day, 1, len(line))
                    continue
                day_bytes[day] = used
                self._pending.append((day, line))

    def flush(self) -> int:
        """Append everything pending to the day files and fsync; blocking.

        A day's records are written whole or not at all: when a write fails, the file is cut
        back to its previous size and the records stay pending, so a later flush writes them
        exactly once.

        Returns:
            The number of rejections written.

        Raises:
            StorageError: the quarantine directory or a file cannot be written (disk full,
                read-only root, permission denied). What was not written stays pending.
        """
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, []
            if not pending:
                self._sync_directories()
                return 0
            by_day: dict[date, list[bytes]] = {}
            for day, line in pending:
                by_day.setdefault(day, []).append(line)
            written = 0
            for day, lines in by_day.items():
                path = self.path_for(day)
                try:
                    written += self._append(path, day, lines)
                except OSError as exc:
                    unwritten = [(d, line) for d, ls in by_day.items() if d >= day for line in ls]
                    with self._lock:
                        # Ahead of anything added meanwhile, to keep arrival order.
                        self._pending[:0] = unwritten
                    what = f"cannot append {len(lines)} rejections to {path}"
                    raise _storage_error(what, exc) from exc
            # The records are durable in their files now and must not be queued again, even
            # if a new file's directory entry cannot be synced yet: that is retried alone.
            self._sync_directories()
            return written

    def _sync_directories(self) -> None:
        """Fsync every directory that gained an entry since the last successful sync."""
        for directory in sorted(self._unsynced_directories):  # the root before its children
            try:
                fsync_dir(directory)
            except OSError as exc:
                raise _storage_error(f"cannot sync directory {directory}", exc) from exc
            self._unsynced_directories.discard(directory)

    def _drop(self, day: date, records: int, size: int) -> None:
        """Count rejections the day's bound refused; the caller holds ``self._lock``."""
        before = self._dropped_by_day.get(day, 0)
        after = before + records
        self._dropped_by_day[day] = after
        self._dropped_records += records
        self._dropped_bytes += size
        if self._metrics is not None:
            self._metrics.quarantine_dropped(records, size)
        # Once, then at 10, 100, 1000... drops a day: a flood must not flood the log too.
        if before == 0 or len(str(after)) > len(str(before)):
            log.warning(
                "quarantine full for the day: rejections dropped",
                day=day.isoformat(),
                dropped_today=after,
                max_day_bytes=self._max_day_bytes,
            )

    def _fit(self, day: date, size: int, lines: list[bytes]) -> list[bytes]:
        """Return the lines a day's file of ``size`` bytes can still take; drop the rest."""
        limit = self._max_day_bytes
        with self._lock:
            if day not in self._measured_days:
                # Written by an earlier run of this instance: it counts against the bound.
                self._measured_days.add(day)
                self._day_bytes[day] = self._day_bytes.get(day, 0) + size
            if limit is None:
                return lines
            kept: list[bytes] = []
            for line in lines:
                if size + len(line) <= limit:
                    kept.append(line)
                    size += len(line)
                else:
                    self._day_bytes[day] -= len(line)
                    self._drop(day, 1, len(line))
            return kept

    def _append(self, path: Path, day: date, lines: list[bytes]) -> int:
        """Append what fits of ``lines`` to ``path`` and fsync, leaving it unchanged on failure.

        Directory entries it creates are noted for :meth:`_sync_directories`.

        Returns:
            How many lines were written; the rest was dropped by the day's bound.
        """
        if not self._directory.is_dir():
            # Only our own directory: a missing root (an unmounted volume) must stay an error.
            self._directory.mkdir(exist_ok=True)
            self._unsynced_directories.add(self._directory.parent)
        elif not self._opened:
            # It may have been created by a process killed before it synced the root.
            self._unsynced_directories.add(self._directory.parent)
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
            self._unsynced_directories.add(self._directory)
        except FileExistsError:
            fd = os.open(path, os.O_RDWR | os.O_APPEND)
            if path not in self._opened:
                # Perhaps created by a process killed before it synced the directory.
                self._unsynced_directories.add(self._directory)
        self._opened.add(path)
        try:
            torn_at = self._torn.get(path)
            if torn_at is not None:
                os.ftruncate(fd, torn_at)
                del self._torn[path]
            size = os.fstat(fd).st_size
            # In place: should the write fail, flush queues again only what was kept.
            lines[:] = self._fit(day, size, lines)
            if not lines:
                return 0
            data = b"".join(lines)
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # a crash tore the last line; keep ours separate
            try:
                write_all(fd, data)
                os.fsync(fd)
            except OSError:
                # A partial line left behind would make the retry duplicate the lines that
                # landed; if it cannot be cut back now, it is before the next append.
                if not cut_back(fd, size):
                    self._torn[path] = size
                raise
        finally:
            os.close(fd)
        return len(lines)


def _storage_error(what: str, exc: OSError) -> StorageError:
    """Wrap ``exc`` keeping its errno, for metrics and for callers that test it."""
    if exc.errno is None:
        return StorageError(f"{what}: {exc}")
    return StorageError(exc.errno, f"{what}: {exc.strerror or exc}")


def _utc_day(receive_time: int) -> date:
    return (_EPOCH + timedelta(microseconds=receive_time)).date()


def _line(rejection: Rejection) -> bytes:
    size, digest = rejection.raw_size, rejection.raw_sha256
    if size is None or digest is None:
        # Built outside the decoder (storage refusing an event): raw is the whole text.
        data = rejection.raw.encode("utf-8", "backslashreplace")
        size, digest = len(data), hashlib.sha256(data).hexdigest()
    record = {
        "received_at": (_EPOCH + timedelta(microseconds=rejection.receive_time)).isoformat(
            timespec="microseconds"
        ),
        "reason": rejection.reason,
        "reason_code": reason_code(rejection.reason),
        "connection_id": rejection.connection_id,
        "raw_bytes": size,
        "raw_sha256": digest,
        "raw": rejection.raw,
    }
    text = json.dumps(record, ensure_ascii=False)
    # Line separators other than \n are legal inside JSON strings but split the line for
    # readers that use str.splitlines; escape them.
    text = text.translate(_LINE_BREAK_ESCAPES)
    # A lone surrogate has no UTF-8 form; backslashreplace writes it as the JSON escape
    # \udcxx, which reads back as the same character.
    return (text + "\n").encode("utf-8", "backslashreplace")
