import json
import os
import re
from pathlib import Path

import pytest

from recorder.errors import StorageError, UnsafePathError
from recorder.gaps.state import (
    InstanceState,
    merged_last_event_times,
    read_states,
    remove_state,
    state_file,
    write_state,
)

T0 = 1_714_557_600_000
WALL = 1_714_557_601_000_000  # 2024-05-01T10:00:01Z


def test_write_then_read(tmp_path: Path) -> None:
    path = write_state(
        tmp_path, "host-a", {"ETHUSDT": T0 + 1, "BTCUSDT": T0}, ["BTCUSDT", "ETHUSDT"], wall_us=WALL
    )
    assert path == tmp_path / "_state" / "host-a.json"
    document = json.loads(path.read_text())
    assert document == {
        "instance_id": "host-a",
        "updated_at": "2024-05-01T10:00:01.000000Z",
        "pid": os.getpid(),
        "symbols": ["BTCUSDT", "ETHUSDT"],
        "last_event_times": {"BTCUSDT": T0, "ETHUSDT": T0 + 1},
    }
    assert read_states(tmp_path) == [
        InstanceState(
            "host-a", WALL, {"BTCUSDT": T0, "ETHUSDT": T0 + 1}, ("BTCUSDT", "ETHUSDT"), os.getpid()
        )
    ]


def test_rewrite_replaces_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    write_state(tmp_path, "host-a", {"BTCUSDT": T0}, ["BTCUSDT"], wall_us=WALL)
    write_state(tmp_path, "host-a", {"BTCUSDT": T0 + 2000}, ["BTCUSDT"])
    assert [p.name for p in (tmp_path / "_state").iterdir()] == ["host-a.json"]
    [state] = read_states(tmp_path)
    assert state.last_event_times == {"BTCUSDT": T0 + 2000}
    assert state.updated_at > WALL


def test_a_temporary_file_is_never_read(tmp_path: Path) -> None:
    write_state(tmp_path, "host-a", {"BTCUSDT": T0}, ["BTCUSDT"])
    (tmp_path / "_state" / ".host-b.json.tmp").write_text('{"instance_id": "host-b", "trunc')
    assert [s.instance_id for s in read_states(tmp_path)] == ["host-a"]


def test_no_state_directory_means_no_state(tmp_path: Path) -> None:
    assert read_states(tmp_path) == []
    assert merged_last_event_times(tmp_path) == {}


def test_merged_last_event_times_takes_the_newest_per_symbol(tmp_path: Path) -> None:
    # An instance restarted under a new id, and a redundant one recording the same symbols.
    write_state(tmp_path, "old-id", {"BTCUSDT": T0 + 10_000, "ETHUSDT": T0}, ["BTCUSDT"])
    write_state(tmp_path, "new-id", {"BTCUSDT": T0 + 4000}, ["BTCUSDT"])
    write_state(tmp_path, "twin", {"BTCUSDT": T0 + 6000, "XRPUSDT": T0 + 1}, ["BTCUSDT"])
    assert merged_last_event_times(tmp_path) == {
        "BTCUSDT": T0 + 10_000,
        "ETHUSDT": T0,
        "XRPUSDT": T0 + 1,
    }
    assert merged_last_event_times(tmp_path, ["BTCUSDT", "SOLUSDT"]) == {"BTCUSDT": T0 + 10_000}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"{not json", "Expecting property name"),
        (b"[]", "JSON object"),
        (b'{"instance_id": "host-a", "updated_at": "x", "last_event_times": {}}', "isoformat"),
        (
            b'{"instance_id": "host-a", "updated_at": "2024-05-01T00:00:00Z", '
            b'"last_event_times": {"BTCUSDT": "soon"}}',
            "last_event_times",
        ),
        (
            b'{"instance_id": "host-b", "updated_at": "2024-05-01T00:00:00Z", '
            b'"last_event_times": {}}',
            "file name",
        ),
        (
            b'{"instance_id": "host-a", "updated_at": "2024-05-01T00:00:00Z", '
            b'"last_event_times": {}, "symbols": "BTCUSDT"}',
            "symbols",
        ),
        (
            b'{"instance_id": "host-a", "updated_at": "2024-05-01T00:00:00Z", '
            b'"last_event_times": {}, "pid": "1"}',
            "pid",
        ),
    ],
)
def test_a_bad_state_file_is_an_error_naming_it(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    write_state(tmp_path, "host-c", {"BTCUSDT": T0}, ["BTCUSDT"])
    path = tmp_path / "_state" / "host-a.json"
    path.write_bytes(content)
    with pytest.raises(StorageError, match=re.escape(str(path))) as raised:
        read_states(tmp_path)
    assert reason in str(raised.value)
    # The daemon starts anyway, with what the good files say.
    assert merged_last_event_times(tmp_path, skip_invalid=True) == {"BTCUSDT": T0}


def test_unsafe_instance_id_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsafePathError):
        write_state(tmp_path, "../x", {}, [])
    with pytest.raises(UnsafePathError):
        state_file(tmp_path, "")


def test_write_failure_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "_state").write_text("a file where the directory should be")
    with pytest.raises(StorageError, match=re.escape("host-a.json")):
        write_state(tmp_path, "host-a", {"BTCUSDT": T0}, ["BTCUSDT"])


def test_a_write_failing_at_the_rename_leaves_the_old_state(tmp_path: Path) -> None:
    write_state(tmp_path, "host-a", {"BTCUSDT": T0}, ["BTCUSDT"])
    path = tmp_path / "_state" / "host-a.json"
    path.unlink()
    path.mkdir()  # renaming a file over a directory fails
    with pytest.raises(StorageError):
        write_state(tmp_path, "host-a", {"BTCUSDT": T0 + 2000}, ["BTCUSDT"])
    assert [p.name for p in (tmp_path / "_state").iterdir()] == ["host-a.json"]


def test_removing_a_state_file_stops_it_being_read(tmp_path: Path) -> None:
    write_state(tmp_path, "host-a", {"BTCUSDT": 5}, ["BTCUSDT"])
    write_state(tmp_path, "host-b", {"ETHUSDT": 7}, ["ETHUSDT"])

    assert remove_state(tmp_path, "host-a")

    assert [state.instance_id for state in read_states(tmp_path)] == ["host-b"]
    assert not remove_state(tmp_path, "host-a")  # nothing left to remove
    with pytest.raises(UnsafePathError):
        remove_state(tmp_path, "../host-b")
