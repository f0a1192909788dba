"""``symbols = "all"`` and its keys: ``rest_url``, ``contract_types``, ``refresh_interval``."""

import pytest
from click.testing import CliRunner
from support import config_error

from recorder.cli.main import main
from recorder.settings.loader import load_settings, parse_settings, settings_to_mapping
from recorder.settings.values import ALL_SYMBOLS


@pytest.mark.parametrize("value", ["all", "ALL", " All ", ["all"], ["ALL"]])
def test_all_is_accepted_in_any_case(value: object) -> None:
    source = parse_settings({"source": {"symbols": value}}).source
    assert source.symbols is ALL_SYMBOLS
    assert source.records_all
    assert source.listed_symbols == ()


def test_all_from_the_environment_and_a_flag() -> None:
    from_env = load_settings(None, {"RECORDER_SOURCE__SYMBOLS": "all"}, {})
    assert from_env.source.symbols is ALL_SYMBOLS
    from_flag = load_settings(None, {}, {"source.symbols": "All"})
    assert from_flag.source.symbols is ALL_SYMBOLS


def test_all_renders_back_as_the_word() -> None:
    settings = parse_settings({"source": {"symbols": "all"}})
    rendered = settings_to_mapping(settings)
    assert rendered["source"]["symbols"] == "all"
    assert parse_settings(rendered) == settings


def test_listed_symbols_are_the_symbols() -> None:
    source = parse_settings({"source": {"symbols": "btcusdt"}}).source
    assert not source.records_all
    assert source.listed_symbols == ("BTCUSDT",)


def test_defaults_of_the_new_keys() -> None:
    source = parse_settings({}).source
    assert source.rest_url == "https://fapi.binance.com"
    assert source.contract_types == ("PERPETUAL",)
    assert source.refresh_interval == 60


@pytest.mark.parametrize(
    ("value", "types"),
    [
        (["PERPETUAL", "CURRENT_QUARTER"], ("PERPETUAL", "CURRENT_QUARTER")),
        ("perpetual, next_quarter,PERPETUAL", ("PERPETUAL", "NEXT_QUARTER")),
        (["TRADIFI_PERPETUAL"], ("TRADIFI_PERPETUAL",)),
    ],
)
def test_contract_types_are_accepted(value: object, types: tuple[str, ...]) -> None:
    assert parse_settings({"source": {"contract_types": value}}).source.contract_types == types


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        (["PERPETUALL"], "did you mean 'PERPETUAL'?"),
        ("PERPETUAL,QUARTERLY", "item 2 'QUARTERLY' is not one"),
        ([], "non-empty list"),
        ([1], "item 1 1 is not one"),
        (7, "non-empty list"),
    ],
)
def test_contract_type_typos_are_configuration_errors(value: object, detail: str) -> None:
    message = config_error(parse_settings, {"source": {"contract_types": value}})
    assert "source.contract_types" in message
    assert detail in message


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("https://fapi.binance.com", "https://fapi.binance.com"),
        ("http://127.0.0.1:9000/", "http://127.0.0.1:9000"),
        (" HTTPS://example.org ", "HTTPS://example.org"),
    ],
)
def test_rest_urls_are_accepted(value: str, url: str) -> None:
    assert parse_settings({"source": {"rest_url": value}}).source.rest_url == url


@pytest.mark.parametrize(
    "value",
    [
        "wss://fstream.binance.com",
        "https://",
        "https://fapi.binance.com/fapi/v1",
        "https://fapi.binance.com?x=1",
        "https://fapi.binance.com:99999",
        "ftp://example.org",
        "https://exa mple.org",
        42,
    ],
)
def test_bad_rest_urls_are_rejected(value: object) -> None:
    message = config_error(parse_settings, {"source": {"rest_url": value}})
    assert "source.rest_url" in message
    assert "http:// or https://" in message


@pytest.mark.parametrize("value", ["0s", "500ms", "soon", -1])
def test_refresh_interval_must_be_a_duration_of_a_second_or_more(value: object) -> None:
    message = config_error(parse_settings, {"source": {"refresh_interval": value}})
    assert "source.refresh_interval" in message


def test_refresh_interval_reads_durations() -> None:
    settings = parse_settings({"source": {"refresh_interval": "5m"}})
    assert settings.source.refresh_interval == 300


def test_a_contract_type_typo_exits_2() -> None:
    result = CliRunner().invoke(
        main,
        ["run", "--symbols", "all", "--print-config"],
        env={"RECORDER_CONFIG": None, "RECORDER_SOURCE__CONTRACT_TYPES": "PERPETUALL"},
    )
    assert result.exit_code == 2
    assert "RECORDER_SOURCE__CONTRACT_TYPES" in result.output
    assert "did you mean 'PERPETUAL'?" in result.output


def test_symbols_all_flag_prints_as_all() -> None:
    result = CliRunner().invoke(
        main, ["run", "--symbols", "ALL", "--print-config"], env={"RECORDER_CONFIG": None}
    )
    assert result.exit_code == 0, result.output
    assert '"symbols": "all"' in result.output
