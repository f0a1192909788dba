"""The cron-facing commands ``recorder gaps``, ``recorder check`` and ``recorder verify``.

Standalone :class:`click.Command` objects; :mod:`recorder.cli.main` registers them on the
``recorder`` group. The logic lives in :mod:`recorder.reports`; this module parses options,
reads the clock once, prints, and exits with :class:`~recorder.reports.read.ExitCode`.

Every command takes ``-c/--config`` and ``--root`` like ``recorder run``: the root defaults to
the settings (``storage.root`` from the TOML file or ``RECORDER_STORAGE__ROOT``).

Times (``--since``, ``--until``) accept ``now``, a duration before now with a unit and of any
length (``24h``, ``90m``, ``7d``, ``1000d``), an ISO date (``2024-05-01``, midnight UTC) or an
ISO date and time (UTC unless it carries an offset): see
:func:`recorder.reports.read.parse_time_bound`. Every refusal of an option names what was
expected.
"""

import datetime as dt
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final, NoReturn, TypeVar

import click

from recorder.cli.options import count_value, utc_day_value
from recorder.clock import SystemClock
from recorder.errors import ConfigError, StorageError
from recorder.gaps.detector import GapCause
from recorder.gaps.resolutions import read_resolutions
from recorder.gaps.scan import TornLine, scan_gap_log
from recorder.reports.check import DEFAULT_CHECK_CAUSES, CheckLimits, run_check
from recorder.reports.gaps import render_gaps_csv, render_gaps_json, render_gaps_table
from recorder.reports.read import ExitCode, parse_time_bound, torn_line_warning
from recorder.reports.verify import run_verify
from recorder.settings import Settings, load_settings
from recorder.settings.units import parse_duration
from recorder.storage.paths import require_root
from recorder.symbols import MAX_SYMBOL_LENGTH, is_valid_symbol

_F = TypeVar("_F", bound=Callable[..., object])

_MS_PER_SECOND = 1000
_SYMBOL_EXPECTED: Final = (
    "letters and digits of any script, '_' allowed after the first character, at most "
    f"{MAX_SYMBOL_LENGTH} characters, such as BTCUSDT"
)


def settings_options(command: _F) -> _F:
    """Add ``-c/--config`` and ``--root``, as ``recorder run`` has them."""
    command = click.option(
        "--root",
        metavar="DIR",
        help="Dataset root directory (default: storage.root from the settings).",
    )(command)
    return click.option(
        "-c",
        "--config",
        type=click.Path(dir_okay=False, path_type=Path),
        help="TOML settings file (default: $RECORDER_CONFIG, else built-in defaults).",
    )(command)


def text_or_json_option(text_help: str) -> Callable[[_F], _F]:
    """Add ``--format text|json`` (into ``output_format``); ``text_help`` says what text shows."""
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help=f"text: {text_help}; json: one document.",
    )


def cannot_run(command: str, message: str, *, as_json: bool = False) -> NoReturn:
    """Report that ``command`` cannot do its job and exit with ``CANNOT_CHECK``."""
    if as_json:
        document = {"status": "error", "exit_code": int(ExitCode.CANNOT_CHECK), "error": message}
        click.echo(json.dumps(document, ensure_ascii=False, indent=1))
    else:
        click.echo(f"recorder {command}: {message}", err=True)
    sys.exit(ExitCode.CANNOT_CHECK)


def load_command_settings(
    command: str, config: Path | None, root: str | None, *, as_json: bool
) -> Settings:
    """Load the settings a cron command runs with, or exit 2 naming what is wrong."""
    try:
        return load_settings(config, os.environ, {"storage.root": root})
    except ConfigError as exc:
        cannot_run(command, f"configuration error: {exc}", as_json=as_json)


def command_now_ms() -> int:
    """The wall clock now, in ms: what a command's relative times (``24h``) count back from."""
    return SystemClock().wall_us() // 1000


def time_bound(value: str, option: str, now_ms: int) -> int:
    """Parse a time option (``24h``, ``2024-05-01``, ISO-8601); a refusal names the option."""
    try:
        return parse_time_bound(value, now_ms)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def optional_time_bound(value: str | None, option: str, now_ms: int) -> int | None:
    """:func:`time_bound`, ``None`` when the option was not given."""
    return None if value is None else time_bound(value, option, now_ms)


def symbol_list(value: str | None, option: str) -> tuple[str, ...] | None:
    """Parse a comma-separated symbols option, upper-cased; a refusal names the option."""
    if value is None:
        return None
    symbols = tuple(part.strip().upper() for part in value.split(",") if part.strip())
    bad = [symbol for symbol in symbols if not is_valid_symbol(symbol)]
    if bad or not symbols:
        raise click.BadParameter(
            f"{value!r} is not a comma-separated list of symbols: expected symbols such as "
            f"BTCUSDT,ETHUSDT, each {_SYMBOL_EXPECTED}",
            param_hint=option,
        )
    return symbols


def _warn_torn(lines: tuple[TornLine, ...] | list[TornLine]) -> None:
    for line in lines:
        click.echo(
            f"warning: {torn_line_warning(line)} (an append in progress, or cut short by a crash)",
            err=True,
        )


@click.command("gaps")
@settings_options
@click.option(
    "--since", metavar="TIME", help="List gaps ending after this time (24h, 2024-05-01, ...)."
)
@click.option("--until", metavar="TIME", help="List gaps starting before this time.")
@click.option("--symbol", metavar="SYMBOL", help="Only this symbol's gaps.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="table: aligned columns and a totals line; json: one array of gap records; "
    "csv: a header row, then one row per gap.",
)
@click.option(
    "--state",
    type=click.Choice(["all", "open", "resolved"]),
    default="all",
    show_default=True,
    help="open: gaps no backfill filled yet; resolved: gaps recorder backfill filled.",
)
def gaps_command(
    *,
    config: Path | None,
    root: str | None,
    since: str | None,
    until: str | None,
    symbol: str | None,
    output_format: str,
    state: str,
) -> None:
    """List logged gaps, oldest end first, each with its state (open or resolved).

    Every record is listed as logged, one per instance that logged it; the totals line of
    the table counts each distinct gap (symbol, from, to) once. A gap is resolved once
    recorder backfill filled it (its resolution record: rows added, when).
    """
    settings = load_command_settings("gaps", config, root, as_json=False)
    now_ms = command_now_ms()
    since_ms = optional_time_bound(since, "--since", now_ms)
    until_ms = optional_time_bound(until, "--until", now_ms)
    only = None
    if symbol is not None:
        only = symbol.strip().upper()
        if not is_valid_symbol(only):
            raise click.BadParameter(
                f"{symbol!r} is not a symbol: expected {_SYMBOL_EXPECTED}", param_hint="--symbol"
            )
    try:
        require_root(settings.storage.root)
        scan = scan_gap_log(settings.storage.root, since_ms, until_ms, only)
        resolutions = read_resolutions(settings.storage.root)
    except StorageError as exc:
        cannot_run("gaps", str(exc))
    _warn_torn(scan.torn)
    gaps = [
        gap
        for gap in scan.gaps
        if state == "all" or (gap.key in resolutions) == (state == "resolved")
    ]
    render = {
        "table": render_gaps_table,
        "json": render_gaps_json,
        "csv": render_gaps_csv,
    }[output_format]
    click.echo(render(gaps, resolutions), nl=False)


def cause_set(value: str) -> frozenset[GapCause]:
    """Parse a comma-separated gap causes option; a refusal lists the causes."""
    names = [part.strip().lower() for part in value.split(",") if part.strip()]
    known = {cause.value: cause for cause in GapCause}
    bad = [name for name in names if name not in known]
    if bad or not names:
        raise click.BadParameter(
            f"{value!r} is not a comma-separated list of causes: expected some of "
            f"{', '.join(known)}",
            param_hint="--causes",
        )
    return frozenset(known[name] for name in names)


def _duration_ms(value: str, option: str) -> int:
    try:
        return round(parse_duration(value) * _MS_PER_SECOND)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


@click.command("check")
@settings_options
@click.option(
    "--since",
    metavar="TIME",
    default="1h",
    show_default=True,
    help="Window whose missed updates count (a duration before now, or a time).",
)
@click.option(
    "--max-missed",
    metavar="N",
    callback=count_value,
    default="0",
    show_default=True,
    help="Missed updates tolerated per symbol over the window.",
)
@click.option(
    "--max-missed-total",
    metavar="N",
    callback=count_value,
    help="Missed updates tolerated over all symbols together (default: no limit).",
)
@click.option(
    "--max-age",
    metavar="DURATION",
    default="15m",
    show_default=True,
    help="How old a symbol's newest event may be.",
)
@click.option(
    "--symbols",
    metavar="A,B,...",
    help="Symbols expected, comma-separated (default: those in the recorder's state files).",
)
@click.option(
    "--causes",
    metavar="CAUSE,...",
    default=",".join(sorted(DEFAULT_CHECK_CAUSES)),
    show_default=True,
    help="Gap causes whose missed updates count (quiet: the exchange pushed nothing).",
)
@click.option(
    "--include-resolved",
    is_flag=True,
    help="Count the gaps recorder backfill resolved too (by default only open gaps count).",
)
@text_or_json_option("one line per problem (or one OK line)")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing when healthy (text format).")
def check_command(
    *,
    config: Path | None,
    root: str | None,
    since: str,
    max_missed: int,
    max_missed_total: int | None,
    max_age: str,
    symbols: str | None,
    causes: str,
    include_resolved: bool,
    output_format: str,
    quiet: bool,
) -> None:
    """Check the recording, for cron: exit 0 healthy, 1 problems, 2 cannot check.

    A problem is a symbol with more missed updates than --max-missed over the window (or all
    symbols together over --max-missed-total), or an expected symbol whose newest event, in
    the state files and the sealed data, is older than --max-age.
    """
    as_json = output_format == "json"
    settings = load_command_settings("check", config, root, as_json=as_json)
    now_ms = command_now_ms()
    limits = CheckLimits(
        now_ms=now_ms,
        since_ms=time_bound(since, "--since", now_ms),
        max_missed=max_missed,
        max_missed_total=max_missed_total,
        max_age_ms=_duration_ms(max_age, "--max-age"),
        symbols=symbol_list(symbols, "--symbols"),
        causes=cause_set(causes),
        include_resolved=include_resolved,
    )
    try:
        report = run_check(settings.storage.root, limits)
    except (StorageError, ConfigError) as exc:
        cannot_run("check", f"cannot check: {exc}", as_json=as_json)
    if as_json:
        click.echo(json.dumps(report.to_document(), ensure_ascii=False, indent=1))
    elif report.problems or not quiet:
        # A torn line is usually an append caught mid-write: not worth a cron mail alone.
        _warn_torn(report.torn_lines)
        for line in report.render_text():
            click.echo(line)
    sys.exit(report.exit_code)


@click.command("verify")
@settings_options
@click.option(
    "--date",
    "day",
    callback=utc_day_value,
    metavar="YYYY-MM-DD",
    help="Verify only this UTC day (YYYY-MM-DD); default: every day.",
)
@text_or_json_option("one line per finding and a summary")
def verify_command(
    *,
    config: Path | None,
    root: str | None,
    day: dt.date | None,
    output_format: str,
) -> None:
    """Read every sealed data file and check it; compare the gaps in the data with the log.

    Checks each file's footer, schema, metadata, sort order and dates, duplicates within and
    across files, and that every gap in the data is in the gap log. Exit 0 when all is well
    (notices allowed), 1 on problems, 2 when it cannot verify.
    """
    as_json = output_format == "json"
    settings = load_command_settings("verify", config, root, as_json=as_json)
    try:
        report = run_verify(
            settings.storage.root,
            day,
            settings.gaps.interval_ms,
        )
    except (StorageError, ConfigError) as exc:
        cannot_run("verify", f"cannot verify: {exc}", as_json=as_json)
    if as_json:
        click.echo(json.dumps(report.to_document(), ensure_ascii=False, indent=1))
    else:
        _warn_torn(report.torn_lines)
        for line in report.render_text():
            click.echo(line)
    sys.exit(report.exit_code)


REPORT_COMMANDS: tuple[click.Command, ...] = (gaps_command, check_command, verify_command)
"""The commands of this module, for ``main.add_command``."""
