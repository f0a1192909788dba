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

:func:`inexact_rows` judges a whole batch of events at once (see there for why not with Arrow):
the decoder's hot path calls it once per batch, and :func:`is_exact_decimal` only when a batch
holds a value it cannot vouch for.
"""

import re
from collections.abc import Sequence
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
# The fast pass of inexact_rows works on bytes, where translate and find are C loops over a
# table: the decimal points and line breaks of a batch alone, and its shape (every digit a 0,
# every point a line break), in which a plainly fitting value is a run of 1 to 18 zeros.
_DIGITS: Final = b"0123456789"
_SHAPES: Final = bytes.maketrans(_DIGITS + b".", b"0" * len(_DIGITS) + b"\n")
_PLAIN_RUN: Final = min(DECIMAL_INTEGER_DIGITS, DECIMAL_SCALE)
_TOO_LONG_RUN: Final = b"0" * (_PLAIN_RUN + 1)

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


def inexact_rows(columns: Sequence[Sequence[str]]) -> list[int]:
    """The rows of a batch in which some column's value is not an exact decimal.

    One pass over every value of every column, joined one per line, vouches for a batch whose
    values are all ASCII ``digits[.digits]`` with at most 18 digits on each side of the point:
    nearly every batch the exchange sends (:func:`_plainly_fitting`). Only a batch that pass
    cannot vouch for is judged value by value, with :func:`is_exact_decimal`, whose verdicts
    are the rule.

    Arrow does not judge this: its cast from string takes a sign, an exponent, ``"1."`` and
    ``".5"``, which the grammar refuses; and its regular-expression kernel cost over 1 µs a
    value here (``docs/performance.md``), some twenty times what this pass costs.

    >>> inexact_rows([["30180.00", "1e5", "2"], ["1", "2", "3.000000000000000000000"]])
    [1]

    Args:
        columns: the decimal columns of one batch, all of one length (the rows).
    """
    rows = len(columns[0]) if columns else 0
    if not rows:
        return []
    joined = "\n" + "\n".join(["\n".join(column) for column in columns]) + "\n"
    if _plainly_fitting(joined, rows * len(columns)):
        return []
    return [
        row for row in range(rows) if not all(is_exact_decimal(column[row]) for column in columns)
    ]


def _plainly_fitting(joined: str, values: int) -> bool:
    r"""Whether ``joined`` (``"\n"``, then ``values`` values each ended by ``"\n"``) fits plainly.

    Sufficient, not necessary: every value is ``digits[.digits]`` with at most 18 digits on
    each side, so it fits ``decimal128(38, 18)`` whatever the digits are. Zeros past those
    counts fail it yet may be exact: the caller then judges value by value.

    >>> _plainly_fitting("\n1.5\n20\n", 2), _plainly_fitting("\n1.\n20\n", 2)
    (True, False)
    """
    if not joined.isascii():
        return False
    raw = joined.encode("ascii")
    # Points and line breaks only; one break per value, so none inside a value; a point at
    # most per value, since two points of one value end up side by side.
    marks = raw.translate(None, _DIGITS)
    if marks.count(b"\n") != values + 1 or b".." in marks or marks.translate(None, b".\n"):
        return False
    # Each value a run of zeros, or two runs split by a point: two breaks side by side mean an
    # empty value or a point at a value's edge ("1.", ".5").
    shapes = raw.translate(_SHAPES)
    return b"\n\n" not in shapes and _TOO_LONG_RUN not in shapes
