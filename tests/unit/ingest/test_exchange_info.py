"""The exchangeInfo parser: the contracts of any answer, hostile ones included."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.errors import ExchangeInfoError
from recorder.ingest.exchange_info import (
    MAX_CONTRACTS,
    MAX_EXCHANGE_INFO_BYTES,
    Contract,
    parse_exchange_info,
)
from recorder.simulate.config import SimulatorConfig
from recorder.simulate.exchange_info import exchange_info
from recorder.simulate.listings import ContractBook, ContractStatus
from recorder.simulate.market import MarketGenerator
from recorder.symbols import is_valid_symbol, stream_name


def entry(
    symbol: object, status: object = "TRADING", contract_type: object = "PERPETUAL"
) -> dict[str, object]:
    return {"symbol": symbol, "status": status, "contractType": contract_type, "pair": "X"}


def body(*entries: object, **extra: object) -> bytes:
    return json.dumps({"timezone": "UTC", **extra, "symbols": list(entries)}).encode()


def test_the_simulators_full_answer_parses() -> None:
    config = SimulatorConfig(symbols=("BTCUSDT", "币安人生USDT", "BTCUSDT_260327"))
    book = ContractBook(MarketGenerator(config, 0), 0)
    book.set_status("OLDUSDT", ContractStatus.SETTLING, 0)
    answer = json.dumps(exchange_info(book.contracts(), 0, 2400), ensure_ascii=False).encode()
    info = parse_exchange_info(answer)
    assert info.skipped == 0
    assert info.trading(("PERPETUAL",)) == ("BTCUSDT", "币安人生USDT")
    assert info.trading(("PERPETUAL", "CURRENT_QUARTER")) == (
        "BTCUSDT",
        "币安人生USDT",
        "BTCUSDT_260327",
    )
    assert Contract("OLDUSDT", "SETTLING", "PERPETUAL") in info.contracts


@pytest.mark.parametrize(
    "bad",
    [
        "not an object",
        42,
        None,
        [],
        {"symbol": 5, "status": "TRADING", "contractType": "PERPETUAL"},
        {"symbol": "BTCUSDT", "status": ["TRADING"], "contractType": "PERPETUAL"},
        {"symbol": "BTCUSDT", "contractType": "PERPETUAL"},
        {"symbol": "BTCUSDT", "status": "TRADING"},
        entry("../../x"),
        entry(""),
        entry("_BTC"),
        entry("A" * 65),
        entry("BTC/USDT"),
    ],
)
def test_a_bad_entry_is_skipped_and_counted(bad: object) -> None:
    info = parse_exchange_info(body(entry("ETHUSDT"), bad))
    assert info.contracts == (Contract("ETHUSDT", "TRADING", "PERPETUAL"),)
    assert info.skipped == 1


def test_a_repeated_symbol_keeps_its_first_entry() -> None:
    info = parse_exchange_info(
        body(entry("BTCUSDT"), entry("BTCUSDT", "SETTLING"), entry("btcusdt"), entry("ETHUSDT"))
    )
    assert [c.symbol for c in info.contracts] == ["BTCUSDT", "ETHUSDT"]
    assert info.contracts[0].status == "TRADING"
    assert info.skipped == 2


def test_unknown_statuses_and_types_are_kept_but_not_trading() -> None:
    info = parse_exchange_info(
        body(entry("AUSDT", "HALTED"), entry("BUSDT", "TRADING", "NEW_KIND"))
    )
    assert info.skipped == 0
    assert info.trading(("PERPETUAL",)) == ()


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (b"", "malformed"),
        (b"<html>502</html>", "malformed"),
        (body(entry("BTCUSDT"))[:-10], "malformed"),
        (b"[]", "shape"),
        (b'{"symbols": {}}', "shape"),
        (b'{"symbols": null}', "shape"),
        (b'{"timezone": "UTC"}', "shape"),
        (b"\xff\xfe", "malformed"),
        (b'{"symbols": [' + b"[" * 10_000 + b"]" * 10_000 + b"]}", "malformed"),
    ],
)
def test_an_unusable_answer_is_an_error(answer: bytes, reason: str) -> None:
    with pytest.raises(ExchangeInfoError) as caught:
        parse_exchange_info(answer)
    assert caught.value.reason == reason
    assert isinstance(caught.value, ValueError)


def test_size_bounds() -> None:
    with pytest.raises(ExchangeInfoError) as caught:
        parse_exchange_info(b" " * (MAX_EXCHANGE_INFO_BYTES + 1))
    assert caught.value.reason == "too_large"
    many = b'{"symbols": [' + b",".join([b"0"] * (MAX_CONTRACTS + 1)) + b"]}"
    with pytest.raises(ExchangeInfoError) as caught:
        parse_exchange_info(many)
    assert caught.value.reason == "too_large"


scalars = st.none() | st.booleans() | st.integers() | st.text()
json_values = st.recursive(
    scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
entries = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {
            "symbol": st.one_of(st.text(max_size=70), json_values),
            "status": st.sampled_from(["TRADING", "SETTLING", "PENDING_TRADING"]) | json_values,
            "contractType": st.sampled_from(["PERPETUAL", "CURRENT_QUARTER"]) | json_values,
        },
        optional={"extra": json_values},
    ),
)


# 100 examples: each builds up to 20 entries of nested JSON (about 40 ms an example); the
# parser's per-entry rules are few, and 300 cost 12 s of the suite for no extra finding.
@settings(max_examples=100, deadline=None)
@given(st.lists(entries, max_size=20))
def test_any_entries_give_valid_unique_symbols(items: list[object]) -> None:
    info = parse_exchange_info(json.dumps({"symbols": items}).encode())
    symbols = [contract.symbol for contract in info.contracts]
    assert all(is_valid_symbol(symbol) for symbol in symbols)
    assert len({stream_name(symbol) for symbol in symbols}) == len(symbols)
    assert len(symbols) + info.skipped == len(items)
    assert set(info.trading(("PERPETUAL",))) <= set(symbols)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | json_values.map(lambda value: json.dumps(value).encode()))
def test_any_bytes_parse_or_raise_the_typed_error(answer: bytes) -> None:
    reason = None
    try:
        info = parse_exchange_info(answer)
    except ExchangeInfoError as exc:
        reason = exc.reason
    else:
        assert all(is_valid_symbol(contract.symbol) for contract in info.contracts)
    assert reason in {None, "malformed", "shape", "too_large"}
