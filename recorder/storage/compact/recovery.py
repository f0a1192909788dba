"""Finishing or undoing what an interrupted compaction left, before a run compacts anything.

Whatever step a crash interrupts, the live partition holds a complete partition, old or new;
what remains is a staging directory, a manifest, or both (see
:mod:`recorder.storage.compact.staging`). :func:`resolve_leftovers` tells them apart by where
the manifest is.
"""

import contextlib
from pathlib import Path

from recorder.durable import fsync_dir
from recorder.hive import day_of_date_dir
from recorder.storage.compact.listing import SYMBOL_PREFIX, day_dir, list_days
from recorder.storage.compact.publish import discard_staging, finish_swap, no_step
from recorder.storage.compact.staging import (
    MANIFEST_NAME,
    legacy_staging_dir,
    legacy_staging_target,
    live_dir,
    read_manifest,
    remove_staging_day,
    staging_dir,
    staging_holders,
)
from recorder.storage.paths import PartitionKey


def resolve_leftovers(root: Path, *, dry_run: bool = False) -> tuple[list[str], list[str]]:
    """Finish or undo what interrupted runs left under ``root``.

    A staging directory (``<holder>/date=D/symbol=X`` in either holder of
    :func:`~recorder.storage.compact.staging.staging_holders`, or ``date=D/.symbol=X.compact``
    as earlier versions made it) whose live partition holds a manifest was swapped: the old
    parts in it are deleted. One whose live partition holds none was never swapped: it is
    removed. A manifest left alone in a live partition (a crash after the cleanup) is deleted.

    Args:
        root: the dataset root.
        dry_run: only say what would be done.

    Returns:
        What was done (or would be), and what could not be resolved, one sentence each.

    Raises:
        StorageError: the root cannot be listed.
    """
    done: list[str] = []
    problems: list[str] = []
    holders = staging_holders(root)
    for holder in holders:
        for key, staging in _staging_dirs(holder, problems):
            live = live_dir(root, staging, holder)
            text, solved = _resolve_staging(key, live, staging, dry_run=dry_run)
            (done if solved else problems).append(text)
        if not dry_run:
            # A crash between removing a staging directory and its emptied parents.
            with contextlib.suppress(OSError):
                for directory_of_day in _listed(holder):
                    remove_staging_day(directory_of_day)
    for day in list_days(root):
        directory_of_day = day_dir(root, day)
        try:
            entries = sorted(directory_of_day.iterdir())
        except OSError as exc:
            problems.append(f"cannot list {directory_of_day}: {exc}")
            continue
        for entry in entries:
            live_name = legacy_staging_target(entry.name)
            if live_name is not None and entry.is_dir():
                key = PartitionKey(day, live_name.removeprefix(SYMBOL_PREFIX))
                live = directory_of_day / live_name
                text, solved = _resolve_staging(key, live, entry, dry_run=dry_run)
            elif (
                entry.name.startswith(SYMBOL_PREFIX)
                and (entry / MANIFEST_NAME).exists()
                and not any(staging_dir(entry, holder).exists() for holder in holders)
                and not legacy_staging_dir(entry).exists()
            ):
                text, solved = _remove_manifest(entry, dry_run=dry_run)
            else:
                continue
            (done if solved else problems).append(text)
    return done, problems


def _staging_dirs(holder: Path, problems: list[str]) -> list[tuple[PartitionKey, Path]]:
    """List ``<holder>/date=D/symbol=X``, sorted; what cannot be listed is a problem."""
    found: list[tuple[PartitionKey, Path]] = []
    try:
        for directory_of_day in _listed(holder):
            day = day_of_date_dir(directory_of_day.name)
            if day is None or not directory_of_day.is_dir():
                continue
            found.extend(
                (PartitionKey(day, entry.name.removeprefix(SYMBOL_PREFIX)), entry)
                for entry in _listed(directory_of_day)
                if entry.name.startswith(SYMBOL_PREFIX) and entry.is_dir()
            )
    except OSError as exc:
        problems.append(f"cannot list {holder}: {exc}")
    return found


def _listed(directory: Path) -> list[Path]:
    """Return the entries of ``directory``, sorted; none if it does not exist.

    Raises:
        OSError: it exists but cannot be listed.
    """
    try:
        return sorted(directory.iterdir())
    except FileNotFoundError:
        return []


def _remove_manifest(live: Path, *, dry_run: bool) -> tuple[str, bool]:
    """Delete a manifest whose compaction was cleaned up; ``(what, whether it was done)``."""
    path = live / MANIFEST_NAME
    if dry_run:
        return f"would remove {path}, left by an interrupted run", True
    try:
        path.unlink()
        fsync_dir(live)
    except OSError as exc:
        return f"cannot remove {path}: {exc}", False
    return f"removed {path}, left by an interrupted run", True


def _resolve_staging(
    key: PartitionKey, live: Path, staging: Path, *, dry_run: bool
) -> tuple[str, bool]:
    """Finish or undo one interrupted compaction; ``(what, whether it was resolved)``."""
    try:
        manifest = read_manifest(live) if live.is_dir() else None
    except (OSError, ValueError) as exc:
        return f"{staging} left alone: cannot read {live / MANIFEST_NAME}: {exc}", False
    if manifest is None:
        return _undo_staging(staging, dry_run=dry_run)
    if not (live / manifest.output).is_file():
        return f"{staging} left alone: {live} has a manifest but not its file", False
    if dry_run:
        return f"would delete the old parts of {live} left in {staging}", True
    try:
        finish_swap(live, staging, manifest, key, no_step)
    except OSError as exc:
        return f"cannot delete the old parts of {live} left in {staging}: {exc}", False
    return f"deleted the old parts of {live} left in {staging} by an interrupted run", True


def _undo_staging(staging: Path, *, dry_run: bool) -> tuple[str, bool]:
    """Remove a staging directory that was never swapped in; ``(what, whether it was done)``."""
    if dry_run:
        return f"would remove {staging}, an unfinished compaction never swapped in", True
    try:
        foreign = discard_staging(staging)
    except OSError as exc:
        return f"cannot remove {staging}: {exc}", False
    if foreign:
        names = ", ".join(foreign)
        return f"{staging} kept: it holds files compaction did not make: {names}", False
    return f"removed {staging}, an unfinished compaction never swapped in", True
