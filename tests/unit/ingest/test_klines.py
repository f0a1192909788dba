"""The klines answer read as hostile input: exact candles or one clear refusal, never a crash."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorder.errors import KlinesError
from recorder.ingest.klines import MAX_KLINES, MAX_KLINES_BYTES, parse_klines

T0 = 1_714_557_600_000


def row(open_time: int = T0, **changes: object) -> list[object]:
    values: list[object] = [
        open_time, "63850.10", "63872.00", "63811.30", "63840.00", "412.337",
        open_time + 59_999, "26324115.61560", 7012, "201.501", "12864338.52200", "0",
    ]  # fmt: skip
    for index, value in changes.items():
        values[int(index.removeprefix("f"))] = value
    return values


def body(*rows: list[object]) -> bytes:
    return json.dumps(list(rows)).encode()


def test_a_real_answer_is_read_exactly() -> None:
    [first, second] = parse_klines(body(row(), row(T0 + 60_000)))
    assert (first.open_time, first.open, first.high, first.low, first.close) == (
        T0,
        "63850.10",
        "63872.00",
        "63811.30",
        "63840.00",
    )
    assert (first.volume, first.quote_volume) == ("412.337", "26324115.61560")
    assert second.open_time == T0 + 60_000
    assert parse_klines(b"[]") == []


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (b'[[1714557600000, "1', "malformed"),
        (b"{", "shape"),
        (b'{"code": -1121, "msg": "Invalid symbol."}', "shape"),
        (b"[1, 2]", "shape"),
        (body(row()[:5]), "shape"),
        (body(row(f0="1714557600000")), "shape"),
        (body(row(f0=True)), "shape"),
        (body(row(f6=T0 + 60_000)), "shape"),
        (body(row(T0 + 1)), "shape"),
        (body(row(f4=63840.0)), "inexact"),
        (body(row(f4="6.384e4")), "inexact"),
        (body(row(f5="-1")), "inexact"),
        (body(row(f7="1." + "1" * 19)), "inexact"),
        (body(row(), row()), "unordered"),
        (body(row(T0 + 60_000), row()), "unordered"),
        (b"[" * 5_000, "malformed"),
        (b" " * (MAX_KLINES_BYTES + 1), "too_large"),
        (body(*[row(T0 + i * 60_000) for i in range(MAX_KLINES + 1)]), "too_large"),
    ],
)
def test_an_unusable_answer_is_refused_with_its_reason(answer: bytes, reason: str) -> None:
    with pytest.raises(KlinesError) as refused:
        parse_klines(answer)
    assert refused.value.reason == reason


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=13) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=40,
)


@given(st.binary(max_size=300) | json_values.map(lambda value: json.dumps(value).encode()))
def test_any_bytes_give_candles_or_a_klines_error(data: bytes) -> None:
    try:
        candles = parse_klines(data)
    except KlinesError:
        return
    times = [candle.open_time for candle in candles]
    assert times == sorted(set(times))
