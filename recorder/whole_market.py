"""``symbols = "all"`` in the running service: the first list, then the list's changes.

The first list is raced against the stop; later readings of exchangeInfo report changes.

:class:`WholeMarket` is a part of :mod:`recorder.service`'s wiring: the service asks it for
the list to start with (:meth:`WholeMarket.first`, ``None`` when the stop came first) and runs
:meth:`WholeMarket.follow` in its task group.
"""

import asyncio
import random

from recorder.clock import Clock
from recorder.ingest.market_list import ListChange, MarketListSource
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
        log.warning(
            "exchangeInfo lists other contracts now; this version records the list of its "
            "start until it is restarted",
            listed=list(change.listed),
            delisted=list(change.delisted),
            listed_now=len(symbols),
        )
