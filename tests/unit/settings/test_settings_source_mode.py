"""``[source] mode``: per-symbol streams (the default) or the all-market array."""

import pytest
from click.testing import CliRunner
from support import config_error

from recorder.cli.main import main
from recorder.settings.loader import load_settings, parse_settings, settings_to_mapping


def test_the_default_is_per_symbol() -> None:
    source = parse_settings({}).source
    assert source.mode == "per_symbol"
    assert not source.all_market


@pytest.mark.parametrize("value", ["all_market", "ALL_MARKET", " All_Market "])
def test_all_market_in_any_case(value: str) -> None:
    source = parse_settings({"source": {"mode": value}}).source
    assert source.mode == "all_market"
    assert source.all_market


def test_mode_from_the_environment_and_rendered_back() -> None:
    settings = load_settings(None, {"RECORDER_SOURCE__MODE": "all_market"}, {})
    assert settings.source.all_market
    rendered = settings_to_mapping(settings)
    assert rendered["source"]["mode"] == "all_market"
    assert parse_settings(rendered) == settings


def test_all_market_fits_with_symbols_all_and_any_stream_limit() -> None:
    source = parse_settings(
        {"source": {"mode": "all_market", "symbols": "all", "max_streams_per_connection": 1}}
    ).source
    assert source.all_market
    assert source.records_all


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ("all-market", "did you mean 'all_market'?"),
        ("persymbol", "did you mean 'per_symbol'?"),
        ("arr", "one of 'per_symbol', 'all_market'"),
        (1, "one of 'per_symbol', 'all_market'"),
    ],
)
def test_an_unknown_mode_is_a_configuration_error(value: object, detail: str) -> None:
    message = config_error(parse_settings, {"source": {"mode": value}})
    assert "source.mode" in message
    assert detail in message


def test_a_bad_mode_in_the_environment_exits_2() -> None:
    result = CliRunner().invoke(
        main, ["run", "--root", "x"], env={"RECORDER_SOURCE__MODE": "everything"}
    )
    assert result.exit_code == 2
    assert "RECORDER_SOURCE__MODE" in result.output or "source.mode" in result.output
