"""Per-instance state: the newest event time of each symbol, as of the last durable flush.

File: ``<root>/_state/<instance_id>.json``::

    {"instance_id": "host-a", "updated_at": "2024-05-01T10:00:01.000000Z", "pid": 4242,
     "symbols": ["BTCUSDT", "ETHUSDT"],
     "last_event_times": {"BTCUSDT": 1714557600000, "ETHUSDT": 1714557599500}}

Who reads it and why:

* The service, at start, to find every symbol's last ``E`` before it stopped: the first event
  after a restart then closes a ``restart`` gap. It reads :func:`merged_last_event_times`, the
  newest ``E`` per symbol over *every* instance's file, because a restarted instance may come
  back under a new id, and redundant instances recording the same symbols cover each other.
* ``recorder check``, to know how fresh each symbol is: Parquet files are sealed only every
  so often, so the newest event is usually not yet in a sealed file. The symbols a state file
  names are expected by ``check`` until ``recorder retire`` deletes the file
  (:func:`remove_state`).

The service writes the file after every durable flush. Each write goes to a temporary
``.<instance_id>.json.tmp`` (hidden, and neither ``.json`` nor ``.parquet``), is fsynced and
renamed over the file, so a reader sees the old state or the new one, never a mixture.
"""

import errno
import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from recorder.clock import format_utc_us, parse_utc_us
from recorder.durable import fsync_dir, make_dirs
from recorder.errors import StorageError
from recorder.instance import validate_instance_id
from recorder.ops.logs import get_logger

log = get_logger(__name__)

STATE_DIR_NAME = "_state"
"""Directory of the state files under the dataset root."""
STATE_SUFFIX = ".json"
"""Suffix of a state file."""
_TEMP_SUFFIX = ".tmp"


class StateDocumentError(ValueError):
    """A state file is not a valid state document; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class InstanceState:
    """What one recorder instance last recorded.

    Attributes:
        instance_id: the instance.
        updated_at: wall clock of the write, microseconds since the epoch, UTC.
        last_event_times: the newest ``E`` of each symbol, milliseconds since the epoch.
        symbols: the symbols the instance was configured to record.
        pid: the process id of the writer, when known.
    """

    instance_id: str
    updated_at: int
    last_event_times: Mapping[str, int]
    symbols: tuple[str, ...]
    pid: int | None


def state_dir(root: Path) -> Path:
    """Return ``<root>/_state``."""
    return root / STATE_DIR_NAME


def state_file(root: Path, instance_id: str) -> Path:
    """Return ``<root>/_state/<instance_id>.json``.

    Raises:
        UnsafePathError: ``instance_id`` is not a safe name.
    """
    return state_dir(root) / f"{validate_instance_id(instance_id)}{STATE_SUFFIX}"


def write_state(
    root: Path,
    instance_id: str,
    last_event_times: Mapping[str, int],
    symbols: Iterable[str],
    *,
    wall_us: int | None = None,
) -> Path:
    """Replace this instance's state file atomically and durably.

    Args:
        root: the dataset root.
        instance_id: this instance.
        last_event_times: the newest ``E`` of each symbol (see
            :meth:`recorder.gaps.detector.GapDetector.last_event_times`).
        symbols: the symbols this instance records.
        wall_us: the time to stamp as ``updated_at``, microseconds since the epoch; the
            system clock when ``None``.

    Returns:
        The state file.

    Raises:
        UnsafePathError: ``instance_id`` is not a safe name.
        StorageError: the file could not be written, synced or renamed.
    """
    path = state_file(root, instance_id)
    document = {
        "instance_id": instance_id,
        "updated_at": format_utc_us(time.time_ns() // 1000 if wall_us is None else wall_us),
        "pid": os.getpid(),
        "symbols": list(symbols),
        "last_event_times": dict(sorted(last_event_times.items())),
    }
    data = json.dumps(document, ensure_ascii=False, indent=1).encode() + b"\n"
    temp = path.with_name(f".{path.name}{_TEMP_SUFFIX}")
    try:
        directory = path.parent
        if not root.is_dir():
            raise FileNotFoundError(errno.ENOENT, "the dataset root does not exist", str(root))
        make_dirs(directory)
        try:
            with temp.open("wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            temp.replace(path)
        except OSError:
            temp.unlink(missing_ok=True)
            raise
        fsync_dir(directory)
    except OSError as exc:
        raise StorageError(f"cannot write the state file {path}: {exc}") from exc
    return path


def remove_state(root: Path, instance_id: str) -> bool:
    """Delete ``instance_id``'s state file durably, so that ``check`` stops expecting its symbols.

    The caller makes sure the instance is not running (it holds its lock), or the next flush
    writes the file again.

    Returns:
        Whether there was a file to delete.

    Raises:
        UnsafePathError: ``instance_id`` is not a safe name.
        StorageError: the file could not be deleted.
    """
    path = state_file(root, instance_id)
    try:
        path.unlink()
        fsync_dir(path.parent)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StorageError(f"cannot delete the state file {path}: {exc}") from exc
    return True


def _parse_state(path: Path, document: object) -> InstanceState:
    """Validate one state document.

    Raises:
        StateDocumentError: a field is missing or has the wrong type.
        ValueError: ``updated_at`` is not an ISO-8601 timestamp.
    """
    if not isinstance(document, dict):
        raise StateDocumentError("expected a JSON object")
    instance_id = document.get("instance_id")
    if not isinstance(instance_id, str) or not instance_id:
        raise StateDocumentError(f"'instance_id' is {instance_id!r}: expected a non-empty string")
    updated_at = document.get("updated_at")
    if not isinstance(updated_at, str):
        raise StateDocumentError(f"'updated_at' is {updated_at!r}: expected an ISO-8601 timestamp")
    times = document.get("last_event_times")
    if not isinstance(times, dict) or not all(
        isinstance(symbol, str) and isinstance(ms, int) and not isinstance(ms, bool)
        for symbol, ms in times.items()
    ):
        raise StateDocumentError("'last_event_times' must map symbols to integer milliseconds")
    symbols = document.get("symbols", [])
    if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
        raise StateDocumentError(f"'symbols' is {symbols!r}: expected a list of strings")
    pid = document.get("pid")
    if pid is not None and (not isinstance(pid, int) or isinstance(pid, bool)):
        raise StateDocumentError(f"'pid' is {pid!r}: expected an integer")
    if path.name != f"{instance_id}{STATE_SUFFIX}":
        raise StateDocumentError(f"'instance_id' {instance_id!r} does not match the file name")
    return InstanceState(
        instance_id=instance_id,
        updated_at=parse_utc_us(updated_at),
        last_event_times=dict(times),
        symbols=tuple(symbols),
        pid=pid,
    )


def read_states(root: Path, *, skip_invalid: bool = False) -> list[InstanceState]:
    """Read every instance's state file under ``root``, sorted by instance id.

    Temporary files of writes in progress are ignored. No ``_state`` directory means no state.

    Args:
        root: the dataset root.
        skip_invalid: skip (and log) a file that is not a valid state document instead of
            failing; the daemon starts even if someone damaged a file, ``check`` does not.

    Raises:
        StorageError: a state file cannot be read, or is not a valid state document and
            ``skip_invalid`` is false (the message names the file).
    """
    directory = state_dir(root)
    if not directory.is_dir():
        return []
    try:
        contents = [
            (path, path.read_bytes())
            for path in sorted(directory.iterdir())
            if path.name.endswith(STATE_SUFFIX) and not path.name.startswith(".")
        ]
    except OSError as exc:
        raise StorageError(f"cannot read the state files in {directory}: {exc}") from exc
    states: list[InstanceState] = []
    for path, content in contents:
        try:
            states.append(_parse_state(path, json.loads(content)))
        except ValueError as exc:
            if not skip_invalid:
                raise StorageError(f"bad state file {path}: {exc}") from exc
            log.warning("state file ignored", path=str(path), error=str(exc))
    return states


def merge_last_event_times(
    states: Iterable[InstanceState], symbols: Iterable[str] | None = None
) -> dict[str, int]:
    """Return the newest ``E`` of each symbol over ``states``, optionally only of ``symbols``.

    >>> a = InstanceState("a", 0, {"BTCUSDT": 5, "ETHUSDT": 9}, (), None)
    >>> b = InstanceState("b", 0, {"BTCUSDT": 7}, (), None)
    >>> merge_last_event_times([a, b]), merge_last_event_times([a, b], ["BTCUSDT"])
    ({'BTCUSDT': 7, 'ETHUSDT': 9}, {'BTCUSDT': 7})
    """
    wanted = None if symbols is None else frozenset(symbols)
    merged: dict[str, int] = {}
    for state in states:
        for symbol, event_time in state.last_event_times.items():
            if wanted is not None and symbol not in wanted:
                continue
            if event_time > merged.get(symbol, event_time - 1):
                merged[symbol] = event_time
    return merged


def merged_last_event_times(
    root: Path, symbols: Iterable[str] | None = None, *, skip_invalid: bool = False
) -> dict[str, int]:
    """Return the newest ``E`` of each symbol over every instance's state file under ``root``.

    Args:
        root: the dataset root.
        symbols: keep only these symbols; every symbol when ``None``.
        skip_invalid: skip (and log) invalid files, as :func:`read_states`.

    Raises:
        StorageError: a state file cannot be read, or is invalid and ``skip_invalid`` is false.
    """
    return merge_last_event_times(read_states(root, skip_invalid=skip_invalid), symbols)
