"""What a settings reload applies live and what waits for a restart, with no socket."""

import random
from typing import Any

import pytest

from recorder.clock import ManualClock
from recorder.errors import ConfigError
from recorder.ops.metrics import RecorderMetrics
from recorder.recorded_symbols import RecordedSymbols
from recorder.reload import LIVE_KEYS, SettingsReload, plan_reload
from recorder.settings import Settings, parse_settings, settings_to_mapping
from recorder.settings.values import ALL_SYMBOLS

BASE: dict[str, dict[str, Any]] = {
    "source": {"symbols": ["BTCUSDT", "ETHUSDT"]},
    "storage": {"root": "/srv/data"},
}


def settings(**sections: dict[str, Any]) -> Settings:
    merged = {name: dict(values) for name, values in BASE.items()}
    for name, values in sections.items():
        merged.setdefault(name, {}).update(values)
    return parse_settings(merged)


def test_the_same_settings_change_nothing() -> None:
    plan = plan_reload(settings(), settings())
    assert plan.applied == ()
    assert plan.needs_restart == ()
    assert plan.settings == settings()


@pytest.mark.parametrize(
    ("section", "values", "key"),
    [
        ("source", {"symbols": ["BTCUSDT", "SOLUSDT"]}, "source.symbols"),
        ("source", {"symbols": "all"}, "source.symbols"),
        ("source", {"contract_types": ["PERPETUAL", "CURRENT_QUARTER"]}, "source.contract_types"),
        ("source", {"rest_url": "http://127.0.0.1:9000"}, "source.rest_url"),
        ("source", {"refresh_interval": "5m"}, "source.refresh_interval"),
        ("log", {"level": "debug"}, "log.level"),
    ],
)
def test_live_keys_are_applied(section: str, values: dict[str, Any], key: str) -> None:
    loaded = settings(**{section: values})
    plan = plan_reload(settings(), loaded)
    assert plan.applied == (key,)
    assert plan.needs_restart == ()
    assert plan.settings == loaded


@pytest.mark.parametrize(
    ("section", "values", "key"),
    [
        ("source", {"url": "ws://127.0.0.1:9000/market"}, "source.url"),
        ("source", {"max_streams_per_connection": 50}, "source.max_streams_per_connection"),
        ("storage", {"root": "/srv/other"}, "storage.root"),
        ("storage", {"flush_interval": "2s"}, "storage.flush_interval"),
        ("gaps", {"interval": "1s"}, "gaps.interval"),
        ("metrics", {"address": "127.0.0.1:9999"}, "metrics.address"),
        ("log", {"format": "console"}, "log.format"),
    ],
)
def test_other_keys_wait_for_a_restart(section: str, values: dict[str, Any], key: str) -> None:
    plan = plan_reload(settings(), settings(**{section: values}))
    assert plan.applied == ()
    assert plan.needs_restart == (key,)
    assert plan.settings == settings()  # the running value stays


def test_a_mixed_reload_applies_the_live_part_only() -> None:
    loaded = settings(
        source={"symbols": "all", "url": "ws://127.0.0.1:9000/market"},
        storage={"root": "/srv/other"},
        log={"level": "warning"},
    )
    plan = plan_reload(settings(), loaded)
    assert plan.applied == ("source.symbols", "log.level")
    assert plan.needs_restart == ("source.url", "storage.root")
    assert plan.settings.source.symbols is ALL_SYMBOLS
    assert plan.settings.source.url == settings().source.url
    assert plan.settings.storage.root == settings().storage.root
    assert plan.settings.log.level == "warning"


def test_every_live_key_is_a_setting() -> None:
    mapping = settings_to_mapping(Settings())
    for dotted in LIVE_KEYS:
        section, key = dotted.split(".")
        assert key in mapping[section]


def reloader(running: Settings) -> tuple[SettingsReload, RecordedSymbols, RecorderMetrics]:
    clock = ManualClock(monotonic=0.0)
    metrics = RecorderMetrics(clock=clock)
    symbols = RecordedSymbols(running.source, clock, metrics, random.Random(0))
    return SettingsReload(running, symbols, metrics), symbols, metrics


def reloads(metrics: RecorderMetrics, outcome: str) -> float | None:
    return metrics.registry.get_sample_value(
        "recorder_settings_reloads_total", {"outcome": outcome}
    )


@pytest.mark.asyncio
async def test_invalid_settings_are_refused_and_the_running_ones_stay() -> None:
    reload, symbols, metrics = reloader(settings())

    def broken() -> Settings:
        raise ConfigError("config file recorder.toml: invalid TOML: Invalid value")

    assert await reload.reload(broken) is None
    assert reload.running == settings()
    assert symbols.settings == settings().source
    assert reloads(metrics, "refused") == 1
    assert reloads(metrics, "applied") == 0


@pytest.mark.asyncio
async def test_a_changed_selection_is_handed_to_the_recorded_symbols() -> None:
    reload, symbols, metrics = reloader(settings())
    loaded = settings(source={"symbols": ["SOLUSDT"]}, gaps={"interval": "1s"})
    plan = await reload.reload(lambda: loaded)
    assert plan is not None
    assert plan.needs_restart == ("gaps.interval",)
    assert reload.running.source.symbols == ("SOLUSDT",)
    assert reload.running.gaps.interval_ms == 2000
    assert reloads(metrics, "applied") == 1
    # Not yet wired: the change waits for RecordedSymbols.run, which applies it.
    assert symbols.symbols == ("BTCUSDT", "ETHUSDT")


@pytest.mark.asyncio
async def test_nothing_live_to_change_is_counted_as_unchanged() -> None:
    reload, _, metrics = reloader(settings())
    plan = await reload.reload(lambda: settings(storage={"flush_interval": "3s"}))
    assert plan is not None
    assert plan.applied == ()
    assert reloads(metrics, "unchanged") == 1
