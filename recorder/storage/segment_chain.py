"""A session's write-ahead segments: the one appended to, and the retired ones still needed.

A writer appends to one segment at a time. A segment is retired when it rotates (every
``max_file_age``) or when an append failed and the segment could not even be cut back to its
last good record; a retired segment is deleted once no buffered partition has rows in it. Replay
reads a session's segments in sequence order, so the log stays one log across them.
"""

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from recorder.durable import fsync_dir
from recorder.errors import StorageError
from recorder.storage.paths import segment_file_name
from recorder.storage.wal import FORMAT_VERSION, SegmentHeader, WalRecord, WalSegment


@dataclass(slots=True)
class _RetiredSegment:
    """A segment no longer appended to, deleted once no buffered partition has rows in it."""

    segment: WalSegment
    last_lsn: int


class SegmentChain:
    """The write-ahead segments of one writer session, in one instance directory.

    Blocking I/O; not thread-safe. Call :meth:`start` first.

    Args:
        directory: the instance's write-ahead directory.
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._session = ""
        self._current: WalSegment | None = None
        self._sequence = 0
        self._current_last_lsn = 0
        self._retired: list[_RetiredSegment] = []

    @property
    def length(self) -> int:
        """Bytes of every segment held, the retired ones included."""
        held = [retired.segment for retired in self._retired]
        if self._current is not None:
            held.append(self._current)
        return sum(segment.length for segment in held)

    def start(self, session: str) -> None:
        """Create the session's first segment.

        Raises:
            OSError: the segment could not be created.
        """
        self._session = session
        self._start_segment()

    def append(self, records: Sequence[WalRecord]) -> None:
        """Append ``records`` durably, with one fsync; a broken segment is replaced first.

        Raises:
            OSError: nothing was appended.
        """
        segment = self._current
        if segment is None or segment.broken:
            self._replace_broken_segment()
            segment = self._current
        if segment is None:  # pragma: no cover - _replace_broken_segment sets it or raises
            raise StorageError("no write-ahead segment")
        segment.append(records)
        for record in records:
            self._current_last_lsn = max(self._current_last_lsn, record.lsn)

    @property
    def retired_through_lsn(self) -> int | None:
        """The newest record of a retired segment not yet deleted, ``None`` if there is none."""
        return max((retired.last_lsn for retired in self._retired), default=None)

    def rotate(self) -> None:
        """Start a new segment and retire the current one.

        Raises:
            OSError: the new segment could not be created; the current one stays.
        """
        old, old_last_lsn = self._current, self._current_last_lsn
        self._start_segment()
        if old is not None:
            old.close()
            self._retired.append(_RetiredSegment(old, old_last_lsn))

    def delete_retired(self, oldest_buffered_lsn: int | None) -> None:
        """Delete the retired segments holding no record at or after ``oldest_buffered_lsn``.

        Args:
            oldest_buffered_lsn: the first record of the oldest buffered partition, ``None``
                when nothing is buffered.

        Raises:
            OSError: a segment could not be deleted, or the deletion made durable.
        """
        keep: list[_RetiredSegment] = []
        deleted = False
        for retired in self._retired:
            if oldest_buffered_lsn is not None and oldest_buffered_lsn <= retired.last_lsn:
                keep.append(retired)
                continue
            retired.segment.path.unlink(missing_ok=True)
            deleted = True
        self._retired = keep
        if deleted:
            fsync_dir(self._directory)

    def close_and_delete(self) -> None:
        """Close every segment and delete it; call only when everything in them is sealed."""
        segments = [retired.segment for retired in self._retired]
        if self._current is not None:
            segments.append(self._current)
        for segment in segments:
            segment.close()
            # Everything is sealed, so a segment that cannot be deleted is harmless: replaying
            # it on the next start finds nothing to publish, and deletes it then.
            with contextlib.suppress(OSError):
                segment.path.unlink(missing_ok=True)
        self._current = None
        self._retired = []

    def _start_segment(self) -> None:
        self._sequence += 1
        header = SegmentHeader(FORMAT_VERSION, self._session, self._sequence)
        name = segment_file_name(self._session, self._sequence)
        self._current = WalSegment.create(self._directory, name, header, lsn=0)
        self._current_last_lsn = 0

    def _replace_broken_segment(self) -> None:
        # The broken segment keeps its good records; the log continues in a new segment and
        # replay reads both, in order.
        if self._current is not None:
            self._current.close()
            self._retired.append(_RetiredSegment(self._current, self._current_last_lsn))
            self._current = None
        self._start_segment()
