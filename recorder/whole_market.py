"""``symbols = "all"`` in the running service: the first list, then the list's changes.

:class:`WholeMarket` is a part of :mod:`recorder.service`'s wiring: the service asks it for
the list to start with (:meth:`WholeMarket.first`, raced against the stop: ``None`` when the
stop came first), hands it the parts that know the recorded symbols
(:meth:`WholeMarket.attach`) and runs :meth:`WholeMarket.follow` in its task group. Each change
a later reading of exchangeInfo finds is applied to all of them at once, in the event loop, in
this order: the pipeline accepts the new symbols (their first event is no gap), the source
subscribes them on connections with room and unsubscribes the removed ones
(:meth:`~recorder.ingest.shards.MarketSource.apply`), the pipeline refuses the removed ones,
the state file names the new set (so ``recorder check`` stops expecting a delisted symbol),
and the metrics follow. Listings and delistings are logged and counted.
"""

import asyncio
import random

from recorder.clock import Clock
from recorder.flush import StorageFlush
from recorder.ingest.market_list import ListChange, MarketListSource
from recorder.ingest.pipeline import EventPipeline
from recorder.ingest.shards import MarketSource
from recorder.ops.logs import get_logger
from recorder.ops.metrics import RecorderMetrics
from recorder.settings import SourceSettings

log = get_logger(__name__)


class WholeMarket:
    """The contracts a ``symbols = "all"`` service records.

    Args:
        settings: source settings with ``symbols = "all"``.
        clock: the injectable clock.
        metrics: the recorder's metrics.
        rng: randomness for backoff jitter.
    """

    def __init__(
        self,
        settings: SourceSettings,
        clock: Clock,
        metrics: RecorderMetrics,
        rng: random.Random,
    ) -> None:
        self._source = MarketListSource(settings, clock, metrics.market, rng)
        self._metrics = metrics
        self.symbols: tuple[str, ...] = ()
        """The symbols recorded now, in exchangeInfo's order."""
        self._parts: tuple[EventPipeline, MarketSource, StorageFlush] | None = None

    def attach(self, pipeline: EventPipeline, source: MarketSource, flush: StorageFlush) -> None:
        """The parts a change of the list is applied to."""
        self._parts = (pipeline, source, flush)

    async def first(self, stop: asyncio.Event) -> tuple[str, ...] | None:
        """The list to start with, or ``None`` when ``stop`` is set before exchangeInfo answers.

        Raises:
            NoContractsError: the exchange answered with no contract to record.
        """
        async with asyncio.TaskGroup() as tg:
            reading = tg.create_task(self._source.first(), name="first exchangeInfo")
            stopping = tg.create_task(stop.wait(), name="stop")
            await asyncio.wait([reading, stopping], return_when=asyncio.FIRST_COMPLETED)
            reading.cancel()
            stopping.cancel()
        if reading.cancelled():
            return None
        self.symbols = reading.result()
        self._metrics.track_symbols(self.symbols)
        self._metrics.market.set_recorded(len(self.symbols))
        log.info("recording every listed contract", symbols=len(self.symbols))
        return self.symbols

    async def follow(self) -> None:
        """Read exchangeInfo every ``refresh_interval`` until cancelled."""
        await self._source.follow(self.symbols, self._changed)

    def _changed(self, change: ListChange, symbols: tuple[str, ...]) -> None:
        if self._parts is None:
            return  # follow() runs only once the service is wired
        pipeline, source, flush = self._parts
        pipeline.accept(change.listed)
        opened = source.apply(change.listed, change.delisted)
        pipeline.refuse(change.delisted)
        flush.recorded_symbols = symbols
        self.symbols = symbols
        metrics = self._metrics
        metrics.track_symbols(change.listed)
        metrics.untrack_symbols(change.delisted)
        metrics.market.changed(listed=len(change.listed), delisted=len(change.delisted))
        metrics.market.set_recorded(len(symbols))
        if change.listed:
            log.info(
                "contracts listed: recording them",
                symbols=list(change.listed),
                connections_opened=opened,
            )
        if change.delisted:
            log.info(
                "contracts delisted or not trading: no longer recorded",
                symbols=list(change.delisted),
            )
