import datetime as dt
import unicodedata
from pathlib import Path

import pytest

from recorder.errors import UnsafePathError
from recorder.storage.paths import (
    DataFileName,
    PartitionKey,
    SegmentFileName,
    data_file_name,
    is_temp_file_name,
    new_session_token,
    parse_data_file_name,
    parse_segment_file_name,
    partition_dir,
    segment_file_name,
    session_instance_id,
    temp_file_name,
    temp_file_target,
)

DAY = dt.date(2026, 3, 27)
WALL_US = 1_774_569_600_000_000  # 2026-03-27T00:00:00Z

HOSTILE_SYMBOLS = [
    "",
    ".",
    "..",
    "../../etc",
    "../x",
    "a/b",
    "a\\b",
    "/abs",
    "BTC.USDT",
    "date=2020-01-01",
    "%2e%2e",
    "_BTC",
    ".hidden",
    "x\x00y",
    "BTC USDT",
    "BTC\u200bUSDT",
    unicodedata.normalize("NFD", "ÉUSDT"),
    "A" * 65,
]


@pytest.mark.parametrize("symbol", ["BTCUSDT", "币安人生USDT", "BTCUSDT_260327", "1000PEPEUSDT"])
def test_partition_dir_is_hive_style_inside_the_root(tmp_path: Path, symbol: str) -> None:
    path = partition_dir(tmp_path, DAY, symbol)
    assert path == tmp_path / "date=2026-03-27" / f"symbol={symbol}"
    assert path.resolve().is_relative_to(tmp_path.resolve())
    assert not path.exists()


def test_partition_key_renders_as_its_relative_directory() -> None:
    assert str(PartitionKey(DAY, "币安人生USDT")) == "date=2026-03-27/symbol=币安人生USDT"


@pytest.mark.parametrize("symbol", HOSTILE_SYMBOLS)
def test_hostile_symbols_are_refused_and_nothing_is_created(tmp_path: Path, symbol: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(UnsafePathError):
        partition_dir(root, DAY, symbol)
    assert list(tmp_path.rglob("*")) == [root]


def test_a_symlink_leading_out_of_the_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "date=2026-03-27").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="outside the root"):
        partition_dir(root, DAY, "BTCUSDT")


def test_a_root_reached_through_a_symlink_is_fine(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    assert partition_dir(link, DAY, "BTCUSDT") == link / "date=2026-03-27" / "symbol=BTCUSDT"


def test_session_tokens_are_unique_for_the_same_instance_and_instant() -> None:
    tokens = {new_session_token("host-1", WALL_US) for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(token.startswith("20260327T000000Z-host-1-") for token in tokens)
    assert {session_instance_id(token) for token in tokens} == {"host-1"}


def test_session_instance_id_refuses_other_strings() -> None:
    with pytest.raises(ValueError, match="not a session token"):
        session_instance_id("BTCUSDT")


def test_data_file_names_round_trip_even_with_dashes_in_the_instance_id() -> None:
    session = new_session_token("ip-10-0-0-1", WALL_US)
    name = data_file_name(session, 42)
    assert name.endswith(".parquet")
    assert parse_data_file_name(name) == DataFileName(session, "ip-10-0-0-1", 42)


def test_data_file_names_of_two_instances_differ() -> None:
    first = data_file_name(new_session_token("a", WALL_US), 1)
    second = data_file_name(new_session_token("b", WALL_US), 1)
    assert first != second


@pytest.mark.parametrize("name", ["part-0.parquet", "x.parquet.tmp", "", "20260327T000000Z-a.wal"])
def test_other_names_are_not_data_files(name: str) -> None:
    assert parse_data_file_name(name) is None


def test_temp_names_are_hidden_and_never_parquet() -> None:
    final = data_file_name(new_session_token("a", WALL_US), 7)
    temp = temp_file_name(final)
    assert temp.startswith(".")
    assert temp.endswith(".tmp")
    assert not temp.endswith(".parquet")
    assert is_temp_file_name(temp)
    assert temp_file_target(temp) == final
    assert not is_temp_file_name(final)
    assert temp_file_target(final) is None
    assert temp_file_target(".tmp") is None


def test_segment_names_round_trip_and_sort_in_sequence_order() -> None:
    session = new_session_token("host-1", WALL_US)
    names = [segment_file_name(session, sequence) for sequence in (10, 2, 1, 100)]
    assert all(name.endswith(".wal") for name in names)
    assert [parse_segment_file_name(name) for name in sorted(names)] == [
        SegmentFileName(session, 1),
        SegmentFileName(session, 2),
        SegmentFileName(session, 10),
        SegmentFileName(session, 100),
    ]
    assert parse_segment_file_name("instance.lock") is None
