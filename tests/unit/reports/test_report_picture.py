import json
import re
from pathlib import Path

import pytest
from recorded_dataset import (
    HOUR_MS,
    REPORT_SINCE,
    REPORT_UNTIL,
    T0,
    coverage_root,
    every,
    write_data_file,
)

from recorder.reports.coverage import CoverageReport, run_coverage
from recorder.reports.picture import PLOT_DIV_ID, figure_size, render_html, totals_rows


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> CoverageReport:
    root = coverage_root(tmp_path_factory.mktemp("picture"))
    return run_coverage(root, REPORT_SINCE, REPORT_UNTIL, 2000)


@pytest.fixture(scope="module")
def page(report: CoverageReport) -> str:
    return render_html(report, REPORT_UNTIL)


def figure_data(page: str) -> list[dict[str, object]]:
    """The traces plotly's page passes to ``Plotly.newPlot``, as JSON."""
    start = page.index(f'"{PLOT_DIV_ID}",') + len(f'"{PLOT_DIV_ID}",')
    data, _ = json.JSONDecoder().raw_decode(page[start:].lstrip())
    assert isinstance(data, list)
    return data


def test_the_page_carries_plotly_itself_and_loads_nothing(page: str) -> None:
    scripts = re.findall(r"<script\b[^>]*>", page)
    assert scripts
    assert not [tag for tag in scripts if "src=" in tag]
    assert "Plotly.newPlot" in page
    assert not re.search(r"<link\b", page)


def test_one_heat_map_a_trace_per_cause_and_the_backfilled_hours(page: str) -> None:
    traces = figure_data(page)
    assert traces[0]["type"] == "heatmap"
    names = [trace.get("name") for trace in traces[1:]]
    assert names == [
        "gap: disconnect",
        "gap: stall",
        "gap: restart",
        "gap: storage",
        "gap: quiet",
        "backfilled",
    ]
    by_name = {trace.get("name"): trace for trace in traces}
    disconnect, stall = by_name["gap: disconnect"], by_name["gap: stall"]
    assert disconnect["y"] == ["BTCUSDT"]
    assert disconnect["marker"]["symbol"] == ["circle-open"]  # type: ignore[index]
    assert stall["y"] == ["ETHUSDT", "ETHUSDT"]
    assert stall["marker"]["symbol"] == ["circle", "circle"]  # type: ignore[index]
    assert by_name["gap: quiet"]["visible"] == "legendonly"
    assert by_name["backfilled"]["x"] == ["2024-05-01 10:00"]


def test_the_cells_hold_coverage_and_tell_their_counts(page: str) -> None:
    heat_map = figure_data(page)[0]
    assert heat_map["x"] == ["2024-05-01 10:00", "2024-05-01 11:00", "2024-05-01 12:00"]
    assert heat_map["y"] == ["BTCUSDT", "ETHUSDT", "XRPUSDT"]
    z = heat_map["z"]
    assert isinstance(z, list)
    assert z[1][0] is None  # ETH before its listing: nothing expected, no colour
    assert z[2][2] == 1.0
    text = heat_map["text"]
    assert isinstance(text, list)
    assert "received 1,500 of 1,800 expected (83.3%)" in text[0][0]
    assert "backfilled 10 rows" in text[0][0]
    assert "missed, resolved: disconnect 300" in text[0][0]
    assert "missed, open: stall 150" in text[1][2]


def test_the_tables_hold_the_totals_and_the_worst_symbols(
    report: CoverageReport, page: str
) -> None:
    totals = dict(totals_rows(report))
    assert totals["rows received (stream)"] == "7,800"
    assert totals["coverage"] == "92.9%"
    assert totals["missed: stall"] == "300"
    assert totals["gaps"] == "2 (1 open)"
    assert '<table id="totals">' in page
    worst = page[page.index('<table id="worst">') :]
    assert worst.index("ETHUSDT") < worst.index("BTCUSDT") < worst.index("XRPUSDT")
    assert "<td>88.9%</td>" in worst


def test_symbols_are_escaped_and_any_script_is_kept(tmp_path: Path) -> None:
    write_data_file(tmp_path, "币安人生USDT", every(T0, T0 + HOUR_MS))
    page = render_html(run_coverage(tmp_path, T0, T0 + HOUR_MS, 2000), T0 + HOUR_MS)
    assert "<td>币安人生USDT</td>" in page
    assert figure_data(page)[0]["y"] == ["币安人生USDT"]


def test_an_empty_window_says_so(tmp_path: Path) -> None:
    page = render_html(run_coverage(tmp_path, T0, T0 + HOUR_MS, 2000), T0)
    assert "no data and no gap in the window" in page


def test_the_map_grows_with_symbols_and_hours(report: CoverageReport, tmp_path: Path) -> None:
    assert figure_size(report) == (900, 360)
    for n in range(40):
        write_data_file(tmp_path, f"S{n}USDT", every(T0, T0 + 48 * HOUR_MS, 3_600_000))
    big = run_coverage(tmp_path, T0, T0 + 48 * HOUR_MS, 2000)
    assert figure_size(big) == (260 + 34 * 48, 260 + 22 * 40)


def test_a_torn_gap_log_line_is_told_on_the_page(tmp_path: Path) -> None:
    write_data_file(tmp_path, "BTCUSDT", every(T0, T0 + HOUR_MS))
    torn = tmp_path / "_gaps" / "date=2024-05-01" / "host-a.jsonl"
    torn.parent.mkdir(parents=True)
    torn.write_bytes(b'{"symbol": "BTC')
    page = render_html(run_coverage(tmp_path, T0, T0 + HOUR_MS, 2000), T0 + HOUR_MS)
    assert f'<p class="warning">incomplete last line 1 of {torn} skipped</p>' in page
