"""Upgrading a root of schema version 1 while recording: `recorder migrate`, then four readers.

A root written before the ``source`` column existed keeps receiving version 1 files from a
recorder of today, so that every reader's glob call keeps working; `recorder migrate` rewrites
the old files, the running recorder switches at its next file, and afterwards pandas, DuckDB,
polars and pyarrow all read ``source = stream`` for every row.
"""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from recorded_dataset import T0, every, write_data_file
from support import (
    READERS,
    StartRecorder,
    StartSimulator,
    parquet_files,
    read_rows_with,
    run_cli,
    sources_with,
    wait_until,
)

from recorder.storage.schema import file_schema_version

pytestmark = pytest.mark.e2e

CONFIG = """
[storage]
flush_interval = "200ms"
max_file_age = "1s"
[metrics]
address = ""
"""


def versions(root: Path) -> list[int | None]:
    return [file_schema_version(pq.read_schema(path)) for path in parquet_files(root)]


def test_migrate_while_recording_then_every_reader_sees_source(
    tmp_path: Path, start_simulator: StartSimulator, start_recorder: StartRecorder
) -> None:
    root = tmp_path / "data"
    # What an earlier version wrote: no source column, no schema marker.
    old_rows = every(T0, T0 + 20_000)
    write_data_file(root, "XRPUSDT", old_rows, version=1)
    simulator = start_simulator("--symbols", "BTCUSDT,ETHUSDT", "--speed", "10")
    recorder = start_recorder(
        root=root, url=simulator.url, symbols=["BTCUSDT", "ETHUSDT"], config=CONFIG
    )
    recorder.wait_for_log("ready")
    wait_until(lambda: len(parquet_files(root)) >= 2, 15, "a file published by the recorder")
    assert set(versions(root)) == {1}  # one schema for the readers, as before
    for reader in READERS:
        assert read_rows_with(reader, root)  # every reader reads the version 1 root

    migrated = run_cli("migrate", "--root", str(root), "--format", "json")
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    document = json.loads(migrated.stdout)
    assert document["version_before"] == 1
    assert document["files_migrated"] >= 2
    count = len(parquet_files(root))
    wait_until(lambda: len(parquet_files(root)) > count, 15, "a file published after it")
    simulator.freeze()
    recorder.wait_until_caught_up(simulator, durable=False)
    assert recorder.terminate() == 0

    assert set(versions(root)) == {2}
    delivered = len(simulator.delivered_rows())
    for reader in READERS:
        assert sources_with(reader, root) == {"stream": delivered + len(old_rows)}, reader
    verify = run_cli("verify", "--root", str(root))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    again = run_cli("migrate", "--root", str(root))
    assert again.returncode == 0
    assert again.stdout.startswith("rewrote 0 files")
