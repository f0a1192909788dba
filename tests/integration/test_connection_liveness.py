"""Quiet is not stall, the handshake is bounded, handovers keep a replacement that delivers.

The service runs in-process against the simulated exchange over loopback; each test reads the
dataset and the gap log afterwards as an analyst would (DuckDB) and holds them against the
exchange's ground truth (which events it wrote to which connection).
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from connection_support import (
    HangingProxy,
    delivered_events,
    delivered_to_both,
    open_ids,
    recorded_events,
    running,
)
from service_support import SYMBOLS, settings_for, wait_for
from support import data_gaps, gap_records, read_rows_with

from recorder.ingest.connection import SilenceOutcome
from recorder.ingest.source import ShardSupervisor
from recorder.service import RecorderService
from recorder.settings import Settings
from recorder.simulate import Fault, FaultKind, SimulatedExchange, SimulatorConfig

pytestmark = pytest.mark.integration

QUIET = "BTCUSDT"


def _handover_settings(exchange: SimulatedExchange, root: Path, handover_timeout: str) -> Settings:
    return settings_for(exchange, root, connection_lifetime="2s", handover_timeout=handover_timeout)


async def _slow_down_the_replacement(
    exchange: SimulatedExchange, service: RecorderService, hold: float
) -> None:
    """Once the first connection delivers, make the next one (its replacement) start late."""
    await wait_for(lambda: service.pipeline.counters.events >= 3)
    exchange.inject(Fault(FaultKind.SLOW_START, duration=hold))


async def _until_the_first_is_gone_and_the_next_delivers(
    exchange: SimulatedExchange, service: RecorderService
) -> None:
    await wait_for(lambda: "c1" not in open_ids(exchange))
    after = service.pipeline.counters.events
    await wait_for(lambda: service.pipeline.counters.events >= after + 30)


def _assert_recorded_once_without_gaps(root: Path, delivered: set[tuple[str, int]]) -> None:
    recorded = recorded_events(root)
    assert len(recorded) == len(set(recorded))
    assert set(recorded) == delivered
    assert gap_records(root) == []


def _logged_gaps(root: Path) -> set[tuple[str, int, int, int, str]]:
    return {
        (g["symbol"], g["from_ms"], g["to_ms"], g["missed"], g["cause"]) for g in gap_records(root)
    }


@contextlib.asynccontextmanager
async def _quiet_symbol_recorded(
    root: Path, *, activity: float, checks: int, seed: int, **source: str
) -> AsyncIterator[tuple[SimulatedExchange, RecorderService, ShardSupervisor]]:
    """Record :data:`QUIET` alone, changing with ``activity`` per tick, until ``checks``
    silence checks found its connection quiet; the service stops on the way out."""
    config = SimulatorConfig(
        symbols=(QUIET,), quiet_symbols=(QUIET,), quiet_activity=activity, speed=20, seed=seed
    )
    async with SimulatedExchange(config) as exchange:
        settings = settings_for(exchange, root, None, symbols=[QUIET], **source)
        async with running(settings, seed=seed) as service:
            await wait_for(lambda: len(service.source.supervisors) == 1)
            [shard] = service.source.supervisors
            await wait_for(lambda: shard.silence_checks[SilenceOutcome.QUIET] >= checks)
            assert "c1" in open_ids(exchange)  # the quiet connection was never replaced
            yield exchange, service, shard
    assert shard.silence_checks[SilenceOutcome.STALLED] == 0
    assert shard.reconnects == 0


@pytest.mark.asyncio
async def test_a_quiet_single_symbol_connection_is_kept_and_its_gaps_are_quiet(
    tmp_path: Path,
) -> None:
    # Silences long enough to be checked, several times: quiet each time.
    timeouts = {"stall_timeout": "400ms", "handover_timeout": "400ms", "first_data_timeout": "1m"}
    async with _quiet_symbol_recorded(tmp_path, activity=0.1, checks=2, seed=3, **timeouts) as (
        exchange,
        service,
        _,
    ):
        # Vouched for by its silence check, the quiet connection keeps /healthz green.
        # (Its replacement of the last check may still be open beside it.)
        await wait_for(
            lambda: any(
                state.quiet_confirmed_us is not None
                for state in service.pipeline.connections.values()
            )
        )
        healthy, details = service.health()
        assert healthy, details
    delivered = delivered_events(exchange)  # the ledger outlives the exchange's sockets

    rows = read_rows_with("duckdb", tmp_path)
    assert {(row[0], row[1]) for row in rows} == delivered
    logged = _logged_gaps(tmp_path)
    assert logged, "a symbol this quiet has gaps"
    assert {gap[:4] for gap in logged} == data_gaps(rows)  # every hole logged, none more
    assert {gap[4] for gap in logged} == {"quiet"}


@pytest.mark.asyncio
async def test_a_connection_quiet_from_the_start_is_kept_not_reconnected_in_a_loop(
    tmp_path: Path,
) -> None:
    # Its only symbol never changes: nothing at all arrives, while the connection is alive;
    # checked again and again, alive each time.
    timeouts = {
        "stall_timeout": "300ms",
        "handover_timeout": "300ms",
        "first_data_timeout": "300ms",
    }
    async with _quiet_symbol_recorded(tmp_path, activity=0.0, checks=3, seed=6, **timeouts) as (
        _,
        service,
        _,
    ):
        healthy, _ = service.health()
        assert not healthy  # nothing delivered yet: not vouched for
    assert service.pipeline.counters.events == 0
    assert gap_records(tmp_path) == []
    assert await asyncio.to_thread(lambda: list(tmp_path.rglob("*.parquet"))) == []


@pytest.mark.asyncio
async def test_a_stalled_single_symbol_connection_is_replaced_and_its_gap_is_stall(
    tmp_path: Path,
) -> None:
    config = SimulatorConfig(symbols=(QUIET,), activity=1.0, speed=20, seed=4)
    async with SimulatedExchange(config) as exchange:
        settings = settings_for(
            exchange, tmp_path, symbols=[QUIET], stall_timeout="400ms", handover_timeout="2s"
        )
        async with running(settings, seed=4) as service:
            await wait_for(lambda: len(service.source.supervisors) == 1)
            [shard] = service.source.supervisors
            await wait_for(lambda: service.pipeline.counters.events >= 10)
            # Data withheld; pings and LIST_SUBSCRIPTIONS are still answered.
            exchange.inject(Fault(FaultKind.STALL, connection_id="c1"))
            await wait_for(lambda: shard.silence_checks[SilenceOutcome.STALLED] == 1)
            resumed = service.pipeline.counters.events
            await wait_for(lambda: service.pipeline.counters.events >= resumed + 10)
            assert open_ids(exchange) == ["c2"]  # the replacement that delivered is kept
        events = exchange.events()

    assert shard.reconnects == 0  # never without a connection: no backoff, no reconnect
    rows = read_rows_with("duckdb", tmp_path)
    assert {(row[0], row[1]) for row in rows} == {
        (e.symbol, e.event_time) for e in events if e.delivered_to
    }
    [(symbol, from_ms, to_ms, missed, cause)] = _logged_gaps(tmp_path)
    assert (symbol, cause) == (QUIET, "stall")
    assert data_gaps(rows) == {(symbol, from_ms, to_ms, missed)}
    # Lost: what the stall kept from the old connection before the replacement subscribed.
    lost = [e.event_time for e in events if "c1" in e.withheld_from and not e.delivered_to]
    assert lost, "the stall withheld events that nobody received"
    assert all(from_ms < event_time < to_ms for event_time in lost)
    assert missed == len(lost)


@pytest.mark.asyncio
async def test_open_timeout_bounds_a_handshake_that_never_completes(tmp_path: Path) -> None:
    config = SimulatorConfig(symbols=SYMBOLS, activity=1.0, speed=20, seed=6)
    async with SimulatedExchange(config) as exchange, HangingProxy(exchange.port) as proxy:
        url = f"ws://127.0.0.1:{proxy.port}/market"
        settings = settings_for(exchange, tmp_path, url=url, open_timeout="300ms")
        async with running(settings, seed=6) as service:
            # aiohttp alone would wait 300 s for the first handshake's answer.
            await wait_for(lambda: service.pipeline.counters.events >= 30)
        delivered = delivered_events(exchange)

    assert proxy.accepted >= 2
    _assert_recorded_once_without_gaps(tmp_path, delivered)


@pytest.mark.asyncio
async def test_a_handover_waits_for_a_slow_replacement_and_drops_the_overlap(
    tmp_path: Path,
) -> None:
    config = SimulatorConfig(symbols=SYMBOLS, activity=1.0, speed=20, seed=7)
    async with SimulatedExchange(config) as exchange:
        async with running(_handover_settings(exchange, tmp_path, "5s"), seed=7) as service:
            # The replacement's data comes 1.5 s after its handshake (15 ticks).
            await _slow_down_the_replacement(exchange, service, 1.5)
            await _until_the_first_is_gone_and_the_next_delivers(exchange, service)
            duplicates = service.pipeline.counters.duplicates
        delivered = delivered_events(exchange)
        overlap = delivered_to_both(exchange, "c1", "c2")

    # The old connection kept delivering until the replacement did: both carried the same
    # events for the whole slow start, and the recorder dropped the second copies.
    assert overlap >= 10 * len(SYMBOLS)
    assert duplicates >= 10 * len(SYMBOLS)
    _assert_recorded_once_without_gaps(tmp_path, delivered)


@pytest.mark.asyncio
async def test_when_the_old_connection_dies_first_in_a_handover_the_replacement_is_kept(
    tmp_path: Path,
) -> None:
    config = SimulatorConfig(symbols=SYMBOLS, activity=1.0, speed=20, seed=8)
    async with SimulatedExchange(config) as exchange:
        async with running(_handover_settings(exchange, tmp_path, "10s"), seed=8) as service:
            await wait_for(lambda: len(service.source.supervisors) == 1)
            [shard] = service.source.supervisors
            await _slow_down_the_replacement(exchange, service, 2.0)
            await wait_for(lambda: "c2" in open_ids(exchange))
            # The replacement is open, its data not here yet: the old one dies now.
            exchange.inject(Fault(FaultKind.DROP, connection_id="c1"))
            await _until_the_first_is_gone_and_the_next_delivers(exchange, service)
        delivered = delivered_events(exchange)
        c2_delivered = sum(1 for e in exchange.events() if "c2" in e.delivered_to)

    assert shard.reconnects == 0  # the open replacement took over: no reconnect
    assert c2_delivered > 0
    _assert_recorded_once_without_gaps(tmp_path, delivered)
