"""A simulated market run sans-IO: the generator ticked, its events, the candles built of them."""

from dataclasses import dataclass

from recorder.simulate.config import SimulatorConfig
from recorder.simulate.market import MarketEvent, MarketGenerator
from recorder.simulate.rest import CandleBook


@dataclass
class MarketRun:
    """What ``ticks`` ticks of a market generated, as the exchange accounts it."""

    generator: MarketGenerator
    book: CandleBook
    events: list[MarketEvent]


def run_market(config: SimulatorConfig, start_ms: int, ticks: int) -> MarketRun:
    """Tick a new market ``ticks`` times from ``start_ms``, every event into the candles."""
    generator = MarketGenerator(config, start_ms)
    book = CandleBook(generator.profiles, generator.history)
    events = []
    for _ in range(ticks):
        for event in generator.step().events:
            book.add(event)
            events.append(event)
    return MarketRun(generator, book, events)
