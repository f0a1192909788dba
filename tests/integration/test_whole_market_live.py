"""``symbols = "all"`` follows listings and delistings on the open connections.

The service runs in-process against the simulated exchange over loopback. A new contract is
subscribed on a connection with room, a connection is opened only when all are full, a
delisted one is unsubscribed; the others are never reconnected and never get a gap. The
dataset, the gap log and ``check`` are read afterwards as an analyst and a cron job would.
"""

from pathlib import Path

import pytest
from connection_support import delivered_events, open_ids, recorded_events, running
from service_support import settings_for, wait_for
from support import gap_records

from recorder.ingest.subscriptions import MAX_ATTEMPTS
from recorder.reports.check import CheckLimits, ProblemKind, run_check
from recorder.service import RecorderService
from recorder.settings import Settings
from recorder.simulate import Fault, FaultKind, SimulatedExchange, SimulatorConfig
from recorder.symbols import stream_name

pytestmark = pytest.mark.integration

LISTED = ("BTCUSDT", "ETHUSDT", "币安人生USDT", "BTCUSDT_260327")
CONFIG = SimulatorConfig(symbols=LISTED, speed=20, activity=1.0, seed=13)


def live_settings(exchange: SimulatedExchange, root: Path) -> Settings:
    return settings_for(
        exchange,
        root,
        symbols="all",
        rest_url=exchange.rest_url,
        refresh_interval="1s",
        max_streams_per_connection=2,
    )


def recorder_belief(service: RecorderService) -> set[frozenset[str]]:
    """The streams each shard's connection carries, as the recorder believes."""
    belief = set()
    for supervisor in service.source.supervisors:
        current = supervisor.current
        assert current is not None
        assert current.symbols == supervisor.symbols
        belief.add(frozenset(stream_name(symbol) for symbol in current.symbols))
    return belief


def subscriptions(exchange: SimulatedExchange) -> set[frozenset[str]]:
    """What each open connection subscribed, as the exchange's LIST_SUBSCRIPTIONS answers."""
    return {frozenset(info.streams) for info in exchange.connections()}


def agreed(service: RecorderService, exchange: SimulatedExchange) -> bool:
    supervisors = service.source.supervisors
    if any(s.current is None or s.current.symbols != s.symbols for s in supervisors):
        return False
    return recorder_belief(service) == subscriptions(exchange)


def received(service: RecorderService, symbol: str) -> float:
    value = service.metrics.registry.get_sample_value(
        "recorder_events_received_total", {"symbol": symbol}
    )
    return 0.0 if value is None else value


@pytest.mark.asyncio
async def test_listings_and_a_delisting_change_the_open_connections(tmp_path: Path) -> None:
    async with SimulatedExchange(CONFIG) as exchange:
        async with running(live_settings(exchange, tmp_path), seed=7) as service:
            await wait_for(lambda: len(service.source.supervisors) == 2)
            await wait_for(
                lambda: all(
                    received(service, s) > 0 for s in ("BTCUSDT", "ETHUSDT", "币安人生USDT")
                )
            )
            assert open_ids(exchange) == ["c1", "c2"]

            # Room on the second connection: subscribed there, no connection opened.
            exchange.set_contract_status("NEWUSDT", "TRADING")
            await wait_for(lambda: received(service, "NEWUSDT") > 0)
            await wait_for(lambda: agreed(service, exchange))
            assert open_ids(exchange) == ["c1", "c2"]

            # Both full: one connection opened for it, the others untouched.
            exchange.set_contract_status("NEXTUSDT", "TRADING")
            await wait_for(lambda: received(service, "NEXTUSDT") > 0)
            await wait_for(lambda: agreed(service, exchange))
            assert open_ids(exchange) == ["c1", "c2", "c3"]

            # No longer trading: unsubscribed from its connection, which stays open.
            exchange.set_contract_status("ETHUSDT", "SETTLING")
            await wait_for(lambda: "ETHUSDT" not in service.source.shards[0])
            await wait_for(lambda: agreed(service, exchange))
            assert stream_name("ETHUSDT") not in {s for c in subscriptions(exchange) for s in c}
            assert open_ids(exchange) == ["c1", "c2", "c3"]

            # Delisted, the only symbol of its connection: the recorder closes that connection
            # on purpose and says so to the pipeline; the other two stay.
            assert "2.1" in service.pipeline.connections
            exchange.set_contract_status("NEXTUSDT", "DELISTED")
            await wait_for(lambda: open_ids(exchange) == ["c1", "c2"])
            await wait_for(lambda: "2.1" not in service.pipeline.connections)
            assert len(service.source.supervisors) == 2
            assert service.metrics.registry.get_sample_value("recorder_open_connections") == 2
            assert (
                service.metrics.registry.get_sample_value(
                    "recorder_symbol_changes_total", {"change": "listed"}
                )
                == 2
            )
            assert (
                service.metrics.registry.get_sample_value(
                    "recorder_symbol_changes_total", {"change": "delisted"}
                )
                == 2
            )
            # Long enough, in the exchange's time, for ETHUSDT to look stale if expected.
            settled_at = exchange.simulated_now_ms()
            await wait_for(lambda: exchange.simulated_now_ms() > settled_at + 60_000)
            assert service.pipeline.connections.keys() == {"0.1", "1.1"}
        delivered = delivered_events(exchange)
        now_ms = exchange.simulated_now_ms()

    recorded = recorded_events(tmp_path)
    assert set(recorded) == delivered
    assert len(recorded) == len(set(recorded))
    symbols = {symbol for symbol, _ in recorded}
    assert symbols == {"BTCUSDT", "ETHUSDT", "币安人生USDT", "NEWUSDT", "NEXTUSDT"}
    assert gap_records(tmp_path) == []  # no gap for anyone, new listings included

    report = run_check(tmp_path, CheckLimits(now_ms=now_ms, since_ms=0, max_age_ms=30_000))
    assert [p for p in report.problems if p.kind is ProblemKind.STALE] == []
    assert {health.symbol for health in report.symbols} == symbols - {"ETHUSDT", "NEXTUSDT"}


@pytest.mark.asyncio
async def test_an_unanswered_subscribe_is_resolved_by_a_planned_handover(tmp_path: Path) -> None:
    async with SimulatedExchange(CONFIG) as exchange:
        settings = settings_for(
            exchange,
            tmp_path,
            symbols="all",
            rest_url=exchange.rest_url,
            refresh_interval="1s",
            max_streams_per_connection=2,
            open_timeout="300ms",
        )
        async with running(settings, seed=8) as service:
            await wait_for(lambda: len(service.source.supervisors) == 2)
            await wait_for(lambda: received(service, "币安人生USDT") > 0)
            assert open_ids(exchange) == ["c1", "c2"]
            [roomy] = [c.connection_id for c in exchange.connections() if len(c.streams) == 1]
            [full] = [c.connection_id for c in exchange.connections() if len(c.streams) == 2]
            # The connection with room ignores every request from now on.
            exchange.inject(Fault(FaultKind.DEAF, connection_id=roomy))
            exchange.set_contract_status("NEWUSDT", "TRADING")
            await wait_for(lambda: received(service, "NEWUSDT") > 0)
            await wait_for(lambda: open_ids(exchange) == [full, "c3"])
            await wait_for(lambda: agreed(service, exchange))
            shard = service.source.supervisors[1]
            assert shard.controller.requests_failed == MAX_ATTEMPTS
            assert shard.controller.handovers == 1
            assert shard.reconnects == 0  # planned: c2 closed once c3 delivered
            assert subscriptions(exchange) == {
                frozenset({"btcusdt@miniTicker", "ethusdt@miniTicker"}),
                frozenset({"币安人生usdt@miniTicker", "newusdt@miniTicker"}),
            }
        delivered = delivered_events(exchange)
    recorded = recorded_events(tmp_path)
    assert set(recorded) == delivered
    assert len(recorded) == len(set(recorded))
    assert {symbol for symbol, _ in recorded} == {"BTCUSDT", "ETHUSDT", "币安人生USDT", "NEWUSDT"}
    assert gap_records(tmp_path) == []
