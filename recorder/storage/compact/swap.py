"""Swapping two directories in one atomic step: ``renameat2(RENAME_EXCHANGE)`` through ctypes.

Nothing else switches a partition from its old parts to the new file without a moment in which
a reader sees both or neither, so there is no fallback: where the platform (not Linux, or a C
library without ``renameat2``) or the file system cannot exchange, :func:`exchange_directories`
raises :class:`ExchangeUnsupportedError` and the caller leaves the partition as it is.
"""

import ctypes
import ctypes.util
import errno
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path

from recorder.errors import StorageError

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_EXCHANGE_UNSUPPORTED = frozenset({errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP})


class ExchangeUnsupportedError(StorageError):
    """The platform or file system cannot swap two directories atomically."""


@functools.cache
def _renameat2() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    # find_library returns None where the C library is linked statically; the process's own
    # symbols then include it.
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    function = getattr(libc, "renameat2", None)
    if function is None:
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    function.restype = ctypes.c_int
    exchange: Callable[..., int] = function
    return exchange


def exchange_directories(first: Path, second: Path) -> None:
    """Swap two directory entries on one file system in one atomic step.

    Raises:
        ExchangeUnsupportedError: the platform (not Linux, or a C library without
            ``renameat2``) or the file system cannot do it.
        OSError: the swap failed (a path does not exist, permission denied); nothing changed.
    """
    renameat2 = _renameat2()
    if renameat2 is None:
        raise ExchangeUnsupportedError(
            f"cannot swap {first} and {second} atomically: renameat2 is not available on "
            f"{sys.platform}; compaction needs Linux"
        )
    result = renameat2(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    if result != 0:
        code = ctypes.get_errno()
        if code in _EXCHANGE_UNSUPPORTED:
            raise ExchangeUnsupportedError(
                f"cannot swap {first} and {second} atomically: the file system does not "
                f"support RENAME_EXCHANGE ({os.strerror(code)})"
            )
        raise OSError(code, os.strerror(code), str(first), None, str(second))
