import asyncio
import json
import os
import re
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from recorder.clock import ManualClock
from recorder.errors import ConfigError
from recorder.ops.http import MetricsServer
from recorder.ops.metrics import RecorderMetrics

pytestmark = pytest.mark.integration

CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=10)
DOCKERFILE = Path(__file__).resolve().parents[2] / "Dockerfile"


class SwitchableHealth:
    """A health source whose verdict the test sets."""

    def __init__(self) -> None:
        self.ok = True
        self.details: dict[str, object] = {"connections": 2}

    def health(self) -> tuple[bool, Mapping[str, object]]:
        return self.ok, self.details


@pytest.fixture
def metrics() -> RecorderMetrics:
    return RecorderMetrics(clock=ManualClock(), version="1.2.3")


@pytest.fixture
def health() -> SwitchableHealth:
    return SwitchableHealth()


@pytest_asyncio.fixture
async def server(
    metrics: RecorderMetrics, health: SwitchableHealth
) -> AsyncIterator[MetricsServer]:
    server = MetricsServer(metrics, health, port=0)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest_asyncio.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session:
        yield session


def url(server: MetricsServer, path: str) -> str:
    return f"http://{server.host}:{server.port}{path}"


@pytest.mark.asyncio
async def test_listens_on_loopback_on_an_ephemeral_port(server: MetricsServer) -> None:
    assert server.host == "127.0.0.1"
    assert server.port not in (0, 9464)


@pytest.mark.asyncio
async def test_metrics_in_prometheus_text_format(
    server: MetricsServer, client: aiohttp.ClientSession, metrics: RecorderMetrics
) -> None:
    metrics.event_received("BTCUSDT", 1_700_000_000_000_000)
    metrics.reconnect("stalled")

    async with client.get(url(server, "/metrics")) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await response.text()

    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples["recorder_events_received_total", (("symbol", "BTCUSDT"),)] == 1
    assert samples["recorder_reconnects_total", (("reason", "stalled"),)] == 1


@pytest.mark.asyncio
async def test_counters_move_between_scrapes(
    server: MetricsServer, client: aiohttp.ClientSession, metrics: RecorderMetrics
) -> None:
    async def received() -> float:
        async with client.get(url(server, "/metrics")) as response:
            text = await response.text()
        [family] = [
            family
            for family in text_string_to_metric_families(text)
            if family.name == "recorder_events_received"
        ]
        return sum(sample.value for sample in family.samples)

    assert await received() == 0
    for _ in range(5):
        metrics.event_received("ETHUSDT", 1_700_000_000_000_000)
    assert await received() == 5


@pytest.mark.asyncio
async def test_openmetrics_when_the_scraper_asks_for_it(
    server: MetricsServer, client: aiohttp.ClientSession
) -> None:
    headers = {"Accept": "application/openmetrics-text; version=1.0.0"}
    async with client.get(url(server, "/metrics"), headers=headers) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        assert (await response.text()).endswith("# EOF\n")


@pytest.mark.asyncio
async def test_healthz_ok(server: MetricsServer, client: aiohttp.ClientSession) -> None:
    async with client.get(url(server, "/healthz")) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        assert response.headers["Cache-Control"] == "no-store"
        assert await response.json() == {"status": "ok", "connections": 2}


@pytest.mark.asyncio
async def test_healthz_unhealthy_then_recovered(
    server: MetricsServer, client: aiohttp.ClientSession, health: SwitchableHealth
) -> None:
    health.ok = False
    health.details = {"reasons": ["last flush failed: No space left on device"]}

    async with client.get(url(server, "/healthz")) as response:
        assert response.status == 503
        assert await response.json() == {
            "status": "unhealthy",
            "reasons": ["last flush failed: No space left on device"],
        }

    health.ok = True
    health.details = {}
    async with client.get(url(server, "/healthz")) as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok"}


@pytest.mark.asyncio
async def test_unknown_path_and_method(
    server: MetricsServer, client: aiohttp.ClientSession
) -> None:
    async with client.get(url(server, "/")) as response:
        assert response.status == 404
    async with client.post(url(server, "/metrics")) as response:
        assert response.status == 405


@pytest.mark.asyncio
async def test_port_in_use_is_a_clear_error(
    metrics: RecorderMetrics, health: SwitchableHealth
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as occupant:
        occupant.bind(("127.0.0.1", 0))
        occupant.listen()
        port = occupant.getsockname()[1]
        server = MetricsServer(metrics, health, port=port)

        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}"):
            await server.start()
    await server.stop()


@pytest.mark.asyncio
async def test_stop_closes_the_port_and_is_idempotent(
    metrics: RecorderMetrics, health: SwitchableHealth, client: aiohttp.ClientSession
) -> None:
    server = MetricsServer(metrics, health, port=0)
    await server.start()
    async with client.get(url(server, "/healthz")) as response:
        assert response.status == 200

    await server.stop()
    await server.stop()

    with pytest.raises(aiohttp.ClientConnectionError):
        await client.get(url(server, "/healthz"))


@pytest.mark.asyncio
async def test_stop_before_start_does_nothing(
    metrics: RecorderMetrics, health: SwitchableHealth
) -> None:
    server = MetricsServer(metrics, health, port=0)
    await server.stop()
    assert server.port == 0


def docker_healthcheck_argv() -> list[str]:
    """The Dockerfile's HEALTHCHECK command, with this interpreter standing in for ``python``."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    match = re.search(r"^HEALTHCHECK .*? CMD (\[.*\])$", text, re.MULTILINE)
    assert match is not None
    argv = json.loads(match[1])
    assert isinstance(argv, list)
    assert argv[0] == "python"
    return [sys.executable, *argv[1:]]


async def run_healthcheck(port: int) -> int:
    process = await asyncio.create_subprocess_exec(
        *docker_healthcheck_argv(),
        env={"PATH": os.environ.get("PATH", ""), "RECORDER_METRICS__ADDRESS": f"0.0.0.0:{port}"},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    async with asyncio.timeout(30):
        return await process.wait()


@pytest.mark.asyncio
async def test_docker_healthcheck_follows_healthz(
    server: MetricsServer, health: SwitchableHealth
) -> None:
    assert await run_healthcheck(server.port) == 0

    health.ok = False
    health.details = {"reasons": ["last flush failed"]}
    assert await run_healthcheck(server.port) == 1


@pytest.mark.asyncio
async def test_docker_healthcheck_fails_when_nothing_listens(
    metrics: RecorderMetrics, health: SwitchableHealth
) -> None:
    server = MetricsServer(metrics, health, port=0)
    await server.start()
    port = server.port
    await server.stop()

    assert await run_healthcheck(port) == 1
