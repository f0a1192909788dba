"""All-market mode in the source, sans socket: one shard, its URL, live changes without requests."""

import asyncio
import doctest

import pytest

import recorder.ingest.connection
from recorder.clock import SystemClock
from recorder.ingest.connection import all_market_stream_url, combined_stream_url
from recorder.ingest.live_streams import StreamController
from recorder.ingest.shards import MarketSource
from recorder.ingest.subscriptions import ControlReply
from recorder.settings import parse_settings


def test_the_all_market_url_is_the_array_stream_under_the_base() -> None:
    assert (
        all_market_stream_url("ws://127.0.0.1:9/market")
        == "ws://127.0.0.1:9/market/stream?streams=!miniTicker@arr"
    )
    # Beside the per-symbol one: the same base, the same combined form.
    base = "wss://fstream.binance.com/market"
    assert (
        all_market_stream_url(base).split("=")[0] == combined_stream_url(base, ["A"]).split("=")[0]
    )
    assert doctest.testmod(recorder.ingest.connection).failed == 0


def test_one_shard_whatever_the_number_of_symbols() -> None:
    symbols = [f"S{n}USDT" for n in range(700)]
    settings = parse_settings(
        {"source": {"mode": "all_market", "symbols": symbols, "max_streams_per_connection": 200}}
    ).source
    source = MarketSource(settings, SystemClock(), asyncio.Queue())
    assert source.shards == [tuple(symbols)]
    # Changes before connecting stay on the one shard.
    assert source.apply(("NEWUSDT",), ("S0USDT",)) == 0
    assert source.shards == [(*symbols[1:], "NEWUSDT")]
    per_symbol = parse_settings({"source": {"symbols": symbols}}).source
    assert len(MarketSource(per_symbol, SystemClock(), asyncio.Queue()).shards) == 4


class Connection:
    """A connection that fails the test if any request goes out on it."""

    def __init__(self, symbols: tuple[str, ...]) -> None:
        self.connection_id = "0.1"
        self.symbols = symbols
        self.handover_due = asyncio.Event()
        self.carried: list[tuple[str, ...]] = []

    async def request(
        self, method: str, symbols: tuple[str, ...], reply_within: float
    ) -> ControlReply | None:
        pytest.fail(f"{method} sent on an all-market connection")

    async def carry(self, symbols: tuple[str, ...]) -> None:
        self.symbols = symbols
        self.carried.append(symbols)

    def request_handover(self) -> None:
        pytest.fail("handover asked on an all-market connection")


class Shard:
    def __init__(self, symbols: tuple[str, ...], current: Connection | None) -> None:
        self.symbols = symbols
        self.current = current
        self.streams_changed = asyncio.Event()


@pytest.mark.asyncio
async def test_a_change_of_symbols_sends_nothing_and_is_carried() -> None:
    connection = Connection(("A", "B"))
    shard = Shard(("B", "C"), connection)
    controller = StreamController(shard, reply_within=1.0, requests=False)
    await controller.reconcile()
    assert connection.carried == [("B", "C")]
    # Nothing changed since: nothing carried again.
    await controller.reconcile()
    assert connection.carried == [("B", "C")]
    # In the middle of a handover too: the old connection is told what it carries.
    connection.handover_due.set()
    shard.symbols = ("C",)
    await controller.reconcile()
    assert connection.carried == [("B", "C"), ("C",)]
    assert (controller.requests_failed, controller.handovers) == (0, 0)
    await StreamController(Shard(("A",), None), 1.0, requests=False).reconcile()
