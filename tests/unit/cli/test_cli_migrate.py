"""`recorder migrate` as cron or an operator runs it: exit codes and what it prints."""

import json
from pathlib import Path

from click.testing import CliRunner, Result
from recorded_dataset import BTC, ETH, T0, every, write_data_file

from recorder.cli.maintenance import migrate_command


def run(*args: str) -> Result:
    return CliRunner().invoke(migrate_command, list(args), env={"RECORDER_CONFIG": None})


def test_migrate_reports_and_exits_by_outcome(tmp_path: Path) -> None:
    write_data_file(tmp_path, BTC, every(T0, T0 + 10_000), version=1)
    broken = write_data_file(tmp_path, ETH, every(T0, T0 + 10_000), version=1)
    dry = run("--root", str(tmp_path), "--dry-run", "--format", "json")
    assert dry.exit_code == 0
    assert json.loads(dry.output)["files_migrated"] == 2
    broken.write_bytes(b"PAR1 not a parquet file")
    result = run("--root", str(tmp_path))
    assert result.exit_code == 1
    assert result.output.startswith("rewrote 1 files (5 rows) of schema version 1 in version 2")
    assert f"not migrated: {broken}" in result.output
    broken.unlink()
    assert run("--root", str(tmp_path)).exit_code == 0
    missing = run("--root", str(tmp_path / "nowhere"))
    assert missing.exit_code == 2
    assert "cannot migrate" in missing.output
