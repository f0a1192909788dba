"""The rich view of ``recorder status``: the figures, the health, the worst symbols.

:func:`render_status` builds one renderable from a snapshot; the command hands it to
``rich.live.Live`` to redraw in place, and tests render it to a ``Console(record=True)``.
"""

from typing import Final

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from recorder.cli.status_fetch import Health
from recorder.ops.status import DELIVERING, QUIET, StatusSnapshot, human_bytes

__all__ = ["WORST_SYMBOLS", "render_status", "render_unreachable"]

WORST_SYMBOLS: Final = 10
"""Symbols listed, the oldest last event first: the healthy rest would fill the screen."""

_STATE_STYLES: Final = {DELIVERING: "green", QUIET: "yellow"}
_BUDGET_WARN: Final = 0.75  # where the writer starts sealing early (README: Memory)


def render_status(
    snapshot: StatusSnapshot,
    health: Health,
    *,
    url: str,
    worst: int = WORST_SYMBOLS,
    note: str = "",
) -> RenderableType:
    """The whole view: a panel of figures, then a table of the ``worst`` symbols.

    Args:
        snapshot: the figures.
        health: what ``/healthz`` said.
        url: the endpoint read, in the title.
        worst: how many symbols to list.
        note: a line under the figures (a failed refresh, say).
    """
    figures = Table.grid(padding=(0, 2))
    figures.add_column(style="bold", no_wrap=True)
    figures.add_column()
    figures.add_row("health", _health_text(health))
    figures.add_row("events/s", _rate_text(snapshot))
    symbols = Text()
    symbols.append(f"{snapshot.delivering} delivering", style="green")
    symbols.append(", ")
    symbols.append(f"{snapshot.quiet} quiet", style="yellow" if snapshot.quiet else "")
    symbols.append(", ")
    symbols.append(f"{snapshot.silent} silent", style="bold red" if snapshot.silent else "")
    figures.add_row("symbols", symbols)
    figures.add_row("connections", str(snapshot.connections))
    figures.add_row("last flush", _flush_text(snapshot))
    figures.add_row("buffered", _buffered_text(snapshot))
    figures.add_row("gaps (last hour)", _gaps_text(snapshot))
    parts: list[RenderableType] = [figures]
    if note:
        parts.append(Text(note, style="bold red"))
    if snapshot.symbols:
        parts.append(_symbol_table(snapshot, worst))
    version = f"recorder {snapshot.version}" if snapshot.version else None
    return Panel(Group(*parts), title=f"recorder status: {url}", subtitle=version)


def render_unreachable(url: str, message: str) -> RenderableType:
    """The view when the endpoint cannot be read (yet, or any more)."""
    return Panel(Text(message, style="bold red"), title=f"recorder status: {url}")


def _health_text(health: Health) -> Text:
    if health.ok is None:
        return Text("unknown (no /healthz verdict)", style="yellow")
    if health.ok:
        return Text("ok", style="bold green")
    text = Text("UNHEALTHY", style="bold red")
    for reason in health.reasons:
        text.append(f"\n{reason}", style="red")
    return text


def _rate_text(snapshot: StatusSnapshot) -> Text:
    if snapshot.events_per_second is None:
        return Text(f"measuring... ({snapshot.events_total:,} events so far)", style="dim")
    return Text(
        f"{snapshot.events_per_second:,.1f} ({snapshot.events_total:,} events since the start)"
    )


def _flush_text(snapshot: StatusSnapshot) -> Text:
    if snapshot.since_last_flush is None:
        text = Text("none yet", style="dim")
    else:
        text = Text(f"{snapshot.since_last_flush:.1f}s ago")
    if not snapshot.last_flush_ok:
        text.append("  the latest flush FAILED", style="bold red")
    return text


def _buffered_text(snapshot: StatusSnapshot) -> Text:
    text = Text(f"{snapshot.buffered_rows:,} rows, {human_bytes(snapshot.buffered_bytes)}")
    used = snapshot.budget_used
    if snapshot.buffer_budget and used is not None:
        style = "bold red" if used >= 1 else "yellow" if used >= _BUDGET_WARN else ""
        text.append(f" of {human_bytes(snapshot.buffer_budget)} ({used:.0%})", style=style)
    return text


def _gaps_text(snapshot: StatusSnapshot) -> Text:
    if not snapshot.gaps_total:
        return Text("none", style="green")
    return Text(
        ", ".join(f"{count} {cause}" for cause, count in snapshot.gaps_last_hour.items() if count),
        style="yellow",
    )


def _symbol_table(snapshot: StatusSnapshot, worst: int) -> Table:
    shown = snapshot.symbols[:worst]
    title = f"{len(shown)} of {len(snapshot.symbols)} symbols, the oldest last event first"
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("symbol")
    table.add_column("state")
    table.add_column("last event", justify="right")
    table.add_column("events", justify="right")
    table.add_column("ev/s", justify="right")
    for symbol in shown:
        rate = "" if symbol.events_per_second is None else f"{symbol.events_per_second:.2f}"
        table.add_row(
            symbol.symbol,
            Text(symbol.state, style=_STATE_STYLES.get(symbol.state, "bold red")),
            f"{symbol.last_event_age:.1f}s ago",
            f"{symbol.events:,}",
            rate,
        )
    return table
