"""The cron-facing command ``recorder compact``.

A standalone :class:`click.Command`; :mod:`recorder.cli.main` registers it on the
``recorder`` group. The logic lives in :mod:`recorder.storage.compact`; this module parses
options, reads the clock once, prints the report and exits with
:class:`~recorder.storage.compact.report.CompactExitCode`.

Like the report commands of :mod:`recorder.cli.reports` (whose option, settings and error
helpers it shares, so that every cron command fails the same way), it takes ``-c/--config``
and ``--root``; the root defaults to the settings (``storage.root``), and
``storage.day_grace`` comes from the same settings, so that compaction waits exactly as long as
the recorder keeps a day open.
"""

import datetime as dt
import json
import sys
from pathlib import Path

import click

from recorder.cli.reports import (
    cannot_run,
    load_command_settings,
    settings_options,
    text_or_json_option,
)
from recorder.clock import US_PER_MS, SystemClock, event_date
from recorder.errors import ConfigError, StorageError
from recorder.storage.compact.run import compact
from recorder.storage.compact.selection import parse_before

_MS_PER_SECOND = 1000


@click.command("compact")
@settings_options
@click.option(
    "--date",
    "day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Compact only this UTC day (YYYY-MM-DD).",
)
@click.option(
    "--before",
    help="Compact every day strictly before this one: 'today' (the default), 'yesterday' or "
    "YYYY-MM-DD.",
)
@click.option("--dry-run", is_flag=True, help="Change nothing; say what would be done.")
@text_or_json_option("one line per partition and a summary")
def compact_command(
    *,
    config: Path | None,
    root: str | None,
    day: dt.datetime | None,
    before: str | None,
    dry_run: bool,
    output_format: str,
) -> None:
    """Merge each finished UTC day's part files into one sorted, duplicate-free file per symbol.

    A day is taken once it is over (UTC), its grace period (storage.day_grace) has passed and
    no write-ahead log under the root still holds its rows; other days are deferred. Readers
    see either the old parts or the new file of a partition, never both, never neither. Safe
    to run while recorders run, and to run again after a crash.

    Exit 0 when done or nothing is due, 1 when a partition failed, 2 when compaction cannot run
    or a day holds a file it cannot read (that day is left untouched).
    """
    as_json = output_format == "json"
    if day is not None and before is not None:
        raise click.UsageError("--date and --before cannot be used together")
    settings = load_command_settings("compact", config, root, as_json=as_json)
    clock = SystemClock()
    today = event_date(clock.wall_us() // US_PER_MS)
    try:
        before_day = None if before is None else parse_before(before, today)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--before") from None
    try:
        report = compact(
            settings.storage.root,
            clock=clock,
            day_grace_ms=round(settings.storage.day_grace * _MS_PER_SECOND),
            only=None if day is None else day.date(),
            before=before_day,
            dry_run=dry_run,
        )
    except StorageError as exc:
        cannot_run("compact", f"cannot compact: {exc}", as_json=as_json)
    if as_json:
        click.echo(json.dumps(report.to_document(), ensure_ascii=False, indent=1))
    else:
        for line in report.render_text():
            click.echo(line)
    sys.exit(report.exit_code)


MAINTENANCE_COMMANDS: tuple[click.Command, ...] = (compact_command,)
"""The commands of this module, for ``main.add_command``."""
