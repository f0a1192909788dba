"""A simulated power loss: what the disk keeps of a root if the power fails at a given moment.

The crash tests that copy a root (:func:`writer_support.crash_copy`) copy the page cache, so
they pass whether or not the code ever called ``fsync``. :func:`watch` instead spies on the
``os`` functions the recorder writes and syncs with (``open``, ``close``, ``write``, ``pwrite``,
``ftruncate``, ``fsync``, ``fdatasync``, ``rename``, ``replace``, ``mkdir``, ``unlink``,
``remove``, ``rmdir``; ``Path.rename`` and the like call these) and on ``io.open`` (what
``Path.open`` calls, for the files it creates). Every call goes on to the real function on the
real file system; the spy only keeps a model of what is durable:

* every call on a path under the watched root, in order, as :attr:`Disk.ops`;
* each file's content as of its last ``fsync`` or ``fdatasync`` (read back at that moment, so
  bytes written by any means, pyarrow's included, count once they are synced);
* each directory's entries as of its last ``fsync``.

After every call that can change what a power loss keeps (a sync, or a change of names), and
at every :meth:`Disk.mark`, it captures two :class:`CrashImage` of the root, two opposite
behaviours a POSIX file system may show after a power loss:

* ``synced``: only what was synced survives: a file holds its data as of its last sync (or
  nothing), a directory its entries as of its last sync. A missing file or directory sync
  loses data here.
* ``eager``: every change of names (create, rename, unlink, mkdir) reached the disk at once,
  but file data only as synced. A rename that is not preceded by the sync of the data it
  names shows an empty or partial file here.

Mixtures (some name changes persisted, others not) are not imaged; the tests check the order
of the syncs for those.

What is on disk when the watch starts counts as durable. Files are identified by inode (and a
generation, bumped when an inode is freed, since ext4 reuses inode numbers).

A kill -9 is simulated with :attr:`Disk.kill_when` (raise :class:`Killed` right after a call)
and :meth:`Disk.reap` (close the files the killed code had open, as the kernel does); the page
cache survives a kill, the model's durable state is what a later power loss would keep. A
failing sync (``EIO``, ``ENOSPC``) is simulated with :attr:`Disk.fail_sync_when`.
"""

import contextlib
import errno
import io
import os
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

Ident = tuple[int, int, int]
"""A file or directory: device, inode and the generation of that inode number."""
Listing = Mapping[str, tuple[Ident, bool]]
"""A directory's entries: name -> (what it names, whether it is a directory)."""
Tree = Mapping[str, bytes | None]
"""A root as a crash leaves it: relative path -> file content, ``None`` for a directory."""

SYNCS = frozenset({"fsync", "fdatasync"})
WRITES = frozenset({"write", "pwrite"})
_NAME_CHANGES = frozenset({"create", "mkdir", "rename", "replace", "unlink", "rmdir", "exchange"})


class Killed(BaseException):
    """Stands for kill -9: no ``except Exception`` or ``except OSError`` of the code catches it."""


@dataclass(frozen=True, slots=True)
class Op:
    """One call on a path under the watched root.

    Attributes:
        kind: ``create`` (an ``open`` that made the file), ``write``, ``pwrite``, ``ftruncate``,
            ``fsync``, ``fdatasync``, ``rename``, ``replace``, ``mkdir``, ``unlink``, ``rmdir``
            or ``exchange`` (:meth:`Disk.spy_exchange`).
        path: the path, relative to the root (``"."`` for the root itself).
        target: the new name of a ``rename``, ``replace`` or ``exchange``.
        data: the bytes of a ``write`` or ``pwrite``; for a sync, the file's content then.
    """

    kind: str
    path: str
    target: str = ""
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class CrashImage:
    """The root as a power loss at one moment leaves it.

    Attributes:
        mode: ``synced`` or ``eager`` (see the module docstring).
        after: how many :attr:`Disk.ops` had happened.
        note: :attr:`Disk.note` at that moment (what the test had seen acknowledged).
        tree: the files and directories that survive.
    """

    mode: str
    after: int
    note: object
    tree: Tree

    @property
    def label(self) -> str:
        """Says which image this is, for assertion messages."""
        return f"power loss ({self.mode}) after op #{self.after}, note {self.note!r}"

    def restore(self, destination: Path) -> Path:
        """Write the surviving files into the new directory ``destination``; return it."""
        destination.mkdir(parents=True)
        for relative, content in sorted(self.tree.items(), key=lambda i: PurePosixPath(i[0]).parts):
            path = destination / relative
            if content is None:
                path.mkdir()
            else:
                path.write_bytes(content)
        return destination


@dataclass
class Disk:
    """The durable state of a watched root; see the module docstring. Made by :func:`watch`."""

    root: Path
    ops: list[Op] = field(default_factory=list)
    images: list[CrashImage] = field(default_factory=list)
    note: object = None
    kill_when: Callable[[Op], bool] | None = None
    """Raise :class:`Killed` right after the first call for which this is true (then unset)."""
    fail_sync_when: Callable[[Op], bool] | None = None
    """Fail the first sync for which this is true with ``EIO``, syncing nothing (then unset)."""
    _base: str = ""
    _root_ident: Ident = (0, 0, 0)
    _generations: dict[tuple[int, int], int] = field(default_factory=dict)
    _contents: dict[Ident, bytes] = field(default_factory=dict)
    _listings: dict[Ident, Listing] = field(default_factory=dict)
    _open_fds: set[int] = field(default_factory=set)
    _real: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._base = str(self.root.resolve())
        self._root_ident = self._ident(Path(self._base).stat())
        for directory, _, files in os.walk(self._base):
            self._listings[self._ident(Path(directory).stat())] = self._listing(directory)
            for name in files:
                path = Path(directory) / name
                if stat.S_ISREG(path.lstat().st_mode):
                    self._contents[self._ident(path.lstat())] = path.read_bytes()
        self._capture()

    # -- what a test asks --------------------------------------------------------------------

    def mark(self, note: object) -> None:
        """Note what the test has seen acknowledged now, and capture images with that note."""
        self.note = note
        self._capture()

    def durable_content(self, path: Path) -> bytes | None:
        """The content a power loss keeps of file ``path`` (by its inode), ``None`` if unsynced."""
        return self._contents.get(self._ident(path.stat()))

    def reap(self) -> None:
        """Close the files the killed code opened with ``os.open`` and had not closed."""
        for fd in sorted(self._open_fds):
            with contextlib.suppress(OSError):
                self._real["close"](fd)
        self._open_fds.clear()

    def spy_exchange(self, function: Callable[[Path, Path], None]) -> Callable[[Path, Path], None]:
        """Wrap a function swapping two directory entries (``renameat2``, not through ``os``)."""

        def exchange(first: Path, second: Path) -> None:
            function(first, second)
            self._record(
                Op("exchange", self._relative(first) or str(first), self._relative(second) or "")
            )

        return exchange

    # -- the spies -------------------------------------------------------------------------

    def spies(self) -> dict[str, Callable[..., Any]]:
        """The replacements of the ``os`` functions, by name."""
        self._real = {name: getattr(os, name) for name in _SPIED}
        self._real["io.open"] = io.open
        return {
            "open": self._open,
            "close": self._close,
            "write": self._write,
            "pwrite": self._pwrite,
            "ftruncate": self._ftruncate,
            "fsync": self._sync("fsync"),
            "fdatasync": self._sync("fdatasync"),
            "rename": self._rename("rename"),
            "replace": self._rename("replace"),
            "mkdir": self._mkdir,
            "unlink": self._unlink("unlink"),
            "remove": self._unlink("unlink"),
            "rmdir": self._unlink("rmdir"),
        }

    def _open(self, path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        absolute = _absolute(path, dir_fd)
        existed = os.path.lexists(absolute)
        fd: int = self._real["open"](path, flags, mode, dir_fd=dir_fd)
        relative = self._relative(absolute)
        if relative is not None:
            self._open_fds.add(fd)
            if flags & os.O_CREAT and not existed:
                self._record(Op("create", relative))
        return fd

    def io_open(self, file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        """The replacement of ``io.open`` (``Path.open``): records the files it creates."""
        creating = isinstance(file, str | bytes | os.PathLike) and not set(mode).isdisjoint("wxa")
        absolute = _absolute(file, None) if creating else ""
        existed = creating and os.path.lexists(absolute)
        stream = self._real["io.open"](file, mode, *args, **kwargs)
        relative = self._relative(absolute) if creating and not existed else None
        if relative is not None:
            try:
                self._record(Op("create", relative))
            except BaseException:
                stream.close()
                raise
        return stream

    def _close(self, fd: int) -> None:
        self._open_fds.discard(fd)
        self._real["close"](fd)

    def _write(self, fd: int, data: Any) -> int:
        written: int = self._real["write"](fd, data)
        self._record_fd("write", fd, bytes(data[:written]))
        return written

    def _pwrite(self, fd: int, data: Any, offset: int) -> int:
        written: int = self._real["pwrite"](fd, data, offset)
        self._record_fd("pwrite", fd, bytes(data[:written]))
        return written

    def _ftruncate(self, fd: int, length: int) -> None:
        self._real["ftruncate"](fd, length)
        self._record_fd("ftruncate", fd)

    def _sync(self, kind: str) -> Callable[[int], None]:
        def sync(fd: int) -> None:
            relative = self._relative(_fd_path(fd))
            fail = self.fail_sync_when
            if relative is not None and fail is not None and fail(Op(kind, relative)):
                self.fail_sync_when = None
                raise OSError(errno.EIO, f"injected {kind} failure", relative)
            self._real[kind](fd)
            if relative is None:
                return
            info = os.fstat(fd)
            content = b""
            if stat.S_ISDIR(info.st_mode):
                self._listings[self._ident(info)] = self._listing(f"/proc/self/fd/{fd}")
            elif stat.S_ISREG(info.st_mode):
                content = Path(f"/proc/self/fd/{fd}").read_bytes()
                self._contents[self._ident(info)] = content
            self._record(Op(kind, relative, data=content))

        return sync

    def _rename(self, kind: str) -> Callable[..., None]:
        def rename(src: Any, dst: Any, **dir_fds: int | None) -> None:
            source = _absolute(src, dir_fds.get("src_dir_fd"))
            target = _absolute(dst, dir_fds.get("dst_dir_fd"))
            victim = self._victim(target, keep=source)
            self._real[kind](src, dst, **dir_fds)
            self._free(victim)
            relative = self._relative(source)
            if relative is not None:
                self._record(Op(kind, relative, self._relative(target) or target))

        return rename

    def _mkdir(self, path: Any, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        self._real["mkdir"](path, mode, dir_fd=dir_fd)
        relative = self._relative(_absolute(path, dir_fd))
        if relative is not None:
            self._record(Op("mkdir", relative))

    def _unlink(self, kind: str) -> Callable[..., None]:
        real = "rmdir" if kind == "rmdir" else "unlink"

        def unlink(path: Any, *, dir_fd: int | None = None) -> None:
            absolute = _absolute(path, dir_fd)
            victim = self._victim(absolute, keep=None)
            self._real[real](path, dir_fd=dir_fd)
            self._free(victim)
            relative = self._relative(absolute)
            if relative is not None:
                self._record(Op(kind, relative))

        return unlink

    # -- the model -------------------------------------------------------------------------

    def _record_fd(self, kind: str, fd: int, data: bytes = b"") -> None:
        relative = self._relative(_fd_path(fd))
        if relative is not None:
            self._record(Op(kind, relative, data=data))

    def _record(self, op: Op) -> None:
        self.ops.append(op)
        if op.kind in SYNCS or op.kind in _NAME_CHANGES:
            self._capture()
        if self.kill_when is not None and self.kill_when(op):
            self.kill_when = None
            raise Killed(op)

    def _capture(self) -> None:
        for mode, tree in (("synced", self._synced_tree()), ("eager", self._eager_tree())):
            last = next((image for image in reversed(self.images) if image.mode == mode), None)
            if last is None or last.tree != tree or last.note != self.note:
                self.images.append(CrashImage(mode, len(self.ops), self.note, tree))

    def _synced_tree(self) -> dict[str, bytes | None]:
        tree: dict[str, bytes | None] = {}

        def visit(directory: Ident, prefix: str) -> None:
            for name, (ident, is_dir) in sorted(self._listings.get(directory, {}).items()):
                path = f"{prefix}{name}"
                if is_dir:
                    tree[path] = None
                    visit(ident, f"{path}/")
                else:
                    tree[path] = self._contents.get(ident, b"")

        visit(self._root_ident, "")
        return tree

    def _eager_tree(self) -> dict[str, bytes | None]:
        tree: dict[str, bytes | None] = {}
        for directory, _, _ in os.walk(self._base):
            prefix = os.path.relpath(directory, self._base)
            for name, (ident, is_dir) in sorted(self._listing(directory).items()):
                path = name if prefix == "." else f"{prefix}/{name}"
                tree[path] = None if is_dir else self._contents.get(ident, b"")
        return tree

    def _listing(self, directory: str) -> Listing:
        listing: dict[str, tuple[Ident, bool]] = {}
        with os.scandir(directory) as entries:
            for entry in entries:
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode):
                    listing[entry.name] = (self._ident(info), stat.S_ISDIR(info.st_mode))
        return listing

    def _ident(self, info: os.stat_result) -> Ident:
        key = (info.st_dev, info.st_ino)
        return (*key, self._generations.get(key, 0))

    def _victim(self, path: str, keep: str | None) -> tuple[int, int] | None:
        """The inode that removing or replacing ``path`` frees, if it is its last name."""
        try:
            info = os.lstat(path)
        except OSError:
            return None
        if keep is not None and os.path.lexists(keep) and os.path.samestat(info, os.lstat(keep)):
            return None
        if stat.S_ISDIR(info.st_mode) or info.st_nlink <= 1:
            return (info.st_dev, info.st_ino)
        return None

    def _free(self, victim: tuple[int, int] | None) -> None:
        if victim is not None:
            self._generations[victim] = self._generations.get(victim, 0) + 1

    def _relative(self, path: Any) -> str | None:
        absolute = os.fsdecode(path).removesuffix(" (deleted)")
        if absolute == self._base:
            return "."
        if absolute.startswith(self._base + os.sep):
            return absolute[len(self._base) + 1 :]
        return None


_SPIED = (
    "open",
    "close",
    "write",
    "pwrite",
    "ftruncate",
    "fsync",
    "fdatasync",
    "rename",
    "replace",
    "mkdir",
    "unlink",
    "remove",
    "rmdir",
)


def _absolute(path: Any, dir_fd: int | None) -> str:
    """``path`` made absolute, its directory resolved (the root may lie behind a symlink)."""
    name = Path(os.fsdecode(path))
    if dir_fd is not None and not name.is_absolute():
        name = Path(_fd_path(dir_fd)) / name
    absolute = Path.cwd() / name
    return str(absolute.parent.resolve() / absolute.name)


def _fd_path(fd: int) -> str:
    try:
        return str(Path(f"/proc/self/fd/{fd}").readlink())
    except OSError:
        return ""


@contextlib.contextmanager
def watch(root: Path, note: object = None) -> Iterator[Disk]:
    """Spy on the ``os`` calls under the existing directory ``root`` while the block runs.

    ``note`` is the first :attr:`Disk.note`, that of the image of the root as it is.
    """
    disk = Disk(root, note=note)
    with pytest.MonkeyPatch.context() as patch:
        for name, spy in disk.spies().items():
            patch.setattr(os, name, spy)
        patch.setattr(io, "open", disk.io_open)
        yield disk


def new_root(tmp_path: Path) -> Path:
    """An empty dataset root under ``tmp_path``."""
    root = tmp_path / "live"
    root.mkdir()
    return root


def rel(root: Path, path: Path) -> str:
    """``path`` relative to ``root``, as the recorded operations name it."""
    return path.relative_to(root).as_posix()
