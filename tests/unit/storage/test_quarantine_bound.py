"""The quarantine is bounded (issue 9): huge frames cost a prefix, a day's file has a cap."""

import hashlib
import json
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from recorder.ingest.rejections import MAX_RAW_BYTES, build_rejection
from recorder.model import Rejection
from recorder.ops.metrics import RecorderMetrics
from recorder.storage.quarantine import QUARANTINE_DIR, QuarantineLog

JUNE_9 = 1_654_791_724_000_123
JUNE_10 = 1_654_819_200_000_000
DAY_9 = "2022-06-09"


def rejection(raw: str = "x" * 100, receive_time: int = JUNE_9) -> Rejection:
    return build_rejection(raw, "not_json: test", receive_time, "0.1")


def read_lines(root: Path, day: str = DAY_9, instance: str = "inst1") -> list[dict[str, Any]]:
    path = root / QUARANTINE_DIR / f"{day}-{instance}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def file_size(root: Path, day: str = DAY_9) -> int:
    return (root / QUARANTINE_DIR / f"{day}-inst1.jsonl").stat().st_size


def test_a_huge_frame_is_kept_as_a_prefix_with_its_size_and_hash(tmp_path: Path) -> None:
    frame = b'{"stream": "btcusdt@miniTicker", "data": [' + b"0," * 500_000 + b"0]}"
    log = QuarantineLog(tmp_path, "inst1")
    log.add([build_rejection(frame, "stream_mismatch: test", JUNE_9, "0.1")])
    log.flush()
    (line,) = read_lines(tmp_path)
    assert line["raw_bytes"] == len(frame)
    assert line["raw_sha256"] == hashlib.sha256(frame).hexdigest()
    assert frame.startswith(line["raw"].encode())
    assert len(line["raw"].encode()) == MAX_RAW_BYTES
    assert f"raw truncated to {MAX_RAW_BYTES} of {len(frame)} bytes" in line["reason"]
    assert line["reason_code"] == "stream_mismatch"
    # The whole line stays a few KiB for a megabyte frame.
    assert file_size(tmp_path) < 8 * 1024


def test_a_day_file_stops_at_its_cap_and_the_drops_are_counted(tmp_path: Path) -> None:
    metrics = RecorderMetrics()
    cap = 20_000
    log = QuarantineLog(tmp_path, "inst1", max_day_bytes=cap, metrics=metrics)
    with capture_logs() as logs:
        for _ in range(50):
            log.add([rejection("y" * 1000) for _ in range(20)])
            log.flush()
        log.add([rejection("next day", receive_time=JUNE_10)])
        log.flush()
    kept = read_lines(tmp_path)
    assert 0 < len(kept) < 1000
    assert file_size(tmp_path) <= cap
    assert cap - file_size(tmp_path) < len(json.dumps(kept[-1])) + 1  # no room left for one more
    assert all(line["raw"] == "y" * 1000 for line in kept)
    # The cap is per day: the next day's file starts empty.
    assert [line["raw"] for line in read_lines(tmp_path, "2022-06-10")] == ["next day"]
    records, size = log.dropped
    assert records == 1000 - len(kept)
    assert size >= records * 1000
    registry = metrics.registry
    assert registry.get_sample_value("recorder_quarantine_dropped_total") == records
    assert registry.get_sample_value("recorder_quarantine_dropped_bytes_total") == size
    # Counted by reason all the same: the metric of rejections does not depend on the cap.
    assert log.counts == {"not_json": 1001}
    # Logged once, then at 10, 100, 1000... drops a day, not once per drop.
    warnings = [entry for entry in logs if entry["event"].startswith("quarantine full")]
    expected = [n for n in (1, 10, 100, 1000) if n <= records]
    assert [entry["dropped_today"] for entry in warnings] == expected
    assert {entry["day"] for entry in warnings} == {DAY_9}


def test_what_an_earlier_run_wrote_counts_against_the_cap(tmp_path: Path) -> None:
    cap = 10_000
    first = QuarantineLog(tmp_path, "inst1", max_day_bytes=cap)
    for _ in range(5):
        first.add([rejection("a" * 1000)])
    first.flush()
    before = file_size(tmp_path)
    assert before < cap
    # A restart (a crash loop, say) must not buy a fresh cap for the same day and instance.
    second = QuarantineLog(tmp_path, "inst1", max_day_bytes=cap)
    for _ in range(5):
        second.add([rejection("b" * 1000) for _ in range(5)])
        second.flush()
    assert before < file_size(tmp_path) <= cap
    raws = [line["raw"][:1] for line in read_lines(tmp_path)]
    assert raws[:5] == ["a"] * 5
    assert set(raws[5:]) == {"b"}
    assert second.dropped[0] == 25 - (len(raws) - 5)
    assert second.dropped[0] > 0


def test_without_a_cap_nothing_is_dropped(tmp_path: Path) -> None:
    log = QuarantineLog(tmp_path, "inst1")
    log.add([rejection("z" * 1000) for _ in range(200)])
    log.flush()
    assert len(read_lines(tmp_path)) == 200
    assert log.dropped == (0, 0)


def test_a_flood_holds_no_more_pending_than_the_cap(tmp_path: Path) -> None:
    log = QuarantineLog(tmp_path, "inst1", max_day_bytes=50_000)
    log.add([rejection("w" * 1000) for _ in range(10_000)])  # no flush in between
    assert log.pending < 50
    assert log.dropped[0] == 10_000 - log.pending
