"""The per-instance lock: one running process per instance id, recoverers waited for.

Each instance's write-ahead directory, ``<root>/_wal/<instance_id>``, holds an
``instance.lock`` file. A recorder holds an exclusive ``flock`` on it for as long as it runs, so
the kernel releases it when the process dies, however it dies. Two kinds of holder write their
name into the file right after locking:

* the owner, the recorder running with that instance id, as ``<pid> <host>``;
* a recoverer, a recorder with another instance id replaying a dead instance's leftover
  segments, as :data:`RECOVERER_PREFIX` ``<pid> <host>``.

A starting owner waits as long as a recoverer holds its lock, and refuses to start beside a
live owner (after a short grace for a holder that has not written its name yet). A recorder
without a configured instance id claims the first free id of its host's series instead
(:func:`claim_instance`), so that a restart reuses its files and a second recorder gets its own.
"""

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from recorder.durable import make_dirs
from recorder.errors import StorageError
from recorder.instance import MAX_INSTANCE_ID_LENGTH, validate_instance_id
from recorder.storage.paths import LOCK_FILE_NAME, instance_wal_dir

_LOCK_ATTEMPTS = 5
RECOVERER_PREFIX = "recovering "
"""How a recorder that only recovers another instance's segments marks the lock file."""
# A live holder writes its name right after locking: a starting owner that finds the lock
# held with no recoverer's mark retries this long before it gives up.
_OWNER_LOCK_GRACE = 2.0
_OWNER_LOCK_POLL = 0.05
MAX_CLAIMED_INSTANCES = 16
"""How many recorders without an instance id :func:`claim_instance` lets run on one root and
host; more is a configuration mistake better said than numbered on."""


class InstanceLock:
    """An exclusive ``flock`` on ``<instance dir>/instance.lock``; held while the fd is open.

    Args:
        directory: the instance's write-ahead directory.
        fd: the open, locked lock file.
    """

    def __init__(self, directory: Path, fd: int) -> None:
        self.directory = directory
        self._fd = fd

    @classmethod
    def acquire(cls, directory: Path) -> "InstanceLock | None":
        """Lock ``directory``'s lock file, creating it; ``None`` if a live process holds it.

        Raises:
            OSError: the lock file cannot be opened or the directory has vanished.
        """
        path = directory / LOCK_FILE_NAME
        for _ in range(_LOCK_ATTEMPTS):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            # A recoverer may have removed this lock file between our open and our flock; then
            # we hold a lock on a file nobody else can see, and must try again.
            try:
                same_file = os.path.samestat(os.fstat(fd), path.stat())
            except FileNotFoundError:
                same_file = False
            if same_file:
                return cls(directory, fd)
            os.close(fd)
        raise StorageError(f"could not lock {path}: it keeps being replaced")

    def write_holder(self, *, recovering: bool) -> None:
        """Note who holds the lock (pid and host, and whether it only recovers) in the file.

        Operators read it; a starting owner reads it to tell a recoverer, which it waits
        for, from a live recorder with its own instance id, which it refuses to run beside.
        """
        holder = f"{os.getpid()} {socket.gethostname()}\n"
        if recovering:
            holder = RECOVERER_PREFIX + holder
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, holder.encode(), 0)

    def release(self, *, remove: bool) -> None:
        """Release the lock; with ``remove``, first delete the lock file and empty directory."""
        if remove:
            # Removal is tidiness only: a lock file or directory left behind is harmless.
            with contextlib.suppress(OSError):
                (self.directory / LOCK_FILE_NAME).unlink()
                self.directory.rmdir()
        os.close(self._fd)


def lock_own_instance(root: Path, own_dir: Path) -> InstanceLock:
    """Take this instance's lock, waiting while another recorder recovers its old segments.

    Args:
        root: the dataset root, named in errors.
        own_dir: this instance's write-ahead directory (created if missing).

    Returns:
        The lock, held; its holder line is not written yet.

    Raises:
        StorageError: the root cannot be used, or a live recorder with this instance id
            holds the lock (beyond a short grace, for a holder still writing its name).
    """
    lock = _lock_unless_owned(root, own_dir)
    if lock is None:
        holder = read_lock_holder(own_dir)
        raise StorageError(
            f"this instance id is already running: {own_dir / LOCK_FILE_NAME} is locked "
            f"by {holder or 'another process'}; give each recorder its own instance_id"
        )
    return lock


def claim_instance(root: Path, base_id: str) -> tuple[str, InstanceLock]:
    """Take the lock of the first instance id of ``base_id``'s series that no recorder runs as.

    The series is ``base_id``, ``base_id-2``, ``base_id-3``, ... (cut to fit the instance-id
    length): a restart finds its old id free again and reuses its files, and a second recorder
    started beside a running one on the same root gets the next id instead of colliding.
    Like :func:`lock_own_instance`, an id whose lock a recoverer holds is waited for: it is
    this series' id, and the dead instance's segments are being published.

    Args:
        root: the dataset root.
        base_id: a valid instance id, such as the host's (:func:`~recorder.instance.
            default_instance_id`).

    Returns:
        The instance id and its lock, held; the holder line is not written yet.

    Raises:
        StorageError: the root cannot be used, or every id of the series is running.
    """
    for number in range(1, MAX_CLAIMED_INSTANCES + 1):
        instance_id = numbered_instance_id(base_id, number)
        lock = _lock_unless_owned(root, instance_wal_dir(root, instance_id))
        if lock is not None:
            return instance_id, lock
    raise StorageError(
        f"{MAX_CLAIMED_INSTANCES} recorders without an instance_id already run on {root} from "
        f"this host ({base_id} to {numbered_instance_id(base_id, MAX_CLAIMED_INSTANCES)}); "
        "give each recorder its own instance_id"
    )


def numbered_instance_id(base_id: str, number: int) -> str:
    """The ``number``-th id of ``base_id``'s series: ``base_id`` itself, then ``base_id-N``.

    >>> numbered_instance_id("host-a", 1), numbered_instance_id("host-a", 2)
    ('host-a', 'host-a-2')
    """
    if number == 1:
        return base_id
    suffix = f"-{number}"
    return validate_instance_id(base_id[: MAX_INSTANCE_ID_LENGTH - len(suffix)] + suffix)


def _lock_unless_owned(root: Path, own_dir: Path) -> InstanceLock | None:
    """Lock ``own_dir``, waiting for a recoverer; ``None`` if a live owner holds it.

    Raises:
        StorageError: the root cannot be used.
    """
    grace_until = time.monotonic() + _OWNER_LOCK_GRACE
    while True:
        try:
            make_dirs(own_dir)
            lock = InstanceLock.acquire(own_dir)
        except FileNotFoundError:
            # A recoverer that found our old segments removed the emptied directory just now.
            lock = None
        except OSError as exc:
            raise StorageError(f"cannot use dataset root {root}: {exc}") from exc
        if lock is not None:
            return lock
        holder = read_lock_holder(own_dir)
        if not holder.startswith(RECOVERER_PREFIX) and time.monotonic() >= grace_until:
            return None
        time.sleep(_OWNER_LOCK_POLL)


def lock_idle_instance(root: Path, instance_id: str) -> InstanceLock:
    """Take the lock of an instance that no recorder runs as, to retire its files.

    Unlike :func:`lock_own_instance` nothing is waited for: a recorder running as
    ``instance_id``, or recovering its segments, is a reason to refuse.

    Raises:
        StorageError: the instance is running or being recovered, or the root cannot be used.
    """
    directory = instance_wal_dir(root, instance_id)
    try:
        make_dirs(directory)
        lock = InstanceLock.acquire(directory)
    except OSError as exc:
        raise StorageError(f"cannot use dataset root {root}: {exc}") from exc
    if lock is None:
        holder = read_lock_holder(directory)
        raise StorageError(
            f"instance {instance_id} is running: {directory / LOCK_FILE_NAME} is locked by "
            f"{holder or 'another process'}; stop it first"
        )
    return lock


def read_lock_holder(directory: Path) -> str:
    """What the holder of ``directory``'s lock wrote about itself, ``""`` if nothing yet."""
    try:
        return (directory / LOCK_FILE_NAME).read_text(errors="replace").strip()
    except OSError:
        return ""


@contextlib.contextmanager
def exclusive_root_lock(root: Path, command: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the root directory while ``command`` rewrites files.

    ``recorder compact`` and ``recorder migrate`` take it: one of them at a time per root.

    Raises:
        StorageError: the root cannot be opened, or another of them holds the lock.
    """
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise StorageError(f"cannot open the dataset root {root}: {exc}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StorageError(
                f"another `recorder compact` or `recorder migrate` is running on {root}; "
                f"`recorder {command}` can try again when it is done"
            ) from None
        yield
    finally:
        os.close(fd)
