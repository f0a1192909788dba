"""Settings reload (SIGHUP): what a new reading of the settings changes, and applying it live.

The command line turns SIGHUP into :meth:`SettingsReload.request` with a function that reads
the settings again, the same layers as at start (defaults < file < environment < flags: a key
given as a flag keeps the flag's value). :meth:`SettingsReload.run`, one of the service's
supervised tasks, reads them in a worker thread and compares them with the running ones
(:func:`plan_reload`, sans-IO):

* the keys of :data:`LIVE_KEYS` are applied at once: the recorded symbols (a list, or
  ``"all"`` with its ``contract_types``, ``rest_url`` and ``refresh_interval``) through
  :meth:`~recorder.recorded_symbols.RecordedSymbols.reconfigure`, on the open connections,
  with no reconnect and no gap for the symbols that stay; and the log level;
* any other changed key is named in one warning: it applies at the next start;
* settings that cannot be read (a TOML error, a bad value, an unknown key) are refused in one
  error line that says why, and the running settings stay.

Each reload is counted (``recorder_settings_reloads_total{outcome}``). Reloads requested while
one is under way are folded into one more, so the newest file always wins.
"""

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Final

from recorder.errors import ConfigError
from recorder.ops.logs import configure_logging, get_logger
from recorder.ops.metrics import RecorderMetrics
from recorder.recorded_symbols import RecordedSymbols
from recorder.settings import Settings, settings_to_mapping

log = get_logger(__name__)

LIVE_KEYS: Final = frozenset(
    {
        "source.symbols",
        "source.contract_types",
        "source.rest_url",
        "source.refresh_interval",
        "log.level",
    }
)
"""The keys a reload applies while recording; every other key applies at the next start."""

SettingsLoader = Callable[[], Settings]
"""Reads the settings again; raises :class:`~recorder.errors.ConfigError` when they are invalid."""


@dataclasses.dataclass(frozen=True, slots=True)
class ReloadPlan:
    """What a reload changes.

    Attributes:
        applied: the changed keys applied live (dotted, in settings order).
        needs_restart: the changed keys that apply only at the next start.
        settings: the running settings with the live keys' new values.
    """

    applied: tuple[str, ...]
    needs_restart: tuple[str, ...]
    settings: Settings


def plan_reload(running: Settings, loaded: Settings) -> ReloadPlan:
    """Compare the running settings with a new reading of them.

    >>> from recorder.settings import parse_settings
    >>> running = parse_settings({"source": {"symbols": "BTCUSDT"}})
    >>> loaded = parse_settings(
    ...     {"source": {"symbols": "BTCUSDT,ETHUSDT"}, "gaps": {"interval": "1s"}}
    ... )
    >>> plan = plan_reload(running, loaded)
    >>> plan.applied, plan.needs_restart
    (('source.symbols',), ('gaps.interval',))
    >>> plan.settings.source.symbols, plan.settings.gaps.interval_ms
    (('BTCUSDT', 'ETHUSDT'), 2000)
    """
    old, new = settings_to_mapping(running), settings_to_mapping(loaded)
    changed = [
        f"{section}.{key}"
        for section, values in new.items()
        for key, value in values.items()
        if value != old[section][key]
    ]
    applied = tuple(key for key in changed if key in LIVE_KEYS)
    source_keys = {key.partition(".")[2] for key in applied if key.startswith("source.")}
    source = dataclasses.replace(
        running.source, **{key: getattr(loaded.source, key) for key in source_keys}
    )
    logging = running.log
    if "log.level" in applied:
        logging = dataclasses.replace(logging, level=loaded.log.level)
    return ReloadPlan(
        applied=applied,
        needs_restart=tuple(key for key in changed if key not in LIVE_KEYS),
        settings=dataclasses.replace(running, source=source, log=logging),
    )


class SettingsReload:
    """Applies settings reloads to a running service, one at a time.

    Args:
        running: the settings the service was started with (``symbols = "all"`` unresolved).
        symbols: the recorded symbols, which a changed selection is handed to.
        metrics: the recorder's metrics.
    """

    def __init__(
        self, running: Settings, symbols: RecordedSymbols, metrics: RecorderMetrics
    ) -> None:
        self.running = running
        """The settings in force: those of the start, with every live change applied."""
        self._symbols = symbols
        self._metrics = metrics
        self._loader: SettingsLoader | None = None
        self._requested = asyncio.Event()

    def request(self, load: SettingsLoader) -> None:
        """Ask for a reload with ``load`` (safe from a signal handler in the event loop)."""
        self._loader = load
        self._requested.set()

    async def run(self) -> None:
        """Apply each requested reload, until cancelled."""
        while True:
            await self._requested.wait()
            self._requested.clear()
            load, self._loader = self._loader, None
            if load is not None:
                await self.reload(load)

    async def reload(self, load: SettingsLoader) -> ReloadPlan | None:
        """Read the settings with ``load`` and apply what can be applied live.

        Returns:
            What changed, or ``None`` when the new settings were refused.
        """
        try:
            loaded = await asyncio.to_thread(load)
        except ConfigError as exc:
            self._metrics.market.reloaded("refused")
            log.error("settings reload refused; the running settings stay", error=str(exc))
            return None
        plan = plan_reload(self.running, loaded)
        if plan.needs_restart:
            log.warning(
                "settings changed that apply only at the next start; restart to apply them",
                keys=list(plan.needs_restart),
            )
        self.running = plan.settings
        if "log.level" in plan.applied:
            configure_logging(plan.settings.log.level, plan.settings.log.format)
        if any(key.startswith("source.") for key in plan.applied):
            self._symbols.reconfigure(plan.settings.source)
        self._metrics.market.reloaded("applied" if plan.applied else "unchanged")
        log.info(
            "settings reloaded" if plan.applied else "settings reloaded: nothing to change live",
            applied=list(plan.applied),
        )
        return plan
