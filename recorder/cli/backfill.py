"""``recorder backfill``: fill the open gaps of a window from one-minute klines.

The work is :mod:`recorder.backfill.run`'s; this module parses the options, shows progress
(a bar on a terminal, nothing else off it but one summary line, JSON for scripts) and exits 0
when every gap that could be filled was, 1 when some could not (each named, with why), 2 when
it cannot run (the root, the settings, a schema version 1 root, another maintenance command,
or a ban by the exchange); each of those is said on stderr.
"""

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click

from recorder.backfill.run import (
    DEFAULT_BACKFILL_CAUSES,
    BackfillReport,
    GapOutcome,
    GapState,
    run_backfill,
)
from recorder.cli.progress import ProgressBar
from recorder.cli.reports import (
    cannot_run,
    cause_set,
    command_now_ms,
    load_command_settings,
    optional_time_bound,
    settings_options,
    symbol_list,
    text_or_json_option,
)
from recorder.clock import SystemClock, format_utc_ms
from recorder.errors import StorageError

BANNED_ADVICE = (
    "stopped: {}; send nothing more to the exchange from this IP until the ban ends "
    "(Retry-After), then run again: the gaps filled so far stay filled"
)
"""What stderr says when a 418 stopped the run (stdout keeps its one summary line)."""


def _gap_text(outcome: GapOutcome) -> str:
    gap = outcome.gap
    return (
        f"{gap.symbol} {format_utc_ms(gap.from_ms)} -> {format_utc_ms(gap.to_ms)} "
        f"({gap.cause.value})"
    )


def summary_line(report: BackfillReport, *, dry_run: bool) -> str:
    """One line for cron: what was filled, what was not, what it cost the REST API."""
    filled = GapState.WOULD_FILL if dry_run else GapState.FILLED
    verb = "would fill" if dry_run else "filled"
    parts = [
        f"backfill: {verb} {report.count(filled)} gaps ({report.rows} rows)",
        f"{report.count(GapState.FAILED)} not filled",
        f"{report.count(GapState.NOTHING_INSIDE)} with no whole minute inside (left open)",
        f"{report.already_resolved} resolved before",
    ]
    cost = f"{report.requests} klines requests"
    if report.rate_limited:
        cost += f", {report.rate_limited} rate-limited (waited {report.waited:.1f}s in all)"
    if report.banned:
        cost += f"; stopped: {report.banned}"
    return "; ".join(parts) + f"; {cost}"


def report_document(report: BackfillReport, *, dry_run: bool) -> dict[str, Any]:
    """The run as JSON: totals, then every gap with its state."""
    return {
        "dry_run": dry_run,
        "exit_code": report.exit_code,
        "filled": report.count(GapState.FILLED),
        "would_fill": report.count(GapState.WOULD_FILL),
        "failed": report.count(GapState.FAILED),
        "nothing_inside": report.count(GapState.NOTHING_INSIDE),
        "already_resolved": report.already_resolved,
        "rows": report.rows,
        "requests": report.requests,
        "retries": report.retries,
        "rate_limited": report.rate_limited,
        "waited_seconds": round(report.waited, 3),
        "banned": report.banned,
        "gaps": [
            {
                "symbol": outcome.gap.symbol,
                "from_ms": outcome.gap.from_ms,
                "to_ms": outcome.gap.to_ms,
                "cause": outcome.gap.cause.value,
                "state": outcome.state.value,
                "rows": outcome.rows,
                "why": outcome.why,
            }
            for outcome in report.outcomes
        ],
    }


@click.command("backfill")
@settings_options
@click.option("--since", metavar="TIME", help="Gaps ending after this time (24h, 2024-05-01...).")
@click.option("--until", metavar="TIME", help="Gaps starting before this time.")
@click.option("--symbol", "symbols", metavar="A,B", help="Only these symbols, comma-separated.")
@click.option(
    "--causes",
    metavar="CAUSE,...",
    default=",".join(sorted(DEFAULT_BACKFILL_CAUSES)),
    show_default=True,
    help="Gap causes to fill (quiet: the exchange pushed nothing, there is nothing to fill).",
)
@click.option("--dry-run", is_flag=True, help="List the gaps and minutes; fetch and write nothing.")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 16),
    default=4,
    show_default=True,
    help="Symbols fetched at once (one weight budget for all).",
)
@text_or_json_option("a progress bar on a terminal, else one summary line")
def backfill_command(
    *,
    config: Path | None,
    root: str | None,
    since: str | None,
    until: str | None,
    symbols: str | None,
    causes: str,
    dry_run: bool,
    concurrency: int,
    output_format: str,
) -> None:
    """Fill logged gaps with rows rebuilt from 1-minute klines, marked source = backfill.

    For every open gap of the window: one row per whole minute inside it (event_time at the
    minute's end, close the candle's close, the rolling 24 h open, high, low and volumes from
    the 1,440 candles before), published like recorded files, then a resolution record.
    A rerun adds nothing; a kill at any moment leaves nothing partial and a rerun finishes.
    REST base URL from the settings ([source] rest_url, RECORDER_SOURCE__REST_URL).

    Exit 0 when every gap that could be filled was, 1 when some could not (each named), 2 when
    it cannot run (or the exchange banned this IP, HTTP 418).
    """
    as_json = output_format == "json"
    settings = load_command_settings("backfill", config, root, as_json=as_json)
    now_ms = command_now_ms()
    since_ms = optional_time_bound(since, "--since", now_ms)
    until_ms = optional_time_bound(until, "--until", now_ms)
    only = symbol_list(symbols, "--symbol")
    bar = ProgressBar("gap", "backfill", enabled=not as_json and sys.stderr.isatty())
    try:
        report = asyncio.run(
            run_backfill(
                settings.storage.root,
                rest_url=settings.source.rest_url,
                request_timeout=settings.source.open_timeout,
                clock=SystemClock(),
                since_ms=since_ms,
                until_ms=until_ms,
                symbols=None if only is None else frozenset(only),
                causes=cause_set(causes),
                dry_run=dry_run,
                concurrency=concurrency,
                on_start=bar.start,
                on_gap=lambda outcome: bar.advance(1, outcome.gap.symbol),
            )
        )
    except StorageError as exc:
        cannot_run("backfill", f"cannot backfill: {exc}", as_json=as_json)
    finally:
        bar.close()
    if as_json:
        click.echo(json.dumps(report_document(report, dry_run=dry_run), indent=1))
    else:
        click.echo(summary_line(report, dry_run=dry_run))
        for outcome in report.outcomes:
            if outcome.state is GapState.FAILED:
                click.echo(f"not filled: {_gap_text(outcome)}: {outcome.why}", err=True)
        if report.banned is not None:
            click.echo(f"recorder backfill: {BANNED_ADVICE.format(report.banned)}", err=True)
    sys.exit(report.exit_code)
