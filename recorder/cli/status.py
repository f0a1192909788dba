"""``recorder status``: a running recorder's figures, live or as one JSON document.

It reads the recorder's metrics endpoint (``[metrics] address``), nothing on disk, so it works
from any shell of the host (or further, when the address is published) while the recorder
runs. ``--format live`` (the default) redraws a rich view every ``--interval`` until Ctrl-C
(or ``--for``); ``--format json`` reads twice, ``--interval`` apart (the event rate needs two
readings), prints one document and exits.

Exit codes: 0 healthy; 1 ``/healthz`` says unhealthy (the JSON is printed all the same; in live
mode, as of the last reading); 2 the endpoint cannot be read (a message on stderr says why) or
an option is wrong.
"""

import json
import sys
import time
from typing import Final

import click
from rich.console import Console
from rich.live import Live

from recorder.cli.status_fetch import (
    DEFAULT_STATUS_URL,
    Scrape,
    Unreachable,
    base_url,
    scrape,
)
from recorder.cli.status_view import render_status, render_unreachable
from recorder.errors import ConfigError
from recorder.ops.status import StatusSnapshot, StatusTracker
from recorder.settings.units import parse_duration

__all__ = ["STATUS_COMMANDS", "watch"]

EXIT_OK: Final = 0
EXIT_UNHEALTHY: Final = 1
EXIT_UNREACHABLE: Final = 2


def _url_value(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return base_url(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc


def _duration_value(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc
    if seconds <= 0:
        raise click.BadParameter(
            f"{value!r} is not a positive duration: expected one such as 2s or 500ms",
            ctx=ctx,
            param=param,
        )
    return seconds


class _Reader:
    """Reads the endpoint and keeps the tracker that turns readings into snapshots."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._tracker = StatusTracker()

    def read(self) -> tuple[StatusSnapshot, Scrape]:
        """Scrape now; raise :class:`Unreachable` when the endpoint cannot be read."""
        scraped = scrape(self.url)
        snapshot = self._tracker.observe(
            scraped.reading, wall=time.time(), monotonic=time.monotonic()
        )
        return snapshot, scraped


def _exit_code(scraped: Scrape) -> int:
    return EXIT_UNHEALTHY if scraped.health.ok is False else EXIT_OK


def one_document(url: str, interval: float) -> tuple[dict[str, object], int]:
    """The JSON document of ``recorder status --format json`` and its exit code.

    Raises:
        Unreachable: the endpoint cannot be read.
    """
    reader = _Reader(url)
    reader.read()
    time.sleep(interval)
    snapshot, scraped = reader.read()
    document: dict[str, object] = {"url": url, "healthy": scraped.health.ok}
    document.update(snapshot.as_dict())
    document["health"] = dict(scraped.health.body)
    return document, _exit_code(scraped)


def watch(url: str, interval: float, console: Console, run_for: float | None = None) -> int:
    """Show the live view on ``console`` until Ctrl-C or ``run_for`` seconds; the exit code.

    A refresh that fails keeps the last figures on screen under the reason, and the next one
    tries again: a recorder restarting is shown, not fatal.

    Raises:
        Unreachable: the first reading fails (nothing to show).
    """
    reader = _Reader(url)
    snapshot, scraped = reader.read()
    ends = None if run_for is None else time.monotonic() + run_for
    with Live(
        render_status(snapshot, scraped.health, url=url), console=console, auto_refresh=False
    ) as live:
        while ends is None or time.monotonic() < ends:
            time.sleep(
                interval if ends is None else max(0.0, min(interval, ends - time.monotonic()))
            )
            try:
                snapshot, scraped = reader.read()
            except Unreachable as failure:
                live.update(
                    render_status(snapshot, scraped.health, url=url, note=str(failure))
                    if snapshot.symbols or snapshot.events_total
                    else render_unreachable(url, str(failure)),
                    refresh=True,
                )
                continue
            live.update(render_status(snapshot, scraped.health, url=url), refresh=True)
    return _exit_code(scraped)


@click.command("status")
@click.option(
    "--url",
    default=DEFAULT_STATUS_URL,
    show_default=True,
    callback=_url_value,
    help="The running recorder's metrics endpoint ([metrics] address).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["live", "json"]),
    default="live",
    show_default=True,
    help="live: a view redrawn every --interval until Ctrl-C; json: one document, then exit.",
)
@click.option(
    "--interval",
    default="2s",
    show_default=True,
    callback=_duration_value,
    help="Time between two readings (json: the one the event rate is measured over).",
)
@click.option(
    "--for",
    "run_for",
    callback=_duration_value,
    help="Live view only: stop after this long (default: until Ctrl-C).",
)
def status_command(url: str, output_format: str, interval: float, run_for: float | None) -> None:
    """Show a running recorder's status from its metrics endpoint.

    Events per second, symbols delivering / quiet / silent, connections, the last flush,
    buffered rows and bytes against the memory budget, gaps of the last hour by cause, and the
    symbols whose last event is oldest. Exit 0 healthy, 1 unhealthy, 2 unreachable.
    """
    try:
        if output_format == "json":
            document, code = one_document(url, interval)
            click.echo(json.dumps(document, indent=2, ensure_ascii=False))
        else:
            code = watch(url, interval, Console(), run_for)
    except Unreachable as failure:
        click.echo(f"recorder status: {failure}", err=True)
        sys.exit(EXIT_UNREACHABLE)
    except KeyboardInterrupt:
        code = EXIT_OK
    sys.exit(code)


STATUS_COMMANDS: Final = (status_command,)
"""What :mod:`recorder.cli.main` registers."""
