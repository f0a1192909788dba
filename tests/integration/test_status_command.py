"""``recorder status`` against a running recorder: the service in-process, the simulator beside it.

The live view's screenshots (SVG, HTML and text of the recorded console) are kept under
``test-artifacts/status/`` at the top of the work tree, which git ignores: look at them, do
not commit them.
"""

import asyncio
import dataclasses
import io
import json
import logging
import random
import socket
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import pytest
import pytest_asyncio
import structlog
from click.testing import CliRunner, Result
from rich.console import Console
from service_support import SYMBOLS, settings_for, wait_for

from recorder.cli.main import main
from recorder.cli.status import watch
from recorder.clock import ManualClock
from recorder.ops.http import MetricsServer
from recorder.ops.logs import configure_logging
from recorder.ops.metrics import RecorderMetrics
from recorder.service import RecorderService
from recorder.settings import MetricsSettings
from recorder.simulate import SimulatedExchange, SimulatorConfig

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "status"


@dataclasses.dataclass
class Running:
    service: RecorderService
    url: str
    log: io.StringIO


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """The process's log, as JSON lines in memory.

    The in-process recorder must not log into the standard output that the command's runner
    captures while it runs.
    """
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    yield stream
    root = logging.getLogger()
    for handler in root.handlers[:]:
        if getattr(handler, "stream", None) is stream:
            root.removeHandler(handler)
    structlog.reset_defaults()


@pytest_asyncio.fixture
async def running(tmp_path: Path, log_stream: io.StringIO) -> AsyncIterator[Running]:
    config = SimulatorConfig(symbols=SYMBOLS, speed=20, seed=5)
    async with SimulatedExchange(config) as exchange:
        settings = settings_for(exchange, tmp_path)
        settings = dataclasses.replace(
            settings,
            metrics=MetricsSettings(address="127.0.0.1:0"),
            service=dataclasses.replace(settings.service, status_interval=0.2),
        )
        service = RecorderService(settings, rng=random.Random(3))
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        await wait_for(lambda: service.health()[0] and service.pipeline.counters.events >= 30)
        assert service.metrics_server is not None
        try:
            yield Running(service, f"http://127.0.0.1:{service.metrics_server.port}", log_stream)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)


async def status(*args: str) -> Result:
    # In a thread: the command blocks on HTTP while this loop serves the recorder it reads.
    return await asyncio.to_thread(CliRunner().invoke, main, ["status", *args])


@pytest.mark.asyncio
async def test_json_reports_the_connections_symbols_and_events_of_the_recorder(
    running: Running,
) -> None:
    received_before = running.service.pipeline.counters.events
    result = await status("--url", running.url, "--format", "json", "--interval", "300ms")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["healthy"] is True
    assert document["health"]["status"] == "ok"
    assert document["connections"] == len(running.service.source.shards) == 1
    assert document["symbols_delivering"] == len(SYMBOLS)
    assert document["symbols_quiet"] == document["symbols_silent"] == 0
    assert {s["symbol"] for s in document["symbols"]} == set(SYMBOLS)
    assert document["events_total"] >= received_before
    assert document["events_total"] <= running.service.pipeline.counters.events
    assert document["events_per_second"] > 0
    assert document["rate_interval_s"] == pytest.approx(0.3, abs=0.25)
    assert document["last_flush_ok"] is True
    assert document["seconds_since_flush"] < 5
    assert document["buffer_budget_bytes"] == running.service.settings.storage.buffer_budget
    assert set(document["gaps_last_hour"]) >= {"disconnect", "stall", "restart"}


@pytest.mark.asyncio
async def test_the_live_view_for_a_second_kept_as_a_screenshot(running: Running) -> None:
    # Not a terminal: Live then draws the last frame only, once, which makes the screenshot.
    console = Console(record=True, width=110, file=io.StringIO(), color_system="truecolor")
    code = await asyncio.to_thread(watch, running.url, 0.25, console, 1.0)
    assert code == 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    text = console.export_text(clear=False)
    console.save_svg(str(ARTIFACTS / "live.svg"), title="recorder status", clear=False)
    console.save_html(str(ARTIFACTS / "live.html"), clear=False)
    (ARTIFACTS / "live.txt").write_text(text, encoding="utf-8")
    assert f"recorder status: {running.url}" in text
    assert f"{len(SYMBOLS)} delivering, 0 quiet, 0 silent" in text
    assert "connections       1" in text
    assert "events since the start" in text  # a rate: it read more than once
    assert text.count("recorder status:") == 1
    assert all(symbol in text for symbol in SYMBOLS)


@pytest.mark.asyncio
async def test_the_command_runs_live_for_a_second_and_exits_0(running: Running) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "recorder",
        "status",
        "--url",
        running.url,
        "--interval",
        "250ms",
        "--for",
        "1s",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "command.txt").write_bytes(out)
    assert f"recorder status: {running.url}" in out.decode()
    assert "delivering" in out.decode()


@pytest.mark.asyncio
async def test_the_daemon_logs_status_lines_with_the_same_figures(running: Running) -> None:
    def status_lines() -> list[dict[str, object]]:
        lines = [json.loads(line) for line in running.log.getvalue().splitlines()]
        return [line for line in lines if line["event"] == "status"]

    await wait_for(lambda: len(status_lines()) >= 2)
    line = status_lines()[-1]
    assert line["logger"] == "recorder.ops.status_log"
    assert line["connections"] == 1
    assert line["symbols_delivering"] == len(SYMBOLS)
    assert isinstance(line["events_per_second"], float)
    assert line["events_per_second"] > 0
    assert line["last_flush_ok"] is True


class Unhealthy:
    def health(self) -> tuple[bool, Mapping[str, object]]:
        return False, {"reasons": ["the last flush failed: disk full"]}


@pytest.mark.asyncio
async def test_an_unhealthy_recorder_exits_1_with_the_json_printed() -> None:
    server = MetricsServer(RecorderMetrics(clock=ManualClock()), Unhealthy(), port=0)
    await server.start()
    try:
        result = await status(
            "--url", f"http://127.0.0.1:{server.port}", "--format", "json", "--interval", "10ms"
        )
    finally:
        await server.stop()
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["healthy"] is False
    assert document["health"]["reasons"] == ["the last flush failed: disk full"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.asyncio
@pytest.mark.parametrize("output_format", ["json", "live"])
async def test_an_unreachable_endpoint_exits_2_with_a_clear_message(output_format: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = await status("--url", url, "--format", output_format)
    assert result.exit_code == 2
    assert f"recorder status: cannot reach {url}/metrics" in result.stderr
    assert "is the recorder running" in result.stderr
    assert result.stdout == ""
