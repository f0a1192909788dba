"""What an instance id may be: the one rule every file name and directory that carries it obeys.

An instance id names a recorder process among those writing into one root: it is part of the
write-ahead directory, the data file names, the gap log, the quarantine and the state files.
Settings, storage and the gap log all check it with :func:`validate_instance_id`, so a value the
settings accept can never be refused later by a writer.
"""

import re
import socket
from typing import Final

from recorder.errors import UnsafePathError

MAX_INSTANCE_ID_LENGTH: Final = 64
INSTANCE_ID_PATTERN: Final = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
"""An instance id as a regular expression (without the length bound), for file-name parsers."""
INSTANCE_ID_RULE: Final = (
    f"ASCII letters, digits, '_', '.' or '-', starting with a letter or digit, "
    f"at most {MAX_INSTANCE_ID_LENGTH} characters"
)
"""What :func:`validate_instance_id` accepts, in words, for error messages."""

_INSTANCE_ID: Final = re.compile(INSTANCE_ID_PATTERN)


def is_valid_instance_id(instance_id: str) -> bool:
    """Whether ``instance_id`` is safe as a directory name and a file-name part.

    >>> is_valid_instance_id("ip-10-0-0-1.eu-west-1"), is_valid_instance_id("-a")
    (True, False)
    """
    return len(instance_id) <= MAX_INSTANCE_ID_LENGTH and bool(_INSTANCE_ID.fullmatch(instance_id))


def validate_instance_id(instance_id: str) -> str:
    """Return ``instance_id`` if it is safe as a directory name and a file-name part.

    ASCII letters, digits, ``_``, ``.`` and ``-``, starting with a letter or digit, at most
    64 characters: a host name or a container id fits.

    Raises:
        UnsafePathError: anything else.

    >>> validate_instance_id("ip-10-0-0-1.eu-west-1")
    'ip-10-0-0-1.eu-west-1'
    """
    if not is_valid_instance_id(instance_id):
        raise UnsafePathError(
            f"instance id {instance_id!r} is not a safe name: expected {INSTANCE_ID_RULE}"
        )
    return instance_id


def default_instance_id() -> str:
    """Derive an instance id from the host name (a container id inside Docker).

    Characters that are not allowed in an instance id become ``-``; an empty result becomes
    ``"recorder"``. Two recorders on one host writing into one root must be given distinct ids.
    """
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname()).lstrip("_.-")
    return cleaned[:MAX_INSTANCE_ID_LENGTH] or "recorder"
