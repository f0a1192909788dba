import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog

from recorder.errors import ConfigError
from recorder.ops.logs import configure_logging, get_logger


def raise_error(error: Exception) -> None:
    raise error


class TerminalStream(io.StringIO):
    """An in-memory stream that claims to be a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers = list(root.handlers)
    level = root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = stream.getvalue().splitlines()
    parsed = [json.loads(line) for line in lines]
    assert all(isinstance(item, dict) for item in parsed)
    return parsed


def test_json_lines_when_the_stream_is_not_a_terminal() -> None:
    stream = io.StringIO()
    configure_logging("info", "auto", stream)

    get_logger("recorder.ingest.source").info("connected", connection_id="c1", streams=2)

    [line] = json_lines(stream)
    assert line["event"] == "connected"
    assert line["level"] == "info"
    assert line["logger"] == "recorder.ingest.source"
    assert line["connection_id"] == "c1"
    assert line["streams"] == 2
    assert list(line)[:4] == ["timestamp", "level", "logger", "event"]
    stamp = datetime.fromisoformat(line["timestamp"])
    assert stamp.utcoffset() is not None
    assert stamp.utcoffset() == UTC.utcoffset(None)
    assert line["timestamp"].endswith("Z")


def test_one_json_object_per_line() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    log = get_logger("recorder.test")

    log.info("first", text="line one\nline two")
    log.warning("second")
    log.error("third")

    lines = json_lines(stream)
    assert [line["event"] for line in lines] == ["first", "second", "third"]
    assert [line["level"] for line in lines] == ["info", "warning", "error"]
    assert lines[0]["text"] == "line one\nline two"


def test_json_is_forced_even_on_a_terminal() -> None:
    stream = TerminalStream()
    configure_logging("info", "json", stream)
    get_logger("recorder.test").info("hello")
    assert json_lines(stream)[0]["event"] == "hello"


def test_auto_on_a_terminal_is_readable_console_output() -> None:
    stream = TerminalStream()
    configure_logging("info", "auto", stream)
    get_logger("recorder.test").info("hello there", symbol="BTCUSDT")

    output = stream.getvalue()
    assert "hello there" in output
    assert "BTCUSDT" in output
    assert "recorder.test" in output
    with pytest.raises(json.JSONDecodeError):
        json.loads(output.splitlines()[0])


def test_console_off_a_terminal_has_no_colour_codes() -> None:
    stream = io.StringIO()
    configure_logging("info", "console", stream)
    get_logger("recorder.test").warning("careful", symbol="BTCUSDT")

    output = stream.getvalue()
    assert "careful" in output
    assert "symbol=BTCUSDT" in output
    assert "\x1b[" not in output


def test_events_below_the_level_are_dropped() -> None:
    stream = io.StringIO()
    configure_logging("warning", "json", stream)
    log = get_logger("recorder.test")

    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")

    assert [line["event"] for line in json_lines(stream)] == ["w", "e"]


def test_debug_level_writes_debug_events() -> None:
    stream = io.StringIO()
    configure_logging("debug", "json", stream)
    get_logger("recorder.test").debug("detail")
    assert json_lines(stream)[0]["level"] == "debug"


def test_library_logging_goes_through_the_same_json_format_from_warning_up() -> None:
    stream = io.StringIO()
    configure_logging("debug", "json", stream)
    library = logging.getLogger("aiohttp.client")

    library.debug("library debug")
    library.info("library info")
    library.warning("retrying %s in %d s", "connect", 5)
    library.error("failed")

    lines = json_lines(stream)
    assert [line["event"] for line in lines] == ["retrying connect in 5 s", "failed"]
    assert lines[0]["logger"] == "aiohttp.client"
    assert lines[0]["level"] == "warning"
    assert lines[1]["level"] == "error"
    assert datetime.fromisoformat(lines[0]["timestamp"]).utcoffset() == UTC.utcoffset(None)
    assert list(lines[0])[:4] == ["timestamp", "level", "logger", "event"]


def test_library_logging_follows_a_stricter_level() -> None:
    stream = io.StringIO()
    configure_logging("error", "json", stream)
    logging.getLogger("aiohttp.client").warning("not shown")
    logging.getLogger("aiohttp.client").error("shown")
    assert [line["event"] for line in json_lines(stream)] == ["shown"]


def test_exceptions_are_structured_tracebacks_in_json() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    log = get_logger("recorder.test")

    try:
        raise_error(ZeroDivisionError("division by zero"))
    except ZeroDivisionError:
        log.exception("flush failed", path="x")

    [line] = json_lines(stream)
    assert line["event"] == "flush failed"
    assert line["level"] == "error"
    [exception] = line["exception"]
    assert exception["exc_type"] == "ZeroDivisionError"
    assert exception["exc_value"] == "division by zero"
    assert [frame["name"] for frame in exception["frames"]][-1] == "raise_error"
    assert all("locals" not in frame for frame in exception["frames"])


def test_library_exceptions_are_structured_too() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    try:
        raise_error(ConnectionResetError("peer went away"))
    except ConnectionResetError:
        logging.getLogger("aiohttp.server").exception("handler failed")

    [line] = json_lines(stream)
    assert line["logger"] == "aiohttp.server"
    assert line["exception"][0]["exc_type"] == "ConnectionResetError"


def test_console_renders_exceptions_as_a_traceback() -> None:
    stream = io.StringIO()
    configure_logging("info", "console", stream)
    try:
        raise_error(KeyError("missing"))
    except KeyError:
        get_logger("recorder.test").exception("lookup failed")

    output = stream.getvalue()
    assert "lookup failed" in output
    assert "Traceback" in output
    assert "KeyError" in output


def test_values_json_does_not_know_are_rendered_readably() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    get_logger("recorder.test").info(
        "published",
        path=Path("data/date=2026-01-01"),
        at=datetime(2026, 1, 1, tzinfo=UTC),
        symbol="币安人生USDT",
        tags={"b", "a"},
        raw=b"\xff{",
        thing=object,
    )
    [line] = json_lines(stream)
    assert line["path"] == "data/date=2026-01-01"
    assert line["at"] == "2026-01-01T00:00:00+00:00"
    assert line["symbol"] == "币安人生USDT"
    assert line["tags"] == ["a", "b"]
    assert line["raw"] == "\\xff{"
    assert line["thing"] == "<class 'object'>"


def test_bound_context_and_contextvars_appear_on_every_line() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    log = get_logger("recorder.ingest.source").bind(connection_id="c7")
    structlog.contextvars.bind_contextvars(instance_id="eu-1")

    log.info("one")
    log.info("two")

    for line in json_lines(stream):
        assert line["connection_id"] == "c7"
        assert line["instance_id"] == "eu-1"
        assert line["logger"] == "recorder.ingest.source"


def test_a_logger_created_before_configuration_follows_it() -> None:
    log = get_logger("recorder.early")
    first = io.StringIO()
    configure_logging("info", "json", first)
    log.info("to first")
    second = io.StringIO()
    configure_logging("info", "json", second)
    log.info("to second")

    assert [line["event"] for line in json_lines(first)] == ["to first"]
    assert [line["event"] for line in json_lines(second)] == ["to second"]


def test_reconfiguring_replaces_the_library_handler() -> None:
    first = io.StringIO()
    configure_logging("info", "json", first)
    second = io.StringIO()
    configure_logging("info", "json", second)

    logging.getLogger("aiohttp.client").warning("once")

    assert first.getvalue() == ""
    assert [line["event"] for line in json_lines(second)] == ["once"]


def test_standard_error_is_the_default_stream(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "auto")
    get_logger("recorder.test").info("to stderr")

    captured = capsys.readouterr()
    assert captured.out == ""
    assert json.loads(captured.err.splitlines()[-1])["event"] == "to stderr"


def test_a_closed_stream_counts_as_not_a_terminal() -> None:
    stream = io.StringIO()
    stream.close()  # isatty() now raises ValueError
    # Deciding the format must not fail; writing would, and is not attempted here.
    configure_logging("info", "auto", stream)

    renderers = structlog.get_config()["processors"]
    assert any(isinstance(p, structlog.processors.JSONRenderer) for p in renderers)
    assert not any(isinstance(p, structlog.dev.ConsoleRenderer) for p in renderers)


@pytest.mark.parametrize(("level", "log_format"), [("verbose", "json"), ("info", "text")])
def test_unknown_level_or_format_is_a_config_error(level: str, log_format: str) -> None:
    with pytest.raises(ConfigError, match="expected one of"):
        configure_logging(level, log_format, io.StringIO())


def test_level_and_format_names_are_case_insensitive() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "JSON", stream)
    get_logger("recorder.test").info("ok")
    assert json_lines(stream)[0]["event"] == "ok"
