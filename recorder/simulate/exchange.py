"""The simulated exchange as a real server: aiohttp on loopback around the sans-IO core.

:class:`SimulatedExchange` owns the parts and wires them: the event clock
(:mod:`~recorder.simulate.event_clock`) ticks the market, and each tick's events go into the
ground-truth ledger, the candles and out to every routed connection that subscribed their
symbols (:mod:`~recorder.simulate.connections`); ``!miniTicker@arr`` gets each second's events
once a second (:mod:`~recorder.simulate.all_market`). Which contracts tick is the listing's
call (:mod:`~recorder.simulate.listings`). The routes are the websocket endpoint
(:mod:`~recorder.simulate.stream`), the REST endpoints (:mod:`~recorder.simulate.rest_routes`)
and the ``/_sim/*`` control endpoints (:mod:`~recorder.simulate.control`); faults fire through
:mod:`~recorder.simulate.injector`. :func:`serve` runs one for the ``recorder simulate`` command.
"""

import asyncio
import logging
import socket
import sys
from collections import Counter
from types import TracebackType
from typing import Self

from aiohttp import WSCloseCode, web

from recorder.simulate.all_market import ArrayWindows
from recorder.simulate.config import SimulatorConfig
from recorder.simulate.connections import ConnectionInfo, ConnectionTable
from recorder.simulate.control import ControlRoutes
from recorder.simulate.event_clock import EventClock, wall_ms
from recorder.simulate.faults import Fault, HandshakeGate, parse_fault_spec
from recorder.simulate.injector import FaultInjector, FaultRecord
from recorder.simulate.ledger import EventLedger, EventRecord
from recorder.simulate.listings import Contract, ContractBook, ContractStatus
from recorder.simulate.market import MarketGenerator, TickBatch, encode_json
from recorder.simulate.rest import DAY_MS, CandleBook, WeightMeter
from recorder.simulate.rest_faults import RestFaultGate
from recorder.simulate.rest_routes import RestRoutes
from recorder.simulate.stream import CLOSE_TIMEOUT, StreamEndpoint

log = logging.getLogger(__name__)


class SimulatedExchange:
    """A Binance USDⓈ-M futures exchange on loopback: market streams, REST, faults, ground truth.

    Use it as an async context manager, or call :meth:`start` and :meth:`stop`::

        async with SimulatedExchange(SimulatorConfig(speed=50)) as exchange:
            url = exchange.base_url + "/stream?streams=btcusdt@miniTicker"

    Args:
        config: symbols, seed, clock and connection rules.
    """

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._clock = EventClock(config.interval_ms, config.speed)
        self._candles: CandleBook | None = None
        self._contracts: ContractBook | None = None
        self._ledger = EventLedger(config.event_log_limit)
        self._weights = WeightMeter(config.rest_weight_limit)
        self._gate = HandshakeGate()
        self._rest_gate = RestFaultGate()
        self._connections = ConnectionTable()
        self._rest_requests: Counter[str] = Counter()
        self._injector = FaultInjector(
            config.symbols, self._clock, self._connections, self._gate, self._rest_gate
        )
        self._clock_task: asyncio.Task[None] | None = None
        self._array_task: asyncio.Task[None] | None = None
        self._windows: ArrayWindows | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The TCP port it listens on (known once started)."""
        return self._port

    @property
    def _authority(self) -> str:
        host = self.config.host
        return f"[{host}]:{self._port}" if ":" in host else f"{host}:{self._port}"

    @property
    def base_url(self) -> str:
        """The routed websocket base, ``ws://127.0.0.1:PORT/market``."""
        return f"ws://{self._authority}/market"

    @property
    def rest_url(self) -> str:
        """The REST base, ``http://127.0.0.1:PORT`` (paths start with ``/fapi/v1``)."""
        return f"http://{self._authority}"

    @property
    def generator(self) -> MarketGenerator:
        """The market generator (profiles, current state); available once started."""
        return self._clock.generator

    @property
    def start_ms(self) -> int:
        """``E`` of tick 0 before jitter, in ms since the epoch."""
        return self._clock.start_ms

    @property
    def ticks(self) -> int:
        """How many ticks have been generated and published."""
        return self._clock.ticks

    def simulated_now_ms(self) -> int:
        """The event clock now: ``start_ms`` plus real time since start times ``speed``."""
        return self._clock.simulated_now_ms()

    async def start(self) -> None:
        """Listen, and start the event clock.

        Raises:
            OSError: the address cannot be bound.
        """
        if self._runner is not None:
            raise RuntimeError("the simulated exchange is already started")
        loop = asyncio.get_running_loop()
        config = self.config
        start_ms = config.start_ms if config.start_ms is not None else wall_ms()
        generator = MarketGenerator(config, start_ms)
        self._clock.set_market(generator)
        self._candles = CandleBook(generator.profiles, generator.history)
        self._windows = ArrayWindows(start_ms, config.interval_ms)
        # Listed long before the run, as the contracts a recorder meets on Binance are.
        self._contracts = ContractBook(generator, start_ms - 90 * DAY_MS)
        family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        sock = socket.create_server((config.host, config.port), family=family)
        self._port = sock.getsockname()[1]
        runner = web.AppRunner(
            self._application(self._candles, self._contracts),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=CLOSE_TIMEOUT,
        )
        await runner.setup()
        try:
            await web.SockSite(runner, sock).start()
        except BaseException:
            await runner.cleanup()
            sock.close()
            raise
        self._runner = runner
        self._clock.start(loop)
        self._clock_task = asyncio.create_task(
            self._clock.run(self._publish), name="simulator-clock"
        )
        self._array_task = asyncio.create_task(
            self._send_arrays(self._windows), name="simulator-arrays"
        )
        log.info("simulated exchange listening on %s (start_ms=%d)", self.base_url, start_ms)

    async def stop(self) -> None:
        """Close every connection (close frame 1001), stop the clock and stop listening."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._injector.cancel_pending()
        tasks = [task for task in (self._clock_task, self._array_task) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for conn in self._connections:
            conn.close(WSCloseCode.GOING_AWAY, "server shutting down")
        closers = [conn.closer for conn in self._connections if conn.closer]
        await asyncio.gather(*closers, return_exceptions=True)
        await runner.cleanup()
        self._clock.stop()

    async def wait_for_ticks(self, count: int) -> None:
        """Return once at least ``count`` ticks have been published."""
        await self._clock.wait_for_ticks(count)

    def events(
        self, symbol: str | None = None, connection_id: str | None = None
    ) -> list[EventRecord]:
        """Return the ground truth: generated events and where they went, oldest first.

        Args:
            symbol: only this symbol's events.
            connection_id: only events delivered to or withheld from this connection.
        """
        return self._ledger.events(symbol, connection_id)

    def connections(self) -> list[ConnectionInfo]:
        """Return the open connections, oldest first."""
        return self._connections.infos(self._clock.monotonic())

    def fault_log(self) -> list[FaultRecord]:
        """Return the faults that fired, in firing order."""
        return self._injector.records()

    def inject(self, fault: Fault) -> None:
        """Schedule a fault ``fault.at`` seconds from now; one with ``at == 0`` fires at once.

        Raises:
            RuntimeError: the exchange is not started.
        """
        self._injector.inject(fault)

    def contracts(self) -> list[Contract]:
        """Return the listed contracts and their status, in listing order.

        Raises:
            RuntimeError: the exchange was never started.
        """
        return self._require_contracts().contracts()

    def set_contract_status(self, symbol: str, status: ContractStatus | str) -> Contract | None:
        """List ``symbol``, move it to another status, or delist it, effective at once.

        ``exchangeInfo`` shows the change from now on; the ticker changes from the next tick
        while the contract is ``TRADING`` only.

        Args:
            symbol: the contract, upper-case as Binance spells it.
            status: ``PENDING_TRADING``, ``TRADING``, ``SETTLING``, or ``DELISTED`` to remove it.

        Returns:
            The contract as it is now, or ``None`` once delisted.

        Raises:
            ValueError: an unknown status, a malformed symbol, or delisting what is not listed.
            RuntimeError: the exchange was never started.
        """
        return self._require_contracts().change(symbol, status, self._clock.simulated_now_ms())

    def _require_contracts(self) -> ContractBook:
        if self._contracts is None:
            raise RuntimeError("the simulated exchange was never started")
        return self._contracts

    def _publish(self, batch: TickBatch) -> None:
        entries = self._ledger.record(batch.events)
        candles = self._candles
        if candles is not None:
            for event in batch.events:
                candles.add(event)
        if self._windows is not None:
            self._windows.add(entries)
        if entries:
            self._connections.publish(entries, self._clock.monotonic())

    async def _send_arrays(self, windows: ArrayWindows) -> None:
        """Send ``!miniTicker@arr`` once a second of simulated time, each second's events."""
        window = 0
        while True:
            await self._clock.sleep_until(windows.due_ms(window))
            # The tick that completes the second is due at the same instant and may run after.
            await self._clock.wait_for_ticks(windows.ticks_needed(window))
            self._connections.publish_array(windows.take(window), self._clock.monotonic())
            window += 1

    def _application(self, candles: CandleBook, contracts: ContractBook) -> web.Application:
        app = web.Application()
        clock, connections = self._clock, self._connections
        StreamEndpoint(self.config, clock, connections, self._gate).add_routes(app.router)
        rest = RestRoutes(
            clock, self._weights, candles, contracts, self._rest_gate, requests=self._rest_requests
        )
        rest.add_routes(app.router)
        control = ControlRoutes(
            self.config,
            clock,
            self._ledger,
            connections,
            self._injector,
            contracts=contracts,
            rest_requests=self._rest_requests,
        )
        control.add_routes(app.router)
        return app


async def serve(config: SimulatorConfig, faults_spec: str | None, stop: asyncio.Event) -> None:
    """Run a simulated exchange until ``stop`` is set (the ``recorder simulate`` command).

    Once listening it writes one JSON line to stdout,
    ``{"event":"listening","port":N,"url":"ws://127.0.0.1:N/market","rest_url":"http://..."}``,
    so that a parent process started with port 0 can read the port; then the faults of
    ``faults_spec`` are scheduled, counted from that moment.

    Args:
        config: the exchange's settings.
        faults_spec: faults in the grammar of :mod:`recorder.simulate.faults`, or ``None``.
        stop: set it to stop the exchange cleanly.

    Raises:
        ConfigError: ``faults_spec`` is not valid (raised before listening).
        OSError: the address cannot be bound.
    """
    faults = parse_fault_spec(faults_spec) if faults_spec else ()
    async with SimulatedExchange(config) as exchange:
        line = {
            "event": "listening",
            "port": exchange.port,
            "url": exchange.base_url,
            "rest_url": exchange.rest_url,
        }
        sys.stdout.write(encode_json(line) + "\n")
        sys.stdout.flush()
        for fault in faults:
            exchange.inject(fault)
        await stop.wait()
