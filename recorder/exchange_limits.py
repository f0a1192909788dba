"""Binance's published USDⓈ-M REST limits, shared by the client side and the simulated exchange."""

from typing import Final

REST_WEIGHT_LIMIT: Final = 2_400
"""Request weight per minute and IP (``X-MBX-USED-WEIGHT-1M`` counts it)."""
KLINES_MAX_LIMIT: Final = 1_500
"""The most candles one ``klines`` request returns."""
KLINES_DEFAULT_LIMIT: Final = 500
"""Candles a ``klines`` request without ``limit`` returns."""


def klines_weight(limit: int) -> int:
    """Binance's weight of one ``klines`` request by its ``limit``.

    >>> [klines_weight(n) for n in (1, 99, 100, 499, 500, 1000, 1001, 1500)]
    [1, 1, 2, 2, 5, 5, 10, 10]
    """
    if limit < 100:
        return 1
    if limit < 500:
        return 2
    if limit <= 1000:
        return 5
    return 10
