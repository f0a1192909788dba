"""A settings reload (what SIGHUP asks for) changes the recorded symbols on the open connections.

The service runs in-process against the simulated exchange over loopback and reads its
settings from a real TOML file, as ``recorder run -c FILE`` does; the file is rewritten and the
reload requested as the command line's SIGHUP handler requests it. Added symbols are subscribed
on connections with room, removed ones unsubscribed; the symbols that stay are never
reconnected and never get a gap; an invalid file changes nothing. The dataset, the gap log and
``check`` are read afterwards.
"""

import functools
from collections.abc import Callable
from pathlib import Path

import pytest
from connection_support import delivered_events, open_ids, recorded_events, running
from service_support import wait_for
from support import gap_records

from recorder.reports.check import CheckLimits, ProblemKind, run_check
from recorder.service import RecorderService
from recorder.settings import Settings, load_settings
from recorder.simulate import Fault, FaultKind, SimulatedExchange, SimulatorConfig
from recorder.simulate.faults import RestFailure
from recorder.symbols import stream_name

pytestmark = pytest.mark.integration

LISTED = ("BTCUSDT", "ETHUSDT", "币安人生USDT", "NEWUSDT", "BTCUSDT_260327")
CONFIG = SimulatorConfig(symbols=LISTED, speed=20, activity=1.0, seed=21)


def write_config(path: Path, exchange: SimulatedExchange, root: Path, **source: str) -> None:
    """The settings file: the exchange, fast-paced, two streams a connection, and ``source``."""
    lines = [
        "[source]",
        f'url = "{exchange.base_url}"',
        f'rest_url = "{exchange.rest_url}"',
        'backoff_initial = "50ms"',
        'backoff_max = "200ms"',
        'refresh_interval = "1s"',
        "max_streams_per_connection = 2",
        *(f"{key} = {value}" for key, value in source.items()),
        "[storage]",
        f"root = '{root}'",
        'flush_interval = "100ms"',
        "[metrics]",
        'address = ""',
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def sample(service: RecorderService, name: str, **labels: str) -> float:
    value = service.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def received(service: RecorderService, symbol: str) -> float:
    return sample(service, "recorder_events_received_total", symbol=symbol)


def agreed(service: RecorderService, exchange: SimulatedExchange) -> bool:
    """Each connection carries what the recorder believes, as LIST_SUBSCRIPTIONS tells."""
    belief = set()
    for supervisor in service.source.supervisors:
        current = supervisor.current
        if current is None or current.symbols != supervisor.symbols:
            return False
        belief.add(frozenset(stream_name(symbol) for symbol in current.symbols))
    return belief == {frozenset(info.streams) for info in exchange.connections()}


def reloads(service: RecorderService, outcome: str) -> float:
    return sample(service, "recorder_settings_reloads_total", outcome=outcome)


def configured(
    tmp_path: Path, exchange: SimulatedExchange, symbols: str
) -> tuple[Path, Path, Callable[[], Settings]]:
    """The settings file (recording ``symbols``), the root, and how the CLI reads them again."""
    config, root = tmp_path / "recorder.toml", tmp_path / "data"
    write_config(config, exchange, root, symbols=symbols)
    return config, root, functools.partial(load_settings, config, {}, {})


@pytest.mark.asyncio
async def test_a_reload_adds_and_removes_symbols_without_a_reconnect(tmp_path: Path) -> None:
    async with SimulatedExchange(CONFIG) as exchange:
        config, root, reread = configured(
            tmp_path, exchange, '["BTCUSDT", "ETHUSDT", "币安人生USDT"]'
        )
        async with running(reread(), seed=3) as service:
            await wait_for(lambda: len(service.source.supervisors) == 2)
            await wait_for(
                lambda: all(received(service, s) > 0 for s in ("BTCUSDT", "币安人生USDT"))
            )
            assert open_ids(exchange) == ["c1", "c2"]

            # ETHUSDT out, NEWUSDT in: the room ETHUSDT leaves is where NEWUSDT goes.
            write_config(config, exchange, root, symbols='["BTCUSDT", "币安人生USDT", "NEWUSDT"]')
            service.reload.request(reread)
            await wait_for(lambda: received(service, "NEWUSDT") > 0)
            await wait_for(lambda: agreed(service, exchange))
            assert open_ids(exchange) == ["c1", "c2"]
            assert reloads(service, "applied") == 1
            assert stream_name("ETHUSDT") not in {
                stream for info in exchange.connections() for stream in info.streams
            }

            # A broken file changes nothing and says why; the running settings stay.
            config.write_text("[source]\nsymbols = [\n", encoding="utf-8")
            service.reload.request(reread)
            await wait_for(lambda: reloads(service, "refused") == 1)
            assert service.reload.running.source.symbols == ("BTCUSDT", "币安人生USDT", "NEWUSDT")

            # A key that needs a restart is named, and not applied.
            write_config(config, exchange, root, symbols='["BTCUSDT", "币安人生USDT", "NEWUSDT"]')
            config.write_text(
                config.read_text(encoding="utf-8") + '[gaps]\ninterval = "1s"\n', encoding="utf-8"
            )
            plan = await service.reload.reload(reread)
            assert plan is not None
            assert plan.applied == ()
            assert plan.needs_restart == ("gaps.interval",)
            assert service.reload.running.gaps.interval_ms == 2000
            assert reloads(service, "unchanged") == 1

            settled_at = exchange.simulated_now_ms()
            await wait_for(lambda: exchange.simulated_now_ms() > settled_at + 60_000)
            assert open_ids(exchange) == ["c1", "c2"]
            assert service.source.supervisors[0].reconnects == 0
            assert service.source.supervisors[1].reconnects == 0
        delivered = delivered_events(exchange)
        now_ms = exchange.simulated_now_ms()

    recorded = recorded_events(root)
    assert set(recorded) == delivered
    assert len(recorded) == len(set(recorded))
    symbols = {symbol for symbol, _ in recorded}
    assert symbols == {"BTCUSDT", "ETHUSDT", "币安人生USDT", "NEWUSDT"}
    assert gap_records(root) == []
    report = run_check(root, CheckLimits(now_ms=now_ms, since_ms=0, max_age_ms=30_000))
    assert [p for p in report.problems if p.kind is ProblemKind.STALE] == []
    assert {health.symbol for health in report.symbols} == {"BTCUSDT", "币安人生USDT", "NEWUSDT"}


@pytest.mark.asyncio
async def test_a_reload_switches_to_all_and_follows_contract_types(tmp_path: Path) -> None:
    async with SimulatedExchange(CONFIG) as exchange:
        config, root, reread = configured(tmp_path, exchange, '["BTCUSDT"]')
        async with running(reread(), seed=4) as service:
            await wait_for(lambda: received(service, "BTCUSDT") > 0)

            # Every listed perpetual; exchangeInfo fails once first, and the next refresh
            # brings the list in.
            exchange.inject(Fault(FaultKind.REST_FAIL, count=1, reply=RestFailure.HTTP_500))
            write_config(config, exchange, root, symbols='"all"')
            service.reload.request(reread)
            perpetuals = ("BTCUSDT", "ETHUSDT", "币安人生USDT", "NEWUSDT")
            await wait_for(lambda: all(received(service, s) > 0 for s in perpetuals))
            await wait_for(lambda: agreed(service, exchange))
            assert received(service, "BTCUSDT_260327") == 0
            assert (
                sample(service, "recorder_exchange_info_failures_total", reason="http_error") == 1
            )

            # The quarterly contract too, from the next reading.
            write_config(
                config,
                exchange,
                root,
                symbols='"all"',
                contract_types='["PERPETUAL", "CURRENT_QUARTER"]',
            )
            service.reload.request(reread)
            await wait_for(lambda: received(service, "BTCUSDT_260327") > 0)
            await wait_for(lambda: agreed(service, exchange))
            assert len(service.source.supervisors) == 3

            # Back to a list: the refresh stops and the rest is unsubscribed.
            write_config(config, exchange, root, symbols='["ETHUSDT"]')
            service.reload.request(reread)
            await wait_for(lambda: service.symbols.symbols == ("ETHUSDT",))
            await wait_for(lambda: len(exchange.connections()) == 1)
            await wait_for(lambda: agreed(service, exchange))
            assert service.pipeline.connections.keys() == {
                s.current.connection_id for s in service.source.supervisors if s.current
            }
            assert reloads(service, "applied") == 3
        delivered = delivered_events(exchange)

    recorded = recorded_events(root)
    assert set(recorded) == delivered
    assert len(recorded) == len(set(recorded))
    assert gap_records(root) == []
