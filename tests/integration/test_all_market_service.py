"""``[source] mode = "all_market"``: the service in-process against the simulated exchange.

One connection to ``!miniTicker@arr`` over loopback carries every listed contract; the service
keeps the recorded ones. What it records is compared with the exchange's ledger, the gap log
is read as an analyst reads it, and the quarantine as an operator does.
"""

import json
from pathlib import Path

import pytest
from connection_support import delivered_events, open_ids, recorded_events, running
from service_support import SYMBOLS, settings_for, wait_for
from support import gap_records

from recorder.service import RecorderService
from recorder.settings import Settings
from recorder.simulate import Fault, FaultKind, SimulatedExchange, SimulatorConfig
from recorder.symbols import ALL_MARKET_STREAM

pytestmark = pytest.mark.integration

# Two listed contracts are not recorded: the array carries them, the recorder skips them.
LISTED = (*SYMBOLS, "SOLUSDT", "BTCUSDT_260327")
CONFIG = SimulatorConfig(symbols=LISTED, speed=20, activity=1.0, seed=21)


def all_market_settings(exchange: SimulatedExchange, root: Path, **source: object) -> Settings:
    # One stream per connection allowed: all-market mode needs no more, whatever it records.
    source = {"mode": "all_market", "max_streams_per_connection": 1, **source}
    return settings_for(exchange, root, None, **source)


def recorded_delivered(exchange: SimulatedExchange) -> set[tuple[str, int]]:
    """The ledger's delivered events of the recorded symbols."""
    return {event for event in delivered_events(exchange) if event[0] in SYMBOLS}


async def stop_once_caught_up(service: RecorderService, exchange: SimulatedExchange) -> None:
    """Freeze the exchange's deliveries and wait until the service received all of them."""
    for connection in exchange.connections():
        exchange.inject(Fault(FaultKind.STALL, duration=60, connection_id=connection.connection_id))
    wanted = recorded_delivered(exchange)
    await wait_for(lambda: service.pipeline.counters.events >= len(wanted))


def delivering(exchange: SimulatedExchange) -> set[str]:
    """The connections the exchange has delivered data to, so far."""
    return {connection for e in exchange.events() for connection in e.delivered_to}


def metric(service: RecorderService, name: str, **labels: str) -> float:
    return service.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.mark.asyncio
async def test_one_connection_records_exactly_what_the_ledger_delivered(tmp_path: Path) -> None:
    async with SimulatedExchange(CONFIG) as exchange:
        async with running(all_market_settings(exchange, tmp_path), seed=1) as service:
            await wait_for(lambda: service.pipeline.counters.events >= 40)
            assert service.health()[0]
            # One stream whatever the limit says, and not a single SUBSCRIBE sent.
            [connection] = exchange.connections()
            assert connection.streams == (ALL_MARKET_STREAM,)
            assert len(service.source.shards) == 1
            assert service.source.supervisors[0].symbols == SYMBOLS
            await stop_once_caught_up(service, exchange)
            delivered = recorded_delivered(exchange)
        not_recorded = metric(service, "recorder_events_not_recorded_total")
    recorded = recorded_events(tmp_path)
    assert len(recorded) == len(set(recorded))
    assert set(recorded) == delivered
    assert not_recorded >= 2 * 10
    assert gap_records(tmp_path) == []
    assert quarantine_records(tmp_path) == []


@pytest.mark.asyncio
async def test_a_dropped_connection_logs_disconnect_gaps(tmp_path: Path) -> None:
    async with SimulatedExchange(CONFIG) as exchange:
        # Half a second without a connection is ten simulated seconds: every symbol misses some.
        settings = all_market_settings(
            exchange, tmp_path, backoff_initial="500ms", backoff_max="600ms"
        )
        async with running(settings, seed=2) as service:
            await wait_for(lambda: service.pipeline.counters.events >= 15)
            exchange.inject(Fault(FaultKind.DROP))
            await wait_for(lambda: service.pipeline.counters.gaps >= len(SYMBOLS))
            await wait_for(lambda: open_ids(exchange) == ["c2"])
            await stop_once_caught_up(service, exchange)
            delivered = recorded_delivered(exchange)
    gaps = gap_records(tmp_path)
    assert {gap["symbol"] for gap in gaps} == set(SYMBOLS)
    assert {gap["cause"] for gap in gaps} == {"disconnect"}
    assert all(gap["missed"] >= 1 for gap in gaps)
    assert set(recorded_events(tmp_path)) == delivered


@pytest.mark.asyncio
async def test_a_stalled_array_stream_is_replaced_and_logged_as_stall(tmp_path: Path) -> None:
    async with SimulatedExchange(CONFIG) as exchange:
        settings = all_market_settings(exchange, tmp_path, stall_timeout="500ms")
        async with running(settings, seed=3) as service:
            await wait_for(lambda: service.pipeline.counters.events >= 15)
            exchange.inject(Fault(FaultKind.STALL, duration=60))
            # The silence check's replacement delivers: the stalled connection is closed.
            await wait_for(lambda: open_ids(exchange) == ["c2"])
            await wait_for(lambda: service.pipeline.counters.gaps >= len(SYMBOLS))
    gaps = gap_records(tmp_path)
    assert {gap["symbol"] for gap in gaps} == set(SYMBOLS)
    assert {gap["cause"] for gap in gaps} == {"stall"}


@pytest.mark.asyncio
async def test_planned_handovers_make_no_gap_and_no_duplicate(tmp_path: Path) -> None:
    async with SimulatedExchange(CONFIG) as exchange:
        settings = all_market_settings(exchange, tmp_path, connection_lifetime="700ms")
        async with running(settings, seed=4) as service:
            await wait_for(lambda: len(delivering(exchange)) >= 4)
            await stop_once_caught_up(service, exchange)
            delivered = recorded_delivered(exchange)
            # Each a planned handover: the shard was never left without a connection.
            assert service.source.supervisors[0].reconnects == 0
    recorded = recorded_events(tmp_path)
    assert len(recorded) == len(set(recorded))
    assert set(recorded) == delivered
    assert gap_records(tmp_path) == []


def quarantine_records(root: Path) -> list[dict[str, object]]:
    """Every quarantine record under ``root``, as an operator reads the JSON lines."""
    return [
        json.loads(line)
        for path in sorted((root / "_quarantine").glob("*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
    ]


@pytest.mark.asyncio
async def test_a_hostile_array_item_is_one_quarantine_record_per_frame(tmp_path: Path) -> None:
    frames = 3
    async with (
        SimulatedExchange(CONFIG) as exchange,
        running(all_market_settings(exchange, tmp_path), seed=5) as service,
    ):
        await wait_for(lambda: service.pipeline.counters.events >= 10)
        exchange.inject(Fault(FaultKind.HOSTILE_SYMBOL, count=frames))
        exchange.inject(Fault(FaultKind.BAD_FIELD, count=frames))
        await wait_for(lambda: service.pipeline.counters.rejections == 2 * frames)
        events_then = service.pipeline.counters.events
        await wait_for(lambda: service.pipeline.counters.events >= events_then + 6)
    records = quarantine_records(tmp_path)
    assert len(records) == 2 * frames
    assert "unsafe_symbol" in {r["reason_code"] for r in records}
    for record in records:
        assert str(record["reason"]).endswith("(1 of 1 items rejected)")
        assert json.loads(str(record["raw"]))["stream"] == ALL_MARKET_STREAM


@pytest.mark.asyncio
async def test_symbols_all_follows_listings_without_a_request_or_a_new_connection(
    tmp_path: Path,
) -> None:
    async with SimulatedExchange(CONFIG) as exchange:
        settings = all_market_settings(
            exchange, tmp_path, symbols="all", rest_url=exchange.rest_url, refresh_interval="1s"
        )
        async with running(settings, seed=6) as service:
            await wait_for(lambda: "0.1" in service.pipeline.connections)
            # The delivery contract is not a recorded type: the array carries it all the same.
            perpetuals = set(LISTED) - {"BTCUSDT_260327"}
            assert set(service.pipeline.connections["0.1"].symbols) == perpetuals
            exchange.set_contract_status("NEWUSDT", "TRADING")
            exchange.set_contract_status("ETHUSDT", "SETTLING")
            await wait_for(
                lambda: metric(service, "recorder_events_received_total", symbol="NEWUSDT") > 0
            )
            await wait_for(lambda: "ETHUSDT" not in service.pipeline.connections["0.1"].symbols)
            carried = set(service.pipeline.connections["0.1"].symbols)
            assert carried == {*perpetuals, "NEWUSDT"} - {"ETHUSDT"}
            # The exchange was asked nothing: the one connection still carries the one stream.
            assert [c.streams for c in exchange.connections()] == [(ALL_MARKET_STREAM,)]
            assert open_ids(exchange) == ["c1"]
    assert "NEWUSDT" in {symbol for symbol, _ in recorded_events(tmp_path)}
    assert gap_records(tmp_path) == []
