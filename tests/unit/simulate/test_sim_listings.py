from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorder.simulate.config import SimulatorConfig
from recorder.simulate.listings import DELISTED, ContractBook, ContractStatus
from recorder.simulate.market import MarketGenerator
from recorder.simulate.profiles import PRICE_PROFILES, listing_profile
from recorder.symbols import is_valid_symbol

START_MS = 1_780_000_000_000
CONFIG = SimulatorConfig(symbols=("BTCUSDT", "ETHUSDT"), activity=1.0, seed=5)
STATE = ("c", "o", "h", "l", "v", "q")


def book(config: SimulatorConfig = CONFIG) -> tuple[MarketGenerator, ContractBook]:
    generator = MarketGenerator(config, START_MS)
    return generator, ContractBook(generator, START_MS)


def symbols_in(generator: MarketGenerator, ticks: int) -> list[set[str]]:
    return [{event.symbol for event in generator.step().events} for _ in range(ticks)]


def states(generator: MarketGenerator, symbol: str, ticks: int) -> list[tuple[object, ...]]:
    found: list[tuple[object, ...]] = []
    for _ in range(ticks):
        found.extend(
            tuple(event.payload[key] for key in STATE)
            for event in generator.step().events
            if event.symbol == symbol
        )
    return found


def test_configured_symbols_start_trading() -> None:
    _, contracts = book()
    assert [(c.symbol, c.status) for c in contracts.contracts()] == [
        ("BTCUSDT", ContractStatus.TRADING),
        ("ETHUSDT", ContractStatus.TRADING),
    ]


def test_only_a_trading_contract_has_events() -> None:
    generator, contracts = book()
    contracts.set_status("NEWUSDT", ContractStatus.PENDING_TRADING, START_MS)
    assert symbols_in(generator, 3) == [{"BTCUSDT", "ETHUSDT"}] * 3
    contracts.set_status("NEWUSDT", ContractStatus.TRADING, START_MS)
    assert symbols_in(generator, 3) == [{"BTCUSDT", "ETHUSDT", "NEWUSDT"}] * 3
    contracts.set_status("ETHUSDT", ContractStatus.SETTLING, START_MS)
    assert symbols_in(generator, 3) == [{"BTCUSDT", "NEWUSDT"}] * 3
    contracts.delist("NEWUSDT")
    assert "NEWUSDT" not in contracts
    assert symbols_in(generator, 3) == [{"BTCUSDT"}] * 3


def test_a_listing_keeps_its_onboard_date_through_status_changes() -> None:
    _, contracts = book()
    listed = contracts.set_status("NEWUSDT", ContractStatus.PENDING_TRADING, START_MS + 9)
    trading = contracts.set_status("NEWUSDT", ContractStatus.TRADING, START_MS + 99)
    assert listed.onboard_ms == trading.onboard_ms == START_MS + 9
    assert trading.to_json() == {
        "symbol": "NEWUSDT",
        "status": "TRADING",
        "onboardDate": START_MS + 9,
    }


def test_a_listing_s_market_comes_from_the_seed_whenever_it_is_listed() -> None:
    early, early_book = book()
    early_book.set_status("NEWUSDT", ContractStatus.TRADING, START_MS)
    late, late_book = book()
    symbols_in(late, 4)
    late_book.set_status("NEWUSDT", ContractStatus.TRADING, START_MS)
    other, other_book = book(SimulatorConfig(symbols=CONFIG.symbols, activity=1.0, seed=6))
    other_book.set_status("NEWUSDT", ContractStatus.TRADING, START_MS)
    assert early.profiles["NEWUSDT"] == late.profiles["NEWUSDT"]
    early_states = states(early, "NEWUSDT", 5)
    assert len(early_states) == 5
    assert states(late, "NEWUSDT", 5) == early_states
    assert states(other, "NEWUSDT", 5) != early_states


def test_listings_draw_varied_profiles_and_known_bases_keep_theirs() -> None:
    drawn = {listing_profile(CONFIG, f"COIN{n}USDT").price for n in range(60)}
    assert drawn == set(PRICE_PROFILES)
    assert listing_profile(CONFIG, "BTCUSDC").price.name == "major"


def test_relisting_resumes_the_same_market() -> None:
    generator, contracts = book()
    contracts.set_status("NEWUSDT", ContractStatus.TRADING, START_MS)
    before = states(generator, "NEWUSDT", 2)
    contracts.delist("NEWUSDT")
    assert states(generator, "NEWUSDT", 2) == []
    contracts.set_status("NEWUSDT", ContractStatus.TRADING, START_MS)
    after = states(generator, "NEWUSDT", 1)
    assert after[0][1] == before[0][1]  # the same open: the market went on, not anew
    assert Decimal(str(after[0][4])) > Decimal(str(before[-1][4]))  # grew from where it stood


def test_change_reads_the_control_vocabulary() -> None:
    _, contracts = book()
    contract = contracts.change("NEWUSDT", "PENDING_TRADING", START_MS)
    assert contract is not None
    assert contract.status is ContractStatus.PENDING_TRADING
    assert contracts.change("NEWUSDT", DELISTED, START_MS) is None
    assert "NEWUSDT" not in contracts
    with pytest.raises(ValueError, match="expected one of PENDING_TRADING, TRADING, SETTLING"):
        contracts.change("BTCUSDT", "BREAK", START_MS)
    with pytest.raises(ValueError, match="not listed"):
        contracts.change("NEWUSDT", DELISTED, START_MS)


@pytest.mark.parametrize("symbol", ["newusdt", "", "NEW USDT", "NEW/USDT", "ẞUSDT"])
def test_a_symbol_no_stream_can_carry_is_refused(symbol: str) -> None:
    _, contracts = book()
    with pytest.raises(ValueError, match="upper-case Binance symbol"):
        contracts.set_status(symbol, ContractStatus.TRADING, START_MS)
    assert symbol not in contracts


@given(symbol=st.text(max_size=12), status=st.text(max_size=16))
def test_any_change_lists_a_valid_symbol_or_is_refused(symbol: str, status: str) -> None:
    _, contracts = book()
    try:
        contract = contracts.change(symbol, status, START_MS)
    except ValueError:
        assert [c.symbol for c in contracts.contracts()] == list(CONFIG.symbols)
        return
    if contract is not None:
        assert is_valid_symbol(contract.symbol)
        assert contract.symbol.lower().upper() == contract.symbol
        assert contract.status == status
