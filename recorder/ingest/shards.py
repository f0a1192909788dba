"""Every shard of the recorded symbols under one task group, and the symbols' live changes.

:class:`MarketSource` plans the shards (:func:`~recorder.ingest.connection.plan_shards`: at
most ``max_streams_per_connection`` symbols each, balanced) and runs one
:class:`~recorder.ingest.source.ShardSupervisor` per shard. When the recorded symbols change
while running (``symbols = "all"`` and a listing or a delisting), :meth:`MarketSource.apply`
spreads the change over the running shards
(:func:`~recorder.ingest.subscriptions.plan_changes`): each changes its open connection's
streams, a shard is opened only when every one is full, and one left with no symbol closes
its connection and ends.

With ``[source] mode = "all_market"`` there is one shard, whatever the number of symbols: its
one connection carries the all-market array of every contract, so the stream limit does not
apply (:data:`ONE_STREAM`), and a change of the symbols changes only what it is said to carry
(no ``SUBSCRIBE`` or ``UNSUBSCRIBE``; see :mod:`recorder.ingest.live_streams`).
"""

import asyncio
import random
import sys
from typing import Final

import aiohttp

from recorder.clock import Clock
from recorder.ingest.connection import plan_shards
from recorder.ingest.market_connection import StreamItem
from recorder.ingest.source import ShardSupervisor
from recorder.ingest.subscriptions import plan_changes
from recorder.settings import SourceSettings

__all__ = ["ONE_STREAM", "MarketSource"]

ONE_STREAM: Final = sys.maxsize
"""Symbols per shard in all-market mode: every symbol rides on the one array stream."""


class MarketSource:
    """All shards of the recorded symbols, under one task group.

    Args:
        settings: source settings.
        clock: the injectable clock.
        sink: the bounded queue the pipeline reads.
        rng: randomness for backoff jitter.
    """

    def __init__(
        self,
        settings: SourceSettings,
        clock: Clock,
        sink: asyncio.Queue[StreamItem],
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._sink = sink
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._limit = ONE_STREAM if settings.all_market else settings.max_streams_per_connection
        self.shards = plan_shards(settings.listed_symbols, self._limit)
        self.supervisors: list[ShardSupervisor] = []
        self._running: tuple[aiohttp.ClientSession, asyncio.TaskGroup] | None = None
        self._next_index = len(self.shards)

    async def run(self) -> None:
        """Run every shard until cancelled."""
        async with aiohttp.ClientSession() as session, asyncio.TaskGroup() as tg:
            self._running = (session, tg)
            for index, symbols in enumerate(self.shards):
                self._start(index, symbols)

    def apply(self, listed: tuple[str, ...], delisted: tuple[str, ...]) -> int:
        """Record ``listed`` too and ``delisted`` no more, on the running connections.

        New symbols go to shards with room (:func:`~recorder.ingest.subscriptions.plan_changes`);
        a shard is opened only when all are full, and a shard left with no symbol is stopped.

        Returns:
            How many shards were opened.
        """
        limit = self._limit
        if self._running is None:
            # Not connected yet: the shards open with the new lists.
            plan = plan_changes(self.shards, listed, delisted, limit)
            self.shards = plan.applied_to(self.shards)
            self._next_index = len(self.shards)
            return len(plan.new_shards)
        plan = plan_changes([shard.symbols for shard in self.supervisors], listed, delisted, limit)
        for position, supervisor in enumerate(self.supervisors):
            add, remove = plan.subscribe.get(position, ()), plan.unsubscribe.get(position, ())
            if add or remove:
                supervisor.change_streams(add, remove)
        for symbols in plan.new_shards:
            self._start(self._next_index, symbols)
            self._next_index += 1
        for supervisor in [shard for shard in self.supervisors if not shard.symbols]:
            # It closes its connection and reports the end, then its task ends by itself.
            supervisor.emptied.set()
            self.supervisors.remove(supervisor)
        self.shards = [supervisor.symbols for supervisor in self.supervisors]
        return len(plan.new_shards)

    def _start(self, index: int, symbols: tuple[str, ...]) -> None:
        assert self._running is not None  # noqa: S101 - only called while running
        session, tg = self._running
        supervisor = ShardSupervisor(
            index,
            symbols,
            settings=self._settings,
            session=session,
            clock=self._clock,
            sink=self._sink,
            rng=self._rng,
        )
        self.supervisors.append(supervisor)
        tg.create_task(supervisor.run(), name=f"shard {index}")
