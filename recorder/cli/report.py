"""``recorder report``: the picture of a recording, as one self-contained HTML file.

The numbers are :mod:`recorder.reports.coverage`'s, the drawing
:mod:`recorder.reports.picture`'s (plotly, the ``report`` extra), the optional PNG the heat map
exported by kaleido through the system's Chromium. Exit 0 when the files were written, 2 when
the report cannot be made (no plotly, no root, bad options, an unreadable file, no Chromium for
``--png``).
"""

import os
from pathlib import Path

import click

from recorder.cli.reports import (
    cannot_run,
    command_now_ms,
    load_command_settings,
    settings_options,
    time_bound,
)
from recorder.errors import StorageError
from recorder.reports.coverage import run_coverage
from recorder.reports.picture import (
    PngExportError,
    ReportExtraMissingError,
    render_html,
    require_plotly,
    write_png,
)
from recorder.reports.read import plural, torn_line_warning


def _write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file: never a half-written report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Beside the target, under a name of this process; opened as any file (the umask decides
    # who may read the report), not private as a mkstemp file would be.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@click.command("report")
@settings_options
@click.option(
    "--since",
    metavar="TIME",
    default="24h",
    show_default=True,
    help="Start of the window (a duration before now, or a time).",
)
@click.option(
    "--until", metavar="TIME", default="now", show_default=True, help="End of the window."
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("report.html"),
    show_default=True,
    help="The HTML file to write.",
)
@click.option(
    "--png",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a PNG of the heat map (kaleido, with Chromium on PATH).",
)
def report_command(
    *,
    config: Path | None,
    root: str | None,
    since: str,
    until: str,
    out: Path,
    png: Path | None,
) -> None:
    """Draw the coverage of the recording as one self-contained HTML page.

    A heat map of symbol by UTC hour (rows received over updates expected; gaps marked by
    cause, filled while open, hollow once resolved; backfilled hours framed), the totals and
    the worst symbols. Exit 0 written, 2 cannot run.
    """
    try:
        require_plotly()
    except ReportExtraMissingError as exc:
        cannot_run("report", str(exc))
    settings = load_command_settings("report", config, root, as_json=False)
    now_ms = command_now_ms()
    since_ms = time_bound(since, "--since", now_ms)
    until_ms = time_bound(until, "--until", now_ms)
    if until_ms <= since_ms:
        raise click.BadParameter(
            f"{until!r} is not after --since {since!r}: expected a later time", param_hint="--until"
        )
    try:
        report = run_coverage(settings.storage.root, since_ms, until_ms, settings.gaps.interval_ms)
        _write_atomically(out, render_html(report, now_ms))
    except (StorageError, OSError) as exc:
        cannot_run("report", f"cannot report: {exc}")
    for line in report.torn_lines:
        click.echo(f"warning: {torn_line_warning(line)}", err=True)
    if png is not None:
        try:
            write_png(report, png)
        except (PngExportError, ReportExtraMissingError) as exc:
            cannot_run("report", f"wrote {out} but no PNG: {exc}")
    coverage = report.totals.coverage
    summary = "-" if coverage is None else f"{coverage * 100:.1f}%"
    written = f"{out}" if png is None else f"{out} and {png}"
    click.echo(
        f"wrote {written}: {plural(len(report.symbols), 'symbol')}, "
        f"{plural(len(report.hours), 'hour')}, coverage {summary}, "
        f"{plural(report.open_gaps, 'open gap')}"
    )
