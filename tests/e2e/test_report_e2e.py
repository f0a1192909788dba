"""``recorder report`` on recorded roots, its page opened in a real headless Chromium.

The screenshots are kept in ``test-artifacts/`` (git-ignored) to be looked at after a run.
"""

import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from headless_chromium import find_chromium, render
from recorded_dataset import coverage_root
from support import StartRecorder, StartSimulator, gap_records, read_rows_with, run_cli

from recorder.reports.picture import PLOT_DIV_ID

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
needs_chromium = pytest.mark.skipif(
    find_chromium() is None,
    reason="no Chromium on PATH: install Debian's chromium package (.ci/run does, as root)",
)
WINDOW = ("--since", "2024-05-01T10:00", "--until", "2024-05-01T13:00")
# Set first thing in the page: every uncaught error and rejected promise lands in an attribute
# of <html>, which the dumped DOM then shows.
ERROR_CATCHER = (
    "<script>(function(){var root=document.documentElement;function note(text){"
    "root.setAttribute('data-js-errors',(root.getAttribute('data-js-errors')||'')+text+';');}"
    "window.addEventListener('error',function(e){note(String(e.message));});"
    "window.addEventListener('unhandledrejection',function(e){note(String(e.reason));});"
    "})();</script>"
)


def with_error_catcher(page: Path, copy: Path) -> Path:
    text = page.read_text(encoding="utf-8")
    head = text.index("<head>") + len("<head>")
    copy.write_text(text[:head] + ERROR_CATCHER + text[head:], encoding="utf-8")
    return copy


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def keep(path: Path, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(path, ARTIFACTS / name)


def js_errors(dom: str) -> str | None:
    """The errors the catcher noted on ``<html>``, or ``None``."""
    found = re.match(r'(?s).*?<html[^>]*\bdata-js-errors="([^"]*)"', dom)
    return found.group(1) if found else None


def rendered(page: Path, tmp_path: Path, png: Path | None = None) -> str:
    """The DOM of ``page`` once Chromium ran it, from the plot on; fails on a JavaScript error.

    With ``png``, the screenshot of the same rendering is written there and kept as an artifact.
    """
    dom = render(with_error_catcher(page, tmp_path / f"checked-{page.name}"), png, (1300, 1100))
    if png is not None:
        keep(png, png.name)
    assert js_errors(dom) is None
    return dom[dom.index(f'id="{PLOT_DIV_ID}"') :]


@needs_chromium
def test_the_page_renders_in_chromium_without_errors(tmp_path: Path) -> None:
    root = coverage_root(tmp_path / "data")
    out = tmp_path / "report.html"
    result = run_cli("report", "--root", str(root), *WINDOW, "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"wrote {out}: 3 symbols, 3 hours, coverage 92.9%, 1 open")

    plot = rendered(out, tmp_path, tmp_path / "report-built-root.png")
    # plotly drew its SVG: the heat map's image, a marker per gap cell and backfilled hour, and
    # a legend entry per cause seen.
    assert 'class="main-svg"' in plot
    assert plot.count('class="hm"') == 1
    assert plot.count('class="point"') == 4
    assert "gap: disconnect" in plot
    assert "gap: stall" in plot
    assert "backfilled" in plot
    assert '<table id="worst">' in plot


@needs_chromium
def test_the_error_catcher_does_catch_an_error(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text("<html><head></head><body><script>nope();</script></body></html>")
    errors = js_errors(render(with_error_catcher(page, tmp_path / "checked.html")))
    assert errors is not None
    assert "nope is not defined" in errors


@needs_chromium
def test_a_recording_with_a_dropped_connection(
    tmp_path: Path, start_simulator: StartSimulator, start_recorder: StartRecorder
) -> None:
    symbols = ["BTCUSDT", "ETHUSDT", "币安人生USDT"]
    start_ms = 1_714_557_600_000  # 2024-05-01T10:00:00Z
    simulator = start_simulator(
        "--symbols", ",".join(symbols), "--speed", "20", "--start-ms", str(start_ms)
    )
    root = tmp_path / "data"
    config = '[storage]\nflush_interval = "200ms"\n[source]\nbackoff_initial = "200ms"\n'
    recorder = start_recorder(root=root, url=simulator.url, symbols=symbols, config=config)
    recorder.wait_for_log("ready")
    simulator.wait_for_deliveries(symbols, each=2)
    simulator.inject("drop")
    recorder.wait_for_log("connection lost")
    simulator.wait_for_deliveries(symbols, each=2)
    simulator.freeze()
    recorder.wait_until_caught_up(simulator, durable=False)
    assert recorder.terminate() == 0
    lost = [g for g in gap_records(root) if g["cause"] == "disconnect"]
    assert lost, "the dropped connection must leave a gap for the report to show"

    out, png = tmp_path / "recorded.html", tmp_path / "recorded.png"
    result = run_cli("report", "--root", str(root), *WINDOW, "--out", str(out), "--png", str(png))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"wrote {out} and {png}: 3 symbols, 3 hours" in result.stdout
    keep(png, "report-recorded-root-heat-map.png")
    # kaleido's export of the heat map alone, at the size the page draws it.
    assert png_size(png) == (900, 400)

    plot = rendered(out, tmp_path, tmp_path / "report-recorded-root.png")
    assert "gap: disconnect" in plot
    # The totals are the dataset's, as an analyst's reader sees it, and the gap log's.
    assert f"<td>{len(read_rows_with('duckdb', root)):,}</td>" in plot
    missed = sum(g["missed"] for g in lost)
    assert f"<td>missed: disconnect</td><td>{missed:,}</td>" in plot


def test_without_the_report_extra_it_says_what_to_install(tmp_path: Path) -> None:
    # plotly made unimportable in a fresh interpreter, as where the extra is not installed.
    code = (
        "import sys; sys.modules['plotly'] = None\n"
        "from recorder.cli.main import main\n"
        f"main(['report', '--root', {str(tmp_path)!r}])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "pip install 'recorder[report]'" in result.stderr
    assert not (tmp_path / "report.html").exists()
