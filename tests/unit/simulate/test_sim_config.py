import pytest

from recorder.errors import ConfigError
from recorder.simulate.config import DEFAULT_SYMBOLS, SimulatorConfig
from recorder.symbols import is_valid_symbol


def test_defaults_follow_binance_rules() -> None:
    config = SimulatorConfig()
    assert config.interval_ms == 2_000
    assert config.ping_interval == 180.0
    assert config.pong_timeout == 600.0
    assert config.lifetime == 86_400.0
    assert config.max_streams == 200
    assert config.message_rate_limit == 10
    assert config.host == "127.0.0.1"
    assert config.port == 0


def test_default_symbols_include_non_ascii_and_delivery_contracts() -> None:
    assert "币安人生USDT" in DEFAULT_SYMBOLS
    assert any("_" in symbol for symbol in DEFAULT_SYMBOLS)
    assert all(is_valid_symbol(symbol) for symbol in DEFAULT_SYMBOLS)


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"symbols": ()}, "symbols"),
        ({"symbols": ("BTCUSDT", "BTCUSDT")}, "symbols"),
        ({"symbols": ("btcusdt",)}, "symbols"),
        ({"symbols": ("../../x",)}, "symbols"),
        ({"speed": 0.0}, "speed"),
        ({"interval_ms": 150}, "interval_ms"),
        ({"jitter_ms": -1}, "jitter_ms"),
        ({"start_ms": -5}, "start_ms"),
        ({"activity": 1.5}, "activity"),
        ({"quiet_activity": -0.1}, "quiet_activity"),
        ({"pair_fraction": 2.0}, "pair_fraction"),
        ({"quiet_symbols": ("ETHUSDT",), "symbols": ("BTCUSDT",)}, "quiet_symbols"),
        ({"ping_interval": 0.0}, "ping_interval"),
        ({"pong_timeout": -1.0}, "pong_timeout"),
        ({"lifetime": 0.0}, "lifetime"),
        ({"max_streams": 0}, "max_streams"),
        ({"message_rate_limit": 0}, "message_rate_limit"),
        ({"rest_weight_limit": 0}, "rest_weight_limit"),
        ({"event_log_limit": 0}, "event_log_limit"),
        ({"host": ""}, "host"),
        ({"port": 70_000}, "port"),
    ],
)
def test_bad_settings_name_the_key(changes: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        SimulatorConfig(**changes)  # type: ignore[arg-type]


def test_interval_must_exceed_jitter_so_event_times_increase() -> None:
    SimulatorConfig(interval_ms=151, jitter_ms=150)
    with pytest.raises(ConfigError, match="more than jitter_ms"):
        SimulatorConfig(interval_ms=150, jitter_ms=150)
