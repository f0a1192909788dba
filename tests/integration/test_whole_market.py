"""``symbols = "all"``: the list from exchangeInfo, its failures at start and while recording.

The service runs in-process against the simulated exchange over loopback; the dataset and the
gap log are read afterwards as an analyst would (DuckDB), the failures in the metrics.
"""

import asyncio
import random
from pathlib import Path

import pytest
from connection_support import delivered_events, recorded_events, running
from service_support import settings_for, wait_for
from support import gap_records

from recorder.errors import NoContractsError
from recorder.service import RecorderService
from recorder.settings import Settings
from recorder.simulate import Fault, FaultKind, SimulatedExchange, SimulatorConfig
from recorder.simulate.faults import RestFailure

pytestmark = pytest.mark.integration

LISTED = ("BTCUSDT", "ETHUSDT", "币安人生USDT", "BTCUSDT_260327")
PERPETUALS = ("BTCUSDT", "ETHUSDT", "币安人生USDT")
CONFIG = SimulatorConfig(symbols=LISTED, speed=20, activity=1.0, seed=11)


def all_settings(exchange: SimulatedExchange, root: Path) -> Settings:
    return settings_for(
        exchange, root, symbols="all", rest_url=exchange.rest_url, refresh_interval="1s"
    )


def sample(service: RecorderService, name: str, **labels: str) -> float:
    value = service.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def rest_fail(reply: RestFailure, count: int = 1, retry_after: float | None = None) -> Fault:
    return Fault(FaultKind.REST_FAIL, count=count, reply=reply, retry_after=retry_after)


@pytest.mark.asyncio
async def test_all_records_the_trading_perpetuals_exchange_info_lists(tmp_path: Path) -> None:
    async with SimulatedExchange(CONFIG) as exchange:
        exchange.set_contract_status("ETHUSDT", "SETTLING")
        async with running(all_settings(exchange, tmp_path), seed=1) as service:
            await wait_for(lambda: service.pipeline.counters.events >= 40)
            assert service.settings.source.symbols == ("BTCUSDT", "币安人生USDT")
            assert sample(service, "recorder_recorded_symbols") == 2
        delivered = delivered_events(exchange)
    recorded = recorded_events(tmp_path)
    assert {symbol for symbol, _ in recorded} == {"BTCUSDT", "币安人生USDT"}
    assert set(recorded) == delivered
    assert gap_records(tmp_path) == []


@pytest.mark.asyncio
async def test_a_first_reading_that_fails_is_retried_until_the_exchange_answers(
    tmp_path: Path,
) -> None:
    async with SimulatedExchange(CONFIG) as exchange:
        exchange.inject(rest_fail(RestFailure.HTTP_500))
        exchange.inject(rest_fail(RestFailure.HTTP_429, retry_after=0.1))
        exchange.inject(rest_fail(RestFailure.TRUNCATED))
        async with running(all_settings(exchange, tmp_path), seed=2) as service:
            await wait_for(lambda: service.pipeline.counters.events >= 20)
            assert service.settings.source.symbols == PERPETUALS
            failures = "recorder_exchange_info_failures_total"
            assert sample(service, failures, reason="http_error") == 1
            assert sample(service, failures, reason="rate_limited") == 1
            assert sample(service, failures, reason="malformed") == 1
    assert {symbol for symbol, _ in recorded_events(tmp_path)} == set(PERPETUALS)


@pytest.mark.asyncio
async def test_an_empty_first_answer_is_an_error_that_says_so(tmp_path: Path) -> None:
    async with SimulatedExchange(CONFIG) as exchange:
        exchange.inject(rest_fail(RestFailure.EMPTY))
        service = RecorderService(all_settings(exchange, tmp_path), rng=random.Random(3))
        with pytest.raises(ExceptionGroup) as caught:
            await service.run(asyncio.Event())
        assert exchange.connections() == []
    [error] = caught.value.exceptions
    assert isinstance(error, NoContractsError)
    assert "lists no TRADING contract of type PERPETUAL" in str(error)


@pytest.mark.asyncio
async def test_a_stop_while_the_first_reading_is_retried_ends_the_run(tmp_path: Path) -> None:
    async with SimulatedExchange(CONFIG) as exchange:
        exchange.inject(rest_fail(RestFailure.HTTP_418, count=10_000, retry_after=3600))
        service = RecorderService(all_settings(exchange, tmp_path), rng=random.Random(4))
        stop = asyncio.Event()
        run = asyncio.create_task(service.run(stop))
        await wait_for(
            lambda: sample(service, "recorder_exchange_info_failures_total", reason="banned") >= 1
        )
        stop.set()
        await asyncio.wait_for(run, 5)  # not the hour Retry-After asked for
        assert exchange.connections() == []
    assert await asyncio.to_thread(lambda: list(tmp_path.rglob("*.parquet"))) == []


@pytest.mark.asyncio
async def test_refreshes_that_fail_keep_recording_and_are_counted(tmp_path: Path) -> None:
    async with SimulatedExchange(CONFIG) as exchange:
        async with running(all_settings(exchange, tmp_path), seed=5) as service:
            await wait_for(
                lambda: sample(service, "recorder_exchange_info_readings_total", outcome="ok") >= 2
            )
            for reply in (RestFailure.HTTP_500, RestFailure.MALFORMED, RestFailure.EMPTY):
                exchange.inject(rest_fail(reply))
            failed = "recorder_exchange_info_readings_total"
            await wait_for(lambda: sample(service, failed, outcome="failed") >= 3)
            during = service.pipeline.counters.events
            ok_before = sample(service, failed, outcome="ok")
            await wait_for(lambda: sample(service, failed, outcome="ok") > ok_before)
            await wait_for(lambda: service.pipeline.counters.events > during + 20)
            assert service.settings.source.symbols == PERPETUALS
            assert sample(service, "recorder_exchange_info_failures_total", reason="empty") == 1
            assert [c.connection_id for c in exchange.connections()] == ["c1"]
        delivered = delivered_events(exchange)
    recorded = recorded_events(tmp_path)
    assert set(recorded) == delivered
    assert {symbol for symbol, _ in recorded} == set(PERPETUALS)
    assert gap_records(tmp_path) == []
