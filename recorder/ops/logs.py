"""Logging: JSON lines off a terminal, a readable console on one, one format for every line.

The recorder logs through structlog. The standard library's :mod:`logging` (aiohttp, asyncio)
is routed through the same processors and renderer into the same stream, at warning level and
above, so that journald or ``docker logs`` receive one JSON object per line whoever wrote it.

A JSON line carries ``timestamp`` (ISO 8601, UTC), ``level``, ``logger``, ``event`` and then the
event's own fields; an exception becomes a structured ``exception`` list (type, value, frames)
rather than a multi-line text that would break the one-object-per-line contract.
"""

import datetime
import decimal
import logging
import os
import sys
from typing import Final, TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from recorder.errors import ConfigError
from recorder.settings.sections import LOG_FORMATS, LOG_LEVELS

__all__ = ["configure_logging", "get_logger", "renders_console"]

_LEVEL_NUMBERS: Final = {name: logging.getLevelNamesMapping()[name.upper()] for name in LOG_LEVELS}

# Libraries are chatty below warning (aiohttp's access log, asyncio's debug notes); the
# recorder's own info lines are what operators read.
_LIBRARY_MIN_LEVEL: Final = logging.WARNING
_LEADING_KEYS: Final = ("timestamp", "level", "logger", "event")


class _SharedFormatHandler(logging.StreamHandler[TextIO]):
    """The root handler this module installs; a distinct type so reconfiguring replaces it."""


class _NamedWriteLogger(structlog.WriteLogger):
    """A structlog output that remembers the name it was requested under.

    Args:
        stream: where rendered lines are written.
        name: the name given to :func:`get_logger`, if any.
    """

    def __init__(self, stream: TextIO, name: str | None) -> None:
        super().__init__(stream)
        self.name = name


class _NamedWriteLoggerFactory:
    """Produce :class:`_NamedWriteLogger` for ``structlog.get_logger(name)``."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def __call__(self, *args: object) -> _NamedWriteLogger:
        name = args[0] if args and isinstance(args[0], str) else None
        return _NamedWriteLogger(self._stream, name)


def _add_logger_name(logger: WrappedLogger, _: str, event_dict: EventDict) -> EventDict:
    """Add ``logger``: the recorder component's name, or the standard-library logger's."""
    record = event_dict.get("_record")
    name = record.name if isinstance(record, logging.LogRecord) else getattr(logger, "name", None)
    if name is not None:
        event_dict.setdefault("logger", name)
    return event_dict


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except ValueError:  # a closed stream is certainly not a terminal
        return False


def _leading_keys_first(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Put timestamp, level, logger and event first, so that lines scan well in a pager."""
    ordered = {key: event_dict.pop(key) for key in _LEADING_KEYS if key in event_dict}
    ordered.update(event_dict)
    return ordered


def _json_default(value: object) -> object:
    """Render values :mod:`json` does not know as their most readable plain form."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    return repr(value)


def configure_logging(
    level: str,
    format: str,  # noqa: A002 - the name of the setting it receives (log.format)
    stream: TextIO | None = None,
) -> None:
    """Configure structlog and the standard library's logging for the whole process.

    May be called again to reconfigure; the previous configuration is replaced.

    Args:
        level: ``debug``, ``info``, ``warning`` or ``error``; the least severe event written.
            Standard-library loggers write from ``warning`` up whatever this is.
        format: ``json``, ``console``, or ``auto`` for JSON unless ``stream`` is a terminal.
        stream: where lines go; standard error when ``None``.

    Raises:
        ConfigError: ``level`` or ``format`` is not one of the accepted names.
    """
    level_number = _LEVEL_NUMBERS.get(level.lower())
    if level_number is None:
        raise ConfigError(f"log level {level!r} is not valid: expected one of {LOG_LEVELS}")
    if format.lower() not in LOG_FORMATS:
        raise ConfigError(f"log format {format!r} is not valid: expected one of {LOG_FORMATS}")
    target = sys.stderr if stream is None else stream
    on_terminal = _is_terminal(target)
    as_json = not renders_console(format, target)

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        _add_logger_name,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    rendering: list[Processor]
    if as_json:
        rendering = [
            # Locals are left out: they can hold secrets and make a line megabytes long.
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            _leading_keys_first,
            structlog.processors.JSONRenderer(default=_json_default),
        ]
    else:
        rendering = [structlog.dev.ConsoleRenderer(colors=on_terminal)]

    structlog.configure(
        processors=[*shared, *rendering],
        wrapper_class=structlog.make_filtering_bound_logger(level_number),
        logger_factory=_NamedWriteLoggerFactory(target),
        # Not cached, so that loggers created at import time follow a later reconfiguration.
        cache_logger_on_first_use=False,
    )

    handler = _SharedFormatHandler(target)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendering],
        )
    )
    root = logging.getLogger()
    for previous in [h for h in root.handlers if isinstance(h, _SharedFormatHandler)]:
        root.removeHandler(previous)
    root.addHandler(handler)
    root.setLevel(max(level_number, _LIBRARY_MIN_LEVEL))


def renders_console(
    format: str,  # noqa: A002 - the name of the setting it receives (log.format)
    stream: TextIO | None = None,
) -> bool:
    """Whether :func:`configure_logging` with ``format`` renders lines for a person to read.

    Args:
        format: ``json``, ``console`` or ``auto`` (console when ``stream`` is a terminal).
        stream: the log stream; standard error when ``None``.
    """
    chosen = format.lower()
    if chosen == "auto":
        return _is_terminal(sys.stderr if stream is None else stream)
    return chosen == "console"


def get_logger(name: str) -> FilteringBoundLogger:
    """Return a structlog logger whose lines carry ``logger=name``.

    Safe to call at import time: the logger follows whatever :func:`configure_logging` set up
    when it logs, not when it was created.

    Args:
        name: the component's name, conventionally the module's ``__name__``.

    Returns:
        A bound logger; ``bind()`` adds fields to every line it writes.
    """
    logger: FilteringBoundLogger = structlog.get_logger(name)
    return logger
