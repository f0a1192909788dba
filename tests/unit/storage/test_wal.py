import os
import resource
import zlib
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from recorder.errors import StorageError
from recorder.model import MiniTicker
from recorder.storage.schema import WAL_SCHEMA, build_wal_batch
from recorder.storage.wal import (
    FORMAT_VERSION,
    HEADER_SIZE,
    MAGIC,
    RecordType,
    ScanEnd,
    SealedMarker,
    SegmentHeader,
    WalRecord,
    WalSegment,
    decode_batch,
    decode_records,
    decode_sealed,
    decode_segment_header,
    encode_batch,
    encode_json,
    encode_record,
    read_segment,
)

RECORDS = [
    WalRecord(RecordType.SEGMENT, 0, b'{"session": "s"}'),
    WalRecord(RecordType.DATA, 1, b"\x00\x01" * 40),
    WalRecord(99, 2, b"a record type from a newer writer"),
    WalRecord(RecordType.SEALED, 3, b""),
    WalRecord(RecordType.DATA, 4, bytes(range(256))),
]


def encode_all(records: list[WalRecord]) -> bytes:
    return b"".join(encode_record(r.type, r.lsn, r.payload) for r in records)


def offsets(records: list[WalRecord]) -> list[int]:
    """Byte offset where each record starts, plus the end."""
    result = [0]
    for record in records:
        result.append(result[-1] + HEADER_SIZE + len(record.payload))
    return result


def ticker(symbol: str, event_time: int) -> MiniTicker:
    return MiniTicker(symbol, event_time, "1.5", "1", "2", "0.5", "10", "15.25", event_time * 1000)


@pytest.fixture
def segment(tmp_path: Path) -> Iterator[WalSegment]:
    created = WalSegment.create(tmp_path, "s-000001.wal", SegmentHeader(FORMAT_VERSION, "s", 1), 0)
    yield created
    created.close()


def test_records_round_trip() -> None:
    data = encode_all(RECORDS)
    scan = decode_records(data)
    assert scan.records == tuple(RECORDS)
    assert scan.valid_length == len(data)
    assert scan.end is ScanEnd.CLEAN


def test_empty_input_is_a_clean_empty_log() -> None:
    assert decode_records(b"").records == ()
    assert decode_records(b"").end is ScanEnd.CLEAN


def test_header_layout_is_magic_type_flags_length_lsn_crc() -> None:
    frame = encode_record(RecordType.DATA, 7, b"xyz")
    assert frame[:4] == MAGIC
    assert int.from_bytes(frame[4:6], "little") == RecordType.DATA
    assert int.from_bytes(frame[8:12], "little") == 3
    assert int.from_bytes(frame[12:20], "little") == 7
    assert int.from_bytes(frame[20:24], "little") == zlib.crc32(b"xyz", zlib.crc32(frame[:20]))
    assert len(frame) == HEADER_SIZE + 3


def test_a_torn_last_record_is_dropped_at_every_cut() -> None:
    data = encode_all(RECORDS)
    last_start = offsets(RECORDS)[-2]
    for cut in range(last_start, len(data)):
        scan = decode_records(data[:cut])
        assert scan.records == tuple(RECORDS[:-1]), cut
        assert scan.valid_length == last_start, cut
        expected_end = ScanEnd.CLEAN if cut == last_start else ScanEnd.TORN
        assert scan.end is expected_end, cut


def test_a_cut_at_any_offset_keeps_exactly_the_complete_records() -> None:
    data = encode_all(RECORDS)
    bounds = offsets(RECORDS)
    for cut in range(len(data) + 1):
        complete = sum(1 for end in bounds[1:] if end <= cut)
        assert decode_records(data[:cut]).records == tuple(RECORDS[:complete]), cut


def test_a_flipped_byte_stops_reading_before_the_damaged_record() -> None:
    data = encode_all(RECORDS)
    start, end = offsets(RECORDS)[1:3]
    for position in range(start, end):
        damaged = bytearray(data)
        damaged[position] ^= 0x40
        scan = decode_records(bytes(damaged))
        assert scan.records == (RECORDS[0],), position
        assert scan.valid_length == start, position
        # A damaged length may claim more bytes than the file has: that looks torn.
        assert scan.end is not ScanEnd.CLEAN, position
        if position >= start + HEADER_SIZE:
            assert scan.end is ScanEnd.CORRUPT, position


def test_a_zero_filled_tail_is_corrupt_not_a_record() -> None:
    data = encode_all(RECORDS[:2]) + bytes(4096)
    scan = decode_records(data)
    assert scan.records == tuple(RECORDS[:2])
    assert scan.end is ScanEnd.CORRUPT


def test_an_absurd_length_is_corrupt_without_reading_it() -> None:
    frame = bytearray(encode_record(RecordType.DATA, 1, b"abc"))
    frame[8:12] = (2**32 - 1).to_bytes(4, "little")
    scan = decode_records(bytes(frame))
    assert scan.records == ()
    assert scan.end is ScanEnd.CORRUPT


def test_a_short_tail_that_is_not_a_header_start_is_corrupt() -> None:
    assert decode_records(encode_all(RECORDS[:1]) + b"xy").end is ScanEnd.CORRUPT
    assert decode_records(encode_all(RECORDS[:1]) + MAGIC[:3]).end is ScanEnd.TORN


def test_data_payload_round_trips_a_wal_batch() -> None:
    batch = build_wal_batch([ticker("BTCUSDT", 1), ticker("币安人生USDT", 2)])
    decoded = decode_batch(encode_batch(batch))
    assert decoded.schema.equals(WAL_SCHEMA)
    assert decoded.equals(batch)


def test_a_data_payload_is_what_arrow_writes_with_its_thread_pool() -> None:
    batch = build_wal_batch([ticker("BTCUSDT", i) for i in range(100)])
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="zstd", use_threads=True)
    with pa.ipc.new_stream(sink, batch.schema, options=options) as stream:
        stream.write_batch(batch)
    assert encode_batch(batch) == bytes(sink.getvalue())


def test_a_data_payload_of_another_schema_is_refused() -> None:
    other = pa.record_batch({"x": [1]})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, other.schema) as stream:
        stream.write_batch(other)
    with pytest.raises(ValueError, match="schema"):
        decode_batch(bytes(sink.getvalue()))
    with pytest.raises(ValueError):  # noqa: PT011 - whatever Arrow says about garbage
        decode_batch(b"not arrow")


def test_json_payloads_round_trip() -> None:
    marker = SealedMarker("2026-03-27", "币安人生USDT", "f.parquet", 10, 3, 9)
    header = SegmentHeader(FORMAT_VERSION, "session", 4)
    assert decode_sealed(encode_json(marker)) == marker
    assert decode_segment_header(encode_json(header)) == header


@pytest.mark.parametrize("payload", [b"{}", b'{"date": "x"}', b"[]", b"nope"])
def test_invalid_json_payloads_raise_value_error(payload: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - json and field errors alike
        decode_sealed(payload)
    with pytest.raises(ValueError):  # noqa: PT011
        decode_segment_header(payload)


def test_a_new_segment_holds_its_header_record(segment: WalSegment) -> None:
    scan = read_segment(segment.path)
    assert [record.type for record in scan.records] == [RecordType.SEGMENT]
    assert decode_segment_header(scan.records[0].payload) == SegmentHeader(FORMAT_VERSION, "s", 1)
    assert segment.length == scan.valid_length == segment.path.stat().st_size


def test_a_segment_name_is_never_reused(tmp_path: Path, segment: WalSegment) -> None:
    with pytest.raises(FileExistsError):
        WalSegment.create(tmp_path, segment.path.name, SegmentHeader(FORMAT_VERSION, "s", 1), 0)


def test_appended_records_are_read_back_in_order(segment: WalSegment) -> None:
    segment.append(RECORDS[1:3])
    segment.append(RECORDS[3:])
    assert read_segment(segment.path).records[1:] == tuple(RECORDS[1:])


def test_a_failed_append_is_cut_back_and_the_segment_stays_usable(segment: WalSegment) -> None:
    segment.append(RECORDS[1:2])
    good_length = segment.length
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # The file-size limit makes the kernel refuse the write part-way, like a full disk.
    resource.setrlimit(resource.RLIMIT_FSIZE, (good_length + HEADER_SIZE + 10, hard))
    try:
        with pytest.raises(OSError, match="too large"):
            segment.append([WalRecord(RecordType.DATA, 2, bytes(1000))])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))

    assert not segment.broken
    assert segment.length == good_length == segment.path.stat().st_size
    segment.append(RECORDS[2:])
    scan = read_segment(segment.path)
    assert scan.records[1:] == tuple(RECORDS[1:])
    assert scan.end is ScanEnd.CLEAN


def test_a_segment_that_cannot_be_cut_back_is_broken(segment: WalSegment) -> None:
    segment.append(RECORDS[1:2])
    fd = _descriptor_of(segment.path)
    # Put a read-only descriptor of the same file under the segment's descriptor number: both
    # the write and the truncation fail, as on a device that went read-only.
    read_only = os.open(segment.path, os.O_RDONLY)
    os.dup2(read_only, fd)
    os.close(read_only)
    with pytest.raises(OSError):  # noqa: PT011 - the errno depends on the kernel
        segment.append(RECORDS[2:3])
    assert segment.broken
    with pytest.raises(StorageError, match="broken"):
        segment.append(RECORDS[2:3])
    assert read_segment(segment.path).records[1:] == (RECORDS[1],)


def test_close_is_idempotent_and_appending_after_it_fails(segment: WalSegment) -> None:
    segment.close()
    segment.close()
    with pytest.raises(StorageError, match="closed"):
        segment.append(RECORDS[1:2])


def _descriptor_of(path: Path) -> int:
    for entry in Path("/proc/self/fd").iterdir():
        try:
            if entry.readlink() == path:
                return int(entry.name)
        except FileNotFoundError:
            continue
    raise AssertionError(f"{path} is not open")


def test_a_segment_file_cut_inside_its_last_record_reads_the_earlier_records(
    segment: WalSegment,
) -> None:
    segment.append(RECORDS[1:])
    segment.close()
    full = read_segment(segment.path)
    last_start = full.valid_length - HEADER_SIZE - len(RECORDS[-1].payload)
    for cut in range(full.valid_length - 1, last_start - 1, -1):
        os.truncate(segment.path, cut)
        scan = read_segment(segment.path)
        assert scan.records == full.records[:-1], cut
        assert scan.valid_length == last_start, cut
