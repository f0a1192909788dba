"""Hive-style directory names (``key=value``), for dataset partitions and gap-log days alike.

pyarrow, DuckDB, polars and Spark read ``date=YYYY-MM-DD`` and ``symbol=<SYMBOL>`` as columns;
the recorder writes and lists those directories, and every reader of a root parses them here.
"""

import datetime as dt
import re
from typing import Final

DATE_KEY: Final = "date"
"""The partition key of the UTC day of ``E`` (and of a gap's ``to_ms`` in the gap log)."""
SYMBOL_KEY: Final = "symbol"
"""The partition key of the contract."""

_KEY_VALUE: Final = re.compile(r"(?P<key>[^=]+)=(?P<value>.*)", re.DOTALL)
_ISO_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")


def dir_name(key: str, value: str) -> str:
    """Return the directory name of partition ``key`` = ``value``.

    >>> dir_name(SYMBOL_KEY, "BTCUSDT")
    'symbol=BTCUSDT'
    """
    return f"{key}={value}"


def date_dir_name(day: dt.date) -> str:
    """Return the directory name of ``day``.

    >>> date_dir_name(dt.date(2024, 5, 1))
    'date=2024-05-01'
    """
    return dir_name(DATE_KEY, day.isoformat())


def dir_value(name: str, key: str) -> str | None:
    """Return the value of a ``key=value`` directory name, ``None`` if it is another key.

    >>> dir_value("symbol=BTCUSDT", SYMBOL_KEY), dir_value("date=2024-05-01", SYMBOL_KEY)
    ('BTCUSDT', None)
    """
    match = _KEY_VALUE.fullmatch(name)
    if match is None or match["key"] != key:
        return None
    return match["value"]


def day_of_date_dir(name: str) -> dt.date | None:
    """Return the day a ``date=YYYY-MM-DD`` directory name stands for, or ``None``.

    >>> day_of_date_dir("date=2024-05-01"), day_of_date_dir("date=2024-02-30")
    (datetime.date(2024, 5, 1), None)
    >>> day_of_date_dir("date=20240501"), day_of_date_dir("tmp")
    (None, None)
    """
    value = dir_value(name, DATE_KEY)
    if value is None or not _ISO_DATE.fullmatch(value):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None
