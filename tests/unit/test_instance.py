"""One instance-id rule for settings, the write-ahead log, the gap log, state and quarantine."""

import datetime as dt
from pathlib import Path

import pytest

from recorder.errors import ConfigError, UnsafePathError
from recorder.gaps.layout import gap_log_file
from recorder.gaps.state import state_file
from recorder.instance import default_instance_id, is_valid_instance_id, validate_instance_id
from recorder.settings import parse_settings
from recorder.storage.paths import instance_wal_dir
from recorder.storage.quarantine import QuarantineLog


@pytest.mark.parametrize("instance_id", ["a", "host-1", "ip-10-0-0-1.eu-west-1", "c0ffee_01"])
def test_safe_instance_ids_pass(instance_id: str) -> None:
    assert validate_instance_id(instance_id) == instance_id


@pytest.mark.parametrize(
    "instance_id", ["", ".", "..", ".a", "-a", "_a", "a/b", "a b", "ä", "a" * 65, "a\n"]
)
def test_unsafe_instance_ids_are_refused(tmp_path: Path, instance_id: str) -> None:
    assert not is_valid_instance_id(instance_id)
    with pytest.raises(UnsafePathError):
        validate_instance_id(instance_id)
    # Every writer that names a path after the id applies the same rule.
    with pytest.raises(UnsafePathError):
        instance_wal_dir(tmp_path, instance_id)
    with pytest.raises(UnsafePathError):
        gap_log_file(tmp_path, dt.date(2026, 3, 27), instance_id)
    with pytest.raises(UnsafePathError):
        state_file(tmp_path, instance_id)
    with pytest.raises(ConfigError):
        QuarantineLog(tmp_path, instance_id)


def test_default_instance_id_is_a_valid_instance_id() -> None:
    assert validate_instance_id(default_instance_id())


@pytest.mark.parametrize("instance_id", ["-a", "a" * 65, "eu/1"])
def test_settings_refuse_what_the_writers_would_refuse(instance_id: str) -> None:
    with pytest.raises(ConfigError):
        parse_settings({"service": {"instance_id": instance_id}})
