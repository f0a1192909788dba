"""Where things live under the dataset root, and the guarantee that they stay there.

Layout (the analyst's contract, see SPEC "The dataset")::

    <root>/date=YYYY-MM-DD/symbol=<SYMBOL>/<data file>.parquet   sealed, immutable data
    <root>/date=YYYY-MM-DD/symbol=<SYMBOL>/.<data file>.tmp      being written, never read
    <root>/_wal/<instance_id>/instance.lock                      held while an instance runs
    <root>/_wal/<instance_id>/<session>-<seq>.wal                write-ahead log segments

Only sealed data files end in ``.parquet``: DuckDB's ``**/*.parquet`` glob also enters ``_``
and ``.`` directories, so nothing else may carry that suffix.

Names are built from a *session token*, ``<UTC start stamp>-<instance_id>-<random>``, minted
once per writer session: the stamp keeps names roughly time-ordered for humans, the instance id
keeps several recorders writing into one root apart, and the random part keeps restarts of one
instance apart even when the wall clock steps back. A data file is named after its session and
the log sequence number of its first row, so recovery can derive the very same name again.
"""

import datetime as dt
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from recorder.errors import StorageError, UnsafePathError
from recorder.hive import DATE_KEY, SYMBOL_KEY
from recorder.instance import INSTANCE_ID_PATTERN, validate_instance_id
from recorder.symbols import is_valid_symbol

DATA_SUFFIX = ".parquet"
TEMP_PREFIX = "."
TEMP_SUFFIX = ".tmp"
WAL_DIR_NAME = "_wal"
WAL_SUFFIX = ".wal"
LOCK_FILE_NAME = "instance.lock"

_STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_RANDOM_BYTES = 6
_LSN_DIGITS = 12
_SEGMENT_DIGITS = 6
# <stamp>-<instance id, may itself contain '-'>-<random hex>
_SESSION_TOKEN = re.compile(
    rf"(?P<stamp>\d{{8}}T\d{{6}}Z)-(?P<instance>{INSTANCE_ID_PATTERN})-(?P<random>[0-9a-f]+)"
)
_DATA_FILE = re.compile(rf"(?P<session>{_SESSION_TOKEN.pattern})-(?P<lsn>\d+)\.parquet")
_SEGMENT_FILE = re.compile(rf"(?P<session>{_SESSION_TOKEN.pattern})-(?P<seq>\d+)\.wal")


@dataclass(frozen=True, slots=True, order=True)
class PartitionKey:
    """One Hive partition of the dataset: a UTC day of ``E`` and a symbol.

    Attributes:
        date: the UTC calendar day of the events' ``E``.
        symbol: the contract, as received (validated before it becomes a directory).
    """

    date: dt.date
    symbol: str

    def __str__(self) -> str:
        return f"{DATE_KEY}={self.date.isoformat()}/{SYMBOL_KEY}={self.symbol}"


@dataclass(frozen=True, slots=True)
class DataFileName:
    """The parts of a data file name produced by :func:`data_file_name`.

    Attributes:
        session: the session token of the writer that sealed it.
        instance_id: the instance that sealed it.
        first_lsn: log sequence number of the write-ahead record holding its first row.
    """

    session: str
    instance_id: str
    first_lsn: int


@dataclass(frozen=True, slots=True)
class SegmentFileName:
    """The parts of a write-ahead segment file name produced by :func:`segment_file_name`.

    Attributes:
        session: the session token of the writer that created it.
        sequence: its position within the session, from 1.
    """

    session: str
    sequence: int


def partition_dir(root: Path, date: dt.date, symbol: str) -> Path:
    """Return ``<root>/date=YYYY-MM-DD/symbol=<symbol>``, proven to lie inside ``root``.

    The symbol came over the network: it is checked again here with
    :func:`recorder.symbols.is_valid_symbol`, and the resolved path (symbolic links followed)
    must stay inside the resolved root. Nothing is created.

    Raises:
        UnsafePathError: the symbol is not valid or the path would leave the root.
    """
    if not is_valid_symbol(symbol):
        raise UnsafePathError(f"symbol {symbol!r} is not safe as a partition value")
    path = root / str(PartitionKey(date, symbol))
    resolved_root = root.resolve()
    if not path.resolve().is_relative_to(resolved_root):
        raise UnsafePathError(f"partition {path} resolves outside the root {resolved_root}")
    return path


def new_session_token(instance_id: str, wall_us: int) -> str:
    """Mint a session token: ``<UTC stamp>-<instance_id>-<random hex>``.

    Args:
        instance_id: the writing instance; validated.
        wall_us: wall clock now, microseconds since the epoch (for the stamp only).
    """
    stamp = dt.datetime.fromtimestamp(wall_us / 1_000_000, tz=dt.UTC).strftime(_STAMP_FORMAT)
    return f"{stamp}-{validate_instance_id(instance_id)}-{secrets.token_hex(_RANDOM_BYTES)}"


def session_instance_id(session: str) -> str:
    """Return the instance id inside a session token.

    Raises:
        ValueError: ``session`` is not a session token.
    """
    match = _SESSION_TOKEN.fullmatch(session)
    if match is None:
        raise ValueError(f"{session!r} is not a session token")
    return match["instance"]


def data_file_name(session: str, first_lsn: int) -> str:
    """Return the name of the data file whose first row was logged at ``first_lsn``.

    Deterministic: recovery derives the same name from the write-ahead log, which is how a
    crash between publishing a file and logging that fact is told apart from a missing file.
    """
    return f"{session}-{first_lsn:0{_LSN_DIGITS}d}{DATA_SUFFIX}"


def parse_data_file_name(name: str) -> DataFileName | None:
    """Split a name made by :func:`data_file_name`; ``None`` for any other name."""
    match = _DATA_FILE.fullmatch(name)
    if match is None:
        return None
    return DataFileName(match["session"], match["instance"], int(match["lsn"]))


def temp_file_name(final_name: str) -> str:
    """Return the name a file is written under before it is renamed to ``final_name``.

    It starts with ``.`` (hidden from dataset discovery) and ends in ``.tmp`` (never matched
    by a ``*.parquet`` glob), and it is deterministic so that a retry overwrites the leftovers
    of an earlier attempt instead of accumulating them.
    """
    return f"{TEMP_PREFIX}{final_name}{TEMP_SUFFIX}"


def is_temp_file_name(name: str) -> bool:
    """Tell whether ``name`` is a temporary file name as made by :func:`temp_file_name`."""
    return len(name) > len(TEMP_PREFIX + TEMP_SUFFIX) and (
        name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)
    )


def temp_file_target(name: str) -> str | None:
    """Return the final name a temporary file was meant for; ``None`` if not a temp name.

    >>> temp_file_target(".x.parquet.tmp")
    'x.parquet'
    """
    if not is_temp_file_name(name):
        return None
    return name[len(TEMP_PREFIX) : -len(TEMP_SUFFIX)]


def wal_root(root: Path) -> Path:
    """Return ``<root>/_wal``, the parent of every instance's write-ahead directory."""
    return root / WAL_DIR_NAME


def instance_wal_dir(root: Path, instance_id: str) -> Path:
    """Return ``<root>/_wal/<instance_id>``.

    Raises:
        UnsafePathError: ``instance_id`` is not a safe name.
    """
    return wal_root(root) / validate_instance_id(instance_id)


def segment_file_name(session: str, sequence: int) -> str:
    """Return the name of the ``sequence``-th segment (from 1) of a session's write-ahead log.

    Names of one session sort in sequence order.
    """
    return f"{session}-{sequence:0{_SEGMENT_DIGITS}d}{WAL_SUFFIX}"


def parse_segment_file_name(name: str) -> SegmentFileName | None:
    """Split a name made by :func:`segment_file_name`; ``None`` for any other name."""
    match = _SEGMENT_FILE.fullmatch(name)
    if match is None:
        return None
    return SegmentFileName(match["session"], int(match["seq"]))


def require_root(root: Path) -> None:
    """Make sure ``root`` is a readable directory.

    Raises:
        StorageError: it does not exist, is not a directory, or cannot be listed.
    """
    try:
        if not root.is_dir():
            raise StorageError(f"the dataset root {root} does not exist or is not a directory")
        next(root.iterdir(), None)
    except OSError as exc:
        if isinstance(exc, StorageError):
            raise
        raise StorageError(f"cannot read the dataset root {root}: {exc}") from exc
