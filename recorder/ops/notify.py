"""The systemd notification protocol (``sd_notify``), for ``Type=notify`` units.

systemd passes the service an ``AF_UNIX`` datagram socket in ``$NOTIFY_SOCKET`` (a file system
path, or ``@name`` for the abstract namespace). The service sends newline-separated
``KEY=value`` assignments to it: ``READY=1`` once it is working, ``WATCHDOG=1`` at least every
half ``WatchdogSec``, ``STOPPING=1`` when it begins to stop, ``STATUS=...`` for ``systemctl
status``. Outside systemd (a terminal, Docker) the variable is absent and every call is a
no-op.

Sending never raises: a service must keep recording even if its manager cannot be told. The
first failure is logged as a warning; later ones only at debug level until a send succeeds.

The watchdog proves that the event loop is alive, nothing more: it should not be withheld
because storage is failing, since a restart would throw away the events buffered in memory
while the disk is full. Storage health is for metrics and ``/healthz``.
"""

import asyncio
import os
import socket
from collections.abc import Mapping
from typing import Final

from recorder.ops.logs import get_logger

__all__ = ["SystemdNotifier", "notify_address", "watchdog_interval"]

log = get_logger(__name__)

NOTIFY_SOCKET_VAR: Final = "NOTIFY_SOCKET"
WATCHDOG_USEC_VAR: Final = "WATCHDOG_USEC"
WATCHDOG_PID_VAR: Final = "WATCHDOG_PID"
_US_PER_SECOND: Final = 1_000_000
_DATAGRAM_FLAGS: Final = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK


def notify_address(value: str | None) -> str | bytes | None:
    r"""Turn ``$NOTIFY_SOCKET`` into an address for :meth:`socket.socket.sendto`.

    Args:
        value: the variable's value, or ``None`` when it is not set.

    Returns:
        A path, the abstract-namespace name as bytes starting with a NUL byte, or ``None``
        when there is nothing to notify (unset, empty, or a kind of address this
        implementation does not speak, such as ``vsock:``).

    >>> notify_address("/run/systemd/notify")
    '/run/systemd/notify'
    >>> notify_address("@/org/freedesktop/systemd1/notify")
    b'\x00/org/freedesktop/systemd1/notify'
    >>> notify_address(None) is None, notify_address("vsock:2:1234") is None
    (True, True)
    """
    if not value:
        return None
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return b"\0" + os.fsencode(value[1:])
    return None


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Return how often to send ``WATCHDOG=1``, in seconds, or ``None`` when not asked to.

    systemd sets ``$WATCHDOG_USEC`` to the unit's ``WatchdogSec`` in microseconds, and
    ``$WATCHDOG_PID`` to the process it expects pings from. Pinging at half the timeout, as
    ``sd_watchdog_enabled(3)`` recommends, leaves room for one late ping.

    Args:
        environ: the process environment.
        pid: this process's id.

    >>> watchdog_interval({"WATCHDOG_USEC": "30000000"}, 42)
    15.0
    >>> watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, 42) is None
    True
    >>> watchdog_interval({}, 42) is None, watchdog_interval({"WATCHDOG_USEC": "0"}, 42) is None
    (True, True)
    """
    raw_usec = environ.get(WATCHDOG_USEC_VAR, "")
    raw_pid = environ.get(WATCHDOG_PID_VAR, "")
    if not raw_usec:
        return None
    try:
        usec = int(raw_usec)
        # Without $WATCHDOG_PID the pings are for whoever reads $WATCHDOG_USEC.
        expected_pid = int(raw_pid) if raw_pid else pid
    except ValueError:
        log.warning(
            "ignoring an invalid watchdog setting",
            watchdog_usec=raw_usec,
            watchdog_pid=raw_pid,
        )
        return None
    if usec <= 0 or expected_pid != pid:
        return None
    return usec / _US_PER_SECOND / 2


class SystemdNotifier:
    """Send state changes to systemd over ``$NOTIFY_SOCKET``.

    Args:
        environ: where to read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID``;
            :data:`os.environ` by default.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._raw_address = env.get(NOTIFY_SOCKET_VAR)
        self._address = notify_address(self._raw_address)
        self._watchdog_interval = watchdog_interval(env, os.getpid())
        self._failing = False
        if self._raw_address and self._address is None:
            log.warning(
                "NOTIFY_SOCKET has an unsupported address; systemd will not be notified",
                notify_socket=self._raw_address,
            )

    @property
    def enabled(self) -> bool:
        """Whether there is a socket to notify (running under a ``Type=notify`` unit)."""
        return self._address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half ``WatchdogSec``), or ``None`` when disabled."""
        if self._address is None:
            return None
        return self._watchdog_interval

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` assignments in one datagram.

        Args:
            assignments: the lines to send, for example ``"READY=1"``.

        Returns:
            Whether the datagram was sent; ``False`` also when notification is disabled.
        """
        address = self._address
        if address is None or not assignments:
            return False
        payload = "\n".join(assignments).encode()
        try:
            # Non-blocking so that the event loop never waits: if systemd's queue is full the
            # datagram is dropped, and the next one (the watchdog pings periodically) gets through.
            with socket.socket(socket.AF_UNIX, _DATAGRAM_FLAGS) as sock:
                sock.sendto(payload, address)
        except OSError as exc:
            if not self._failing:
                log.warning(
                    "cannot notify systemd; further failures are logged at debug level",
                    notify_socket=self._raw_address,
                    error=str(exc),
                )
            else:
                log.debug("cannot notify systemd", error=str(exc))
            self._failing = True
            return False
        if self._failing:
            log.info("notifying systemd works again", notify_socket=self._raw_address)
            self._failing = False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Tell systemd that start-up is complete (``READY=1``), optionally with a status."""
        return self.notify("READY=1", *_status_line(status))

    def watchdog(self) -> bool:
        """Ping the watchdog (``WATCHDOG=1``)."""
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        """Tell systemd that the service is stopping (``STOPPING=1``)."""
        return self.notify("STOPPING=1", *_status_line(status))

    def status(self, text: str) -> bool:
        """Set the one-line status shown by ``systemctl status`` (``STATUS=...``)."""
        return self.notify(*_status_line(text))

    async def keep_watchdog_fed(self) -> None:
        """Ping the watchdog every :meth:`watchdog_interval` until cancelled.

        Returns at once when the watchdog is not enabled. Run it as a task of the event loop
        whose liveness it vouches for.
        """
        interval = self.watchdog_interval()
        if interval is None:
            return
        while True:
            self.watchdog()
            await asyncio.sleep(interval)


def _status_line(text: str | None) -> tuple[str, ...]:
    """Return the ``STATUS=`` assignment for ``text``, kept on one line, or nothing."""
    if text is None:
        return ()
    # A newline would end the assignment and start a bogus one.
    return ("STATUS=" + " ".join(text.splitlines()),)
