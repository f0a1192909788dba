"""The exact-decimal check against pyarrow's decimal128(38, 18) cast and an exact oracle."""

import random
from decimal import Decimal, localcontext

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorder.ingest.decimals import inexact_rows, is_exact_decimal
from recorder.model import DECIMAL_PRECISION, DECIMAL_SCALE


@pytest.mark.parametrize(
    ("text", "exact"),
    [
        ("0" * 100_000 + "x", False),
        ("0" * 100_000 + ".1", True),
        ("0." + "0" * 100_000, True),
        ("1." + "0" * 100_000, False),
        ("9" * 100_000, False),
    ],
)
def test_long_decimal_strings_are_judged_in_linear_time(text: str, exact: bool) -> None:
    assert is_exact_decimal(text) is exact
    if exact:
        cast = pa.array([text]).cast(pa.decimal128(DECIMAL_PRECISION, DECIMAL_SCALE))
        assert cast[0].as_py() == Decimal(text)


def fits_decimal128(text: str) -> bool:
    """The oracle: value * 10**18 is an integer below 10**38."""
    with localcontext() as context:
        context.prec = 1000
        units = Decimal(text).scaleb(DECIMAL_SCALE)
        return units == units.to_integral_value() and units < 10**DECIMAL_PRECISION


def seeded(seed: int) -> random.Random:
    return random.Random(seed)


def random_decimal(rng: random.Random) -> str:
    """A well-formed literal around the limits: 0-22 integer digits, 0-20 decimals, padding."""

    def digits(count: int) -> str:
        return "".join(rng.choice("0123456789") for _ in range(count))

    whole = "0" * rng.choice([0, 0, 1, 3]) + digits(rng.randint(0, 22))
    fraction = digits(rng.randint(0, 20)) + "0" * rng.choice([0, 0, 1, 5, 25])
    whole = whole or "0"
    return f"{whole}.{fraction}" if fraction else whole


def test_random_accepted_decimals_cast_exactly_with_pyarrow() -> None:
    rng = seeded(20260423)
    texts = [random_decimal(rng) for _ in range(5000)]
    accepted = [text for text in texts if is_exact_decimal(text)]
    rejected = [text for text in texts if not is_exact_decimal(text)]
    assert len(accepted) > 1000
    assert len(rejected) > 1000
    cast = pa.array(accepted).cast(pa.decimal128(DECIMAL_PRECISION, DECIMAL_SCALE))
    assert [value.as_py() for value in cast] == [Decimal(text) for text in accepted]
    for text in accepted:
        assert fits_decimal128(text), text
    for text in rejected:
        # Rejected only because the literal is longer than the cast can parse, never else.
        assert not fits_decimal128(text) or len(text) > DECIMAL_PRECISION, text


def test_random_values_that_do_not_fit_are_ones_pyarrow_cannot_store() -> None:
    rng = seeded(7)
    texts = (random_decimal(rng) for _ in range(3000))
    unfit = [text for text in texts if not fits_decimal128(text)]
    assert len(unfit) > 300
    decimal128 = pa.decimal128(DECIMAL_PRECISION, DECIMAL_SCALE)
    for text in unfit:
        assert not is_exact_decimal(text)
        try:
            stored = pa.array([text]).cast(decimal128)[0].as_py()
        except pa.ArrowInvalid:
            continue
        # Some overflows are not caught by the cast: it wraps around silently. Either way the
        # value cannot be stored, which is why the decoder must catch it first.
        assert stored != Decimal(text), text


def test_random_values_that_fit_are_accepted_when_written_compactly() -> None:
    rng = seeded(11)
    texts = [random_decimal(rng) for _ in range(3000)]
    compact = [t for t in texts if fits_decimal128(t) and len(t) <= DECIMAL_PRECISION]
    assert len(compact) > 300
    assert all(map(is_exact_decimal, compact))


# --- a batch at once --------------------------------------------------------------------------

decimal_like = st.one_of(
    st.from_regex(r"[0-9]{1,24}(\.[0-9]{1,22})?", fullmatch=True),
    st.from_regex(r"0{0,30}[0-9]{1,3}(\.[0-9]{1,3}0{0,30})?", fullmatch=True),
    st.from_regex(r"[-+ ]?[0-9.eE\n]{0,8}", fullmatch=True),
    st.text(max_size=6),
)


@given(
    st.integers(1, 6).flatmap(
        lambda width: st.lists(st.lists(decimal_like, min_size=width, max_size=width), max_size=12)
    )
)
def test_a_batch_is_judged_as_each_value_alone_would_be(rows: list[list[str]]) -> None:
    columns = [list(column) for column in zip(*rows, strict=True)] if rows else []
    expected = [index for index, row in enumerate(rows) if not all(map(is_exact_decimal, row))]
    assert inexact_rows(columns) == expected


def test_a_line_break_inside_a_value_is_not_two_values() -> None:
    assert inexact_rows([["1\n2", "3"]]) == [0]
    assert inexact_rows([["1", "2"], ["3\n", "4"]]) == [0]


def test_exact_values_past_the_plain_counts_are_found_value_by_value() -> None:
    padded = "0" * 25 + "1." + "5" + "0" * 25
    assert inexact_rows([[padded, "1.5"], ["2", "0.1234567890123456789"]]) == [1]


@pytest.mark.parametrize(
    "planted",
    [
        "1.",
        ".5",
        "",
        ".",
        "1..2",
        "1.2.3",
        "1\n2",
        "\n",
        "-1",
        "+1",
        "1e5",
        " 1",
        "1 ",
        "\u0661",
        "1,5",
        "1" * 19,
        "1" * 20,
        "1" * 21,
        "0." + "1" * 18,
        "0." + "1" * 19,
        "1" * 18 + "." + "1" * 18,
        "0" * 19 + "1",
        "1." + "0" * 19,
    ],
)
@pytest.mark.parametrize("row", [0, 3, 7])
def test_one_value_among_plain_ones_gets_the_verdict_it_has_alone(planted: str, row: int) -> None:
    # A batch the exchange could send, with one value planted in it: the fast pass over the
    # whole batch must not vouch for what the value alone fails, nor refuse what it passes.
    columns = [["30180.00", "0.0721000", "6878775288"] * 3 for _ in range(6)]
    columns[4] = [*columns[4][:row], planted, *columns[4][row + 1 :]]
    assert inexact_rows(columns) == ([] if is_exact_decimal(planted) else [row])
