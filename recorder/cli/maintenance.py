"""The maintenance commands ``recorder compact``, ``recorder migrate`` and ``recorder retire``.

Standalone :class:`click.Command` objects; :mod:`recorder.cli.main` registers them on the
``recorder`` group. The logic of ``compact`` lives in :mod:`recorder.storage.compact`; this
module parses options, reads the clock once, prints the report and exits with
:class:`~recorder.storage.compact.report.CompactExitCode`. ``retire`` chains the storage and
gap-state steps that retire an instance, under that instance's lock.

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

from recorder.cli.options import utc_day_value
from recorder.cli.progress import ProgressBar
from recorder.cli.reports import (
    cannot_run,
    load_command_settings,
    settings_options,
    text_or_json_option,
)
from recorder.clock import US_PER_MS, SystemClock, event_date
from recorder.errors import ConfigError, StorageError
from recorder.gaps.state import remove_state, state_file
from recorder.instance import INSTANCE_ID_RULE, is_valid_instance_id
from recorder.storage.compact.run import compact
from recorder.storage.compact.selection import parse_before
from recorder.storage.locking import lock_idle_instance
from recorder.storage.migrate import migrate_root
from recorder.storage.paths import WAL_SUFFIX, instance_wal_dir, require_root
from recorder.storage.recovery import recover_instance
from recorder.storage.schema import SCHEMA_VERSION

_MS_PER_SECOND = 1000


@click.command("compact")
@settings_options
@click.option(
    "--date",
    "day",
    callback=utc_day_value,
    help="Compact only this UTC day (YYYY-MM-DD).",
)
@click.option(
    "--before",
    help="Compact every day strictly before this one: 'today' (the default), 'yesterday' or "
    "YYYY-MM-DD.",
)
@click.option("--dry-run", is_flag=True, help="Change nothing; say what would be done.")
@text_or_json_option(
    "a progress bar and one line per partition on a terminal; off it, problems and a summary"
)
def compact_command(
    *,
    config: Path | None,
    root: str | None,
    day: dt.date | None,
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
    bar = ProgressBar("partition", "compact", enabled=not as_json and sys.stderr.isatty())
    try:
        report = compact(
            settings.storage.root,
            clock=clock,
            day_grace_ms=round(settings.storage.day_grace * _MS_PER_SECOND),
            only=day,
            before=before_day,
            dry_run=dry_run,
            on_start=bar.start,
            on_done=bar.advance,
        )
    except StorageError as exc:
        cannot_run("compact", f"cannot compact: {exc}", as_json=as_json)
    finally:
        bar.close()
    if as_json:
        click.echo(json.dumps(report.to_document(), ensure_ascii=False, indent=1))
    else:
        # On a terminal the whole report follows the bar; off it (cron), what needs reading.
        for line in report.render_text() if bar.enabled else report.render_brief():
            click.echo(line)
    sys.exit(report.exit_code)


def _instance_ids(
    _: click.Context, __: click.Parameter, values: tuple[str, ...]
) -> tuple[str, ...]:
    bad = [value for value in values if not is_valid_instance_id(value)]
    if bad:
        raise click.BadParameter(f"{bad[0]!r} is not an instance id: expected {INSTANCE_ID_RULE}")
    return values


@click.command("retire")
@settings_options
@click.option(
    "--instance",
    "instance_ids",
    multiple=True,
    required=True,
    callback=_instance_ids,
    help="The instance id to retire; may be given more than once.",
)
def retire_command(*, config: Path | None, root: str | None, instance_ids: tuple[str, ...]) -> None:
    """Retire recorder instances that will not run again, so that check stops expecting them.

    For each instance: refuse if a recorder runs as it; publish what its write-ahead log still
    holds; delete its state file (what check reads the expected symbols from) and its
    write-ahead directory. Its gap-log and quarantine files stay: they are the history of
    what it recorded, and the data it published stays in the dataset.

    Exit 0 when every instance was retired, 1 when one was refused (running, unknown, or its
    log could not be published), 2 when retiring cannot run.
    """
    settings = load_command_settings("retire", config, root, as_json=False)
    dataset_root = settings.storage.root
    try:
        require_root(dataset_root)
    except StorageError as exc:
        cannot_run("retire", f"cannot retire: {exc}")
    refused = False
    for instance_id in instance_ids:
        try:
            click.echo(_retire(dataset_root, instance_id))
        except StorageError as exc:
            click.echo(f"recorder retire: instance {instance_id} not retired: {exc}", err=True)
            refused = True
    sys.exit(1 if refused else 0)


def _retire(root: Path, instance_id: str) -> str:
    """Retire one instance under its lock and say what was done.

    Raises:
        StorageError: the instance is unknown or running, or its log could not be published.
    """
    wal_dir = instance_wal_dir(root, instance_id)
    if not state_file(root, instance_id).exists() and not wal_dir.exists():
        raise StorageError(f"no state file and no write-ahead directory under {root}")
    lock = lock_idle_instance(root, instance_id)
    try:
        # Marked as a recoverer: a recorder starting as this instance meanwhile waits for us.
        lock.write_holder(recovering=True)
        try:
            report = recover_instance(root, instance_id)
        except OSError as exc:
            raise StorageError(f"its write-ahead log could not be published: {exc}") from exc
        if report.problems:
            raise StorageError(f"its write-ahead log stays: {'; '.join(report.problems)}")
        removed = remove_state(root, instance_id)
    finally:
        lock.release(remove=not any(wal_dir.glob(f"*{WAL_SUFFIX}")))
    return (
        f"retired {instance_id}: "
        f"{'state file deleted' if removed else 'no state file'}, "
        f"{report.rows_published} logged rows published; its gap-log and quarantine files "
        "stay as history"
    )


@click.command("migrate")
@settings_options
@click.option("--dry-run", is_flag=True, help="Change nothing; count what would be rewritten.")
@text_or_json_option("a summary and each file that could not be migrated")
def migrate_command(
    *, config: Path | None, root: str | None, dry_run: bool, output_format: str
) -> None:
    """Rewrite the data files of an older schema version in the current one, in place.

    Schema version 2 added the column source (stream or backfill). A root written before it
    keeps receiving version 1 files, so that readers see one schema, until this has run:
    each version 1 file is rewritten with source = stream, written aside and renamed over the
    old one (readers never see a partial file; safe to interrupt and run again, and to run
    while recorders run: they switch to the new version at their next file).

    Exit 0 when every file is in the current version, 1 when a file could not be migrated
    (named, left as it was), 2 when migrating cannot run.
    """
    as_json = output_format == "json"
    settings = load_command_settings("migrate", config, root, as_json=as_json)
    try:
        report = migrate_root(settings.storage.root, dry_run=dry_run)
    except StorageError as exc:
        cannot_run("migrate", f"cannot migrate: {exc}", as_json=as_json)
    document = {
        "root": str(settings.storage.root),
        "dry_run": dry_run,
        "version_before": report.version_before,
        "version": SCHEMA_VERSION,
        "files_migrated": report.files_migrated,
        "rows_migrated": report.rows_migrated,
        "unreadable": [{"path": str(path), "error": why} for path, why in report.unreadable],
    }
    if as_json:
        click.echo(json.dumps(document, ensure_ascii=False, indent=1))
    else:
        verb = "would rewrite" if dry_run else "rewrote"
        click.echo(
            f"{verb} {report.files_migrated} files ({report.rows_migrated} rows) of schema "
            f"version 1 in version {SCHEMA_VERSION}; {len(report.unreadable)} not migrated"
        )
        for path, why in report.unreadable:
            click.echo(f"not migrated: {path}: {why}")
    sys.exit(0 if report.complete else 1)


MAINTENANCE_COMMANDS: tuple[click.Command, ...] = (
    compact_command,
    migrate_command,
    retire_command,
)
"""The commands of this module, for ``main.add_command``."""
