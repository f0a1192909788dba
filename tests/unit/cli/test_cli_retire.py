"""``recorder retire``: an instance's state and write-ahead files go, its history stays."""

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from writer_support import DAY_MS, WriterFactory, crashed_after_writing, dataset_rows, events_for
from writer_support import rows_of as expected_rows

from recorder.cli.maintenance import retire_command
from recorder.gaps.state import read_states, write_state


def retire(*args: str) -> Result:
    # A stray RECORDER_ setting of the machine running the tests must not leak in.
    return CliRunner().invoke(retire_command, list(args), env={"RECORDER_CONFIG": None})


def test_retiring_deletes_the_state_and_publishes_what_the_log_still_holds(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    events = events_for(DAY_MS, 3)
    root = crashed_after_writing(make_writer, tmp_path, events)
    write_state(root, "alpha", {"BTCUSDT": DAY_MS}, ["BTCUSDT"])
    write_state(root, "beta", {"ETHUSDT": DAY_MS}, ["ETHUSDT"])

    result = retire("--root", str(root), "--instance", "alpha")

    assert result.exit_code == 0, result.output
    assert result.output.startswith(
        f"retired alpha: state file deleted, {len(events)} logged rows published"
    )
    assert [state.instance_id for state in read_states(root)] == ["beta"]
    assert dataset_rows(root) == expected_rows(events)
    assert not (root / "_wal" / "alpha").exists()


def test_a_running_instance_is_not_retired(tmp_path: Path, make_writer: WriterFactory) -> None:
    make_writer(tmp_path).open()
    write_state(tmp_path, "alpha", {"BTCUSDT": DAY_MS}, ["BTCUSDT"])

    result = retire("--root", str(tmp_path), "--instance", "alpha")

    assert result.exit_code == 1
    assert "instance alpha not retired: instance alpha is running" in result.output
    assert [state.instance_id for state in read_states(tmp_path)] == ["alpha"]


def test_an_unknown_instance_is_refused_and_the_others_still_retired(tmp_path: Path) -> None:
    write_state(tmp_path, "beta", {"ETHUSDT": DAY_MS}, ["ETHUSDT"])

    result = retire("--root", str(tmp_path), "--instance", "typo", "--instance", "beta")

    assert result.exit_code == 1
    assert "instance typo not retired: no state file and no write-ahead directory" in (
        result.output
    )
    assert "retired beta: state file deleted" in result.output
    assert read_states(tmp_path) == []
    assert not (tmp_path / "_wal" / "typo").exists()


@pytest.mark.parametrize("instance_id", ["-a", "../alpha", ""])
def test_an_invalid_instance_id_is_a_usage_error(tmp_path: Path, instance_id: str) -> None:
    result = retire("--root", str(tmp_path), "--instance", instance_id)
    assert result.exit_code == 2
    assert "is not an instance id: expected ASCII letters" in result.output


def test_a_missing_root_cannot_be_retired_from(tmp_path: Path) -> None:
    result = retire("--root", str(tmp_path / "missing"), "--instance", "alpha")
    assert result.exit_code == 2
    assert "cannot retire: the dataset root" in result.output
