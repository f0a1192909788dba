"""A Binance USDⓈ-M futures exchange on loopback, for tests, benchmarks and demos.

It speaks what Binance speaks (routed ``/market`` websocket paths, combined and raw frames,
``!miniTicker@arr``, live subscribe methods, pings, connection limits, and the REST endpoints
``ping``, ``time``, ``exchangeInfo``, ``ticker/24hr`` and ``klines``), generates a deterministic
market from a seed, lists and delists contracts as a test schedules them, records the ground
truth of every event it generated and where it went, and injects faults on request. Layout:

* :mod:`~recorder.simulate.config`: :class:`SimulatorConfig`;
* :mod:`~recorder.simulate.profiles`: how each contract is quoted;
* :mod:`~recorder.simulate.history`: the synthetic day of one-minute candles before the start;
* :mod:`~recorder.simulate.rolling`: the rolling 24 h window that ``o, h, l, v, q`` carry;
* :mod:`~recorder.simulate.market`: the sans-IO market generator;
* :mod:`~recorder.simulate.listings`: the listed contracts and their status;
* :mod:`~recorder.simulate.protocol`: the sans-IO websocket protocol;
* :mod:`~recorder.simulate.liveness`: the sans-IO pings, lifetime and message rate limit;
* :mod:`~recorder.simulate.faults`: faults and their spec grammar;
* :mod:`~recorder.simulate.ledger`: the ground truth;
* :mod:`~recorder.simulate.rest`: the sans-IO REST answers;
* :mod:`~recorder.simulate.exchange_info`: the sans-IO ``exchangeInfo`` body;
* :mod:`~recorder.simulate.event_clock`: the event clock that ticks the market;
* :mod:`~recorder.simulate.connections`: open connections and :class:`ConnectionInfo`;
* :mod:`~recorder.simulate.all_market`: the one-second pace of ``!miniTicker@arr``;
* :mod:`~recorder.simulate.stream`: the websocket endpoint and its connection loops;
* :mod:`~recorder.simulate.injector`: firing faults, and :class:`FaultRecord`;
* :mod:`~recorder.simulate.rest_routes`: the REST endpoints on aiohttp;
* :mod:`~recorder.simulate.control`: the ``/_sim/*`` ground-truth and fault endpoints;
* :mod:`~recorder.simulate.exchange`: :class:`SimulatedExchange`, which wires them, and
  :func:`serve`.
"""

from recorder.simulate.config import DEFAULT_SYMBOLS, SimulatorConfig
from recorder.simulate.connections import ConnectionInfo
from recorder.simulate.exchange import SimulatedExchange, serve
from recorder.simulate.faults import Fault, FaultKind, fault_from_json, parse_fault_spec
from recorder.simulate.injector import FaultRecord
from recorder.simulate.ledger import EventRecord
from recorder.simulate.listings import DELISTED, Contract, ContractStatus

__all__ = [
    "DEFAULT_SYMBOLS",
    "DELISTED",
    "ConnectionInfo",
    "Contract",
    "ContractStatus",
    "EventRecord",
    "Fault",
    "FaultKind",
    "FaultRecord",
    "SimulatedExchange",
    "SimulatorConfig",
    "fault_from_json",
    "parse_fault_spec",
    "serve",
]
