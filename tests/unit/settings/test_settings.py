import dataclasses
import doctest
import math
import tomllib
from datetime import timedelta
from pathlib import Path

import pytest

import recorder.settings
from recorder.errors import ConfigError
from recorder.settings import (
    GapSettings,
    LogSettings,
    MetricsSettings,
    ServiceSettings,
    Settings,
    SourceSettings,
    StorageSettings,
    env_var_name,
    format_duration,
    format_size,
    load_settings,
    parse_duration,
    parse_settings,
    parse_size,
    settings_to_mapping,
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


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recorder.toml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(call: object, *args: object, **kwargs: object) -> str:
    assert callable(call)
    with pytest.raises(ConfigError) as caught:
        call(*args, **kwargs)
    return str(caught.value)


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


def test_an_empty_mapping_gives_the_defaults() -> None:
    assert parse_settings({}) == Settings()
    assert parse_settings({"source": {}, "log": {}}) == Settings()


def test_no_file_no_environment_no_flags_gives_the_defaults() -> None:
    assert load_settings(None, {}, {}) == Settings()


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


def test_the_module_doctests_pass() -> None:
    result = doctest.testmod(recorder.settings)
    assert result.attempted > 0
    assert result.failed == 0


# --- precedence -----------------------------------------------------------------------------


def test_precedence_is_defaults_then_file_then_environment_then_flags(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        """
        [source]
        url = "ws://file.example/market"
        ping_interval = "11s"
        stall_timeout = "12s"
        open_timeout = "13s"

        [storage]
        root = "from-file"
        """,
    )
    environ = {
        "RECORDER_SOURCE__STALL_TIMEOUT": "22s",
        "RECORDER_SOURCE__OPEN_TIMEOUT": "23s",
        "RECORDER_STORAGE__ROOT": "from-env",
    }
    flags: dict[str, object] = {"source.open_timeout": "33s", "storage.root": None}

    settings = load_settings(config, environ, flags)

    assert settings.source.url == "ws://file.example/market"  # file only
    assert settings.source.ping_interval == 11  # file only
    assert settings.source.stall_timeout == 22  # environment beats file
    assert settings.source.open_timeout == 33  # flag beats environment and file
    assert settings.storage.root == Path("from-env")  # a None flag is "not given"
    assert settings.source.first_data_timeout == 30  # nowhere: default


def test_flags_beat_environment_for_every_kind_of_value() -> None:
    environ = {
        "RECORDER_SOURCE__SYMBOLS": "BTCUSDT",
        "RECORDER_STORAGE__MAX_FILE_BYTES": "1MiB",
        "RECORDER_SERVICE__QUEUE_SIZE": "5",
    }
    flags: dict[str, object] = {
        "source.symbols": ("ETHUSDT", "SOLUSDT"),
        "storage.max_file_bytes": 2048,
        "service.queue_size": "7",
        "storage.root": Path("flag-root"),
    }
    settings = load_settings(None, environ, flags)
    assert settings.source.symbols == ("ETHUSDT", "SOLUSDT")
    assert settings.storage.max_file_bytes == 2048
    assert settings.service.queue_size == 7
    assert settings.storage.root == Path("flag-root")


def test_environment_values_go_through_the_same_parsers_as_toml_values() -> None:
    environ = {
        "RECORDER_SOURCE__MAX_STREAMS_PER_CONNECTION": "150",
        "RECORDER_SOURCE__SYMBOLS": "btcusdt, ETHUSDT,币安人生USDT",
        "RECORDER_SOURCE__CONNECTION_LIFETIME": "1h30m",
        "RECORDER_SOURCE__MAX_FRAME_BYTES": "64KiB",
        "RECORDER_STORAGE__FLUSH_INTERVAL": "500ms",
        "RECORDER_GAPS__INTERVAL": "1.5",
        "RECORDER_SERVICE__INSTANCE_ID": "eu-1",
        "RECORDER_LOG__LEVEL": "DEBUG",
    }
    settings = load_settings(None, environ, {})
    assert settings.source.max_streams_per_connection == 150
    assert settings.source.symbols == ("BTCUSDT", "ETHUSDT", "币安人生USDT")
    assert settings.source.connection_lifetime == 5400
    assert settings.source.max_frame_bytes == 65536
    assert settings.storage.flush_interval == 0.5
    assert settings.gaps.interval_ms == 1500
    assert settings.service.instance_id == "eu-1"
    assert settings.log.level == "debug"


def test_unrelated_environment_variables_are_ignored() -> None:
    environ = {"PATH": "/usr/bin", "HOME": "/root", "RECORDERX": "1", "recorder_source__url": "x"}
    assert load_settings(None, environ, {}) == Settings()


def test_recorder_config_names_the_file_when_no_path_is_given(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[storage]\nroot = "named-by-env"\n')
    settings = load_settings(None, {"RECORDER_CONFIG": str(config)}, {})
    assert settings.storage.root == Path("named-by-env")


def test_an_explicit_path_wins_over_recorder_config(tmp_path: Path) -> None:
    explicit = write_config(tmp_path, '[storage]\nroot = "explicit"\n')
    other = tmp_path / "other.toml"
    other.write_text('[storage]\nroot = "other"\n', encoding="utf-8")
    settings = load_settings(explicit, {"RECORDER_CONFIG": str(other)}, {})
    assert settings.storage.root == Path("explicit")


def test_an_empty_recorder_config_is_an_error() -> None:
    message = config_error(load_settings, None, {"RECORDER_CONFIG": ""}, {})
    assert "RECORDER_CONFIG" in message
    assert "empty" in message


def test_a_missing_config_file_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    message = config_error(load_settings, missing, {}, {})
    assert str(missing) in message
    message = config_error(load_settings, None, {"RECORDER_CONFIG": str(missing)}, {})
    assert str(missing) in message
    assert "RECORDER_CONFIG" in message


def test_a_config_path_that_is_a_directory_is_an_error(tmp_path: Path) -> None:
    message = config_error(load_settings, tmp_path, {}, {})
    assert str(tmp_path) in message
    assert "cannot be read" in message


def test_a_bad_value_in_the_file_is_reported_even_when_overridden(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[source]\nping_interval = "30 seconds"\n')
    environ = {"RECORDER_SOURCE__PING_INTERVAL": "30s"}
    message = config_error(load_settings, config, environ, {})
    assert str(config) in message
    assert "source.ping_interval" in message


# --- error messages: where, key, value, expectation, suggestion ------------------------------


def test_toml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[source]\nurl = "wss://x"\nping_interval = 30s\n[log]\n')
    message = config_error(load_settings, config, {}, {})
    assert str(config) in message
    assert "invalid TOML" in message
    assert "line 3" in message


def test_toml_error_at_the_end_of_the_file_names_the_last_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[source]\nurl = "wss://x"\nsymbols = [\n')
    message = config_error(load_settings, config, {}, {})
    assert str(config) in message
    assert "after line 3" in message


def test_a_file_that_is_not_utf8_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "latin1.toml"
    config.write_bytes('[storage]\nroot = "donn\xe9es"\n'.encode("latin-1"))
    message = config_error(load_settings, config, {}, {})
    assert str(config) in message
    assert "UTF-8" in message


def test_unknown_section_in_file_names_file_section_and_suggestion(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[sourse]\nurl = "wss://x"\n')
    message = config_error(load_settings, config, {}, {})
    assert str(config) in message
    assert "[sourse]" in message
    assert "did you mean [source]?" in message


def test_unknown_key_in_file_names_file_key_value_and_suggestion(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[source]\nsymbol = "BTCUSDT"\n')
    message = config_error(load_settings, config, {}, {})
    assert str(config) in message
    assert "source.symbol " in message
    assert "'BTCUSDT'" in message
    assert "did you mean source.symbols?" in message


def test_a_key_in_the_wrong_section_suggests_the_right_section() -> None:
    message = config_error(parse_settings, {"storage": {"url": "wss://x"}})
    assert "storage.url" in message
    assert "did you mean source.url?" in message


def test_a_key_outside_any_section_suggests_its_section() -> None:
    message = config_error(parse_settings, {"root": "data"})
    assert "'root'" in message or "root =" in message
    assert "did you mean storage.root?" in message


def test_an_unknown_key_far_from_any_known_key_lists_the_valid_ones() -> None:
    message = config_error(parse_settings, {"log": {"zzzzzz": 1}})
    assert "did you mean" not in message
    assert "level, format" in message


def test_a_section_that_is_not_a_table_is_an_error() -> None:
    message = config_error(parse_settings, {"source": "wss://x"}, origin="test input")
    assert "test input" in message
    assert "[source]" in message
    assert "table" in message


def test_unknown_environment_variable_names_it_and_suggests_the_double_underscore() -> None:
    message = config_error(load_settings, None, {"RECORDER_SOURCE_URL": "wss://x"}, {})
    assert "RECORDER_SOURCE_URL" in message
    assert "'wss://x'" in message
    assert "did you mean RECORDER_SOURCE__URL?" in message


def test_unknown_environment_key_suggests_the_closest_variable() -> None:
    message = config_error(load_settings, None, {"RECORDER_STORAGE__ROOTS": "/data"}, {})
    assert "RECORDER_STORAGE__ROOTS" in message
    assert "did you mean RECORDER_STORAGE__ROOT?" in message


def test_unknown_environment_section_is_an_error() -> None:
    message = config_error(load_settings, None, {"RECORDER_METRICS__PORT": "9000"}, {})
    assert "RECORDER_METRICS__PORT" in message
    assert "'9000'" in message


def test_bad_environment_value_names_variable_key_value_and_expectation() -> None:
    environ = {"RECORDER_SOURCE__MAX_STREAMS_PER_CONNECTION": "lots"}
    message = config_error(load_settings, None, environ, {})
    assert "environment variable RECORDER_SOURCE__MAX_STREAMS_PER_CONNECTION" in message
    assert "source.max_streams_per_connection" in message
    assert "'lots'" in message
    assert "expected an integer from 1 to 1024" in message


def test_unknown_flag_is_an_error_with_a_suggestion() -> None:
    message = config_error(load_settings, None, {}, {"storage.rot": "data"})
    assert "storage.rot" in message
    assert "did you mean storage.root?" in message


def test_a_flag_without_a_section_suggests_the_dotted_key() -> None:
    message = config_error(load_settings, None, {}, {"symbols": "BTCUSDT"})
    assert "did you mean source.symbols?" in message


def test_bad_flag_value_names_the_flag_key_value_and_expectation() -> None:
    message = config_error(load_settings, None, {}, {"source.url": "http://example.org"})
    assert "flag" in message
    assert "source.url" in message
    assert "'http://example.org'" in message
    assert "expected a websocket base URL" in message


def test_a_none_flag_is_not_given() -> None:
    # click passes every declared option; the unset ones are None and say nothing.
    assert load_settings(None, {"RECORDER_SOURCE__URL": "ws://env"}, {"source.url": None}) == (
        Settings(source=SourceSettings(url="ws://env"))
    )


def test_an_unknown_flag_is_an_error_even_when_not_given() -> None:
    # A misspelt key in the command-line wiring must fail at once, not when first used.
    message = config_error(load_settings, None, {}, {"storage.roots": None})
    assert "storage.roots" in message


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


# --- durations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("2s", 2.0),
        ("1.5s", 1.5),
        ("90s", 90.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1d2h3m4s5ms", 93784.005),
        ("1h 30m", 5400.0),
        (" 2s ", 2.0),
        ("2 s", 2.0),
        ("1H30M", 5400.0),
        ("0.1s", 0.1),
        (".5s", 0.5),
        ("1.5h", 5400.0),
        ("2", 2.0),
        ("2.5", 2.5),
        ("0", 0.0),
        ("0s", 0.0),
        (2, 2.0),
        (2.5, 2.5),
        (0, 0.0),
        (timedelta(minutes=2), 120.0),
        ("365d", 365 * 86400.0),
    ],
)
def test_parse_duration_accepts(text: str | float | timedelta, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "s",
        "ms",
        "1x",
        "30 seconds",
        "1.s",
        "1e3",
        "-5s",
        "+5s",
        "1h1h",
        "30m1h",
        "1ms1s",
        "1h30",
        "1,5s",
        "inf",
        "nan",
        "366d",
        -1,
        -0.5,
        math.inf,
        math.nan,
        True,
        None,
        [1],
        timedelta(seconds=-1),
    ],
)
def test_parse_duration_rejects(text: object) -> None:
    message = config_error(parse_duration, text)
    assert repr(text) in message
    assert "expected" in message


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


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.5, "500ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (60, "1m"),
        (90, "1m30s"),
        (3600, "1h"),
        (5400, "1h30m"),
        (82800, "23h"),
        (86400, "1d"),
        (93784.005, "1d2h3m4.005s"),
        (3600.5, "1h500ms"),
        (0.000001, "0.000001s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("seconds", [0.001, 0.1, 0.3, 1.25, 59.999, 2.000001, 12345.678, 86399.5])
def test_format_duration_reads_back_exactly(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("seconds", [-1.0, math.inf, math.nan])
def test_format_duration_rejects_what_is_not_a_duration(seconds: float) -> None:
    with pytest.raises(ValueError, match="duration"):
        format_duration(seconds)


# --- sizes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("64MiB", 64 * 2**20),
        ("1GiB", 2**30),
        ("500kB", 500_000),
        ("128MB", 128_000_000),
        ("1TiB", 2**40),
        ("2TB", 2 * 10**12),
        ("3GB", 3 * 10**9),
        ("1KiB", 1024),
        ("1kb", 1000),
        ("1mib", 2**20),
        ("64 MiB", 64 * 2**20),
        (" 1MiB ", 2**20),
        ("1.5KiB", 1536),
        ("0.5kB", 500),
        ("10B", 10),
        ("4096", 4096),
        ("0", 0),
        (4096, 4096),
        (0, 0),
    ],
)
def test_parse_size_accepts(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text",
    [
        *("", "MiB", "64M", "64K", "1.5", "1.5B", "0.3KiB", "-1", "-1MiB", "1 Mi B", "1e6"),
        *("64MiB!", -1, 1.5, 1048576.0, True, None, ["1MiB"]),
    ],
)
def test_parse_size_rejects(text: object) -> None:
    message = config_error(parse_size, text)
    assert repr(text) in message
    assert "expected" in message


@pytest.mark.parametrize("key", ["max_frame_bytes"])
def test_zero_bytes_is_rejected_for_a_limit(key: str) -> None:
    message = config_error(parse_settings, {"source": {key: "0"}})
    assert f"source.{key} = '0'" in message
    assert "at least 1B" in message


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0B"),
        (1, "1B"),
        (1234, "1234B"),
        (1000, "1kB"),
        (1024, "1KiB"),
        (2**20, "1MiB"),
        (128 * 2**20, "128MiB"),
        (10**6, "1MB"),
        (1536, "1536B"),
        (1_024_000, "1000KiB"),
        (2**30, "1GiB"),
        (2**40, "1TiB"),
        (10**12, "1TB"),
    ],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text
    assert parse_size(text) == size


def test_format_size_rejects_negative_sizes() -> None:
    with pytest.raises(ValueError, match="size"):
        format_size(-1)


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
        ("all", "recording every symbol ('all') is not supported"),
        (["All"], "recording every symbol ('all') is not supported"),
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


def test_long_values_are_shortened_in_messages() -> None:
    message = config_error(parse_settings, {"source": {"url": "x" * 10_000}})
    assert len(message) < 1000
    assert "..." in message


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


def test_settings_to_mapping_reads_back_to_equal_settings() -> None:
    custom = parse_settings(
        {
            "source": {
                "url": "ws://127.0.0.1:8765/market",
                "symbols": ["币安人生USDT", "BTCUSDT_260327"],
                "ping_interval": "1.25s",
                "backoff_initial": "250ms",
                "backoff_max": "1m30s",
                "max_frame_bytes": 12345,
            },
            "storage": {"root": "/srv/x", "max_file_bytes": "500kB", "day_grace": 0},
            "gaps": {"interval": "1s"},
            "service": {"instance_id": "eu-1", "queue_size": 3},
            "log": {"level": "debug", "format": "json"},
        }
    )
    for settings in (Settings(), custom):
        assert parse_settings(settings_to_mapping(settings)) == settings


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
