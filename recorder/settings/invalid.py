"""How a rejected setting is told: the error a value parser raises, the quoting, the best guess.

Every value parser of the package raises :class:`InvalidValueError` with what it expected; the
loader adds where the value came from and which key it was for, so the parsers stay free of
both.
"""

import difflib
from collections.abc import Iterable
from os import PathLike, fspath
from typing import Final

SUGGESTION_CUTOFF: Final = 0.6
"""difflib similarity from which a known name is offered as "did you mean ...?"."""

# A user's value is shown in full up to this many characters, then cut short.
_SHOWN_LENGTH: Final = 120


class InvalidValueError(Exception):
    """A value a key cannot take; the message says what was expected instead."""


def show_value(value: object) -> str:
    """Render a user's value for an error message: quoted, and cut short if huge.

    Args:
        value: the value as the user gave it.

    Returns:
        Its ``repr`` (of the path text for a path), at most 120 characters.

    >>> show_value("30x"), show_value(42)
    ("'30x'", '42')
    >>> len(show_value("x" * 10_000)), show_value("x" * 10_000)[-4:]
    (120, 'x...')
    """
    shown = repr(fspath(value)) if isinstance(value, PathLike) else repr(value)
    return shown if len(shown) <= _SHOWN_LENGTH else shown[: _SHOWN_LENGTH - 3] + "..."


def closest_match(word: str, candidates: Iterable[str]) -> str | None:
    """Return the candidate most likely meant by ``word``, if any is close enough.

    Args:
        word: what the user wrote.
        candidates: the names that would have been valid.

    Returns:
        The closest candidate, or ``None`` when none reaches :data:`SUGGESTION_CUTOFF`.

    >>> closest_match("warn", ("debug", "info", "warning", "error"))
    'warning'
    >>> closest_match("zzzz", ("debug", "info")) is None
    True
    """
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=SUGGESTION_CUTOFF)
    return close[0] if close else None
