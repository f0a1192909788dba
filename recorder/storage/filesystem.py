"""Where sealed files are published: a :mod:`pyarrow.fs` file system and the dataset root in it.

:class:`PublicationTarget` offers the few steps publication takes (make the partition
directory, write a table aside, make it durable, move it into place, make the name durable,
check, stat, remove) over any :class:`pyarrow.fs.FileSystem`, so that publishing into an object
store needs a new case in :func:`publication_target`, not a new publisher. The order of the
steps, and why it makes publication atomic and idempotent, is the publisher's business
(:mod:`recorder.storage.publisher`).

On a :class:`~pyarrow.fs.LocalFileSystem` the bytes still go through pyarrow's stream, but
durability is the recorder's own: pyarrow's streams never fsync, so the file and its directory
are synced with :mod:`recorder.durable`, and directories are made and names changed (mkdir,
rename, unlink) with :mod:`os` on the local path, like every other durable file of the
recorder, each paired with the sync that makes it survive a power loss. Any other file system
is taken to make an object durable when its stream is closed, to have no directory entries to
sync, and to show a moved object whole or not at all (S3's copy then delete does), as object
stores do; none is built yet.

Paths given to a target are relative to the dataset root, ``/``-separated
(``date=2026-03-27/symbol=BTCUSDT/<name>``); a target is immutable and may be used from several
threads at once.
"""

import contextlib
import posixpath
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from recorder.durable import fsync_dir, fsync_file, make_dirs
from recorder.errors import UnsafePathError
from recorder.storage.schema import ParquetOptions

# Stateless and thread-safe: one instance serves every local root.
_LOCAL: Final = pafs.LocalFileSystem()


class PublicationTarget:
    """A dataset root in a :class:`pyarrow.fs.FileSystem`, and the steps of publishing into it.

    Build one with :func:`publication_target`. Every method takes paths relative to the root.
    """

    __slots__ = ("_base", "_filesystem", "_is_local")

    def __init__(self, filesystem: pafs.FileSystem, base: str) -> None:
        """Wrap ``filesystem`` with the root at ``base`` (a path in that file system).

        Args:
            filesystem: where the dataset lives.
            base: the dataset root's path in ``filesystem``; ``""`` for the file system's own
                root (a :class:`~pyarrow.fs.SubTreeFileSystem`, say).
        """
        self._filesystem = filesystem
        self._base = base
        self._is_local = isinstance(filesystem, pafs.LocalFileSystem)

    def __repr__(self) -> str:
        return f"PublicationTarget({self._filesystem.type_name}, {self._base!r})"

    @property
    def filesystem(self) -> pafs.FileSystem:
        """The file system the root lives in."""
        return self._filesystem

    @property
    def base(self) -> str:
        """The root's path in :attr:`filesystem`."""
        return self._base

    def path(self, relative: str) -> str:
        """Return the path in :attr:`filesystem` of ``relative``, a path under the root.

        Raises:
            UnsafePathError: ``relative`` is absolute or climbs out of the root (``..``).
        """
        parts = relative.split("/")
        if relative.startswith("/") or ".." in parts:
            raise UnsafePathError(f"{relative!r} is not a path under the dataset root")
        return posixpath.join(self._base, relative)

    def make_dir(self, directory: str) -> None:
        """Create ``directory`` and its missing parents; locally, each durably in its parent.

        Raises:
            OSError: it could not be created (a file stands where a directory should be).
        """
        if self._is_local:
            make_dirs(self._local(directory))
        else:
            self._filesystem.create_dir(self.path(directory), recursive=True)

    def write_aside(self, temp: str, table: pa.Table, options: ParquetOptions) -> None:
        """Write ``table`` as a Parquet file at ``temp`` (overwriting it), not yet durable.

        Call :meth:`make_durable` before anything relies on its content.

        Raises:
            OSError: it could not be written; what was written may remain under ``temp``.
        """
        # compression=None: the default guesses a codec from the name's extension.
        with self._filesystem.open_output_stream(self.path(temp), compression=None) as stream:
            pq.write_table(table, stream, **options.write_kwargs)

    def make_durable(self, file: str) -> None:
        """Make the content of the written file ``file`` survive a power loss.

        Raises:
            OSError: it could not be synced (``EIO``, ``ENOSPC``); it may not survive.
        """
        if self._is_local:
            # A separate descriptor is enough: fsync flushes the file (the inode), whichever
            # descriptor asks, and pyarrow's stream does not expose its own.
            fsync_file(self._local(file))

    def move_into_place(self, temp: str, final: str) -> None:
        """Give the durable file ``temp`` the name ``final`` in one atomic step.

        A reader sees nothing or the whole file under ``final``, never a part of it. The new
        name survives a power loss only after :meth:`make_entry_durable` of its directory.

        Raises:
            OSError: it could not be moved; ``temp`` is as it was.
        """
        if self._is_local:
            # The same rename(2) as LocalFileSystem.move, but through os like every other name
            # change the recorder makes durable: the power-loss tests see (and can interrupt)
            # only those.
            self._local(temp).rename(self._local(final))
        else:
            self._filesystem.move(self.path(temp), self.path(final))

    def make_entry_durable(self, directory: str) -> None:
        """Make the creations, renames and deletions in ``directory`` survive a power loss.

        Raises:
            OSError: it could not be synced; the names changed in it may not survive.
        """
        if self._is_local:
            fsync_dir(self._local(directory))

    def exists(self, path: str) -> bool:
        """Tell whether something is at ``path``.

        Raises:
            OSError: that could not be checked (permission denied on the way, say).
        """
        info = self._filesystem.get_file_info(self.path(path))
        return bool(info.type != pafs.FileType.NotFound)

    def size(self, file: str) -> int:
        """Return the size in bytes of the file ``file``.

        Raises:
            FileNotFoundError: there is no file there.
            OSError: it could not be checked.
        """
        info = self._filesystem.get_file_info(self.path(file))
        if info.type != pafs.FileType.File:
            raise FileNotFoundError(f"no file at {info.path}")
        size: int = info.size
        return size

    def file_metadata(self, file: str) -> dict[bytes, bytes]:
        """The key-value metadata of the Parquet file ``file`` (read from its footer)."""
        schema = pq.read_schema(self.path(file), filesystem=self._filesystem)
        return dict(schema.metadata or {})

    def remove(self, file: str) -> None:
        """Delete the file ``file`` if there is one (a temporary file); not made durable.

        Raises:
            OSError: it is there and could not be deleted.
        """
        if self._is_local:
            # Through os, like the rename: every name change of a local root is made there.
            self._local(file).unlink(missing_ok=True)
            return
        with contextlib.suppress(FileNotFoundError):
            self._filesystem.delete_file(self.path(file))

    def _local(self, relative: str) -> Path:
        return Path(self.path(relative))


def publication_target(root: Path) -> PublicationTarget:
    """Return the target that publishes into the dataset root ``root``.

    The one place a root becomes a file system and a path in it: a local directory is a
    :class:`~pyarrow.fs.LocalFileSystem` and the root made absolute, so that the target names
    the same directory whatever the working directory is later. An object-store URL
    (``s3://bucket/prefix``) is a case to add here.
    """
    return PublicationTarget(_LOCAL, str(root.absolute()))
