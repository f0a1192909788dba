"""``MarketList.follow`` against the simulated exchange, one reading at a time.

The test owns the pace: ``follow`` waits on a queue between readings instead of sleeping, so
each step below is exactly one exchangeInfo reading over loopback.
"""

import asyncio
import random

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from recorder.clock import SystemClock
from recorder.ingest.market_list import ListChange, MarketList
from recorder.ingest.rest import RestClient
from recorder.ops.market_metrics import MarketListMetrics
from recorder.simulate import SimulatedExchange, SimulatorConfig

pytestmark = pytest.mark.integration

SYMBOLS = tuple(f"S{number:02d}USDT" for number in range(30))


@pytest.mark.asyncio
async def test_a_mass_delisting_waits_for_the_next_reading_to_confirm_it(
    http: aiohttp.ClientSession,
) -> None:
    registry = CollectorRegistry()
    readings: asyncio.Queue[None] = asyncio.Queue()
    applied: asyncio.Queue[ListChange] = asyncio.Queue()

    async def next_reading(_seconds: float) -> None:
        await readings.get()

    async with SimulatedExchange(SimulatorConfig(symbols=SYMBOLS, seed=4)) as exchange:
        market = MarketList(
            RestClient(http, exchange.rest_url, timeout=5),
            ("PERPETUAL",),
            refresh_interval=60.0,
            backoff=(0.1, 1.0),
            clock=SystemClock(),
            metrics=MarketListMetrics(registry),
            rng=random.Random(1),
            sleep=next_reading,
        )
        following = asyncio.create_task(
            market.follow(SYMBOLS, lambda change, _symbols: applied.put_nowait(change))
        )
        try:
            # Twelve of thirty gone at once, and one listed: the listing applies, the
            # delistings are held.
            gone = SYMBOLS[:12]
            for symbol in gone:
                exchange.set_contract_status(symbol, "SETTLING")
            exchange.set_contract_status("NEWUSDT", "TRADING")
            readings.put_nowait(None)
            first = await asyncio.wait_for(applied.get(), 10)
            assert first == ListChange(("NEWUSDT",), ())
            held = registry.get_sample_value(
                "recorder_symbol_changes_total", {"change": "delisting_held"}
            )
            assert held == len(gone)

            # The next reading says the same: confirmed, applied.
            readings.put_nowait(None)
            second = await asyncio.wait_for(applied.get(), 10)
            assert second == ListChange((), gone)

            # A few at a time apply at once.
            exchange.set_contract_status(SYMBOLS[12], "SETTLING")
            readings.put_nowait(None)
            third = await asyncio.wait_for(applied.get(), 10)
            assert third == ListChange((), (SYMBOLS[12],))
        finally:
            following.cancel()
            with pytest.raises(asyncio.CancelledError):
                await following
