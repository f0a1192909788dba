import errno
import hashlib
import json
import os
import resource
import threading
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from recorder.errors import ConfigError, StorageError
from recorder.model import Rejection
from recorder.storage.quarantine import QUARANTINE_DIR, QuarantineLog

# 2022-06-09T16:22:04.000123Z and the last and first microseconds around the next midnight.
JUNE_9 = 1_654_791_724_000_123
JUNE_9_LAST = 1_654_819_199_999_999
JUNE_10_FIRST = 1_654_819_200_000_000


def rejection(
    raw: str = '{"e":"24hrMiniTicker","c":30180.0}',
    reason: str = "wrong_type:c: Expected `str`, got `float` - at `$.c`",
    receive_time: int = JUNE_9,
    connection_id: str | None = "0.1",
) -> Rejection:
    return Rejection(raw=raw, reason=reason, receive_time=receive_time, connection_id=connection_id)


def read_lines(path: Path) -> list[dict[str, Any]]:
    data = path.read_bytes()
    assert data.endswith(b"\n")
    return [json.loads(line) for line in data.decode("utf-8").split("\n")[:-1]]


def day_file(root: Path, day: str, instance: str = "inst1") -> Path:
    return root / QUARANTINE_DIR / f"{day}-{instance}.jsonl"


def test_lines_parse_back_with_every_field(tmp_path: Path) -> None:
    log = QuarantineLog(tmp_path, "inst1")
    log.add([rejection(), rejection(raw="nope", reason="not_json: malformed", connection_id=None)])
    assert log.pending == 2
    assert log.flush() == 2
    assert log.pending == 0
    assert read_lines(day_file(tmp_path, "2022-06-09")) == [
        {
            "received_at": "2022-06-09T16:22:04.000123+00:00",
            "reason": "wrong_type:c: Expected `str`, got `float` - at `$.c`",
            "reason_code": "wrong_type:c",
            "connection_id": "0.1",
            "raw_bytes": 34,
            "raw_sha256": hashlib.sha256(b'{"e":"24hrMiniTicker","c":30180.0}').hexdigest(),
            "raw": '{"e":"24hrMiniTicker","c":30180.0}',
        },
        {
            "received_at": "2022-06-09T16:22:04.000123+00:00",
            "reason": "not_json: malformed",
            "reason_code": "not_json",
            "connection_id": None,
            "raw_bytes": 4,
            "raw_sha256": hashlib.sha256(b"nope").hexdigest(),
            "raw": "nope",
        },
    ]


def test_flushes_append_and_an_empty_flush_writes_nothing(tmp_path: Path) -> None:
    log = QuarantineLog(tmp_path, "inst1")
    assert log.flush() == 0
    assert not (tmp_path / QUARANTINE_DIR).exists()
    log.add([rejection(raw="first")])
    log.flush()
    log.add([rejection(raw="second"), rejection(raw="third")])
    assert log.flush() == 2
    assert log.flush() == 0
    assert [line["raw"] for line in read_lines(day_file(tmp_path, "2022-06-09"))] == [
        "first",
        "second",
        "third",
    ]


@pytest.mark.parametrize(
    "raw",
    [
        "币安人生USDT",
        '{"s":"币安人生USDT","x":"\\u0000"}',
        "line\nbreak\r\nand\ttab",
        "separators \u2028 \u2029 \x85 \x0b \x0c \x1c",
        'quote " backslash \\ slash /',
        "lone surrogate \udcff from a str frame",
        "\\xff as written by the decoder for a bad byte",
        "",
    ],
)
def test_raw_text_is_preserved(tmp_path: Path, raw: str) -> None:
    log = QuarantineLog(tmp_path, "inst1")
    log.add([rejection(raw=raw), rejection(raw="after")])
    log.flush()
    path = day_file(tmp_path, "2022-06-09")
    assert [line["raw"] for line in read_lines(path)] == [raw, "after"]
    # Every reader splits the file into the same two lines.
    assert len(path.read_text(encoding="utf-8").splitlines()) == 2


def test_non_ascii_stays_readable_in_the_file(tmp_path: Path) -> None:
    log = QuarantineLog(tmp_path, "inst1")
    log.add([rejection(raw='{"s":"币安人生USDT"}')])
    log.flush()
    assert "币安人生USDT" in day_file(tmp_path, "2022-06-09").read_text(encoding="utf-8")


def test_one_file_per_utc_day_of_receive_time(tmp_path: Path) -> None:
    log = QuarantineLog(tmp_path, "inst1")
    log.add(
        [
            rejection(raw="a", receive_time=JUNE_9_LAST),
            rejection(raw="b", receive_time=JUNE_10_FIRST),
            rejection(raw="c", receive_time=JUNE_9),
        ]
    )
    assert log.flush() == 3
    june_9 = read_lines(day_file(tmp_path, "2022-06-09"))
    june_10 = read_lines(day_file(tmp_path, "2022-06-10"))
    assert [(line["raw"], line["received_at"]) for line in june_9] == [
        ("a", "2022-06-09T23:59:59.999999+00:00"),
        ("c", "2022-06-09T16:22:04.000123+00:00"),
    ]
    assert [(line["raw"], line["received_at"]) for line in june_10] == [
        ("b", "2022-06-10T00:00:00.000000+00:00"),
    ]


def test_instances_sharing_a_root_write_separate_files(tmp_path: Path) -> None:
    first, second = QuarantineLog(tmp_path, "a1"), QuarantineLog(tmp_path, "b2")
    first.add([rejection(raw="from a")])
    second.add([rejection(raw="from b")])
    first.flush()
    second.flush()
    assert sorted(p.name for p in (tmp_path / QUARANTINE_DIR).iterdir()) == [
        "2022-06-09-a1.jsonl",
        "2022-06-09-b2.jsonl",
    ]
    assert read_lines(day_file(tmp_path, "2022-06-09", "b2"))[0]["raw"] == "from b"


def test_file_names_never_end_in_parquet(tmp_path: Path) -> None:
    log = QuarantineLog(tmp_path, "parquet")
    assert log.path_for(date(2022, 6, 9)).name == "2022-06-09-parquet.jsonl"
    log.add([rejection(raw="x.parquet")])
    log.flush()
    assert list(tmp_path.glob("**/*.parquet")) == []
    assert log.directory == tmp_path / "_quarantine"


@pytest.mark.parametrize("instance_id", ["", "../x", "a/b", ".hidden", "-x", "a b", "é", "x" * 65])
def test_instance_id_must_be_safe_in_a_file_name(tmp_path: Path, instance_id: str) -> None:
    with pytest.raises(ConfigError, match="instance_id"):
        QuarantineLog(tmp_path, instance_id)


def test_a_line_torn_by_a_crash_stays_separate(tmp_path: Path) -> None:
    path = day_file(tmp_path, "2022-06-09")
    path.parent.mkdir()
    whole = json.dumps({"raw": "written before the crash"})
    torn = '{"received_at": "2022-06-09T16:22:04.000123+00:00", "rea'
    path.write_text(f"{whole}\n{torn}", encoding="utf-8")
    log = QuarantineLog(tmp_path, "inst1")
    log.add([rejection(raw="next")])
    log.flush()
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[:2] == [whole, torn]
    assert json.loads(lines[2])["raw"] == "next"
    assert lines[3:] == [""]


def test_counts_by_reason_code_are_cumulative(tmp_path: Path) -> None:
    log = QuarantineLog(tmp_path, "inst1")
    log.add([rejection(), rejection(reason="not_json: x")])
    assert log.counts == {"wrong_type:c": 1, "not_json": 1}
    log.flush()
    log.add([rejection(reason="not_json: y"), rejection(reason="too_large")])
    assert log.counts == {"wrong_type:c": 1, "not_json": 2, "too_large": 1}
    snapshot = log.counts
    log.add([rejection(reason="too_large")])
    assert snapshot["too_large"] == 1
    assert log.counts["too_large"] == 2


def test_failed_flush_keeps_records_and_retry_writes_them_once(tmp_path: Path) -> None:
    # A root whose path runs through a regular file fails for every user, root included.
    root = tmp_path / "root"
    root.write_text("not a directory")
    log = QuarantineLog(root, "inst1")
    log.add([rejection(raw="one"), rejection(raw="two", receive_time=JUNE_10_FIRST)])
    with pytest.raises(StorageError) as caught:
        log.flush()
    assert isinstance(caught.value, OSError)
    assert caught.value.errno == errno.ENOTDIR
    assert "cannot append" in str(caught.value)
    assert log.pending == 2
    with pytest.raises(StorageError):
        log.flush()  # still failing: still nothing lost
    log.add([rejection(raw="three")])
    root.unlink()
    root.mkdir()
    assert log.flush() == 3
    assert [line["raw"] for line in read_lines(day_file(root, "2022-06-09"))] == ["one", "three"]
    assert [line["raw"] for line in read_lines(day_file(root, "2022-06-10"))] == ["two"]
    assert log.counts == {"wrong_type:c": 3}


def test_a_day_that_fails_does_not_rewrite_the_days_that_succeeded(tmp_path: Path) -> None:
    log = QuarantineLog(tmp_path, "inst1")
    blocked = day_file(tmp_path, "2022-06-10")
    blocked.mkdir(parents=True)  # a directory where the file should be
    log.add(
        [
            rejection(raw="june 9", receive_time=JUNE_9),
            rejection(raw="june 10", receive_time=JUNE_10_FIRST),
            rejection(raw="june 9 again", receive_time=JUNE_9),
        ]
    )
    with pytest.raises(StorageError):
        log.flush()
    assert log.pending == 1
    log.add([rejection(raw="later", receive_time=JUNE_10_FIRST)])
    blocked.rmdir()
    assert log.flush() == 2
    assert [line["raw"] for line in read_lines(day_file(tmp_path, "2022-06-09"))] == [
        "june 9",
        "june 9 again",
    ]
    assert [line["raw"] for line in read_lines(blocked)] == ["june 10", "later"]


def test_a_partial_write_is_cut_back_so_the_retry_leaves_no_duplicate(tmp_path: Path) -> None:
    log = QuarantineLog(tmp_path, "inst1")
    log.add([rejection(raw="before")])
    log.flush()
    path = day_file(tmp_path, "2022-06-09")
    size = path.stat().st_size
    log.add([rejection(raw=f"batch {n}") for n in range(20)])
    # A file size limit makes the kernel accept part of the batch, then fail with EFBIG: a
    # real partial write. Python ignores SIGXFSZ, so the process only sees the error.
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 300, hard))
    try:
        with pytest.raises(StorageError) as caught:
            log.flush()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert caught.value.errno == errno.EFBIG
    assert path.stat().st_size == size
    assert log.pending == 20
    assert log.flush() == 20
    raws = [line["raw"] for line in read_lines(path)]
    assert raws == ["before", *(f"batch {n}" for n in range(20))]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory_fails_then_recovers(tmp_path: Path) -> None:
    log = QuarantineLog(tmp_path, "inst1")
    log.add([rejection(raw="before")])
    log.flush()
    directory = tmp_path / QUARANTINE_DIR
    directory.chmod(0o500)
    try:
        log.add([rejection(raw="during", receive_time=JUNE_10_FIRST)])
        with pytest.raises(StorageError) as caught:
            log.flush()
        assert caught.value.errno == errno.EACCES
        assert log.pending == 1
    finally:
        directory.chmod(0o700)
    assert log.flush() == 1
    assert [line["raw"] for line in read_lines(day_file(tmp_path, "2022-06-10"))] == ["during"]
    assert [line["raw"] for line in read_lines(day_file(tmp_path, "2022-06-09"))] == ["before"]


def test_missing_root_is_an_error_not_created(tmp_path: Path) -> None:
    root = tmp_path / "unmounted"
    log = QuarantineLog(root, "inst1")
    log.add([rejection()])
    with pytest.raises(StorageError) as caught:
        log.flush()
    assert caught.value.errno == errno.ENOENT
    assert not root.exists()
    root.mkdir()
    assert log.flush() == 1


def test_adding_from_threads_while_flushing_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    log = QuarantineLog(tmp_path, "inst1")
    writers = 4
    per_writer = 300
    done = threading.Event()

    def add(writer: int) -> None:
        for n in range(per_writer):
            log.add([rejection(raw=f"{writer}-{n}")])

    def flush_until_done() -> None:
        while not done.is_set():
            log.flush()

    flusher = threading.Thread(target=flush_until_done)
    flusher.start()
    adders = [threading.Thread(target=add, args=(writer,)) for writer in range(writers)]
    for thread in adders:
        thread.start()
    for thread in adders:
        thread.join()
    done.set()
    flusher.join()
    log.flush()
    raws = [line["raw"] for line in read_lines(day_file(tmp_path, "2022-06-09"))]
    assert sorted(raws) == sorted(f"{w}-{n}" for w in range(writers) for n in range(per_writer))
    for writer in range(writers):
        mine = [raw for raw in raws if raw.startswith(f"{writer}-")]
        assert mine == [f"{writer}-{n}" for n in range(per_writer)]  # arrival order kept
    assert log.counts == {"wrong_type:c": writers * per_writer}
