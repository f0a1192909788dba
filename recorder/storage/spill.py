"""Spill files: durable rows moved out of memory while the publisher falls behind.

Rows that are durable in the write-ahead log wait in memory until their partition is published.
When publication cannot keep up (a slow or hanging disk, a starved publisher thread), the writer
moves the rows of its largest partitions into spill files instead of holding them, so that the
resident set stays within ``[storage] buffer_budget`` however long publication lags; the seal
job reads them back (:func:`read_spilled`).

A spill file is a copy, not a durable step: it is written without ``fsync``, and after a crash
recovery rebuilds every partition from the write-ahead log and deletes the spill directory
(:func:`remove_spill_dir`). Spill files live in ``<root>/_wal/<instance>/spill/`` as Arrow IPC
files named ``<number>.arrow``: never ``.parquet``, so no reader of the dataset sees them.
"""

import contextlib
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import pyarrow as pa

from recorder.storage.partition_buffers import BufferedPartition

SPILL_DIR_NAME = "spill"
"""The directory of spill files inside an instance's write-ahead directory."""
SPILL_SUFFIX = ".arrow"


class SpillFiles:
    """This writer's spill files, numbered in the order they were written.

    Args:
        directory: the spill directory (created on the first spill).

    Attributes:
        files: spill files in place.
        failures: spills that could not be written (their rows stayed in memory).
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._written = 0
        self.files = 0
        self.failures = 0

    def spill_largest(self, partitions: Iterable[BufferedPartition], held: int, limit: int) -> None:
        """Spill the largest ``partitions`` while the bytes ``held`` in memory exceed ``limit``.

        Only when publication lags: normally the early seals keep the buffers, and the
        publish budget the handed-over jobs, within ``limit``. Down to three quarters of it,
        so that the next flushes do not spill again.
        """
        if held <= limit:
            return
        target = limit * 3 // 4
        for partition in sorted(partitions, key=lambda p: -p.held_nbytes):
            if held <= target or not partition.held_nbytes:
                break
            batches = partition.batches
            if not batches:
                continue
            try:
                path = self.write(batches)
            except OSError:
                # The rows stay in memory; storage is failing, which the log's appends report.
                self.failures += 1
                return
            held -= partition.held_nbytes
            partition.spill(path)

    def write(self, batches: Sequence[pa.RecordBatch]) -> str:
        """Write ``batches`` (one partition's rows, one schema) into a new spill file.

        Returns:
            The file's path, for :func:`read_spilled`.

        Raises:
            OSError: the file could not be written; whatever part of it was written is gone.
        """
        self._directory.mkdir(parents=True, exist_ok=True)
        self._written += 1
        path = self._directory / f"{self._written:08d}{SPILL_SUFFIX}"
        try:
            with (
                pa.OSFile(str(path), "wb") as sink,
                pa.ipc.new_file(sink, batches[0].schema) as file,
            ):
                for batch in batches:
                    file.write_batch(batch)
        except (OSError, pa.ArrowException) as exc:
            path.unlink(missing_ok=True)
            raise OSError(f"cannot write spill file {path}: {exc}") from exc
        self.files += 1
        return str(path)

    def remove(self, paths: Iterable[str]) -> None:
        """Delete spill files whose rows are published; a failure only leaves a stray copy."""
        for path in paths:
            with contextlib.suppress(OSError):
                Path(path).unlink(missing_ok=True)
                self.files -= 1

    def clear(self) -> None:
        """Delete the spill directory (everything in it is published or in the log)."""
        remove_spill_dir(self._directory.parent)
        self.files = 0


def read_spilled(paths: Iterable[str]) -> list[pa.RecordBatch]:
    """Read the rows of spill files back, in the order given.

    Raises:
        OSError: a file is missing or unreadable.
    """
    batches: list[pa.RecordBatch] = []
    for path in paths:
        try:
            # read_all copies out of the file: the rows must outlive its deletion.
            with pa.OSFile(path, "rb") as source:
                batches.extend(pa.ipc.open_file(source).read_all().to_batches())
        except pa.ArrowException as exc:  # a torn or foreign file: retried like a full disk
            raise OSError(f"spill file {path} is unreadable: {exc}") from exc
    return batches


def remove_spill_dir(instance_dir: Path) -> None:
    """Delete ``instance_dir``'s spill directory; the write-ahead log holds all of its rows.

    Raises:
        OSError: it could not be deleted.
    """
    spill_dir = instance_dir / SPILL_DIR_NAME
    if spill_dir.is_dir() and not spill_dir.is_symlink():
        shutil.rmtree(spill_dir)
    elif spill_dir.exists() or spill_dir.is_symlink():
        spill_dir.unlink()
