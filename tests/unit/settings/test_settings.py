"""The recorder's settings: defaults, the shipped example, each key's kind, rules and values."""

import dataclasses
import doctest
import importlib
import pkgutil
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from support import config_error

import recorder.settings
from recorder.errors import ConfigError
from recorder.settings.loader import (
    env_var_name,
    load_settings,
    parse_settings,
    settings_to_mapping,
)
from recorder.settings.sections import (
    GapSettings,
    LogSettings,
    MetricsSettings,
    ServiceSettings,
    Settings,
    SourceSettings,
    StorageSettings,
)

SHIPPED_CONFIG = Path(__file__).resolve().parents[3] / "config" / "recorder.toml"
SECTIONS = {
    "source": SourceSettings,
    "storage": StorageSettings,
    "gaps": GapSettings,
    "service": ServiceSettings,
    "log": LogSettings,
    "metrics": MetricsSettings,
}


# --- defaults and the shipped example -------------------------------------------------------


def test_defaults_are_the_documented_values() -> None:
    settings = Settings()
    assert settings.source.url == "wss://fstream.binance.com/market"
    assert settings.source.symbols == ("BTCUSDT", "ETHUSDT")
    assert settings.source.max_streams_per_connection == 200
    assert settings.source.connection_lifetime == 23 * 3600
    assert settings.source.handover_timeout == 60
    assert settings.source.open_timeout == 10
    assert settings.source.ping_interval == 30
    assert settings.source.stall_timeout == 60
    assert settings.source.first_data_timeout == 30
    assert settings.source.backoff_initial == 1
    assert settings.source.backoff_max == 60
    assert settings.source.max_frame_bytes == 1024 * 1024
    assert settings.source.max_event_time_skew == 86_400
    assert settings.storage.root == Path("data")
    assert settings.storage.flush_interval == 1
    assert settings.storage.max_file_age == 3600
    assert settings.storage.max_file_bytes == 128 * 1024 * 1024
    assert settings.storage.day_grace == 10
    assert settings.gaps.interval == 2
    assert settings.gaps.interval_ms == 2000
    assert settings.service.queue_size == 10_000
    assert settings.service.stop_timeout == 10
    assert settings.service.instance_id is None
    assert settings.log.level == "info"
    assert settings.log.format == "auto"


def test_the_shipped_example_config_parses_to_the_defaults() -> None:
    assert load_settings(SHIPPED_CONFIG, {}, {}) == Settings()


def test_the_shipped_example_config_documents_every_key() -> None:
    text = SHIPPED_CONFIG.read_text(encoding="utf-8")
    document = tomllib.loads(text)
    assert set(document) == set(SECTIONS)
    for section, section_class in SECTIONS.items():
        for key in (f.name for f in dataclasses.fields(section_class)):
            # An optional key without a default value is shown commented out.
            assert key in document[section] or f"# {key} = " in text, f"{section}.{key}"


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.source.url = "ws://elsewhere"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.log = LogSettings()  # type: ignore[misc]


SETTINGS_MODULES = [
    importlib.import_module(f"recorder.settings.{module.name}")
    for module in pkgutil.iter_modules(recorder.settings.__path__)
]


@pytest.mark.parametrize("module", SETTINGS_MODULES, ids=lambda module: module.__name__)
def test_the_module_doctests_pass(module: ModuleType) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0


# --- each key's kind and limits, and the rules between keys ---------------------------------------


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("source", "max_streams_per_connection", True),
        ("service", "queue_size", False),
        ("source", "ping_interval", True),
        ("storage", "max_file_bytes", True),
    ],
)
def test_booleans_are_not_numbers(section: str, key: str, value: bool) -> None:
    message = config_error(parse_settings, {section: {key: value}})
    assert f"{section}.{key} = {value!r}" in message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_streams_per_connection", 0),
        ("max_streams_per_connection", 1025),
        ("max_streams_per_connection", 200.0),
        ("max_streams_per_connection", "2e2"),
        ("max_streams_per_connection", ""),
    ],
)
def test_integers_must_be_whole_and_in_range(key: str, value: object) -> None:
    message = config_error(parse_settings, {"source": {key: value}})
    assert f"source.{key}" in message
    assert "expected an integer from 1 to 1024" in message


def test_integer_bounds_are_inclusive() -> None:
    assert parse_settings({"source": {"max_streams_per_connection": 1}}).source == SourceSettings(
        max_streams_per_connection=1
    )
    settings = parse_settings({"source": {"max_streams_per_connection": "1024"}})
    assert settings.source.max_streams_per_connection == 1024


def test_queue_size_must_be_positive() -> None:
    message = config_error(parse_settings, {"service": {"queue_size": 0}})
    assert "expected an integer of at least 1" in message


def test_backoff_max_below_backoff_initial_names_both_and_their_origins() -> None:
    environ = {"RECORDER_SOURCE__BACKOFF_MAX": "500ms"}
    message = config_error(load_settings, None, environ, {})
    assert "source.backoff_max = '500ms' (from environment variable" in message
    assert "source.backoff_initial = '1s' (from the default)" in message
    assert "backoff_max >= backoff_initial" in message


def test_backoff_max_equal_to_backoff_initial_is_fine() -> None:
    settings = parse_settings({"source": {"backoff_initial": "5s", "backoff_max": "5s"}})
    assert settings.source.backoff_max == settings.source.backoff_initial == 5


def test_connection_lifetime_must_leave_room_for_the_handover_within_24h() -> None:
    message = config_error(parse_settings, {"source": {"connection_lifetime": "23h59m30s"}})
    assert "source.connection_lifetime" in message
    assert "source.handover_timeout" in message
    assert "24h" in message
    ok = parse_settings({"source": {"connection_lifetime": "23h59m", "handover_timeout": "1m"}})
    assert ok.source.connection_lifetime + ok.source.handover_timeout == 24 * 3600


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("source", "connection_lifetime"),
        ("source", "handover_timeout"),
        ("source", "open_timeout"),
        ("source", "ping_interval"),
        ("source", "stall_timeout"),
        ("source", "first_data_timeout"),
        ("source", "backoff_initial"),
        ("storage", "flush_interval"),
        ("storage", "max_file_age"),
        ("gaps", "interval"),
        ("service", "stop_timeout"),
    ],
)
@pytest.mark.parametrize("zero", [0, "0s", "0ms", "0"])
def test_zero_is_rejected_where_a_positive_duration_is_required(
    section: str, key: str, zero: object
) -> None:
    message = config_error(parse_settings, {section: {key: zero}})
    assert f"{section}.{key} = {zero!r}" in message


@pytest.mark.parametrize("negative", [-1, -0.001, "-1s"])
def test_negative_durations_are_rejected(negative: object) -> None:
    message = config_error(parse_settings, {"storage": {"flush_interval": negative}})
    assert "storage.flush_interval" in message


def test_day_grace_may_be_zero() -> None:
    assert parse_settings({"storage": {"day_grace": "0s"}}).storage.day_grace == 0


def test_gap_interval_must_be_at_least_a_millisecond() -> None:
    message = config_error(parse_settings, {"gaps": {"interval": "0.0005s"}})
    assert "at least 1ms" in message
    assert parse_settings({"gaps": {"interval": "1ms"}}).gaps.interval_ms == 1


@pytest.mark.parametrize("key", ["max_frame_bytes"])
def test_zero_bytes_is_rejected_for_a_limit(key: str) -> None:
    message = config_error(parse_settings, {"source": {key: "0"}})
    assert f"source.{key} = '0'" in message
    assert "at least 1B" in message


# --- symbols --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "symbols"),
    [
        (["BTCUSDT"], ("BTCUSDT",)),
        ("BTCUSDT,ETHUSDT", ("BTCUSDT", "ETHUSDT")),
        ("btcusdt", ("BTCUSDT",)),
        (" btcusdt , ethusdt ", ("BTCUSDT", "ETHUSDT")),
        (["币安人生USDT"], ("币安人生USDT",)),
        ("币安人生usdt", ("币安人生USDT",)),
        (["BTCUSDT_260327"], ("BTCUSDT_260327",)),
        (["ETHUSDT", "btcusdt", "ETHUSDT", "BTCUSDT"], ("ETHUSDT", "BTCUSDT")),
        (("SOLUSDT",), ("SOLUSDT",)),
        # Decomposed input is stored in the composed form the partition names require.
        (["cafe\u0301usdt"], ("CAF\u00c9USDT",)),
    ],
)
def test_symbols_are_normalised(value: object, symbols: tuple[str, ...]) -> None:
    assert parse_settings({"source": {"symbols": value}}).source.symbols == symbols


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        (["BTCUSDT", "../../x"], "item 2 '../../x' is not a valid symbol"),
        ("../../x", "item 1 '../../x'"),
        (["BTC/USDT"], "'BTC/USDT'"),
        (["BTC USDT"], "'BTC USDT'"),
        (["_BTCUSDT"], "'_BTCUSDT'"),
        (["BTC.USDT"], "'BTC.USDT'"),
        (["symbol=BTC"], "'symbol=BTC'"),
        (["A" * 65], "is not a valid symbol"),
        (["BTCUSDT\u200b"], "is not a valid symbol"),
        ("BTCUSDT,,ETHUSDT", "item 2 is empty"),
        ("BTCUSDT,", "item 2 is empty"),
        ("", "item 1 is empty"),
        ([], "non-empty list"),
        ([42], "item 1 42 is not text"),
        (42, "non-empty list"),
        ("BTCUSDT,all", "'all' stands alone, not among symbols"),
        (["ALL", "ETHUSDT"], "'all' stands alone, not among symbols"),
    ],
)
def test_invalid_symbols_are_rejected(value: object, detail: str) -> None:
    message = config_error(parse_settings, {"source": {"symbols": value}})
    assert "source.symbols" in message
    assert detail in message


def test_invalid_symbol_in_environment_names_the_variable() -> None:
    message = config_error(load_settings, None, {"RECORDER_SOURCE__SYMBOLS": "BTCUSDT,../x"}, {})
    assert "RECORDER_SOURCE__SYMBOLS" in message
    assert "'BTCUSDT,../x'" in message
    assert "'../x'" in message


# --- URL, root, instance id, log ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("wss://fstream.binance.com/market", "wss://fstream.binance.com/market"),
        ("wss://fstream.binance.com/market/", "wss://fstream.binance.com/market"),
        ("ws://127.0.0.1:8765/market", "ws://127.0.0.1:8765/market"),
        ("ws://localhost:8765", "ws://localhost:8765"),
        ("ws://localhost:8765/", "ws://localhost:8765"),
        ("WSS://example.org/x", "WSS://example.org/x"),
        (" wss://example.org/market ", "wss://example.org/market"),
        ("ws://[::1]:8765/market", "ws://[::1]:8765/market"),
    ],
)
def test_websocket_urls_are_accepted(value: str, url: str) -> None:
    assert parse_settings({"source": {"url": value}}).source.url == url


@pytest.mark.parametrize(
    "value",
    [
        "https://fstream.binance.com/market",
        "fstream.binance.com/market",
        "wss://",
        "wss:///market",
        "wss://host/market?streams=btcusdt@miniTicker",
        "wss://host/market?",
        "wss://host/market#x",
        "wss://host:99999/market",
        "wss://host:port/market",
        "wss://ho st/market",
        "",
        42,
        None,
    ],
)
def test_bad_urls_are_rejected(value: object) -> None:
    message = config_error(parse_settings, {"source": {"url": value}})
    assert f"source.url = {value!r}" in message
    assert "ws:// or wss://" in message


def test_root_accepts_text_and_paths() -> None:
    assert parse_settings({"storage": {"root": "/srv/data"}}).storage.root == Path("/srv/data")
    flagged = load_settings(None, {}, {"storage.root": Path("rel/data")})
    assert flagged.storage.root == Path("rel/data")


@pytest.mark.parametrize("value", ["", "  ", "s3://bucket/prefix", "a\x00b", 5, ["data"]])
def test_bad_roots_are_rejected(value: object) -> None:
    message = config_error(parse_settings, {"storage": {"root": value}})
    assert "storage.root" in message
    assert "expected a local directory path" in message


def test_object_store_roots_are_rejected_rather_than_mangled() -> None:
    message = config_error(parse_settings, {"storage": {"root": "s3://bucket/prefix"}})
    assert "object-store" in message


@pytest.mark.parametrize(
    "value", ["eu-1", "a", "A" * 64, "0-0", "Recorder-7", "eu_1", "eu.1", "ip-10-0-0-1.eu-west-1"]
)
def test_instance_ids_are_accepted(value: str) -> None:
    assert parse_settings({"service": {"instance_id": value}}).service.instance_id == value


@pytest.mark.parametrize("value", ["", "a" * 65, "-a", ".a", "_a", "eu/1", "a b", "é", 7])
def test_bad_instance_ids_are_rejected(value: object) -> None:
    message = config_error(parse_settings, {"service": {"instance_id": value}})
    assert f"service.instance_id = {value!r}" in message
    assert "starting with a letter or digit, at most 64 characters" in message


@pytest.mark.parametrize(("value", "level"), [("debug", "debug"), ("INFO", "info")])
def test_log_levels_are_case_insensitive(value: str, level: str) -> None:
    assert parse_settings({"log": {"level": value}}).log.level == level


def test_a_misspelt_log_level_gets_a_suggestion() -> None:
    message = config_error(parse_settings, {"log": {"level": "warn"}})
    assert "log.level = 'warn'" in message
    assert "one of 'debug', 'info', 'warning', 'error'" in message
    assert "did you mean 'warning'?" in message


@pytest.mark.parametrize("value", ["json", "console", "auto", "JSON"])
def test_log_formats(value: str) -> None:
    assert parse_settings({"log": {"format": value}}).log.format == value.lower()


def test_an_unknown_log_format_is_rejected() -> None:
    message = config_error(parse_settings, {"log": {"format": "text"}})
    assert "log.format = 'text'" in message
    assert "'auto', 'json', 'console'" in message


# --- rendering ------------------------------------------------------------------------------


def test_settings_to_mapping_renders_every_key_readably() -> None:
    rendered = settings_to_mapping(Settings())
    assert set(rendered) == set(SECTIONS)
    for section, section_class in SECTIONS.items():
        assert list(rendered[section]) == [f.name for f in dataclasses.fields(section_class)]
    assert rendered["source"]["connection_lifetime"] == "23h"
    assert rendered["source"]["symbols"] == ["BTCUSDT", "ETHUSDT"]
    assert rendered["source"]["max_frame_bytes"] == "1MiB"
    assert rendered["storage"]["root"] == "data"
    assert rendered["storage"]["max_file_bytes"] == "128MiB"
    assert rendered["storage"]["flush_interval"] == "1s"
    assert rendered["gaps"]["interval"] == "2s"
    assert rendered["service"]["instance_id"] is None
    assert rendered["service"]["queue_size"] == 10_000


def test_env_var_name_matches_what_load_settings_reads() -> None:
    for section, section_class in SECTIONS.items():
        for key in (f.name for f in dataclasses.fields(section_class)):
            name = env_var_name(section, key)
            assert name.startswith("RECORDER_")
            assert "__" in name
    value = "wss://elsewhere.example/market"
    settings = load_settings(None, {env_var_name("source", "url"): value}, {})
    assert settings.source.url == value


@pytest.mark.parametrize("address", ["127.0.0.1:9464", "0.0.0.0:1", "[::1]:9464", ""])
def test_metrics_address_accepts_host_port_or_empty(address: str) -> None:
    assert parse_settings({"metrics": {"address": address}}).metrics.address == address


def test_metrics_address_splits_into_host_and_port() -> None:
    metrics = parse_settings({"metrics": {"address": "[::1]:9000"}}).metrics
    assert (metrics.host, metrics.port) == ("::1", 9000)


@pytest.mark.parametrize("address", ["localhost", ":9464", "host:port", "h:70000", 9464])
def test_metrics_address_rejects_what_is_not_host_port(address: object) -> None:
    with pytest.raises(ConfigError, match=r"metrics\.address"):
        parse_settings({"metrics": {"address": address}})
