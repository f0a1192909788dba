r"""The exact-decimal grammar: which price and volume strings fit ``decimal128(38, 18)`` exactly.

Decimal strings are kept as received: they become exact Arrow ``decimal128(38, 18)`` values
later, so a value that would need rounding is rejected by the decoder (``inexact_decimal``)
rather than stored wrong. Leading integer zeros and trailing fractional zeros do not count
against the 20 integer and 18 fractional digits, because dropping them changes nothing; but the
literal, from its first non-zero digit to its last digit, must stay within 38 digits, because
Arrow's string-to-decimal cast parses it as written and overflows beyond that. Every accepted
string therefore casts exactly with ``pyarrow.array(texts).cast(pyarrow.decimal128(38, 18))``.

Only ASCII ``digits[.digits]`` is a decimal here: no sign, exponent, separator or other
script's digits.
"""

import re
from typing import Final

from recorder.model import DECIMAL_INTEGER_DIGITS, DECIMAL_PRECISION, DECIMAL_SCALE

# Possessive quantifiers keep matching linear even for a megabyte of zeros. Leading integer
# zeros and trailing fractional zeros are free; what remains must fit the decimal type.
_EXACT_DECIMAL: Final = re.compile(
    rf"""
    (?: 0*+ [1-9] [0-9]{{0,{DECIMAL_INTEGER_DIGITS - 1}}}+  # up to 20 significant digits
      | 0++ )                                               # or a zero integer part
    (?: \. (?=[0-9])                                        # a fraction has a digit
        (?: [0-9]{{0,{DECIMAL_SCALE - 1}}} [1-9] )?         # up to 18 significant digits
        0*+ )?
    """,
    re.VERBOSE,
)
# [0-9], never \d: str patterns match every script's digits with \d, and "١٢٣" is no price.
_PLAIN_DECIMAL: Final = re.compile(r"[0-9]++(?:\.[0-9]++)?")


def is_exact_decimal(text: str) -> bool:
    """Tell whether ``text`` is ``digits[.digits]`` and fits ``decimal128(38, 18)`` exactly.

    Leading and trailing zeros are free, as long as the literal from its first non-zero
    digit to its end has at most :data:`~recorder.model.DECIMAL_PRECISION` digits (what
    Arrow's cast from string can parse).

    >>> is_exact_decimal("30180.00"), is_exact_decimal("0.1000000000000000000000")
    (True, True)
    >>> is_exact_decimal("0.1234567890123456789"), is_exact_decimal("1e5")
    (False, False)
    """
    if _EXACT_DECIMAL.fullmatch(text) is None:
        return False
    # A literal of at most 38 characters cannot exceed 38 written digits: skip the count.
    return len(text) <= DECIMAL_PRECISION or written_digits(text) <= DECIMAL_PRECISION


def is_plain_decimal(text: str) -> bool:
    """Tell whether ``text`` is ``digits[.digits]`` in ASCII digits, whatever its size.

    >>> is_plain_decimal("1" * 50), is_plain_decimal("1."), is_plain_decimal("\u0661")
    (True, False, False)
    """
    return _PLAIN_DECIMAL.fullmatch(text) is not None


def written_digits(text: str) -> int:
    """Count the digits of a decimal literal from its first non-zero digit to its end.

    >>> written_digits("000120.50")
    5
    """
    return len(text.replace(".", "", 1).lstrip("0"))
