"""How settings are declared for the loader: keys, the parsers of generic kinds, the table.

A settings section is a frozen dataclass whose every field is declared with :func:`setting`:
its default, the parser every raw value goes through (whichever layer it comes from: TOML-typed,
or text from the environment or a flag) and how the value is rendered back. A
:class:`SettingsTable` names the sections and the cross-key rules; the loader needs nothing else.
"""

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from recorder.settings.invalid import InvalidValueError, closest_match
from recorder.settings.units import (
    DURATION_FORMS,
    SIZE_FORMS,
    duration_seconds,
    format_duration,
    format_size,
    size_bytes,
)

_SPEC: Final = "recorder.settings.spec"
_INTEGER: Final = re.compile(r"[+-]?\d(?:_?\d)*")

_T = TypeVar("_T")
_SettingsT = TypeVar("_SettingsT")


@dataclass(frozen=True, slots=True)
class KeySpec:
    """How one key's raw value becomes its setting, and how the setting is shown back.

    Attributes:
        parse: turns a raw value into the setting; raises :class:`InvalidValueError`.
        render: turns the setting into a plain value :attr:`parse` reads back.
    """

    parse: Callable[[object], object]
    render: Callable[[Any], object]


def _as_is(value: object) -> object:
    return value


def setting(
    default: _T,
    parse: Callable[[object], _T],
    render: Callable[[_T], object] = _as_is,
) -> _T:
    """Declare a settings field: its default, the parser of raw values and its rendering.

    Args:
        default: the value when no layer sets the key.
        parse: turns a raw value into the setting; raises :class:`InvalidValueError`.
        render: turns the setting into a plain value ``parse`` reads back; as is by default.

    Returns:
        The dataclass field (typed as its value, so that the class body type-checks).
    """
    spec = KeySpec(parse=parse, render=render)
    return dataclasses.field(default=default, metadata={_SPEC: spec})


def declared_keys(section_class: type[Any]) -> dict[str, KeySpec]:
    """Return the keys of a section, in declaration order, with how each is parsed.

    Args:
        section_class: a dataclass whose every field is declared with :func:`setting`.

    Returns:
        Key name to its spec.

    Raises:
        TypeError: a field is not declared with :func:`setting`.
    """
    specs: dict[str, KeySpec] = {}
    for key in dataclasses.fields(section_class):
        spec = key.metadata[_SPEC]
        if not isinstance(spec, KeySpec):  # pragma: no cover - a programming error
            raise TypeError(f"{section_class.__name__}.{key.name} is not declared with setting")
        specs[key.name] = spec
    return specs


def duration_key(*, minimum: float = 0.0, allow_zero: bool = False) -> Callable[[object], float]:
    """Return the parser of a duration key, in seconds.

    Args:
        minimum: the shortest duration accepted, in seconds.
        allow_zero: whether zero is accepted; by default a duration must be positive.

    Returns:
        A parser raising :class:`InvalidValueError` for what is not such a duration.

    >>> duration_key()("1m30s"), duration_key(allow_zero=True)("0s")
    (90.0, 0.0)
    """
    if allow_zero:
        requirement = "a non-negative duration"
    elif minimum:
        requirement = f"a duration of at least {format_duration(minimum)}"
    else:
        requirement = "a positive duration (greater than zero)"

    def parse(value: object) -> float:
        seconds = duration_seconds(value)
        if seconds < minimum or (seconds == 0 and not allow_zero):
            raise InvalidValueError(f"{requirement} {DURATION_FORMS}")
        return seconds

    return parse


def size_key(*, minimum: int = 1) -> Callable[[object], int]:
    """Return the parser of a size key, in bytes.

    Args:
        minimum: the smallest size accepted, in bytes.

    Returns:
        A parser raising :class:`InvalidValueError` for what is not such a size.

    >>> size_key()("64KiB")
    65536
    """

    def parse(value: object) -> int:
        size = size_bytes(value)
        if size < minimum:
            raise InvalidValueError(f"a size of at least {format_size(minimum)} {SIZE_FORMS}")
        return size

    return parse


def int_key(minimum: int, maximum: int | None = None) -> Callable[[object], int]:
    """Return the parser of an integer key: an int, or the text of one (``_`` between digits).

    Args:
        minimum: the smallest integer accepted.
        maximum: the largest integer accepted; unbounded when ``None``.

    Returns:
        A parser raising :class:`InvalidValueError` for what is not such an integer.

    >>> int_key(1, 1024)("200"), int_key(1)(10_000)
    (200, 10000)
    """
    if maximum is None:
        requirement = f"an integer of at least {minimum}"
    else:
        requirement = f"an integer from {minimum} to {maximum}"

    def parse(value: object) -> int:
        if isinstance(value, bool):
            raise InvalidValueError(requirement)
        if isinstance(value, int):
            number = value
        elif isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
            number = int(value.strip())
        else:
            raise InvalidValueError(requirement)
        if number < minimum or (maximum is not None and number > maximum):
            raise InvalidValueError(requirement)
        return number

    return parse


def choice_key(choices: tuple[str, ...]) -> Callable[[object], str]:
    """Return the parser of a key taking one of a few lower-case words, case-insensitively.

    Args:
        choices: the accepted words, lower-case.

    Returns:
        A parser giving the lower-case word, or raising :class:`InvalidValueError` that lists
        the choices and suggests the closest one.

    >>> choice_key(("json", "console"))("JSON")
    'json'
    """

    def parse(value: object) -> str:
        if isinstance(value, str) and value.strip().lower() in choices:
            return value.strip().lower()
        expected = "one of " + ", ".join(repr(choice) for choice in choices)
        close = closest_match(str(value).strip().lower(), choices)
        if close:
            expected += f"; did you mean {close!r}?"
        raise InvalidValueError(expected)

    return parse


@dataclass(frozen=True, slots=True)
class Conflict:
    """Settings that are each valid but do not fit together.

    Attributes:
        dotted_keys: the keys involved, as ``<section>.<key>``.
        rule: what was expected of them, starting with "expected".
    """

    dotted_keys: tuple[str, ...]
    rule: str


@dataclass(frozen=True, slots=True)
class SettingsTable(Generic[_SettingsT]):
    """Everything the loader knows about a settings class.

    Attributes:
        build: makes the settings from one section object per section name (keywords).
        sections: section name to its dataclass, in the order they are shown.
        example_key: a dotted key that error messages show as an example of the spelling.
        find_conflicts: yields what breaks a cross-key rule, most fundamental first.
    """

    build: Callable[..., _SettingsT]
    sections: Mapping[str, type[Any]]
    example_key: str
    find_conflicts: Callable[[_SettingsT], Iterable[Conflict]]
