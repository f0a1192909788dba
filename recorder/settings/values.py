"""The recorder's own kinds of value: websocket URL, symbols, dataset root, instance id, address.

Each parser takes the raw value of any settings layer and returns the typed setting, or raises
:class:`~recorder.settings.invalid.InvalidValueError` saying what was expected; the generic kinds
(durations, sizes, integers, choices) are in :mod:`recorder.settings.keys`.
"""

import unicodedata
from os import PathLike, fspath
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from recorder.instance import INSTANCE_ID_RULE, is_valid_instance_id
from recorder.settings.invalid import InvalidValueError, show_value
from recorder.symbols import MAX_SYMBOL_LENGTH, is_valid_symbol

_URL_EXPECTED: Final = (
    "a websocket base URL: ws:// or wss://, a host, an optional path, no query string "
    "(the recorder adds '?streams=...' itself), such as 'wss://fstream.binance.com/market'"
)


def parse_ws_url(value: object) -> str:
    """Parse a websocket base URL, without its trailing ``/``.

    Args:
        value: a raw value from any settings layer.

    Returns:
        The URL, stripped of surrounding space and of a trailing ``/``.

    Raises:
        InvalidValueError: not a ``ws://`` or ``wss://`` URL with a host and no query string.

    >>> parse_ws_url(" wss://fstream.binance.com/market/ ")
    'wss://fstream.binance.com/market'
    """
    if not isinstance(value, str):
        raise InvalidValueError(_URL_EXPECTED)
    url = value.strip()
    if any(character.isspace() or not character.isprintable() for character in url):
        raise InvalidValueError(_URL_EXPECTED)
    # urlsplit accepts nearly anything, so every rule is checked on its result.
    split = urlsplit(url)
    if split.scheme.lower() not in ("ws", "wss") or not split.hostname:
        raise InvalidValueError(_URL_EXPECTED)
    if "?" in url or "#" in url:
        raise InvalidValueError(_URL_EXPECTED)
    try:
        _ = split.port
    except ValueError:
        raise InvalidValueError(
            f"{_URL_EXPECTED}; the port is not a number from 0 to 65535"
        ) from None
    return url.rstrip("/")


_SYMBOLS_EXPECTED: Final = (
    "a non-empty list of symbols such as ['BTCUSDT', 'ETHUSDT'] (or the text 'BTCUSDT,ETHUSDT'); "
    f"a symbol is letters and digits of any script, '_' allowed after the first character, "
    f"at most {MAX_SYMBOL_LENGTH} characters"
)


def parse_symbols(value: object) -> tuple[str, ...]:
    """Parse the symbols to record: a list, or comma-separated text.

    Args:
        value: a raw value from any settings layer.

    Returns:
        The symbols upper-case and NFC-composed, each once, in the given order.

    Raises:
        InvalidValueError: the list is empty, or an item is not a valid symbol.

    >>> parse_symbols(" btcusdt , ETHUSDT,btcusdt")
    ('BTCUSDT', 'ETHUSDT')
    """
    items: list[object]
    if isinstance(value, str):
        items = list(value.split(","))
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise InvalidValueError(_SYMBOLS_EXPECTED)
    symbols: list[str] = []
    for position, item in enumerate(items, start=1):
        if not isinstance(item, str):
            raise InvalidValueError(
                f"{_SYMBOLS_EXPECTED}; item {position} {show_value(item)} is not text"
            )
        symbol = unicodedata.normalize("NFC", item.strip().upper())
        if not symbol:
            raise InvalidValueError(f"{_SYMBOLS_EXPECTED}; item {position} is empty")
        if not is_valid_symbol(symbol):
            raise InvalidValueError(
                f"{_SYMBOLS_EXPECTED}; item {position} {show_value(item)} is not a valid symbol"
            )
        if symbol not in symbols:
            symbols.append(symbol)
    if not symbols:
        raise InvalidValueError(_SYMBOLS_EXPECTED)
    if symbols == ["ALL"]:
        # "ALL" passes as a symbol and would silently record nothing; say what is going on.
        raise InvalidValueError(
            f"{_SYMBOLS_EXPECTED}; recording every symbol ('all') is not supported by this "
            "version, list the symbols instead"
        )
    return tuple(symbols)


_ROOT_EXPECTED: Final = "a local directory path such as 'data' or '/var/lib/recorder'"


def parse_root(value: object) -> Path:
    """Parse the dataset root: a local directory path.

    Args:
        value: a raw value from any settings layer (text or a path).

    Returns:
        The path.

    Raises:
        InvalidValueError: empty, holds a NUL, or is an object-store URL.

    >>> parse_root("/var/lib/recorder") == Path("/var/lib/recorder")
    True
    """
    if not isinstance(value, str | PathLike):
        raise InvalidValueError(_ROOT_EXPECTED)
    text = fspath(value)
    if not isinstance(text, str) or not text.strip() or "\x00" in text:
        raise InvalidValueError(_ROOT_EXPECTED)
    if "://" in text:
        # Path("s3://bucket/x") would quietly become the local directory "s3:/bucket/x".
        raise InvalidValueError(
            f"{_ROOT_EXPECTED}; object-store URLs are not supported by this version"
        )
    return Path(text)


_INSTANCE_ID_EXPECTED: Final = (
    f"{INSTANCE_ID_RULE}, such as 'eu-1' (omit the key to use one derived from the host name)"
)


def parse_instance_id(value: object) -> str | None:
    """Parse the instance id, or ``None`` for "derive one from the host name at start".

    Args:
        value: a raw value from any settings layer.

    Returns:
        The id without surrounding space, or ``None``.

    Raises:
        InvalidValueError: the id breaks the instance-id rule.

    >>> parse_instance_id(" eu-1 "), parse_instance_id(None)
    ('eu-1', None)
    """
    if value is None:
        return None
    if isinstance(value, str) and is_valid_instance_id(value.strip()):
        return value.strip()
    raise InvalidValueError(_INSTANCE_ID_EXPECTED)


def render_symbols(symbols: tuple[str, ...]) -> list[str]:
    """Render symbols as the list TOML writes.

    >>> render_symbols(("BTCUSDT", "ETHUSDT"))
    ['BTCUSDT', 'ETHUSDT']
    """
    return list(symbols)


def render_path(path: Path) -> str:
    """Render a path as its text.

    >>> render_path(Path("data"))
    'data'
    """
    return str(path)


def parse_address(value: object) -> str:
    """Check a ``host:port`` listening address (IPv6 as ``[::1]:9464``); empty disables.

    Args:
        value: a raw value from any settings layer.

    Returns:
        The address as given.

    Raises:
        InvalidValueError: not ``host:port`` with a port from 0 to 65535, nor empty.

    >>> parse_address("[::1]:9464"), parse_address("")
    ('[::1]:9464', '')
    """
    if not isinstance(value, str):
        raise InvalidValueError("expected a string like '127.0.0.1:9464'")
    if value == "":
        return value
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdecimal() or not 0 <= int(port) <= 65_535:
        raise InvalidValueError(
            "expected host:port like '127.0.0.1:9464' or '[::1]:9464' ('' disables metrics)"
        )
    return value
