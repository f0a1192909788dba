"""The recorder's own kinds of value: URLs, symbols, contract types, root, instance id, address.

Each parser takes the raw value of any settings layer and returns the typed setting, or raises
:class:`~recorder.settings.invalid.InvalidValueError` saying what was expected; the generic kinds
(durations, sizes, integers, choices) are in :mod:`recorder.settings.keys`.
"""

import enum
import unicodedata
from os import PathLike, fspath
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from recorder.instance import INSTANCE_ID_RULE, is_valid_instance_id
from recorder.settings.invalid import InvalidValueError, closest_match, show_value
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
    return _base_url(value, ("ws", "wss"), _URL_EXPECTED, path_allowed=True)


class AllSymbols(enum.Enum):
    """``symbols = "all"``: every contract ``exchangeInfo`` lists as trading, followed live."""

    ALL = "all"


ALL_SYMBOLS: Final = AllSymbols.ALL
"""The value of ``source.symbols`` that records the whole market."""

SymbolSelection = tuple[str, ...] | AllSymbols
"""What ``source.symbols`` holds: the listed symbols, or :data:`ALL_SYMBOLS`."""

_SYMBOLS_EXPECTED: Final = (
    "'all', or a non-empty list of symbols such as ['BTCUSDT', 'ETHUSDT'] (or the text "
    "'BTCUSDT,ETHUSDT'); a symbol is letters and digits of any script, '_' allowed after the "
    f"first character, at most {MAX_SYMBOL_LENGTH} characters"
)


def parse_symbols(value: object) -> SymbolSelection:
    """Parse the symbols to record: ``"all"``, a list, or comma-separated text.

    Args:
        value: a raw value from any settings layer.

    Returns:
        :data:`ALL_SYMBOLS` for ``"all"`` (any case, alone or as a one-item list), else the
        symbols upper-case and NFC-composed, each once, in the given order.

    Raises:
        InvalidValueError: the list is empty, an item is not a valid symbol, or ``"all"`` is
            mixed with symbols.

    >>> parse_symbols(" btcusdt , ETHUSDT,btcusdt")
    ('BTCUSDT', 'ETHUSDT')
    >>> parse_symbols("ALL") is ALL_SYMBOLS
    True
    """
    if isinstance(value, AllSymbols):
        return value
    items = _list_items(value, _SYMBOLS_EXPECTED)
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
        return ALL_SYMBOLS
    if "ALL" in symbols:
        # "ALL" passes as a symbol; beside others it is a mistake, not a contract.
        raise InvalidValueError(f"{_SYMBOLS_EXPECTED}; 'all' stands alone, not among symbols")
    return tuple(symbols)


def _list_items(value: object, expected: str) -> list[object]:
    """The items of a list, or of comma-separated text (from the environment or a flag)."""
    if isinstance(value, str):
        return list(value.split(","))
    if isinstance(value, list | tuple):
        return list(value)
    raise InvalidValueError(expected)


def render_symbols(symbols: SymbolSelection) -> list[str] | str:
    """Render symbols as TOML writes them: ``"all"`` or the list.

    >>> render_symbols(("BTCUSDT", "ETHUSDT")), render_symbols(ALL_SYMBOLS)
    (['BTCUSDT', 'ETHUSDT'], 'all')
    """
    if isinstance(symbols, AllSymbols):
        return symbols.value
    return list(symbols)


CONTRACT_TYPES: Final = (
    "PERPETUAL",
    "CURRENT_MONTH",
    "NEXT_MONTH",
    "CURRENT_QUARTER",
    "NEXT_QUARTER",
    "PERPETUAL_DELIVERING",
    "TRADIFI_PERPETUAL",
)
"""The ``contractType`` values Binance's USDⓈ-M ``exchangeInfo`` uses."""

_CONTRACT_TYPES_EXPECTED: Final = (
    "a non-empty list of Binance contract types such as ['PERPETUAL'] (or the text "
    "'PERPETUAL,CURRENT_QUARTER'), each one of " + ", ".join(CONTRACT_TYPES)
)


def parse_contract_types(value: object) -> tuple[str, ...]:
    """Parse the contract types recorded with ``symbols = "all"``.

    Args:
        value: a raw value from any settings layer.

    Returns:
        The types upper-case, each once, in the given order.

    Raises:
        InvalidValueError: the list is empty or an item is not a Binance contract type
            (with a "did you mean" for a typo).

    >>> parse_contract_types("perpetual, CURRENT_QUARTER")
    ('PERPETUAL', 'CURRENT_QUARTER')
    """
    items = _list_items(value, _CONTRACT_TYPES_EXPECTED)
    types: list[str] = []
    for position, item in enumerate(items, start=1):
        name = item.strip().upper() if isinstance(item, str) else None
        if name not in CONTRACT_TYPES:
            hint = f"; item {position} {show_value(item)} is not one"
            close = closest_match(name or "", CONTRACT_TYPES)
            if close:
                hint += f"; did you mean {close!r}?"
            raise InvalidValueError(_CONTRACT_TYPES_EXPECTED + hint)
        if name not in types:
            types.append(name)
    if not types:
        raise InvalidValueError(_CONTRACT_TYPES_EXPECTED)
    return tuple(types)


def render_contract_types(types: tuple[str, ...]) -> list[str]:
    """Render contract types as the list TOML writes.

    >>> render_contract_types(("PERPETUAL",))
    ['PERPETUAL']
    """
    return list(types)


_REST_URL_EXPECTED: Final = (
    "an HTTP base URL: http:// or https://, a host, no path beyond '/', no query string, "
    "such as 'https://fapi.binance.com'"
)


def parse_rest_url(value: object) -> str:
    """Parse the REST base URL (``/fapi/v1/...`` is added), without its trailing ``/``.

    Args:
        value: a raw value from any settings layer.

    Returns:
        The URL, stripped of surrounding space and of a trailing ``/``.

    Raises:
        InvalidValueError: not an ``http://`` or ``https://`` URL with a host, or it has a
            path, a query string or a bad port.

    >>> parse_rest_url(" https://fapi.binance.com/ ")
    'https://fapi.binance.com'
    """
    return _base_url(value, ("http", "https"), _REST_URL_EXPECTED, path_allowed=False)


def _base_url(value: object, schemes: tuple[str, ...], expected: str, *, path_allowed: bool) -> str:
    """Check a base URL of one of ``schemes``; the URL without its trailing ``/``."""
    if not isinstance(value, str):
        raise InvalidValueError(expected)
    url = value.strip()
    if any(character.isspace() or not character.isprintable() for character in url):
        raise InvalidValueError(expected)
    # urlsplit accepts nearly anything, so every rule is checked on its result.
    split = urlsplit(url)
    if split.scheme.lower() not in schemes or not split.hostname:
        raise InvalidValueError(expected)
    if "?" in url or "#" in url or (not path_allowed and split.path.strip("/")):
        raise InvalidValueError(expected)
    try:
        _ = split.port
    except ValueError:
        raise InvalidValueError(f"{expected}; the port is not a number from 0 to 65535") from None
    return url.rstrip("/")


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
