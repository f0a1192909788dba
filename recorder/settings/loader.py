"""The generic loader: settings from defaults < TOML file < environment < command-line flags.

Every layer speaks the same keys, ``<section>.<key>``:

- the TOML file has one table per section (``[source]``, ``[storage]``, ...);
- the environment has ``RECORDER_<SECTION>__<KEY>`` (two underscores between section and key),
  for example ``RECORDER_STORAGE__ROOT=/data``; ``RECORDER_CONFIG`` names the TOML file;
- flags are given as dotted keys (``{"source.url": ...}``), ``None`` meaning "not given".

Every value, whatever layer it comes from, goes through the same per-key parser, so ``"200"`` from
the environment and ``200`` from TOML mean the same thing. Parsing is strict: an unknown section or
key, a value of the wrong type, or a value out of range is a :class:`~recorder.errors.ConfigError`
naming where it came from, the key, the value and what was expected. A typo never silently falls
back to a default.

The loader knows no key by name: it reads the sections, their keys and the cross-key rules from
:data:`~recorder.settings.sections.SETTINGS_TABLE`.
"""

import difflib
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from recorder.errors import ConfigError
from recorder.settings.invalid import (
    SUGGESTION_CUTOFF,
    InvalidValueError,
    closest_match,
    show_value,
)
from recorder.settings.keys import Conflict, KeySpec, declared_keys
from recorder.settings.sections import SETTINGS_TABLE, Settings

ENV_PREFIX: Final = "RECORDER_"
"""Prefix of every environment variable the recorder reads."""

CONFIG_ENV_VAR: Final = "RECORDER_CONFIG"
"""Environment variable naming the TOML file when no path is given explicitly."""

_ENV_SEPARATOR: Final = "__"

_KEYS: Final[dict[str, dict[str, KeySpec]]] = {
    name: declared_keys(section_class) for name, section_class in SETTINGS_TABLE.sections.items()
}
_DOTTED_KEYS: Final = tuple(f"{section}.{key}" for section, keys in _KEYS.items() for key in keys)
_EXAMPLE_KEY: Final = tuple(SETTINGS_TABLE.example_key.split("."))


def env_var_name(section: str, key: str) -> str:
    """Return the environment variable that sets ``<section>.<key>``.

    Args:
        section: a settings section, such as ``"storage"``.
        key: a key of that section, such as ``"root"``.

    Returns:
        The variable name.

    >>> env_var_name("storage", "root")
    'RECORDER_STORAGE__ROOT'
    """
    return f"{ENV_PREFIX}{section.upper()}{_ENV_SEPARATOR}{key.upper()}"


# --------------------------------------------------------------------------------------------
# Layers: each produces assignments; the last assignment of a key wins.


@dataclass(frozen=True, slots=True)
class _Assignment:
    """One raw value for one key, and where it was written (for error messages)."""

    section: str
    key: str
    value: object
    where: str


def _did_you_mean(word: str, candidates: Iterable[str], spell: Callable[[str], str]) -> str:
    """Return ``"; did you mean X? "`` for the candidate closest to ``word``, or ``""``."""
    close = closest_match(word, candidates)
    return _hint(spell(close) if close else None)


def _hint(suggestion: str | None) -> str:
    return f"; did you mean {suggestion}? " if suggestion else ". "


def _suggest_key(section: str, key: str) -> str | None:
    """Return the dotted key most likely meant by ``<section>.<key>``, if any is close.

    Keys of every section compete, because the key may be right and the section wrong
    (``[storage] url``); on equal similarity the given section wins.
    """
    scored = [
        (difflib.SequenceMatcher(None, key, candidate).ratio(), name == section, name, candidate)
        for name, keys in _KEYS.items()
        for candidate in keys
    ]
    score, _, name, candidate = max(scored)
    return f"{name}.{candidate}" if score >= SUGGESTION_CUTOFF else None


def _unknown_key_error(where: str, section: str, key: str, value: object) -> ConfigError:
    suggestion = _suggest_key(section, key)
    valid = ", ".join(_KEYS[section])
    return ConfigError(
        f"{where}: unknown key {section}.{key} = {show_value(value)}{_hint(suggestion)}"
        f"Valid keys of [{section}]: {valid}"
    )


def _unknown_section_error(where: str, section: str, value: object) -> ConfigError:
    valid = ", ".join(SETTINGS_TABLE.sections)
    if not isinstance(value, Mapping):
        # A key written above every table header, such as `url = ...` at the top of the file.
        suggestion = _suggest_key("", section)
        return ConfigError(
            f"{where}: unknown top-level key {section} = {show_value(value)}{_hint(suggestion)}"
            f"Settings belong in a section: {valid}"
        )
    hint = _did_you_mean(section, SETTINGS_TABLE.sections, lambda name: f"[{name}]")
    return ConfigError(f"{where}: unknown section [{section}]{hint}Valid sections: {valid}")


def _assignments_from_mapping(mapping: Mapping[str, Any], where: str) -> list[_Assignment]:
    assignments: list[_Assignment] = []
    for section, table in mapping.items():
        if section not in SETTINGS_TABLE.sections:
            raise _unknown_section_error(where, str(section), table)
        if not isinstance(table, Mapping):
            raise ConfigError(
                f"{where}: [{section}] = {show_value(table)} is not valid: expected a table of "
                f"settings with keys {', '.join(_KEYS[section])}"
            )
        for key, value in table.items():
            if key not in _KEYS[section]:
                raise _unknown_key_error(where, section, str(key), value)
            assignments.append(_Assignment(section, key, value, where))
    return assignments


def _assignments_from_environ(environ: Mapping[str, str]) -> list[_Assignment]:
    assignments: list[_Assignment] = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV_VAR:
            continue
        value = environ[name]
        where = f"environment variable {name}"
        section, separator, key = name.removeprefix(ENV_PREFIX).lower().partition(_ENV_SEPARATOR)
        if not separator or section not in _KEYS or key not in _KEYS[section]:
            known = [CONFIG_ENV_VAR] + [env_var_name(*dotted.split(".")) for dotted in _DOTTED_KEYS]
            # Compared without the shared prefix, which would make every name look close.
            hint = _did_you_mean(
                name.removeprefix(ENV_PREFIX),
                [known_name.removeprefix(ENV_PREFIX) for known_name in known],
                lambda suffix: ENV_PREFIX + suffix,
            )
            raise ConfigError(
                f"{where} = {show_value(value)}: not a recorder setting{hint}Settings are read "
                f"from {ENV_PREFIX}<SECTION>{_ENV_SEPARATOR}<KEY> (two underscores between section "
                f"and key, such as {env_var_name(*_EXAMPLE_KEY)}) and the config file from "
                f"{CONFIG_ENV_VAR}"
            )
        assignments.append(_Assignment(section, key, value, where))
    return assignments


def _assignments_from_flags(flags: Mapping[str, object]) -> list[_Assignment]:
    assignments: list[_Assignment] = []
    for dotted, value in flags.items():
        where = f"command-line flag for {dotted}"
        section, separator, key = dotted.partition(".")
        if not separator or section not in _KEYS or key not in _KEYS[section]:
            suggestion = _suggest_key(section, key) if separator else _suggest_key("", dotted)
            raise ConfigError(
                f"{where} = {show_value(value)}: {dotted!r} is not a setting{_hint(suggestion)}"
                f"Flags are given as <section>.<key>, such as {SETTINGS_TABLE.example_key!r}"
            )
        # None is how click reports an option that was not given.
        if value is not None:
            assignments.append(_Assignment(section, key, value, where))
    return assignments


def _read_toml(path: Path, where: str) -> Mapping[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except OSError as error:
        raise ConfigError(f"{where}: cannot be read: {error.strerror or error}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{where}: not UTF-8 text (byte {error.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        # The message ends in "(at line L, column C)", or in "(at end of document)", which
        # alone would not tell an operator where to look.
        detail = str(error).replace(
            "(at end of document)", f"(at end of document, after line {len(text.splitlines())})"
        )
        raise ConfigError(f"{where}: invalid TOML: {detail}") from None


# --------------------------------------------------------------------------------------------
# Resolution.


def _parse_assignment(assignment: _Assignment) -> object:
    spec = _KEYS[assignment.section][assignment.key]
    try:
        return spec.parse(assignment.value)
    except InvalidValueError as error:
        raise ConfigError(
            f"{assignment.where}: {assignment.section}.{assignment.key} = "
            f"{show_value(assignment.value)} is not valid: expected {error}"
        ) from None


def _conflict_error(
    settings: Settings, origins: Mapping[str, str], conflict: Conflict
) -> ConfigError:
    described = []
    for dotted in conflict.dotted_keys:
        section, key = dotted.split(".")
        value = getattr(getattr(settings, section), key)
        shown = show_value(_KEYS[section][key].render(value))
        described.append(f"{dotted} = {shown} (from {origins.get(dotted, 'the default')})")
    return ConfigError(f"{' and '.join(described)} do not fit together: {conflict.rule}")


def _resolve(assignments: Iterable[_Assignment]) -> Settings:
    values: dict[str, dict[str, Any]] = {section: {} for section in SETTINGS_TABLE.sections}
    origins: dict[str, str] = {}
    # Every value is parsed, even one a later layer overrides: a broken file is reported
    # rather than hidden behind today's environment.
    for assignment in assignments:
        values[assignment.section][assignment.key] = _parse_assignment(assignment)
        origins[f"{assignment.section}.{assignment.key}"] = assignment.where
    sections = {
        name: section_class(**values[name])
        for name, section_class in SETTINGS_TABLE.sections.items()
    }
    settings = SETTINGS_TABLE.build(**sections)
    # The first broken rule is reported; fixing it may well settle the others.
    conflict = next(iter(SETTINGS_TABLE.find_conflicts(settings)), None)
    if conflict is not None:
        raise _conflict_error(settings, origins, conflict)
    return settings


def parse_settings(mapping: Mapping[str, Any], *, origin: str = "settings") -> Settings:
    """Build settings from a nested mapping shaped like the TOML file.

    Args:
        mapping: ``{"source": {"url": ...}, "storage": {...}, ...}``; missing sections and keys
            keep their defaults.
        origin: where the mapping came from, used in error messages (a file name, say).

    Returns:
        The settings.

    Raises:
        ConfigError: a section or key is unknown, a value is invalid, or two values
            contradict each other.

    >>> parse_settings({"source": {"symbols": "btcusdt"}}).source.symbols
    ('BTCUSDT',)
    """
    return _resolve(_assignments_from_mapping(mapping, origin))


def load_settings(
    path: Path | None,
    environ: Mapping[str, str],
    flags: Mapping[str, object],
) -> Settings:
    """Build settings from defaults < TOML file < environment < flags.

    Args:
        path: the TOML file; when ``None``, the file named by ``RECORDER_CONFIG`` in
            ``environ`` if set, else no file.
        environ: the process environment; ``RECORDER_<SECTION>__<KEY>`` variables are settings.
        flags: dotted keys (``"storage.root"``) to values; a ``None`` value means "not given"
            (the key must still be a valid one).

    Returns:
        The effective settings.

    Raises:
        ConfigError: the file cannot be read or is not valid TOML, or any layer names an
            unknown section, key or variable, or gives an invalid value.
    """
    assignments: list[_Assignment] = []
    if path is None and CONFIG_ENV_VAR in environ:
        named = environ[CONFIG_ENV_VAR]
        if not named.strip():
            raise ConfigError(
                f"environment variable {CONFIG_ENV_VAR} is empty: expected the path of a TOML "
                "config file (unset it to use no file)"
            )
        path = Path(named)
        where = f"config file {path} (from {CONFIG_ENV_VAR})"
    else:
        where = f"config file {path}"
    if path is not None:
        assignments += _assignments_from_mapping(_read_toml(path, where), where)
    assignments += _assignments_from_environ(environ)
    assignments += _assignments_from_flags(flags)
    return _resolve(assignments)


def settings_to_mapping(settings: Settings) -> dict[str, dict[str, object]]:
    """Render settings as a nested mapping of plain values, for ``--print-config`` and logs.

    Durations become text such as ``"23h"``, sizes text such as ``"128MiB"``, paths strings and
    symbols a list; an unset ``instance_id`` stays ``None``. :func:`parse_settings` of the result
    gives back equal settings.

    Args:
        settings: the settings to render.

    Returns:
        ``{"source": {...}, "storage": {...}, ...}`` with every key.
    """
    rendered: dict[str, dict[str, object]] = {}
    for section, keys in _KEYS.items():
        values = getattr(settings, section)
        rendered[section] = {key: spec.render(getattr(values, key)) for key, spec in keys.items()}
    return rendered
