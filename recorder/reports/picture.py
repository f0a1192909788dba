"""The picture of a recording: a coverage report drawn as one self-contained HTML page.

What :func:`~recorder.reports.coverage.run_coverage` computed, drawn. The heat map is plotly's
(``pip install 'recorder[report]'``): one cell per symbol and UTC hour, coloured by coverage (rows
received over updates expected); a marker in every cell where the gap log says updates were
missed, coloured by the cause that missed the most there (filled: a gap still open; hollow: every
gap there resolved by a backfill); a square frame around every hour where backfilled rows were
added. Hovering a cell tells its counts and its missed updates by cause. Below it, the totals and
the worst symbols, as plain HTML tables.

plotly.js is written into the page itself (no CDN): the file opens offline, mailed or copied
anywhere. :func:`write_png` exports the heat map alone as a PNG through kaleido, which drives
the system's Chromium. plotly has no type information, so its use stays in this module, behind
:func:`render_html` and :func:`write_png`.
"""

import functools
import html
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from recorder.clock import format_utc_ms
from recorder.errors import RecorderError
from recorder.gaps.detector import GapCause
from recorder.reports.coverage import CoverageReport, HourCell, SymbolCoverage
from recorder.reports.read import plural

INSTALL_HINT: Final = "pip install 'recorder[report]'"
"""How to install what drawing the report needs."""

PLOT_DIV_ID: Final = "coverage-map"
"""The ``id`` of the heat map's ``<div>`` in the page."""

CAUSE_COLOURS: Final[dict[GapCause, str]] = {
    GapCause.DISCONNECT: "#d62728",
    GapCause.STALL: "#ff7f0e",
    GapCause.RESTART: "#9467bd",
    GapCause.STORAGE: "#8c564b",
    GapCause.QUIET: "#7f7f7f",
}
"""The colour of each cause's markers (plotly's category colours, told apart in print too)."""

BACKFILL_COLOUR: Final = "#1f77b4"

# Red through yellow to green; full coverage and above is the darkest green.
_COLOUR_SCALE: Final = [
    [0.0, "#a50026"],
    [0.5, "#f46d43"],
    [0.8, "#fee08b"],
    [0.95, "#a6d96a"],
    [1.0, "#1a9850"],
]
_ROW_PX: Final = 22
_MARGIN_TOP_PX: Final = 170
_MARGIN_BOTTOM_PX: Final = 30
_TITLE_PX: Final = 40
_COLUMN_PX: Final = 34
_MAP_MARGIN_PX: Final = 260


class ReportExtraMissingError(RecorderError):
    """plotly is not installed: the report cannot be drawn."""


class PngExportError(RecorderError):
    """The PNG could not be written: no Chromium for kaleido, or the export failed."""


def _plotly() -> Any:
    try:
        import plotly.graph_objects as go  # noqa: PLC0415 - an optional extra
    except ImportError as exc:
        raise ReportExtraMissingError(f"drawing the report needs plotly: {INSTALL_HINT}") from exc
    return go


def require_plotly() -> None:
    """Make sure plotly can be imported.

    Raises:
        ReportExtraMissingError: it cannot; the message says how to install it.
    """
    _plotly()


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _hour_label(hour_ms: int) -> str:
    # "2024-05-01 10:00": categories, so that markers sit in the middle of their cells.
    return format_utc_ms(hour_ms)[:16].replace("T", " ")


def _causes_text(by_cause: dict[GapCause, int]) -> str:
    return ", ".join(f"{cause.value} {missed:,}" for cause, missed in by_cause.items()) or "none"


def _cell_text(symbol: str, cell: HourCell) -> str:
    lines = [
        f"<b>{html.escape(symbol)}</b> {_hour_label(cell.hour_ms)} UTC",
        f"received {cell.received:,} of {cell.expected:,} expected ({_percent(cell.coverage)})",
    ]
    if cell.backfilled:
        lines.append(f"backfilled {cell.backfilled:,} rows")
    if cell.open_missed:
        lines.append(f"missed, open: {_causes_text(dict(cell.open_missed))}")
    if cell.resolved_missed:
        lines.append(f"missed, resolved: {_causes_text(dict(cell.resolved_missed))}")
    return "<br>".join(lines)


def _missed_most_by(cause: GapCause, cell: HourCell) -> bool:
    """Whether ``cause`` missed the most updates of ``cell`` (the first cause wins a tie)."""
    by_cause = cell.missed_by_cause
    return bool(by_cause) and max(by_cause, key=lambda known: by_cause[known]) is cause


_Point = tuple[str, str, HourCell]
"""A marked cell: its hour's label, its symbol, the cell."""


def _cells_where(
    report: CoverageReport, labels: Sequence[str], wanted: Callable[[HourCell], bool]
) -> list[_Point]:
    return [
        (label, symbol.symbol, cell)
        for symbol in report.symbols
        for label, cell in zip(labels, symbol.cells, strict=True)
        if wanted(cell)
    ]


def _markers(go: Any, points: Sequence[_Point], name: str, marker: dict[str, Any]) -> Any:
    """A trace of one marker in the middle of each cell of ``points``, hovering as the cell."""
    return go.Scatter(
        x=[label for label, _, _ in points],
        y=[symbol for _, symbol, _ in points],
        text=[_cell_text(symbol, cell) for _, symbol, cell in points],
        hovertemplate="%{text}<extra></extra>",
        mode="markers",
        name=name,
        marker=marker,
        # An empty trace stays out of the way, in the legend only when clicked on.
        visible=True if points else "legendonly",
    )


def _heat_map(go: Any, report: CoverageReport) -> Any:
    x = [_hour_label(hour) for hour in report.hours]
    y = [symbol.symbol for symbol in report.symbols]
    z = [[cell.coverage for cell in symbol.cells] for symbol in report.symbols]
    text = [[_cell_text(symbol.symbol, cell) for cell in symbol.cells] for symbol in report.symbols]
    figure = go.Figure()
    figure.add_trace(
        go.Heatmap(
            x=x,
            y=y,
            z=z,
            text=text,
            hovertemplate="%{text}<extra></extra>",
            zmin=0,
            zmax=1,
            colorscale=_COLOUR_SCALE,
            colorbar={"title": {"text": "coverage"}, "tickformat": ".0%"},
            xgap=1,
            ygap=1,
            name="coverage",
        )
    )
    for cause, colour in CAUSE_COLOURS.items():
        points = _cells_where(report, x, functools.partial(_missed_most_by, cause))
        # Filled while a gap of the cell is open; hollow once backfill resolved them all.
        shapes = ["circle" if cell.open_missed else "circle-open" for _, _, cell in points]
        marker = {
            "color": colour,
            "size": 9,
            "symbol": shapes,
            "line": {"color": colour, "width": 2},
        }
        figure.add_trace(_markers(go, points, f"gap: {cause.value}", marker))
    backfilled = _cells_where(report, x, lambda cell: cell.backfilled > 0)
    marker = {"symbol": "square-open", "size": 18, "color": BACKFILL_COLOUR, "line": {"width": 2}}
    figure.add_trace(_markers(go, backfilled, "backfilled", marker))
    width, height = figure_size(report)
    # The hours along the top: with hundreds of symbols the bottom of the map is far away. The
    # legend sits above them, placed in the plot's own fractions of its height.
    plot_height = height - _MARGIN_TOP_PX - _MARGIN_BOTTOM_PX
    figure.update_layout(
        width=width,
        height=height,
        margin={"l": 140, "r": 40, "t": _MARGIN_TOP_PX, "b": _MARGIN_BOTTOM_PX},
        plot_bgcolor="#f4f4f4",
        # plotly hides a legend of one entry by itself; one cause alone still needs its colour.
        showlegend=True,
        legend={
            "orientation": "h",
            "x": 0,
            "y": 1 + (_MARGIN_TOP_PX - 30) / plot_height,
            "yanchor": "bottom",
        },
        xaxis={
            "title": {"text": "hour (UTC)"},
            "type": "category",
            "tickangle": -45,
            "side": "top",
        },
        yaxis={"title": {"text": "symbol"}, "type": "category", "autorange": "reversed"},
        hoverlabel={"align": "left"},
    )
    return figure


def figure_size(report: CoverageReport) -> tuple[int, int]:
    """The heat map's width and height in pixels: a readable cell per symbol and hour."""
    width = max(900, _MAP_MARGIN_PX + _COLUMN_PX * len(report.hours))
    height = max(360, _MAP_MARGIN_PX + _ROW_PX * len(report.symbols))
    return width, height


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], table_id: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(value)}</td>" for value in row) + "</tr>"
        for row in rows
    )
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def totals_rows(report: CoverageReport) -> list[tuple[str, str]]:
    """The totals table: what was recorded and missed over the window, all symbols."""
    rows = [
        ("symbols", f"{len(report.symbols):,}"),
        ("hours", f"{len(report.hours):,}"),
        ("rows received (stream)", f"{report.totals.received:,}"),
        ("rows backfilled", f"{report.totals.backfilled:,}"),
        ("updates expected", f"{report.totals.expected:,}"),
        ("coverage", _percent(report.totals.coverage)),
        ("gaps", f"{report.gaps:,} ({report.open_gaps:,} open)"),
    ]
    by_cause = report.totals.missed_by_cause
    rows.extend((f"missed: {cause.value}", f"{by_cause.get(cause, 0):,}") for cause in GapCause)
    rows.append(("missed, still open", f"{report.totals.still_open:,}"))
    return rows


def _worst_row(symbol: SymbolCoverage) -> tuple[str, ...]:
    return (
        symbol.symbol,
        _percent(symbol.totals.coverage),
        f"{symbol.totals.received:,}",
        f"{symbol.totals.expected:,}",
        f"{symbol.totals.backfilled:,}",
        _causes_text(symbol.totals.missed_by_cause),
        f"{symbol.gaps:,} ({symbol.open_gaps:,} open)",
    )


_STYLE: Final = """
body { font-family: system-ui, sans-serif; margin: 20px; color: #222; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; }
h2 { font-size: 1.1em; margin-top: 1.6em; }
p.window { color: #555; margin-top: 0; }
p.warning { color: #a50026; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ccc; padding: 3px 10px; text-align: left; }
td:not(:first-child) { text-align: right; }
th { background: #eee; }
"""


def render_html(report: CoverageReport, generated_ms: int) -> str:
    """Draw ``report`` as one self-contained HTML page (plotly.js inline, no network needed).

    Args:
        report: the coverage to draw.
        generated_ms: when the report was made, for the page's heading.

    Raises:
        ReportExtraMissingError: plotly is not installed.
    """
    go = _plotly()
    figure = _heat_map(go, report)
    plot = figure.to_html(
        full_html=False,
        include_plotlyjs=True,
        div_id=PLOT_DIV_ID,
        config={"displaylogo": False, "responsive": False},
    )
    window = (
        f"{format_utc_ms(report.since_ms)} to {format_utc_ms(report.until_ms)} "
        f"(updates expected every {report.interval_ms / 1000:g} s); root {report.root}; "
        f"made {format_utc_ms(generated_ms)}"
    )
    warnings = "".join(
        f'<p class="warning">incomplete last line {line.line_number} of '
        f"{html.escape(str(line.path))} skipped</p>"
        for line in report.torn_lines
    )
    empty = "" if report.symbols else '<p class="warning">no data and no gap in the window</p>'
    totals = _table(("", "all symbols"), totals_rows(report), "totals")
    worst = _table(
        ("symbol", "coverage", "received", "expected", "backfilled", "missed", "gaps"),
        [_worst_row(symbol) for symbol in report.worst()],
        "worst",
    )
    legend = (
        "Cell colour: rows received from the stream over updates expected (the hour over the "
        "update interval, from the symbol's first to its last sign of life in the window). "
        "Marker: missed updates in the gap log, coloured by the cause that missed the most in "
        "the hour; filled while a gap is open, hollow once backfill resolved it. Blue square: "
        "rows rebuilt by backfill in the hour. quiet is the exchange pushing nothing new, not "
        "a loss."
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        "<title>recorder report</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>Recording coverage</h1>"
        f'<p class="window">{html.escape(window)}</p>'
        f"{warnings}{empty}"
        f"<p>{html.escape(legend)}</p>"
        f"{plot}"
        f"<h2>Totals</h2>{totals}"
        f"<h2>Worst symbols</h2>{worst}"
        "</body></html>\n"
    )


def write_png(report: CoverageReport, path: Path) -> None:
    """Export the heat map of ``report`` (legend and colour bar included) as a PNG at ``path``.

    kaleido renders it in the system's Chromium, found on ``PATH`` (Debian's ``chromium``
    package); it is never downloaded.

    Raises:
        ReportExtraMissingError: plotly or kaleido is not installed.
        PngExportError: no Chromium, or the export failed.
    """
    go = _plotly()
    try:
        import kaleido  # noqa: F401, PLC0415 - an optional extra; plotly imports it too
    except ImportError as exc:
        raise ReportExtraMissingError(f"writing a PNG needs kaleido: {INSTALL_HINT}") from exc
    figure = _heat_map(go, report)
    width, height = figure_size(report)
    # A PNG travels without its page: it says itself what it shows, in a band above the legend.
    coverage = _percent(report.totals.coverage)
    title = (
        f"Recording coverage {_hour_label(report.since_ms)} to {_hour_label(report.until_ms)} "
        f"UTC: {plural(len(report.symbols), 'symbol')}, coverage {coverage}, "
        f"{plural(report.open_gaps, 'open gap')}"
    )
    height += _TITLE_PX
    figure.update_layout(
        height=height,
        margin={"t": _MARGIN_TOP_PX + _TITLE_PX},
        title={
            "text": title,
            "font": {"size": 14},
            "x": 0.01,
            "xanchor": "left",
            "y": 0.995,
            "yanchor": "top",
        },
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.write_image(str(path), format="png", width=width, height=height)
    except (OSError, RuntimeError, ValueError) as exc:
        raise PngExportError(
            f"cannot write {path}: {_export_failure(exc)} (kaleido renders it in Chromium: "
            "install Debian's chromium package, or set BROWSER_PATH to a Chromium)"
        ) from exc


def _export_failure(exc: BaseException) -> str:
    """The first sentence of what made an export fail.

    plotly wraps kaleido's "no browser found" in advice to download Chrome (from a site this
    project does not rely on): the first sentence of the error underneath says what is wrong.
    """
    inner = exc.__cause__ or exc.__context__ or exc
    text = " ".join(str(inner).split()) or exc.__class__.__name__
    return text.split(". ")[0]
