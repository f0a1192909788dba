"""The loader: layers and their precedence, strict errors that say where, and rendering."""

from pathlib import Path

from support import config_error

from recorder.settings.loader import load_settings, parse_settings, settings_to_mapping
from recorder.settings.sections import Settings, SourceSettings


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recorder.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_an_empty_mapping_gives_the_defaults() -> None:
    assert parse_settings({}) == Settings()
    assert parse_settings({"source": {}, "log": {}}) == Settings()


def test_no_file_no_environment_no_flags_gives_the_defaults() -> None:
    assert load_settings(None, {}, {}) == Settings()


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
        "RECORDER_SOURCE__MAX_EVENT_TIME_SKEW": "5m",
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
    assert settings.source.max_event_time_skew == 300
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


def test_long_values_are_shortened_in_messages() -> None:
    message = config_error(parse_settings, {"source": {"url": "x" * 10_000}})
    assert len(message) < 1000
    assert "..." in message


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
