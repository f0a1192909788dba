"""The symbols the running service records, and how they change: listings, delistings, reloads.

:class:`RecordedSymbols` is a part of :mod:`recorder.service`'s wiring. With
``symbols = "all"`` the service asks it for the list to start with
(:meth:`RecordedSymbols.first`, raced against the stop: ``None`` when the stop came first),
then hands it the parts that know the recorded symbols (:meth:`RecordedSymbols.attach`) and
runs :meth:`RecordedSymbols.run` in its task group: with ``"all"`` it reads exchangeInfo every
``refresh_interval``; with a list it waits. A settings reload hands it new source settings
(:meth:`RecordedSymbols.reconfigure`): the reading in progress is cancelled, the new selection
is read (a list as it is, ``"all"`` from exchangeInfo at once) and followed from then on.

Each change is applied to all the parts at once, in the event loop, in this order: the
pipeline accepts the new symbols (their first event is no gap), the source subscribes them on
connections with room and unsubscribes the removed ones
(:meth:`~recorder.ingest.shards.MarketSource.apply`), the pipeline refuses the removed ones,
the state file names the new set (so ``recorder check`` stops expecting a removed symbol), and
the metrics follow. The symbols that did not change keep their connections: no reconnect, no
gap. Every change is logged and counted.
"""

import asyncio
import random
from collections.abc import Coroutine
from typing import Any

from recorder.clock import Clock
from recorder.errors import ExchangeInfoError, RestError
from recorder.flush import StorageFlush
from recorder.ingest.market_list import ListChange, MarketListSource, failure_reason, list_change
from recorder.ingest.pipeline import EventPipeline
from recorder.ingest.shards import MarketSource
from recorder.ops.logs import get_logger
from recorder.ops.metrics import RecorderMetrics
from recorder.settings import SourceSettings

log = get_logger(__name__)


class RecordedSymbols:
    """The symbols a running service records, from its settings or from exchangeInfo.

    Args:
        settings: the source settings as configured (``symbols`` a list or ``"all"``).
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
        self._clock = clock
        self._metrics = metrics
        self._rng = rng
        self.settings = settings
        """The source settings followed now, ``symbols = "all"`` unresolved."""
        self.symbols: tuple[str, ...] = settings.listed_symbols
        """The symbols recorded now, in the order of the list or of exchangeInfo."""
        self._parts: tuple[EventPipeline, MarketSource, StorageFlush] | None = None
        self._pending: SourceSettings | None = None
        self._reconfigured = asyncio.Event()

    def _list_source(self, settings: SourceSettings) -> MarketListSource:
        return MarketListSource(settings, self._clock, self._metrics.market, self._rng)

    def attach(self, pipeline: EventPipeline, source: MarketSource, flush: StorageFlush) -> None:
        """The parts a change of the list is applied to."""
        self._parts = (pipeline, source, flush)

    async def first(self, stop: asyncio.Event) -> tuple[str, ...] | None:
        """With ``symbols = "all"``: the list to start with, or ``None`` when stopped first.

        Raises:
            NoContractsError: the exchange answered with no contract to record.
        """
        async with asyncio.TaskGroup() as tg:
            reading = tg.create_task(self._list_source(self.settings).first(), name="exchangeInfo")
            stopping = tg.create_task(stop.wait(), name="stop")
            await asyncio.wait([reading, stopping], return_when=asyncio.FIRST_COMPLETED)
            reading.cancel()
            stopping.cancel()
        if reading.cancelled():
            return None
        self.symbols = reading.result()
        self._metrics.track_symbols(self.symbols)
        log.info("recording every listed contract", symbols=len(self.symbols))
        return self.symbols

    def reconfigure(self, settings: SourceSettings) -> None:
        """Record what ``settings`` select from now on (a settings reload); :meth:`run` does it."""
        self._pending = settings
        self._reconfigured.set()

    async def run(self) -> None:
        """Follow exchangeInfo (``"all"``) or wait (a list), and apply reloads; until cancelled."""
        self._metrics.market.set_recorded(len(self.symbols))
        while True:
            if self.settings.records_all:
                following = self._list_source(self.settings).follow(self.symbols, self._listed)
                await _until_set(following, self._reconfigured)
            else:
                await self._reconfigured.wait()
            self._reconfigured.clear()
            pending, self._pending = self._pending, None
            if pending is not None:
                await self._select(pending)

    async def _select(self, settings: SourceSettings) -> None:
        """Switch to ``settings``' selection: a list at once, ``"all"`` from a fresh reading."""
        self.settings = settings
        if not settings.records_all:
            new = settings.listed_symbols
        else:
            try:
                new = await self._list_source(settings).read()
            except (RestError, ExchangeInfoError) as exc:
                # The refresh that follows brings the list in; until then nothing is lost.
                self._metrics.market.reading_failed(failure_reason(exc))
                log.warning(
                    "settings reload: exchangeInfo could not be read; the recorded symbols "
                    "stay until a later reading succeeds",
                    error=str(exc),
                    retry_in=settings.refresh_interval,
                )
                return
        change = list_change(self.symbols, new)
        if change:
            self._apply(change, new, why="settings reload")

    def _listed(self, change: ListChange, symbols: tuple[str, ...]) -> None:
        self._apply(change, symbols, why="exchangeInfo")

    def _apply(self, change: ListChange, symbols: tuple[str, ...], *, why: str) -> None:
        if self._parts is None:
            return  # run() runs only once the service is wired
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
                "symbols added: recording them",
                why=why,
                symbols=list(change.listed),
                connections_opened=opened,
            )
        if change.delisted:
            log.info("symbols removed: no longer recorded", why=why, symbols=list(change.delisted))


async def _until_set(work: Coroutine[Any, Any, None], event: asyncio.Event) -> None:
    """Run ``work``, which runs forever, until ``event`` is set; then cancel it."""
    async with asyncio.TaskGroup() as tg:
        working = tg.create_task(work, name="exchangeInfo refresh")
        await event.wait()
        working.cancel()
