"""The write-ahead log: framed, checksummed records in append-only segment files.

Events are durable once their record is in a segment and the segment is fsynced; the Parquet
file that eventually holds them is written much later (see :mod:`recorder.storage.writer`).

Framing (little-endian), one record::

    magic   4 bytes  b"rWAL"
    type    u16      a RecordType value; readers pass unknown types through
    flags   u16      reserved, 0
    length  u32      payload length in bytes
    lsn     u64      log sequence number: increases by one per record within a session
                     (0 for SEGMENT records); a record re-sent after a failed append keeps
                     its number, and replay counts the first copy only
    crc     u32      CRC-32 of the 20 header bytes before it and of the payload
    payload length bytes

A crash can leave a record half written at the end of a segment. Reading stops at the first
record that is incomplete or fails its checks and reports how many bytes were valid; everything
after that point is discarded, which is safe because an append is acknowledged only after its
fsync, and a failed append is cut off again (see :meth:`WalSegment.append`).

Record types:

* ``SEGMENT``: JSON, first record of every segment (format version, session, sequence).
* ``DATA``: an Arrow IPC stream holding one :data:`recorder.storage.schema.WAL_SCHEMA` batch.
* ``SEALED``: JSON, a partition's rows logged so far are in a published file.

New types (gap records, last-seen state) only need a new :class:`RecordType` value: the framing
and the reader are type-agnostic.
"""

import contextlib
import dataclasses
import enum
import io
import json
import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

from recorder.durable import cut_back, fsync_dir, sync_data, write_all
from recorder.errors import StorageError
from recorder.storage.schema import WAL_SCHEMA

MAGIC = b"rWAL"
FORMAT_VERSION = 1
HEADER = struct.Struct("<4sHHIQ")
CRC = struct.Struct("<I")
HEADER_SIZE = HEADER.size + CRC.size
# A corrupt length field must not make the reader allocate gigabytes.
MAX_PAYLOAD_BYTES = 512 * 1024 * 1024
# Buffers are compressed one after the other in the calling thread: the same bytes as with
# Arrow's thread pool, for a fifth less CPU on a flush's small buffers (the pool's hand-offs
# cost more than they save).
_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="zstd", use_threads=False)


class RecordType(enum.IntEnum):
    """What a record's payload is. Numbers are never reused; a new type takes the next one."""

    SEGMENT = 1
    DATA = 2
    SEALED = 3


class ScanEnd(enum.StrEnum):
    """Why reading a segment stopped."""

    CLEAN = "clean"
    """At the end of the data, after a complete record (or at offset 0)."""
    TORN = "torn"
    """The last record is incomplete: a crash in the middle of an append."""
    CORRUPT = "corrupt"
    """A record fails its magic, length or checksum test."""


@dataclass(frozen=True, slots=True)
class WalRecord:
    """One record of the log.

    Attributes:
        type: a :class:`RecordType` value, or another number from a newer writer.
        lsn: the log sequence number.
        payload: the record's bytes.
    """

    type: int
    lsn: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class SegmentScan:
    """What reading a segment found.

    Attributes:
        records: the valid records, in order.
        valid_length: bytes from the start covered by ``records``.
        end: why reading stopped at ``valid_length``.
    """

    records: tuple[WalRecord, ...]
    valid_length: int
    end: ScanEnd


@dataclass(frozen=True, slots=True)
class SealedMarker:
    """Payload of a ``SEALED`` record.

    Attributes:
        date: the partition's date, ``YYYY-MM-DD``.
        symbol: the partition's symbol.
        file_name: the published file.
        rows: rows in that file.
        first_lsn: log sequence number of the record holding the file's first row.
        last_lsn: log sequence number of the record holding the file's last row: the
            partition's rows logged up to there are in the file, later ones are not.
    """

    date: str
    symbol: str
    file_name: str
    rows: int
    first_lsn: int
    last_lsn: int


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    """Payload of a ``SEGMENT`` record.

    Attributes:
        format_version: :data:`FORMAT_VERSION` of the writer.
        session: the session token of the writer.
        sequence: the segment's position within its session, from 1.
    """

    format_version: int
    session: str
    sequence: int


def encode_record(record_type: int, lsn: int, payload: bytes) -> bytes:
    """Frame one record: header, checksum, payload."""
    header = HEADER.pack(MAGIC, record_type, 0, len(payload), lsn)
    crc = zlib.crc32(payload, zlib.crc32(header))
    return header + CRC.pack(crc) + payload


def _check_header(header: bytes) -> tuple[int, int, int, int] | None:
    """Return ``(type, length, lsn, crc)`` of a plausible header, ``None`` for a corrupt one."""
    magic, record_type, _flags, length, lsn = HEADER.unpack_from(header)
    if magic != MAGIC or length > MAX_PAYLOAD_BYTES:
        return None
    (crc,) = CRC.unpack_from(header, HEADER.size)
    return record_type, length, lsn, crc


def _checksum_ok(header: bytes, payload: bytes, crc: int) -> bool:
    return zlib.crc32(payload, zlib.crc32(header[: HEADER.size])) == crc


def decode_records(data: bytes) -> SegmentScan:
    """Decode the records framed in ``data``, stopping at the first torn or corrupt one."""
    reader = SegmentReader(io.BytesIO(data))
    records = tuple(reader)
    return SegmentScan(records, reader.valid_length, reader.end)


def read_segment(path: Path) -> SegmentScan:
    """Read a whole segment file up to its first torn or corrupt record.

    Raises:
        OSError: the file cannot be read.
    """
    with path.open("rb") as stream:
        reader = SegmentReader(stream)
        records = tuple(reader)
    return SegmentScan(records, reader.valid_length, reader.end)


class SegmentReader:
    """Iterate over the valid records of a stream positioned at the start of a segment.

    Records are read one at a time, so a large segment is never held in memory at once. After
    the iteration, :attr:`valid_length` and :attr:`end` tell where and why it stopped.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.valid_length = 0
        """Bytes covered by the records yielded so far."""
        self.end = ScanEnd.CLEAN
        """Why the iteration stopped; meaningful once it has."""

    def __iter__(self) -> Iterator[WalRecord]:
        while True:
            header = self._stream.read(HEADER_SIZE)
            if not header:
                self.end = ScanEnd.CLEAN
                return
            if len(header) < HEADER_SIZE:
                # A crash can cut a header short; anything else there is damage.
                torn = MAGIC.startswith(header[: len(MAGIC)])
                self.end = ScanEnd.TORN if torn else ScanEnd.CORRUPT
                return
            fields = _check_header(header)
            if fields is None:
                self.end = ScanEnd.CORRUPT
                return
            record_type, length, lsn, crc = fields
            payload = self._stream.read(length)
            if len(payload) < length:
                self.end = ScanEnd.TORN
                return
            if not _checksum_ok(header, payload, crc):
                self.end = ScanEnd.CORRUPT
                return
            self.valid_length += HEADER_SIZE + length
            yield WalRecord(record_type, lsn, payload)


def encode_batch(batch: pa.RecordBatch) -> bytes:
    """Serialise a write-ahead batch as a ``DATA`` payload (an Arrow IPC stream)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema, options=_IPC_OPTIONS) as stream:
        stream.write_batch(batch)
    return bytes(sink.getvalue())


def decode_batch(payload: bytes) -> pa.RecordBatch:
    """Read a ``DATA`` payload back into one :data:`~recorder.storage.schema.WAL_SCHEMA` batch.

    Raises:
        ValueError: the payload is not an IPC stream of exactly one batch of that schema
            (``pa.ArrowInvalid`` is a ``ValueError``).
    """
    reader = pa.ipc.open_stream(payload)
    if not reader.schema.equals(WAL_SCHEMA):
        raise ValueError(f"DATA record has schema {reader.schema}, expected {WAL_SCHEMA}")
    batches = list(reader)
    if len(batches) != 1:
        raise ValueError(f"DATA record holds {len(batches)} batches, expected exactly one")
    return batches[0]


def encode_json(value: SealedMarker | SegmentHeader) -> bytes:
    """Serialise a ``SEALED`` or ``SEGMENT`` payload."""
    return json.dumps(dataclasses.asdict(value), ensure_ascii=False, sort_keys=True).encode()


def decode_sealed(payload: bytes) -> SealedMarker:
    """Read a ``SEALED`` payload.

    Raises:
        ValueError: not a valid marker.
    """
    fields = json.loads(payload)
    try:
        return SealedMarker(
            date=str(fields["date"]),
            symbol=str(fields["symbol"]),
            file_name=str(fields["file_name"]),
            rows=int(fields["rows"]),
            first_lsn=int(fields["first_lsn"]),
            last_lsn=int(fields["last_lsn"]),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"invalid SEALED record: {exc}") from exc


def decode_segment_header(payload: bytes) -> SegmentHeader:
    """Read a ``SEGMENT`` payload.

    Raises:
        ValueError: not a valid segment header.
    """
    fields = json.loads(payload)
    try:
        return SegmentHeader(
            format_version=int(fields["format_version"]),
            session=str(fields["session"]),
            sequence=int(fields["sequence"]),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"invalid SEGMENT record: {exc}") from exc


class WalSegment:
    """One segment file, open for appending. Not thread-safe.

    Use :meth:`create`; the instance owns the file descriptor until :meth:`close`.
    """

    def __init__(self, path: Path, fd: int, length: int) -> None:
        self._path = path
        self._fd: int | None = fd
        self._length = length
        self._broken = False

    @classmethod
    def create(cls, directory: Path, name: str, header: SegmentHeader, lsn: int) -> "WalSegment":
        """Create segment ``directory/name`` holding only its ``SEGMENT`` record, durably.

        Raises:
            OSError: the file cannot be created or written (it is removed again).
            FileExistsError: the name is taken.
        """
        path = directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        segment = cls(path, fd, 0)
        try:
            segment.append([WalRecord(RecordType.SEGMENT, lsn, encode_json(header))])
            fsync_dir(directory)
        except OSError:
            segment.close()
            path.unlink(missing_ok=True)
            raise
        return segment

    @property
    def path(self) -> Path:
        """The segment file."""
        return self._path

    @property
    def length(self) -> int:
        """Bytes of acknowledged records in the file."""
        return self._length

    @property
    def broken(self) -> bool:
        """A failed append could not be cut off again: append to a new segment instead."""
        return self._broken

    def append(self, records: Sequence[WalRecord]) -> None:
        """Append ``records`` and make them durable with a single fsync.

        On return the records will survive a crash. If writing or syncing fails the file is
        cut back to its previous length, so that the segment stays a valid log and the caller
        may retry; if even that fails the segment is marked :attr:`broken`.

        Raises:
            OSError: the records are not durable.
            StorageError: the segment is closed or broken.
        """
        fd = self._fd
        if fd is None or self._broken:
            raise StorageError(f"write-ahead segment {self._path} is closed or broken")
        data = b"".join(encode_record(r.type, r.lsn, r.payload) for r in records)
        try:
            write_all(fd, data, self._length)
            sync_data(fd)
        except OSError:
            # Bytes of the failed append may remain, possibly as a complete record: nothing
            # may follow them, or a reader stopping at a torn record would lose what follows.
            self._broken = not cut_back(fd, self._length)
            raise
        self._length += len(data)

    def close(self) -> None:
        """Close the file descriptor; the file stays. Idempotent."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            # Every acknowledged record was fsynced already, and Linux releases the descriptor
            # even when close reports an error: there is nothing left to act on.
            with contextlib.suppress(OSError):
                os.close(fd)
