"""What a symbol may be, and the stream names built from it.

A symbol arrives over the network and becomes a directory name (``symbol=<SYMBOL>``), so the
rule here is the first line of defence for the storage root: word characters of any script
(``币安人生USDT``, ``BTCUSDT_260327``), NFC-normalised, starting with a letter or digit, at most
64 characters. Nothing else: no separators, dots, ``=``, ``%``, control or invisible characters.
"""

import functools
import re
import unicodedata

MAX_SYMBOL_LENGTH = 64
_SYMBOL = re.compile(r"[^\W_]\w*")
STREAM_SUFFIX = "@miniTicker"
ALL_MARKET_STREAM = "!miniTicker@arr"


def is_valid_symbol(symbol: str) -> bool:
    """Tell whether ``symbol`` is safe to use as a partition value.

    >>> is_valid_symbol("币安人生USDT"), is_valid_symbol("BTCUSDT_260327")
    (True, True)
    >>> is_valid_symbol("../../x"), is_valid_symbol(""), is_valid_symbol("_BTC")
    (False, False, False)
    """
    return (
        0 < len(symbol) <= MAX_SYMBOL_LENGTH
        and _SYMBOL.fullmatch(symbol) is not None
        and unicodedata.is_normalized("NFC", symbol)
    )


_KNOWN_VALID: set[str] = set()
_MAX_KNOWN_VALID = 8192


def all_known_valid(symbols: set[str]) -> bool:
    """Whether every one of ``symbols`` is valid: :func:`is_valid_symbol` for the new ones only.

    For the hot path, which sees the same few hundred symbols every second, and the rule (a
    regular expression and an NFC check) costs more than the rest of an event's checks: one set
    difference against the symbols found valid before, so a 600-item array costs what its few
    unknown symbols do. The memory is bounded: past 8,192 symbols it starts afresh.

    >>> all_known_valid({"BTCUSDT", "ETHUSDT"}), all_known_valid({"BTCUSDT", "../x"})
    (True, False)
    """
    unknown = symbols - _KNOWN_VALID
    if not unknown:
        return True
    if not all(map(is_valid_symbol, unknown)):
        return False
    if len(_KNOWN_VALID) + len(unknown) > _MAX_KNOWN_VALID:
        _KNOWN_VALID.clear()
    _KNOWN_VALID.update(unknown)
    return True


def is_known_valid_symbol(symbol: str) -> bool:
    """:func:`is_valid_symbol` of one symbol, remembered as :func:`all_known_valid` does.

    >>> is_known_valid_symbol("BTCUSDT"), is_known_valid_symbol("../x")
    (True, False)
    """
    return symbol in _KNOWN_VALID or all_known_valid({symbol})


def stream_name(symbol: str) -> str:
    """Return the Binance stream name of ``symbol``: lower-case symbol plus ``@miniTicker``.

    >>> stream_name("BTCUSDT")
    'btcusdt@miniTicker'
    """
    # Remembered only for what may be a symbol: a hostile name of a megabyte is not kept.
    if len(symbol) <= MAX_SYMBOL_LENGTH:
        return _stream_name(symbol)
    return symbol.lower() + STREAM_SUFFIX


@functools.lru_cache(maxsize=4096)
def _stream_name(symbol: str) -> str:
    return symbol.lower() + STREAM_SUFFIX
