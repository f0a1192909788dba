"""The operations HTTP endpoint: ``GET /metrics`` for Prometheus and ``GET /healthz`` for probes.

:class:`MetricsServer` serves both from a small aiohttp application, on loopback unless
configured otherwise: ``/metrics`` renders :class:`~recorder.ops.metrics.RecorderMetrics`,
``/healthz`` asks a :class:`HealthSource` (the service) at each request.
"""

from collections.abc import Mapping
from typing import Final, Protocol

from aiohttp import web

from recorder.errors import ConfigError
from recorder.ops.logs import get_logger
from recorder.ops.metrics import RecorderMetrics

__all__ = [
    "DEFAULT_METRICS_HOST",
    "DEFAULT_METRICS_PORT",
    "HealthSource",
    "MetricsServer",
    "health_body",
]

log = get_logger(__name__)

DEFAULT_METRICS_HOST: Final = "127.0.0.1"
"""Loopback: metrics are not published beyond this machine unless an operator says so."""

DEFAULT_METRICS_PORT: Final = 9464
"""The port conventionally used by Prometheus exporters of this kind."""


class HealthSource(Protocol):
    """Something that can tell whether the recorder is healthy."""

    def health(self) -> tuple[bool, Mapping[str, object]]:
        """Return whether the recorder is healthy, and details for the JSON answer.

        The details must be JSON-serialisable. When unhealthy they should hold ``"reasons"``,
        a list of short strings saying what is wrong (``"last flush failed: disk full"``).
        """
        ...


def health_body(ok: bool, details: Mapping[str, object]) -> dict[str, object]:
    """Build the ``/healthz`` JSON body from a health verdict.

    >>> health_body(True, {"connections": 2})
    {'status': 'ok', 'connections': 2}
    >>> health_body(False, {})
    {'status': 'unhealthy', 'reasons': []}
    """
    body: dict[str, object] = {"status": "ok" if ok else "unhealthy"}
    body.update((key, value) for key, value in details.items() if key != "status")
    if not ok:
        body.setdefault("reasons", [])
    return body


class MetricsServer:
    """Serve ``GET /metrics`` and ``GET /healthz`` over HTTP.

    ``/metrics`` answers in the Prometheus text format (OpenMetrics when asked for).
    ``/healthz`` answers 200 ``{"status": "ok", ...}`` or 503
    ``{"status": "unhealthy", "reasons": [...]}``, from ``health_source`` at each request.

    Args:
        metrics: what ``/metrics`` exposes.
        health_source: what ``/healthz`` asks.
        host: the address to listen on; loopback by default.
        port: the TCP port; 0 picks a free one (read :attr:`port` after :meth:`start`).
    """

    def __init__(
        self,
        metrics: RecorderMetrics,
        health_source: HealthSource,
        host: str = DEFAULT_METRICS_HOST,
        port: int = DEFAULT_METRICS_PORT,
    ) -> None:
        self.host = host
        self._port = port
        self._metrics = metrics
        self._health_source = health_source
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        """The port listened on: the actual one once started, else the one configured."""
        return self._port

    def _application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._serve_metrics)
        app.router.add_get("/healthz", self._serve_health)
        return app

    async def _serve_metrics(self, request: web.Request) -> web.Response:
        body, content_type = self._metrics.exposition(request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _serve_health(self, _: web.Request) -> web.Response:
        ok, details = self._health_source.health()
        return web.json_response(
            health_body(ok, details),
            status=200 if ok else 503,
            headers={"Cache-Control": "no-store"},
        )

    async def start(self) -> None:
        """Start listening.

        Raises:
            ConfigError: the address cannot be listened on (in use, not local, no permission).
        """
        # No access log: a scrape every few seconds would drown the recorder's own lines.
        runner = web.AppRunner(self._application(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            msg = f"cannot serve metrics on {self.host}:{self._port}: {exc.strerror or exc}"
            raise ConfigError(msg) from exc
        self._runner = runner
        # With port 0 the kernel chose the port; the bound socket's address tells which.
        self._port = next(
            (int(address[1]) for address in runner.addresses if isinstance(address, tuple)),
            self._port,
        )
        log.info("metrics server listening", host=self.host, port=self._port)

    async def stop(self) -> None:
        """Stop listening and close open connections; does nothing if not started."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
