"""`recorder backfill` against the simulated exchange: an outage and a stall, then their rows.

The service records the simulator at 60x the real pace through a dropped connection whose
reconnects are refused for a while, and through a stall; both leave gaps of several simulated
minutes in the gap log. The backfill then fetches the simulator's klines over loopback and
rebuilds every whole minute inside them. The judge is the simulator's own ledger: each rebuilt
row equals, field by field, the last event it generated in that minute (which never reached the
recorder), and the rows recorded are untouched. A rerun adds nothing; a 429 is waited out.
"""

import asyncio
import json
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest
from connection_support import running
from recorded_dataset import BTC, gap, log_gaps, write_data_file
from service_support import settings_for, wait_for
from support import gap_records

from recorder.backfill.pacing import WeightPacer
from recorder.backfill.rebuild import minutes_inside
from recorder.backfill.run import GapState, run_backfill
from recorder.clock import SystemClock
from recorder.gaps.detector import GapCause
from recorder.gaps.resolutions import read_resolutions
from recorder.simulate import Fault, FaultKind, SimulatedExchange, SimulatorConfig
from recorder.simulate.faults import RestFailure
from recorder.storage.root_schema import mark_root

pytestmark = pytest.mark.integration

SYMBOLS = ("BTCUSDT", "ETHUSDT")
CONFIG = SimulatorConfig(symbols=SYMBOLS, speed=60, activity=1.0, seed=5)
MINUTE = 60_000
FIELDS = ("c", "o", "h", "l", "v", "q")
COLUMNS = ("close", "open", "high", "low", "volume", "quote_volume")


def dataset_rows(root: Path) -> list[dict[str, Any]]:
    table = ds.dataset(root, partitioning="hive", format="parquet").to_table()
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def last_event_per_minute(exchange: SimulatedExchange) -> dict[tuple[str, int], dict[str, str]]:
    """The simulator's last generated event of each symbol and minute, delivered or not."""
    last: dict[tuple[str, int], dict[str, str]] = {}
    for record in exchange.events():
        minute = record.event_time // MINUTE * MINUTE
        last[(record.symbol, minute)] = json.loads(record.payload_json)
    return last


@pytest.mark.asyncio
async def test_backfill_rebuilds_every_whole_minute_of_an_outage_and_a_stall(
    tmp_path: Path,
) -> None:
    async with SimulatedExchange(CONFIG) as exchange:
        settings = settings_for(
            exchange,
            tmp_path,
            symbols=list(SYMBOLS),
            rest_url=exchange.rest_url,
            stall_timeout="1s",
            handover_timeout="1s",
            backoff_initial="100ms",
            backoff_max="200ms",
        )
        async with running(settings, seed=1) as service:
            await wait_for(lambda: service.pipeline.counters.events > 20)
            # An outage: the connection drops and the next 25 handshakes are refused.
            exchange.inject(Fault(FaultKind.REFUSE, count=25))
            exchange.inject(Fault(FaultKind.DROP))
            await wait_for(lambda: service.pipeline.counters.gaps >= 2)
            await asyncio.sleep(1)
            # A stall: the connection stays open and delivers nothing for 5 simulated minutes.
            exchange.inject(Fault(FaultKind.STALL, duration=5))
            await wait_for(lambda: service.pipeline.counters.gaps >= 4)
            await asyncio.sleep(0.5)
        recorded_before = dataset_rows(tmp_path)
        truth = last_event_per_minute(exchange)
        gaps = [g for g in gap_records(tmp_path) if g["cause"] in {"disconnect", "stall"}]
        assert {g["cause"] for g in gaps} == {"disconnect", "stall"}

        # A 429 on the first klines request, waited out before anything else is sent.
        exchange.inject(Fault(FaultKind.REST_FAIL, reply=RestFailure.HTTP_429, retry_after=2))
        report = await run_backfill(
            tmp_path,
            rest_url=exchange.rest_url,
            request_timeout=5,
            clock=SystemClock(),
            pacer=WeightPacer(),
            rng=random.Random(3),
        )
        rerun = await run_backfill(
            tmp_path, rest_url=exchange.rest_url, request_timeout=5, clock=SystemClock()
        )

    assert report.exit_code == 0, report.outcomes
    assert report.rate_limited == 1
    # The pause runs from the 429 to Retry-After later: the next request waited it out.
    assert report.waited >= 1.9
    expected_minutes = {
        (g["symbol"], minute)
        for g in gaps
        for minute in minutes_inside(int(g["from_ms"]), int(g["to_ms"]))
    }
    assert expected_minutes  # several simulated minutes of each gap
    assert report.rows == len(expected_minutes)
    assert report.count(GapState.FAILED) == 0

    rows = dataset_rows(tmp_path)
    backfilled = [row for row in rows if row["source"] == "backfill"]
    recorded = [row for row in rows if row["source"] == "stream"]
    # The recorded rows are untouched; one backfilled row per whole minute inside the gaps.
    assert sorted(map(str, recorded)) == sorted(map(str, recorded_before))
    keys = [
        (str(row["symbol"]), int(row["event_time"].timestamp() * 1000) // MINUTE * MINUTE)
        for row in backfilled
    ]
    assert sorted(keys) == sorted(expected_minutes)
    compared = 0
    for row, key in zip(backfilled, keys, strict=True):
        assert int(row["event_time"].timestamp() * 1000) == key[1] + MINUTE - 1
        streamed = truth.get(key)
        if streamed is None:
            continue  # no trade in that minute: nothing streamed to compare with
        compared += 1
        for field, column in zip(FIELDS, COLUMNS, strict=True):
            assert Decimal(str(row[column])) == Decimal(streamed[field]), (key, column)
    assert compared >= len(backfilled) // 2

    # A rerun adds nothing; every filled gap has its resolution.
    assert (rerun.rows, rerun.count(GapState.FILLED)) == (0, 0)
    assert rerun.already_resolved == report.count(GapState.FILLED)
    assert len(dataset_rows(tmp_path)) == len(rows)
    resolutions = read_resolutions(tmp_path)
    filled = {o.gap.key for o in report.outcomes if o.state is GapState.FILLED}
    assert filled == set(resolutions)
    # A gap with no whole minute inside has nothing to rebuild from candles: it stays open.
    for outcome in report.outcomes:
        inside = minutes_inside(outcome.gap.from_ms, outcome.gap.to_ms)
        assert (outcome.state is GapState.NOTHING_INSIDE) == (not inside)


@pytest.mark.asyncio
async def test_overlapping_gaps_of_two_instances_get_each_minute_once(tmp_path: Path) -> None:
    # A redundant pair lost the same outage, each from its own last event: two records of
    # overlapping gaps. Filled in one run, then a third overlapping one logged later.
    async with SimulatedExchange(SimulatorConfig(symbols=(BTC,), seed=6)) as exchange:
        start = exchange.start_ms // MINUTE * MINUTE - 60 * MINUTE  # in the day of history
        first = gap(BTC, start + 1_000, start + 6 * MINUTE + 1_000, 149, GapCause.DISCONNECT)
        second = gap(BTC, start + 3_000, start + 7 * MINUTE, 170, GapCause.DISCONNECT)
        later = gap(BTC, start + 4 * MINUTE, start + 9 * MINUTE, 149, GapCause.DISCONNECT)
        mark_root(tmp_path)
        write_data_file(tmp_path, BTC, [start + 1_000, start + 3_000, start + 9 * MINUTE])
        log_gaps(tmp_path, first, instance_id="host-a")
        log_gaps(tmp_path, second, instance_id="host-b")
        report = await run_backfill(
            tmp_path, rest_url=exchange.rest_url, request_timeout=5, clock=SystemClock()
        )
        log_gaps(tmp_path, later, instance_id="host-c")
        again = await run_backfill(
            tmp_path, rest_url=exchange.rest_url, request_timeout=5, clock=SystemClock()
        )

    assert (report.exit_code, report.count(GapState.FILLED)) == (0, 2)
    assert (again.exit_code, again.count(GapState.FILLED), again.already_resolved) == (0, 1, 2)
    rows = dataset_rows(tmp_path)
    rebuilt = sorted(
        int(row["event_time"].timestamp() * 1000 + 0.5)
        for row in rows
        if row["source"] == "backfill"
    )
    # Every minute inside any of the gaps once, none twice.
    minutes = {m for g in (first, second, later) for m in minutes_inside(g.from_ms, g.to_ms)}
    assert rebuilt == sorted(m + MINUTE - 1 for m in minutes)
    resolved = read_resolutions(tmp_path)
    assert sum(resolution.rows for resolution in resolved.values()) == len(minutes)
    assert resolved[second.key].rows == 1  # the one minute the first gap did not hold
