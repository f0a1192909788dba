"""What a dataset root holds for compaction: its days, and each day's partitions and data files.

Only what a reader of the dataset would read is listed: ``date=YYYY-MM-DD`` directories, the
``symbol=X`` directories in them whose symbol is safe
(:func:`recorder.storage.paths.partition_dir`), and the ``*.parquet`` files in those whose
names do not start with ``.`` or ``_``.
"""

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from recorder.errors import StorageError, UnsafePathError
from recorder.hive import SYMBOL_KEY, date_dir_name, day_of_date_dir
from recorder.storage.paths import DATA_SUFFIX, PartitionKey, partition_dir

SYMBOL_PREFIX = f"{SYMBOL_KEY}="
"""How the name of a partition directory (``symbol=X``) starts."""


@dataclass(frozen=True, slots=True)
class PartitionFiles:
    """A live partition directory and the data files it holds.

    Attributes:
        key: the partition.
        directory: ``<root>/date=D/symbol=X``.
        files: its data files, sorted by name; never empty.
    """

    key: PartitionKey
    directory: Path
    files: tuple[Path, ...]


@dataclass(frozen=True, slots=True)
class DayListing:
    """The partitions of one day that hold data files.

    Attributes:
        partitions: by symbol directory name.
        notes: ``symbol=`` directories of the day left alone, and why.
    """

    partitions: tuple[PartitionFiles, ...]
    notes: tuple[str, ...]


def list_days(root: Path) -> list[dt.date]:
    """Return the days that have a ``date=YYYY-MM-DD`` directory under ``root``, oldest first.

    Raises:
        StorageError: the root cannot be listed.
    """
    days = []
    try:
        for entry in root.iterdir():
            day = day_of_date_dir(entry.name)
            if day is not None and entry.is_dir():
                days.append(day)
    except OSError as exc:
        raise StorageError(f"cannot list the dataset root {root}: {exc}") from exc
    return sorted(days)


def day_dir(root: Path, day: dt.date) -> Path:
    """Return ``<root>/date=YYYY-MM-DD``.

    >>> day_dir(Path("root"), dt.date(2024, 5, 1)).as_posix()
    'root/date=2024-05-01'
    """
    return root / date_dir_name(day)


def list_day(root: Path, day: dt.date) -> DayListing:
    """List a day's partitions and their data files.

    Raises:
        OSError: a directory cannot be listed.
    """
    directory_of_day = day_dir(root, day)
    partitions: list[PartitionFiles] = []
    notes: list[str] = []
    if not directory_of_day.is_dir():
        return DayListing((), ())
    for entry in sorted(directory_of_day.iterdir()):
        if not entry.name.startswith(SYMBOL_PREFIX) or not entry.is_dir():
            continue
        if entry.is_symlink():
            # Swapping would replace the link, not the directory it points to.
            notes.append(f"{entry} left alone: a symbolic link")
            continue
        symbol = entry.name.removeprefix(SYMBOL_PREFIX)
        try:
            directory = partition_dir(root, day, symbol)
        except UnsafePathError as exc:
            notes.append(f"{entry} left alone: {exc}")
            continue
        files = tuple(sorted(path for path in directory.iterdir() if _is_data_file(path.name)))
        if files:
            partitions.append(PartitionFiles(PartitionKey(day, symbol), directory, files))
    return DayListing(tuple(partitions), tuple(notes))


def _is_data_file(name: str) -> bool:
    return name.endswith(DATA_SUFFIX) and not name.startswith((".", "_"))
