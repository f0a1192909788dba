"""Publishing one compacted partition: build it aside, swap it in, delete the old parts.

:func:`publish_partition` takes the three steps of **Publication** in
:mod:`recorder.storage.compact` (which also says what a reader sees at each), reporting each
point reached to a :data:`StepHook` as a :class:`CompactStep`; :func:`finish_swap` and
:func:`discard_staging` are also how :mod:`recorder.storage.compact.recovery` completes or
undoes a run a crash interrupted.
"""

import contextlib
import enum
from collections.abc import Callable
from pathlib import Path

from recorder.clock import Clock
from recorder.durable import fsync_dir
from recorder.errors import StorageError
from recorder.storage.compact.listing import PartitionFiles
from recorder.storage.compact.merge import MergedPartition, verify_written, write_merged
from recorder.storage.compact.staging import (
    MANIFEST_NAME,
    Manifest,
    compacted_file_name,
    made_by_compaction,
    make_staging_dir,
    remove_staging_day,
    staging_dir,
    staging_holders,
    write_manifest,
)
from recorder.storage.compact.swap import exchange_directories
from recorder.storage.paths import PartitionKey, is_temp_file_name, temp_file_name


class CompactStep(enum.StrEnum):
    """Points in the publication of one partition, reported to a :data:`StepHook`."""

    TEMP_WRITTEN = "temp_written"
    """The new file is written and fsynced under its temporary name in the staging directory."""
    STAGED = "staged"
    """The new file was read back from disk and checked against the merged rows."""
    PREPARED = "prepared"
    """The manifest is written, the new file has its final name, the staging directory is
    fsynced: ready to swap."""
    EXCHANGED = "exchanged"
    """The live directory holds the new file, the staging directory the old parts."""
    PART_REMOVED = "part_removed"
    """One old part (or a stale temporary file) was deleted from the staging directory."""
    CLEANED = "cleaned"
    """The staging directory is gone; the manifest is still in the live directory."""
    DONE = "done"
    """The manifest is gone too: the partition is one compacted file."""


StepHook = Callable[[CompactStep, PartitionKey], None]
"""Called after each :class:`CompactStep`; for progress reporting and crash tests."""


def no_step(step: CompactStep, key: PartitionKey) -> None:
    """A :data:`StepHook` that does nothing."""


def publish_partition(
    partition: PartitionFiles,
    merged: MergedPartition,
    *,
    clock: Clock,
    on_step: StepHook,
    holder: Path | None = None,
) -> str:
    """Build the new partition aside, swap it in, delete the old parts.

    Args:
        partition: the live partition and the parts that were merged.
        merged: their merged rows.
        clock: the wall clock, for the new file's name.
        on_step: called after each :class:`CompactStep`.
        holder: where it is built (:func:`~recorder.storage.compact.staging.choose_holder`);
            ``<root>/_compact`` when ``None``.

    Returns:
        The compacted file's name.

    Raises:
        ExchangeUnsupportedError: no atomic swap here; nothing changed.
        OSError: before the swap: nothing changed (the staging directory is removed).
        StorageError: after the swap: the new file is live; the next run finishes.
    """
    key, live = partition.key, partition.directory
    staging = staging_dir(live, holder)
    name = compacted_file_name(clock.wall_us())
    manifest = Manifest(name, frozenset(path.name for path in partition.files))
    for other in staging_holders(live.parent.parent):
        if staging_dir(live, other).exists():
            # Left by an earlier run, and not resolved (it holds foreign files): not touched.
            raise FileExistsError(f"{staging_dir(live, other)} exists; left as it is")
    make_staging_dir(staging)
    try:
        temp = _stage(staging, key, merged, manifest, on_step)
        write_manifest(staging, key, manifest)
        # With the holder inside the root, a `**/*.parquet` glob sees the new file from here
        # until the old parts are deleted after the swap: everything slow happened before.
        temp.rename(staging / manifest.output)
        fsync_dir(staging)
        on_step(CompactStep.PREPARED, key)
        exchange_directories(live, staging)
    except OSError:
        # Not swapped: the live partition is untouched. A failed removal is retried by
        # the next run, which finds the staging directory and no manifest in live.
        with contextlib.suppress(OSError):
            discard_staging(staging)
        raise
    on_step(CompactStep.EXCHANGED, key)
    try:
        fsync_dir(live.parent)
        fsync_dir(staging.parent)
        finish_swap(live, staging, manifest, key, on_step)
    except OSError as exc:
        raise StorageError(
            f"the compacted file {name} is live, but the old parts could not be removed "
            f"from {staging} ({exc}); the next run removes them"
        ) from exc
    return name


def _stage(
    staging: Path,
    key: PartitionKey,
    merged: MergedPartition,
    manifest: Manifest,
    on_step: StepHook,
) -> Path:
    """Write the new file in ``staging`` under its temporary name, fsync it, check it.

    Returns:
        The temporary file; it is renamed to its final name just before the swap.

    Raises:
        OSError: it could not be written.
        StorageError: it does not read back as the merged rows.
    """
    temp = staging / temp_file_name(manifest.output)
    write_merged(temp, key, merged, inputs=len(manifest.inputs))
    on_step(CompactStep.TEMP_WRITTEN, key)
    verify_written(temp, merged)
    on_step(CompactStep.STAGED, key)
    return temp


def finish_swap(
    live: Path, staging: Path, manifest: Manifest, key: PartitionKey, on_step: StepHook
) -> None:
    """Complete a swapped compaction: the old parts in ``staging`` go, then the manifest.

    Anything in ``staging`` that is neither an input nor a temporary file (a part a recorder
    published while the new file was being built) is moved back into ``live``.

    Raises:
        OSError: a file could not be deleted or moved; rerunning finishes the job.
    """
    if staging.is_dir():
        rescued = False
        for entry in sorted(staging.iterdir()):
            if entry.name in manifest.inputs or is_temp_file_name(entry.name):
                entry.unlink()
                on_step(CompactStep.PART_REMOVED, key)
            else:
                # File names are unique, so this replaces nothing, unless recovery published
                # the very same file again meanwhile.
                entry.rename(live / entry.name)
                rescued = True
        if rescued:
            fsync_dir(live)
        staging.rmdir()
        fsync_dir(staging.parent)
        remove_staging_day(staging.parent)
    on_step(CompactStep.CLEANED, key)
    (live / MANIFEST_NAME).unlink(missing_ok=True)
    fsync_dir(live)
    on_step(CompactStep.DONE, key)


def discard_staging(staging: Path) -> list[str]:
    """Remove an unswapped staging directory: only what compaction itself puts there.

    Returns:
        Entries left in place because compaction did not make them.

    Raises:
        OSError: an entry could not be removed.
    """
    foreign: list[str] = []
    for entry in sorted(staging.iterdir()):
        if made_by_compaction(entry.name) and not entry.is_dir():
            entry.unlink()
        else:
            foreign.append(entry.name)
    if not foreign:
        staging.rmdir()
    fsync_dir(staging.parent)
    if not foreign:
        remove_staging_day(staging.parent)
    return foreign
