"""The ``recorder`` command line, and its signal handling.

SIGTERM and SIGINT set the stop event; SIGHUP asks the running service to read its settings
again. Nothing else handles signals.
"""

import asyncio
import functools
import gc
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import click

from recorder import __version__
from recorder.cli.options import port_value, positive_number_value, whole_number_value
from recorder.errors import ConfigError, RecorderError
from recorder.ops.logs import configure_logging, get_logger
from recorder.settings import Settings, load_settings, settings_to_mapping

log = get_logger(__name__)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def _run_until_signalled(
    main: Callable[[asyncio.Event], Coroutine[Any, Any, None]],
    on_hangup: Callable[[], None] | None = None,
) -> None:
    """Run ``main(stop)`` on a fresh event loop; SIGTERM and SIGINT set ``stop``.

    With ``on_hangup``, SIGHUP calls it in the event loop (without, SIGHUP keeps its default).
    """

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        if on_hangup is not None:
            loop.add_signal_handler(signal.SIGHUP, on_hangup)
        await main(stop)

    # Everything imported and built so far lives as long as the process: moved out of the
    # collector's sight, a full collection no longer walks it. Each one holds the event loop
    # (and with it the flush) for tens of milliseconds otherwise.
    gc.collect()
    gc.freeze()
    asyncio.run(runner())


def _load(config: Path | None, flags: dict[str, object]) -> Settings:
    try:
        return load_settings(config, os.environ, flags)
    except ConfigError as exc:
        click.echo(f"recorder: configuration error: {exc}", err=True)
        sys.exit(EXIT_USAGE)


@click.group()
@click.version_option(__version__, prog_name="recorder")
def main() -> None:
    """Record Binance USDⓈ-M futures miniTicker streams into a Parquet dataset."""


@main.command()
@click.option(
    "-c",
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML settings file (default: $RECORDER_CONFIG, else built-in defaults).",
)
@click.option("--url", help="Websocket base URL, e.g. wss://fstream.binance.com/market.")
@click.option("--symbols", help="Comma-separated symbols, e.g. BTCUSDT,ETHUSDT.")
@click.option("--root", help="Dataset root directory.")
@click.option(
    "--instance-id",
    help="Name of this recorder in its file names (default: derived from the host name).",
)
@click.option("--print-config", is_flag=True, help="Print the effective settings and exit.")
def run(  # noqa: PLR0917 - click passes each option as an argument
    config: Path | None,
    url: str | None,
    symbols: str | None,
    root: str | None,
    instance_id: str | None,
    print_config: bool,
) -> None:
    """Run the recorder daemon until SIGTERM or SIGINT; exit 0 after a clean stop.

    Also exit 0 when stop_timeout ran out before everything was published: the rest is in
    the write-ahead log, and the next start publishes it. SIGHUP reads the settings again and
    applies a changed symbol list live (see the README, "Reloading the settings").
    """
    flags: dict[str, object] = {
        "source.url": url,
        "source.symbols": symbols,
        "storage.root": root,
        "service.instance_id": instance_id,
    }
    settings = _load(config, flags)
    if print_config:
        import json  # noqa: PLC0415 - only this branch prints JSON

        click.echo(json.dumps(settings_to_mapping(settings), indent=2, ensure_ascii=False))
        return
    configure_logging(settings.log.level, settings.log.format)
    from recorder.service import RecorderService  # noqa: PLC0415 - keeps `--help` fast

    try:
        service = RecorderService(settings)
    except RecorderError as failure:
        log.error("recorder failed", error=str(failure))
        sys.exit(EXIT_FAILURE)
    try:
        # The same layers as at start, read again: the file, the environment, the flags.
        reread = functools.partial(load_settings, config, os.environ, flags)
        _run_until_signalled(service.run, lambda: service.reload.request(reread))
    except* RecorderError as group:
        for exc in group.exceptions:
            log.error("recorder failed", error=str(exc))
        _exit(service.abandoned, EXIT_FAILURE)
    _exit(service.abandoned, EXIT_OK)


def _exit(abandoned: bool, code: int) -> None:
    """Exit with ``code``; without joining threads when the stop gave up on one.

    Python joins every worker thread at exit, and a publication stuck on the disk would hold
    the process past ``stop_timeout``: what it did not finish is in the write-ahead log.
    """
    if abandoned:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _duration_option(value: str | None) -> float | None:
    from recorder.settings.units import parse_duration  # noqa: PLC0415

    return None if value is None else parse_duration(value)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default="0", show_default=True, callback=port_value, help="Port; 0 picks a free one."
)
@click.option("--symbols", help="Comma-separated contracts (default: ten varied ones).")
@click.option("--quiet-symbols", default="", help="Symbols that rarely change.")
@click.option(
    "--speed",
    default="1",
    show_default=True,
    callback=positive_number_value,
    help="Event clock speed factor.",
)
@click.option(
    "--seed",
    default="0",
    show_default=True,
    callback=whole_number_value,
    help="Seed of the simulated market.",
)
@click.option("--start-ms", callback=whole_number_value, help="E of the first tick (default: now).")
@click.option("--faults", help="Faults to inject, e.g. 'drop@10s,stall@20s+15s,garbage@5s'.")
@click.option("--lifetime", help="Connection lifetime (default 24h), e.g. '5s'.")
@click.option("--ping-interval", help="Server ping interval (default 3m).")
@click.option("--pong-timeout", help="Drop clients that do not pong within this (default 10m).")
def simulate(  # noqa: PLR0917 - click passes each option as an argument
    host: str,
    port: int,
    symbols: str | None,
    quiet_symbols: str,
    speed: float,
    seed: int,
    start_ms: int | None,
    faults: str | None,
    lifetime: str | None,
    ping_interval: str | None,
    pong_timeout: str | None,
) -> None:
    """Run the local Binance-compatible exchange (for tests, benchmarks and demos)."""
    from recorder.simulate import SimulatorConfig, serve  # noqa: PLC0415

    configure_logging("info", "auto")
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "speed": speed,
        "seed": seed,
        "start_ms": start_ms,
        "quiet_symbols": tuple(s.strip() for s in quiet_symbols.split(",") if s.strip()),
    }
    try:
        if symbols:
            options["symbols"] = tuple(s.strip() for s in symbols.split(",") if s.strip())
        for key, text in (
            ("lifetime", lifetime),
            ("ping_interval", ping_interval),
            ("pong_timeout", pong_timeout),
        ):
            seconds = _duration_option(text)
            if seconds is not None:
                options[key] = seconds
        config = SimulatorConfig(**options)
        _run_until_signalled(lambda stop: serve(config, faults, stop))
    except ConfigError as exc:
        click.echo(f"recorder simulate: {exc}", err=True)
        sys.exit(EXIT_USAGE)


def _register_commands() -> None:
    from recorder.cli.backfill import backfill_command  # noqa: PLC0415
    from recorder.cli.maintenance import MAINTENANCE_COMMANDS  # noqa: PLC0415
    from recorder.cli.report import report_command  # noqa: PLC0415
    from recorder.cli.reports import REPORT_COMMANDS  # noqa: PLC0415
    from recorder.cli.status import STATUS_COMMANDS  # noqa: PLC0415

    commands = (*REPORT_COMMANDS, *MAINTENANCE_COMMANDS, *STATUS_COMMANDS)
    for command in (*commands, backfill_command, report_command):
        main.add_command(command)


_register_commands()
