"""The traces a compaction leaves on disk: its staging directory, its manifest, its file names.

Partition ``date=D/symbol=X`` is rebuilt in ``<holder>/date=D/symbol=X`` (:func:`staging_dir`),
where the *holder* is on the same file system as the root, so that the swap stays one atomic
step (:func:`choose_holder`):

* ``<parent>/.<root name>.compact``, next to the root, outside the dataset tree: no reader of
  the root ever sees it, at any moment of a run or after any crash. Taken when a directory
  made there can be renamed into the root (same file system, same mount, writable);
* else ``<root>/_compact`` (a root at the top of its file system, a parent that is read-only
  or another mount, as a Docker volume mounted as the root is): outside the ``date=``
  partitions and skipped by readers that skip ``_`` names, but entered by a
  ``<root>/**/*.parquet`` glob (DuckDB, polars). Everything compaction writes there ends in
  ``.tmp`` or ``.json`` until the moment of the swap, and the old parts are there from the
  swap until they are deleted: the two short windows :mod:`recorder.storage.compact` names.

The :class:`Manifest` (the new file's name and the old parts' names) is written in the staging
directory before the swap and so lies in the live partition after it, until the old parts are
gone: whether the live partition holds one is how :mod:`recorder.storage.compact.recovery`
tells a swapped compaction from one never swapped in.

Versions before this layout staged in ``date=D/.symbol=X.compact``, inside the day's directory
(:func:`legacy_staging_dir`); recovery still finishes or undoes what they left.
"""

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from recorder.durable import fsync_dir
from recorder.storage.compact.listing import SYMBOL_PREFIX
from recorder.storage.paths import (
    PartitionKey,
    data_file_name,
    is_temp_file_name,
    new_session_token,
    parse_data_file_name,
    temp_file_name,
)

OUTSIDE_HOLDER_SUFFIX = ".compact"
"""``<parent>/.<root name>.compact`` rebuilds the partitions of ``<parent>/<root name>``."""
_PROBE_PREFIX = "_compact-probe-"

COMPACTOR_ID = "compact"
"""Stands in for the instance id in the names of compacted files."""
STAGING_ROOT_NAME = "_compact"
"""``<root>/_compact/date=D/symbol=X`` is where partition ``date=D/symbol=X`` is rebuilt."""
LEGACY_STAGING_SUFFIX = ".compact"
"""Earlier versions rebuilt ``date=D/symbol=X`` in ``date=D/.symbol=X.compact``."""
MANIFEST_NAME = ".compact-manifest.json"
"""The manifest of a compaction in progress: in the staging directory before the swap, in the
live partition after it, until the old parts are gone."""
MANIFEST_FORMAT = 1
"""Version of the manifest document."""

_STAGING_PREFIX = f".{SYMBOL_PREFIX}"


@dataclass(frozen=True, slots=True)
class Manifest:
    """What one compaction of a partition replaces with what.

    Attributes:
        output: the compacted file's name.
        inputs: the names of the old parts it replaces.
    """

    output: str
    inputs: frozenset[str]


def staging_dir(live: Path, holder: Path | None = None) -> Path:
    """Return the staging directory of live partition ``<root>/date=D/symbol=X`` in ``holder``.

    Args:
        live: the live partition directory.
        holder: where partitions are rebuilt; ``<root>/_compact`` when ``None``.

    >>> staging_dir(Path("root/date=2024-05-01/symbol=BTCUSDT")).as_posix()
    'root/_compact/date=2024-05-01/symbol=BTCUSDT'
    >>> staging_dir(Path("root/date=2024-05-01/symbol=X"), Path(".root.compact")).as_posix()
    '.root.compact/date=2024-05-01/symbol=X'
    """
    day = live.parent
    return (holder or day.parent / STAGING_ROOT_NAME) / day.name / live.name


def live_dir(root: Path, staging: Path, holder: Path | None = None) -> Path:
    """Return the live partition that staging directory ``staging`` (in ``holder``) rebuilds.

    >>> live_dir(Path("root"), Path("root/_compact/date=2024-05-01/symbol=X")).as_posix()
    'root/date=2024-05-01/symbol=X'
    """
    return root / staging.relative_to(holder or root / STAGING_ROOT_NAME)


def outside_holder(root: Path) -> Path:
    """Return ``<parent>/.<root name>.compact``, the holder next to ``root``.

    >>> outside_holder(Path("/srv/market/data")).as_posix()
    '/srv/market/.data.compact'
    """
    resolved = root.resolve()
    return resolved.parent / f".{resolved.name}{OUTSIDE_HOLDER_SUFFIX}"


def staging_holders(root: Path) -> tuple[Path, Path]:
    """Return every holder a run may have used for ``root``: next to it, then inside it."""
    return outside_holder(root), root / STAGING_ROOT_NAME


def choose_holder(root: Path) -> Path:
    """Return where this run rebuilds partitions: next to ``root`` if possible, else inside.

    Next to it when a directory made there can be renamed into the root (the rename fails
    across file systems and mounts, and where the parent is read-only); the probe leaves
    nothing behind. Probes a crashed run left (an empty ``_compact-probe-<pid>`` in either
    place) are removed first: the caller holds the root's compaction lock, so no other run's
    probe can be in flight.
    """
    outside = outside_holder(root)
    remove_stale_probes(root, outside)
    if outside.parent == root.resolve():  # the root is "/"
        return root / STAGING_ROOT_NAME
    name = f"{_PROBE_PREFIX}{os.getpid()}"
    probe, landed = outside / name, root / name
    existed = outside.exists()
    try:
        outside.mkdir(exist_ok=True)
        probe.mkdir()
        try:
            probe.rename(landed)
        except OSError:
            probe.rmdir()
            raise
        landed.rmdir()
    except OSError:
        return root / STAGING_ROOT_NAME
    finally:
        if not existed:
            with contextlib.suppress(OSError):
                outside.rmdir()  # made again, durably, when a partition is staged
    return outside


def remove_stale_probes(*places: Path) -> list[Path]:
    """Remove the empty probe directories a crashed :func:`choose_holder` left in ``places``.

    Only empty directories are removed (``rmdir``): a probe never holds anything, so whatever
    is not empty is not ours and stays. Returns what was removed.
    """
    removed: list[Path] = []
    for place in places:
        try:
            entries = list(place.iterdir())
        except OSError:  # not there (the holder next to the root usually is not)
            continue
        for entry in entries:
            if entry.name.startswith(_PROBE_PREFIX):
                with contextlib.suppress(OSError):
                    entry.rmdir()
                    removed.append(entry)
    return removed


def is_holder_name(name: str) -> bool:
    """Tell whether a directory named ``name`` can be a holder of staging directories.

    >>> is_holder_name("_compact"), is_holder_name(".data.compact"), is_holder_name("date=x")
    (True, True, False)
    """
    return name == STAGING_ROOT_NAME or (
        name.startswith(".") and name.endswith(OUTSIDE_HOLDER_SUFFIX) and len(name) > 9
    )


def make_staging_dir(staging: Path) -> None:
    """Create ``staging`` and the missing directories above it, each entry made durable.

    Raises:
        FileExistsError: ``staging`` already exists (an unresolved earlier run).
        OSError: a directory could not be created or fsynced.
    """
    missing = [staging]
    while not missing[-1].parent.exists():
        missing.append(missing[-1].parent)
    for directory in reversed(missing):
        directory.mkdir()
        fsync_dir(directory.parent)


def remove_staging_day(day: Path) -> None:
    """Remove staging day directory ``<holder>/date=D``, then the holder, once empty.

    Any other directory (the parent of an earlier version's staging directory is the day's
    live directory) is left alone.
    """
    holder = day.parent
    if not is_holder_name(holder.name):
        return
    for directory in (day, holder):
        # Not empty (another partition is staged) or already gone: both fine; an empty
        # directory left behind by a failure here is removed by the next run.
        with contextlib.suppress(OSError):
            directory.rmdir()
            fsync_dir(directory.parent)


def legacy_staging_dir(live: Path) -> Path:
    """Return where earlier versions staged live partition directory ``live``.

    >>> legacy_staging_dir(Path("date=2024-05-01/symbol=BTCUSDT")).as_posix()
    'date=2024-05-01/.symbol=BTCUSDT.compact'
    """
    return live.with_name(f".{live.name}{LEGACY_STAGING_SUFFIX}")


def legacy_staging_target(name: str) -> str | None:
    """Return the live directory name an earlier version's staging name stands for, or ``None``.

    >>> legacy_staging_target(".symbol=BTCUSDT.compact"), legacy_staging_target("symbol=X")
    ('symbol=BTCUSDT', None)
    """
    if name.startswith(_STAGING_PREFIX) and name.endswith(LEGACY_STAGING_SUFFIX):
        return name[1 : -len(LEGACY_STAGING_SUFFIX)]
    return None


def compacted_file_name(wall_us: int) -> str:
    """Return a new name for a compacted file, a data file name of :data:`COMPACTOR_ID`.

    Args:
        wall_us: the wall clock now, microseconds since the epoch (for the name's stamp).
    """
    return data_file_name(new_session_token(COMPACTOR_ID, wall_us), 0)


def made_by_compaction(name: str) -> bool:
    """Tell whether a file named ``name`` can only have been put in a staging directory by us.

    That is a manifest, a temporary file, or a data file named by :func:`compacted_file_name`.
    """
    parsed = parse_data_file_name(name)
    return (
        name == MANIFEST_NAME
        or is_temp_file_name(name)
        or (parsed is not None and parsed.instance_id == COMPACTOR_ID)
    )


def write_manifest(directory: Path, key: PartitionKey, manifest: Manifest) -> None:
    """Write ``manifest`` of partition ``key`` as ``directory/MANIFEST_NAME``, via a temp file.

    The file's data is fsynced before the rename; the caller fsyncs ``directory``.

    Raises:
        OSError: it could not be written or renamed.
    """
    document = {
        "format": MANIFEST_FORMAT,
        "date": key.date.isoformat(),
        "symbol": key.symbol,
        "output": manifest.output,
        "inputs": sorted(manifest.inputs),
    }
    final = directory / MANIFEST_NAME
    temp = directory / temp_file_name(MANIFEST_NAME)
    with temp.open("wb") as stream:
        stream.write(json.dumps(document, ensure_ascii=False, indent=1).encode())
        stream.flush()
        os.fsync(stream.fileno())
    temp.rename(final)


def read_manifest(directory: Path) -> Manifest | None:
    """Read the manifest in ``directory``; ``None`` if there is none.

    Raises:
        OSError: it cannot be read.
        ValueError: it is not a manifest.
    """
    path = directory / MANIFEST_NAME
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    output = document.get("output") if isinstance(document, dict) else None
    inputs = document.get("inputs") if isinstance(document, dict) else None
    if (
        not isinstance(output, str)
        or not isinstance(inputs, list)
        or not all(isinstance(name, str) for name in inputs)
    ):
        raise ValueError(f"{path} is not a compaction manifest")
    return Manifest(output, frozenset(inputs))
