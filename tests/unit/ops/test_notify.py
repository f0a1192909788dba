import asyncio
import io
import json
import logging
import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from recorder.ops.logs import configure_logging
from recorder.ops.notify import SystemdNotifier, notify_address, watchdog_interval

# Far more than a datagram on a local socket could ever need; only a failure waits this long.
RECEIVE_TIMEOUT = 5.0


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging("debug", "json", stream)
    yield stream
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    structlog.reset_defaults()


def log_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture
def systemd_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket bound where systemd's would be, and the NOTIFY_SOCKET naming it."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(os.fspath(path))
        receiver.settimeout(RECEIVE_TIMEOUT)
        yield receiver, os.fspath(path)


@pytest.fixture
def abstract_systemd_socket() -> Iterator[tuple[socket.socket, str]]:
    name = f"recorder-test-{secrets.token_hex(8)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(b"\0" + name.encode())
        receiver.settimeout(RECEIVE_TIMEOUT)
        yield receiver, "@" + name


def receive(receiver: socket.socket) -> str:
    return receiver.recv(4096).decode()


def test_ready_is_sent_to_a_path_socket(systemd_socket: tuple[socket.socket, str]) -> None:
    receiver, address = systemd_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": address})

    assert notifier.enabled
    assert notifier.ready()
    assert receive(receiver) == "READY=1"


def test_ready_status_watchdog_and_stopping_in_order(
    systemd_socket: tuple[socket.socket, str],
) -> None:
    receiver, address = systemd_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": address})

    assert notifier.ready("recording 2 symbols")
    assert notifier.watchdog()
    assert notifier.status("1 connection open")
    assert notifier.stopping("final flush")

    assert [receive(receiver) for _ in range(4)] == [
        "READY=1\nSTATUS=recording 2 symbols",
        "WATCHDOG=1",
        "STATUS=1 connection open",
        "STOPPING=1\nSTATUS=final flush",
    ]


def test_status_text_is_kept_on_one_line(systemd_socket: tuple[socket.socket, str]) -> None:
    receiver, address = systemd_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": address})

    assert notifier.status("flush failed:\nno space left\r\non device")

    assert receive(receiver) == "STATUS=flush failed: no space left on device"


def test_abstract_namespace_socket(
    abstract_systemd_socket: tuple[socket.socket, str],
) -> None:
    receiver, address = abstract_systemd_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": address})

    assert notifier.watchdog()
    assert receive(receiver) == "WATCHDOG=1"


def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = SystemdNotifier({"WATCHDOG_USEC": "30000000"})

    assert not notifier.enabled
    assert not notifier.ready("ignored")
    assert not notifier.watchdog()
    assert not notifier.stopping()
    assert notifier.watchdog_interval() is None


def test_reads_the_process_environment_by_default(
    systemd_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver, address = systemd_socket
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))

    notifier = SystemdNotifier()

    assert notifier.watchdog_interval() == 2.0
    assert notifier.ready()
    assert receive(receiver) == "READY=1"


def test_unsupported_address_disables_notification_with_a_warning(
    log_stream: io.StringIO,
) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": "vsock:2:1234"})

    assert not notifier.enabled
    assert not notifier.ready()
    [line] = log_lines(log_stream)
    assert line["level"] == "warning"
    assert line["notify_socket"] == "vsock:2:1234"


def test_send_failure_never_raises_and_warns_once(tmp_path: Path, log_stream: io.StringIO) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": os.fspath(tmp_path / "nobody-listens")})

    assert notifier.enabled
    assert not notifier.ready()
    assert not notifier.watchdog()
    assert not notifier.watchdog()

    levels = [line["level"] for line in log_lines(log_stream)]
    assert levels == ["warning", "debug", "debug"]


def test_recovery_after_a_failure_is_logged_and_a_new_failure_warns_again(
    tmp_path: Path, log_stream: io.StringIO
) -> None:
    path = tmp_path / "notify"
    notifier = SystemdNotifier({"NOTIFY_SOCKET": os.fspath(path)})
    assert not notifier.watchdog()

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(os.fspath(path))
        receiver.settimeout(RECEIVE_TIMEOUT)
        assert notifier.watchdog()
        assert receive(receiver) == "WATCHDOG=1"
    path.unlink()
    assert not notifier.watchdog()

    levels = [line["level"] for line in log_lines(log_stream)]
    assert levels == ["warning", "info", "warning"]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 15.0),
        ({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": "4242"}, 0.25),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": ""}, None),
        ({}, None),
        ({"WATCHDOG_PID": "4242"}, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(environ, pid=4242) == expected


@pytest.mark.parametrize(
    "environ",
    [{"WATCHDOG_USEC": "30s"}, {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "main"}],
)
def test_invalid_watchdog_setting_is_ignored_with_a_warning(
    environ: dict[str, str], log_stream: io.StringIO
) -> None:
    assert watchdog_interval(environ, pid=4242) is None
    [line] = log_lines(log_stream)
    assert line["level"] == "warning"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/run/systemd/notify", "/run/systemd/notify"),
        ("@/org/freedesktop/systemd1/notify", b"\0/org/freedesktop/systemd1/notify"),
        ("@", None),
        ("", None),
        (None, None),
        ("relative/path", None),
        ("vsock:2:1234", None),
    ],
)
def test_notify_address(value: str | None, expected: str | bytes | None) -> None:
    assert notify_address(value) == expected


@pytest.mark.asyncio
async def test_keep_watchdog_fed_pings_until_cancelled(
    systemd_socket: tuple[socket.socket, str],
) -> None:
    receiver, address = systemd_socket
    receiver.setblocking(False)
    # 20 ms timeout: a ping every 10 ms, so the test sees several quickly.
    notifier = SystemdNotifier(
        {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "20000", "WATCHDOG_PID": str(os.getpid())}
    )
    loop = asyncio.get_running_loop()

    feeder = asyncio.create_task(notifier.keep_watchdog_fed())
    try:
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            pings = [(await loop.sock_recv(receiver, 4096)).decode() for _ in range(3)]
    finally:
        feeder.cancel()
    with pytest.raises(asyncio.CancelledError):
        await feeder

    assert pings == ["WATCHDOG=1"] * 3


@pytest.mark.asyncio
async def test_keep_watchdog_fed_returns_when_the_watchdog_is_off(
    systemd_socket: tuple[socket.socket, str],
) -> None:
    _, address = systemd_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": address})

    async with asyncio.timeout(RECEIVE_TIMEOUT):
        await notifier.keep_watchdog_fed()

    assert notifier.watchdog_interval() is None
