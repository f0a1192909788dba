"""The simulated exchange as a real server: aiohttp on loopback around the sans-IO core.

One event clock ticks every ``interval_ms / speed`` real milliseconds (scheduled from the loop's
monotonic time, so it never drifts); each tick's events go into the ground-truth ledger and out
to every routed connection that subscribed them. Each connection has a writer task (so one slow
client never delays the others or the clock), a keepalive task (server pings, pong deadline,
lifetime) and the handler's reader loop (client requests, pings, pongs, rate limit).
"""

import asyncio
import json
import logging
import math
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from aiohttp import WSCloseCode, WSMsgType, web

from recorder.errors import ConfigError
from recorder.simulate.config import SimulatorConfig
from recorder.simulate.faults import (
    FRAME_KINDS,
    HOSTILE_SYMBOL,
    UNLISTED_SYMBOL,
    Fault,
    FaultKind,
    HandshakeGate,
    bad_field_payload,
    fault_from_json,
    garbage_text,
    hostile_payload,
    huge_payload,
    parse_fault_spec,
)
from recorder.simulate.ledger import EventLedger, EventRecord, LedgerEntry
from recorder.simulate.market import MarketGenerator, TickBatch, encode_json, pair_of, tick_due
from recorder.simulate.protocol import (
    Keepalive,
    KeepaliveAction,
    MessageRateLimiter,
    StreamSession,
    array_json,
    route_request,
    stream_symbol,
)
from recorder.simulate.rest import (
    USED_WEIGHT_HEADER,
    CandleBook,
    RestReply,
    WeightMeter,
    binance_error,
    exchange_info,
    format_server_time,
    klines,
    ticker_24hr,
)
from recorder.symbols import ALL_MARKET_STREAM, stream_name

log = logging.getLogger(__name__)

MAX_PENDING_FRAMES = 100_000
"""Frames queued for one connection beyond which it is a hopelessly slow consumer and is cut."""
MAX_CLIENT_MESSAGE = 1024 * 1024
CLOSE_TIMEOUT = 2.0
SAMPLE_CHARS = 200


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """A snapshot of one open websocket connection.

    Attributes:
        connection_id: ``c1``, ``c2``... in the order connections opened.
        path: the request path.
        routed: under ``/market`` (an unrouted connection never gets data).
        combined: frames are wrapped as ``{"stream": ..., "data": ...}``.
        streams: subscribed streams in subscription order.
        opened_at_ms: wall clock at the handshake, ms since the epoch.
        events_delivered: events written to it (an array item counts as one).
        events_withheld: events a ``stall`` or ``blackhole`` kept from it.
        frames_sent: data, reply and fault frames written to it.
        stalled: a ``stall`` or ``blackhole`` is in force now.
        blackholed: a ``blackhole`` is in force now.
    """

    connection_id: str
    path: str
    routed: bool
    combined: bool
    streams: tuple[str, ...]
    opened_at_ms: int
    events_delivered: int
    events_withheld: int
    frames_sent: int
    stalled: bool
    blackholed: bool

    def to_json(self) -> dict[str, object]:
        """Describe the connection as ``GET /_sim/connections`` lists it."""
        return {
            "id": self.connection_id,
            "path": self.path,
            "routed": self.routed,
            "combined": self.combined,
            "streams": list(self.streams),
            "opened_at_ms": self.opened_at_ms,
            "opened_at": format_server_time(self.opened_at_ms),
            "events_delivered": self.events_delivered,
            "events_withheld": self.events_withheld,
            "frames_sent": self.frames_sent,
            "stalled": self.stalled,
            "blackholed": self.blackholed,
        }


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """A fault that fired.

    Attributes:
        fault: what was asked.
        fired_at_ms: wall clock when it fired.
        connection_ids: the connections it hit (none for ``refuse``).
        samples: the start of each frame it sent, for frame faults.
    """

    fault: Fault
    fired_at_ms: int
    connection_ids: tuple[str, ...]
    samples: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        """Describe the record as ``GET /_sim/faults`` lists it."""
        return {
            "fault": self.fault.to_json(),
            "fired_at_ms": self.fired_at_ms,
            "connections": list(self.connection_ids),
            "samples": list(self.samples),
        }


@dataclass(frozen=True, slots=True)
class _Outbound:
    """A frame to write, or, with ``close_code``, a close to start after the frames before it."""

    text: str
    entries: tuple[LedgerEntry, ...] = ()
    is_data: bool = True
    close_code: int | None = None


class _Connection:
    """One open websocket: its sans-IO session and liveness, the socket, its tasks."""

    def __init__(
        self,
        *,
        connection_id: str,
        session: StreamSession,
        ws: web.WebSocketResponse,
        request: web.Request,
        keepalive: Keepalive,
        limiter: MessageRateLimiter,
    ) -> None:
        self.connection_id = connection_id
        self.session = session
        self.ws = ws
        self.request = request
        self.keepalive = keepalive
        self.limiter = limiter
        self.opened_at_ms = _wall_ms()
        self.outbox: asyncio.Queue[_Outbound] = asyncio.Queue()
        self.stalled_until = -math.inf
        self.blackholed_until = -math.inf
        self.events_delivered = 0
        self.events_withheld = 0
        self.frames_sent = 0
        self.closer: asyncio.Task[bool] | None = None
        self.ended = False
        self.closing = False

    def is_blackholed(self, now: float) -> bool:
        return now < self.blackholed_until

    def is_stalled(self, now: float) -> bool:
        return now < self.stalled_until or self.is_blackholed(now)

    def withhold(self, entries: tuple[LedgerEntry, ...]) -> None:
        for entry in entries:
            if self.connection_id not in entry.withheld_from:
                entry.withheld_from.append(self.connection_id)
        self.events_withheld += len(entries)

    def info(self, now: float) -> ConnectionInfo:
        return ConnectionInfo(
            connection_id=self.connection_id,
            path=self.session.route.path,
            routed=self.session.route.routed,
            combined=self.session.combined,
            streams=self.session.streams,
            opened_at_ms=self.opened_at_ms,
            events_delivered=self.events_delivered,
            events_withheld=self.events_withheld,
            frames_sent=self.frames_sent,
            stalled=self.is_stalled(now),
            blackholed=self.is_blackholed(now),
        )


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
        self._generator: MarketGenerator | None = None
        self._candles: CandleBook | None = None
        self._ledger = EventLedger(config.event_log_limit)
        self._weights = WeightMeter(config.rest_weight_limit)
        self._gate = HandshakeGate()
        self._connections: dict[str, _Connection] = {}
        self._connection_serial = 0
        self._fault_serial = 0
        self._fault_log: list[FaultRecord] = []
        self._fault_timers: set[asyncio.TimerHandle] = set()
        self._clock_task: asyncio.Task[None] | None = None
        self._origin = 0.0
        self._ticked: asyncio.Condition | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

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
        if self._generator is None:
            raise RuntimeError("the simulated exchange is not started")
        return self._generator

    @property
    def start_ms(self) -> int:
        """``E`` of tick 0 before jitter, in ms since the epoch."""
        return self.generator.start_ms

    @property
    def ticks(self) -> int:
        """How many ticks have been generated and published."""
        return self.generator.next_tick

    def simulated_now_ms(self) -> int:
        """The event clock now: ``start_ms`` plus real time since start times ``speed``."""
        loop = self._require_loop()
        elapsed = loop.time() - self._origin
        return self.start_ms + math.floor(elapsed * self.config.speed * 1000)

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the simulated exchange is not started")
        return self._loop

    async def start(self) -> None:
        """Listen, and start the event clock.

        Raises:
            OSError: the address cannot be bound.
        """
        if self._runner is not None:
            raise RuntimeError("the simulated exchange is already started")
        loop = asyncio.get_running_loop()
        config = self.config
        start_ms = config.start_ms if config.start_ms is not None else _wall_ms()
        self._generator = MarketGenerator(config, start_ms)
        self._candles = CandleBook(self._generator.profiles)
        self._ticked = asyncio.Condition()
        family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        sock = socket.create_server((config.host, config.port), family=family)
        self._port = sock.getsockname()[1]
        runner = web.AppRunner(
            self._application(),
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
        self._loop = loop
        self._origin = loop.time()
        self._clock_task = asyncio.create_task(self._run_clock(), name="simulator-clock")
        log.info("simulated exchange listening on %s (start_ms=%d)", self.base_url, start_ms)

    async def stop(self) -> None:
        """Close every connection (close frame 1001), stop the clock and stop listening."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for timer in self._fault_timers:
            timer.cancel()
        self._fault_timers.clear()
        if self._clock_task is not None:
            self._clock_task.cancel()
            await asyncio.gather(self._clock_task, return_exceptions=True)
        for conn in list(self._connections.values()):
            self._close(conn, WSCloseCode.GOING_AWAY, "server shutting down")
        closers = [conn.closer for conn in self._connections.values() if conn.closer]
        await asyncio.gather(*closers, return_exceptions=True)
        await runner.cleanup()
        self._loop = None

    async def wait_for_ticks(self, count: int) -> None:
        """Return once at least ``count`` ticks have been published."""
        ticked = self._ticked
        if ticked is None:
            raise RuntimeError("the simulated exchange is not started")
        async with ticked:
            await ticked.wait_for(lambda: self.ticks >= count)

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
        now = self._require_loop().time()
        return [conn.info(now) for conn in self._connections.values()]

    def fault_log(self) -> list[FaultRecord]:
        """Return the faults that fired, in firing order."""
        return list(self._fault_log)

    def inject(self, fault: Fault) -> None:
        """Schedule a fault ``fault.at`` seconds from now; one with ``at == 0`` fires at once.

        Raises:
            RuntimeError: the exchange is not started.
        """
        loop = self._require_loop()
        if fault.at == 0:
            self._fire(fault)
            return

        def fire() -> None:
            self._fault_timers.discard(timer)
            self._fire(fault)

        timer = loop.call_later(fault.at, fire)
        self._fault_timers.add(timer)

    # The event clock -------------------------------------------------------------------------

    async def _run_clock(self) -> None:
        loop = self._require_loop()
        generator = self.generator
        interval_ms, speed = self.config.interval_ms, self.config.speed
        while True:
            due = tick_due(self._origin, generator.next_tick, interval_ms, speed)
            # A tick already due still yields once, so a clock that fell behind catches up
            # without starving the connections.
            await asyncio.sleep(max(0.0, due - loop.time()))
            self._publish(generator.step())
            ticked = self._ticked
            if ticked is not None:
                async with ticked:
                    ticked.notify_all()

    def _publish(self, batch: TickBatch) -> None:
        entries = self._ledger.record(batch.events)
        candles = self._candles
        if candles is not None:
            for event in batch.events:
                candles.add(event)
        if not entries:
            return
        now = self._require_loop().time()
        by_symbol = {entry.event.symbol: entry for entry in entries}
        for conn in list(self._connections.values()):
            session = conn.session
            if conn.ended or not session.route.routed:
                continue
            outgoing = [
                _Outbound(session.frame(stream, entry.event.payload_json), (entry,))
                for stream in session.streams
                if (symbol := stream_symbol(stream)) is not None
                and (entry := by_symbol.get(symbol)) is not None
            ]
            if session.all_market:
                items = array_json([entry.event.payload_json for entry in entries])
                outgoing.append(_Outbound(session.frame(ALL_MARKET_STREAM, items), tuple(entries)))
            for item in outgoing:
                if conn.is_stalled(now):
                    conn.withhold(item.entries)
                else:
                    self._enqueue(conn, item)

    def _enqueue(self, conn: _Connection, item: _Outbound) -> None:
        if conn.outbox.qsize() >= MAX_PENDING_FRAMES:
            log.warning(
                "connection %s is not reading (%d frames pending): dropping it",
                conn.connection_id,
                MAX_PENDING_FRAMES,
            )
            self._drop(conn)
            return
        conn.outbox.put_nowait(item)

    # Connections -----------------------------------------------------------------------------

    def _application(self) -> web.Application:
        app = web.Application()
        for path in ("/market/stream", "/market/ws", "/market/ws/{streams:.+}"):
            app.router.add_get(path, self._handle_stream)
        for path in ("/stream", "/ws", "/ws/{streams:.+}"):
            app.router.add_get(path, self._handle_stream)
        app.router.add_get("/fapi/v1/exchangeInfo", self._rest(self._exchange_info))
        app.router.add_get("/fapi/v1/ticker/24hr", self._rest(self._ticker))
        app.router.add_get("/fapi/v1/klines", self._rest(self._klines))
        app.router.add_get("/_sim/events", self._sim_events)
        app.router.add_get("/_sim/connections", self._sim_connections)
        app.router.add_get("/_sim/faults", self._sim_fault_log)
        app.router.add_post("/_sim/faults", self._sim_inject)
        app.router.add_get("/_sim/status", self._sim_status)
        return app

    async def _handle_stream(self, request: web.Request) -> web.StreamResponse:
        route = route_request(request.path, request.query.get("streams"))
        if route is None:  # the router sends only stream paths here
            raise web.HTTPNotFound
        try:
            session = StreamSession(route, self.config.max_streams)
        except ValueError as exc:
            return web.json_response({"code": -1000, "msg": str(exc)}, status=400)
        ws = web.WebSocketResponse(
            autoping=False,
            compress=False,
            max_msg_size=MAX_CLIENT_MESSAGE,
            timeout=CLOSE_TIMEOUT,
        )
        if not ws.can_prepare(request).ok:
            return web.json_response(
                {"code": -1000, "msg": "expected a websocket upgrade"}, status=400
            )
        refusal = self._gate.admit()
        if refusal is not None:
            log.info("refusing a websocket handshake with HTTP %d (fault)", refusal.status)
            headers = {}
            if refusal.retry_after is not None:
                headers["Retry-After"] = str(refusal.retry_after)
            if refusal.status == 429:
                body = {"code": -1003, "msg": "Too many requests; slow down (simulated)."}
            else:
                body = {"code": -1001, "msg": "Service unavailable (simulated)."}
            return web.json_response(body, status=refusal.status, headers=headers)
        loop = self._require_loop()
        self._connection_serial += 1
        conn = _Connection(
            connection_id=f"c{self._connection_serial}",
            session=session,
            ws=ws,
            request=request,
            keepalive=Keepalive(
                loop.time(),
                self.config.ping_interval,
                self.config.pong_timeout,
                self.config.lifetime,
            ),
            limiter=MessageRateLimiter(self.config.message_rate_limit),
        )
        # Registered before the 101 goes out, so a client that sees the handshake complete can
        # already find its connection id in connections().
        self._connections[conn.connection_id] = conn
        tasks: list[asyncio.Task[None]] = []
        try:
            await ws.prepare(request)
            log.info("connection %s opened on %s", conn.connection_id, route.path)
            tasks.append(asyncio.create_task(self._write(conn)))
            tasks.append(asyncio.create_task(self._keep_alive(conn)))
            await self._read(conn)
        finally:
            conn.ended = True
            self._connections.pop(conn.connection_id, None)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if conn.closer is not None:
                await asyncio.gather(conn.closer, return_exceptions=True)
            elif not ws.closed and ws.prepared:
                await ws.close()
            log.info("connection %s ended (close code %s)", conn.connection_id, ws.close_code)
        return ws

    async def _read(self, conn: _Connection) -> None:
        ws = conn.ws
        loop = self._require_loop()
        while True:
            message = await ws.receive()
            if message.type in {WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED}:
                return
            if message.type is WSMsgType.ERROR:
                log.info("connection %s read error: %s", conn.connection_id, message.data)
                return
            now = loop.time()
            if conn.is_blackholed(now) or conn.closing:
                continue  # a dead peer hears nothing; a closing one has stopped listening
            if not conn.limiter.admit(now):
                log.info("connection %s exceeded the message rate limit", conn.connection_id)
                # Replies to the messages within the limit go out first, then the close frame.
                conn.closing = True
                conn.outbox.put_nowait(
                    _Outbound(
                        "too many messages",
                        is_data=False,
                        close_code=WSCloseCode.POLICY_VIOLATION,
                    )
                )
                continue
            if message.type is WSMsgType.TEXT:
                reply = conn.session.handle(message.data)
                conn.outbox.put_nowait(_Outbound(reply, is_data=False))
            elif message.type is WSMsgType.BINARY:
                reply = conn.session.handle(message.data.decode("utf-8", errors="replace"))
                conn.outbox.put_nowait(_Outbound(reply, is_data=False))
            elif message.type is WSMsgType.PING:
                try:
                    await ws.pong(message.data)
                except ConnectionError:
                    return
            elif message.type is WSMsgType.PONG:
                conn.keepalive.pong_received(bytes(message.data))

    async def _write(self, conn: _Connection) -> None:
        loop = self._require_loop()
        while True:
            item = await conn.outbox.get()
            if item.close_code is not None:
                self._close(conn, item.close_code, item.text)
                return
            now = loop.time()
            if conn.is_blackholed(now) or (item.is_data and conn.is_stalled(now)):
                conn.withhold(item.entries)
                continue
            # Marked before the send: an uncompressed frame reaches the transport before the
            # send's first await, so a client can never hold a frame the ledger does not show.
            marked = [e for e in item.entries if conn.connection_id not in e.delivered_to]
            for entry in marked:
                entry.delivered_to.append(conn.connection_id)
            try:
                await conn.ws.send_str(item.text)
            except ConnectionError:
                for entry in marked:
                    entry.delivered_to.remove(conn.connection_id)
                return
            conn.frames_sent += 1
            conn.events_delivered += len(item.entries)

    async def _keep_alive(self, conn: _Connection) -> None:
        loop = self._require_loop()
        keepalive = conn.keepalive
        while True:
            now = loop.time()
            action = keepalive.due(now)
            if action is None:
                await asyncio.sleep(keepalive.next_deadline() - now)
            elif action is KeepaliveAction.LIFETIME_OVER:
                log.info("connection %s reached its lifetime", conn.connection_id)
                self._close(conn, WSCloseCode.GOING_AWAY, "connection lifetime reached")
                return
            elif action is KeepaliveAction.PONG_OVERDUE:
                log.info("connection %s did not answer a ping in time", conn.connection_id)
                self._close(conn, WSCloseCode.POLICY_VIOLATION, "pong timeout")
                return
            elif conn.is_blackholed(now):
                keepalive.ping_skipped(now)
            else:
                try:
                    await conn.ws.ping(keepalive.ping_sent(now))
                except ConnectionError:
                    return

    def _close(self, conn: _Connection, code: int, reason: str) -> None:
        """Start a proper close (close frame) in a task of its own.

        The handler's cleanup cancels the connection's tasks; a close running in one of them
        could be cut halfway.
        """
        if conn.closer is None and not conn.ws.closed:
            conn.closer = asyncio.create_task(conn.ws.close(code=code, message=reason.encode()))

    @staticmethod
    def _drop(conn: _Connection) -> None:
        """Abort the TCP connection: no close frame, queued frames are lost."""
        conn.ended = True
        transport = conn.request.transport
        if transport is not None:
            transport.abort()

    # Faults ----------------------------------------------------------------------------------

    def _fire(self, fault: Fault) -> None:
        loop = self._require_loop()
        now = loop.time()
        samples: list[str] = []
        if fault.kind is FaultKind.REFUSE:
            self._gate.arm(fault)
            targets: list[_Connection] = []
        else:
            targets = [
                conn
                for conn in self._connections.values()
                if not conn.ended and fault.connection_id in {None, conn.connection_id}
            ]
        for conn in targets:
            if fault.kind is FaultKind.DROP:
                self._drop(conn)
            elif fault.kind is FaultKind.CLOSE:
                self._close(conn, WSCloseCode.GOING_AWAY, "closed by the exchange")
            elif fault.kind in {FaultKind.STALL, FaultKind.BLACKHOLE}:
                until = math.inf if fault.duration is None else now + fault.duration
                if fault.kind is FaultKind.STALL:
                    conn.stalled_until = max(conn.stalled_until, until)
                else:
                    conn.blackholed_until = max(conn.blackholed_until, until)
            elif fault.kind in FRAME_KINDS:
                for _ in range(fault.count):
                    text = self._fault_frame(fault, conn)
                    samples.append(text[:SAMPLE_CHARS])
                    self._enqueue(conn, _Outbound(text))
        record = FaultRecord(
            fault, _wall_ms(), tuple(conn.connection_id for conn in targets), tuple(samples)
        )
        self._fault_log.append(record)
        log.info(
            "fault %s fired on %s", fault.kind.value, list(record.connection_ids) or "handshakes"
        )

    def _fault_frame(self, fault: Fault, conn: _Connection) -> str:
        self._fault_serial += 1
        serial = self._fault_serial
        if fault.kind is FaultKind.GARBAGE:
            return garbage_text(serial)
        session = conn.session
        listed = self.config.symbols
        now_ms = self.simulated_now_ms()
        if fault.kind is FaultKind.UNSUBSCRIBED:
            subscribed = session.symbols
            strangers = [symbol for symbol in listed if symbol not in subscribed]
            if strangers and not session.all_market:
                symbol = strangers[0]
                payload: dict[str, object] = dict(self.generator.payload_now(symbol, now_ms))
            else:
                symbol = UNLISTED_SYMBOL
                payload = dict(self.generator.payload_now(listed[0], now_ms))
                payload["s"] = symbol
                if "ps" in payload:
                    payload["ps"] = pair_of(symbol)
            return session.frame(stream_name(symbol), encode_json(payload))
        own = [symbol for symbol in listed if symbol in session.symbols]
        symbol = own[0] if own else listed[0]
        template = self.generator.payload_now(symbol, now_ms)
        if fault.kind is FaultKind.BAD_FIELD:
            payload = bad_field_payload(template, serial)
        elif fault.kind is FaultKind.HOSTILE_SYMBOL:
            payload = hostile_payload(template)
            symbol = HOSTILE_SYMBOL
        else:
            payload = huge_payload(template, fault.size)
        data = encode_json(payload)
        if not own and session.all_market:
            return session.frame(ALL_MARKET_STREAM, array_json([data]))
        return session.frame(stream_name(symbol), data)

    # REST and control endpoints --------------------------------------------------------------

    def _rest(
        self, answer: Callable[[web.Request], RestReply]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            reply = answer(request)
            now = time.time()
            if not self._weights.spend(reply.weight, now):
                limit = self.config.rest_weight_limit
                reply = binance_error(
                    -1003,
                    f"Too many requests; current limit of IP is {limit} requests per minute.",
                    status=429,
                    weight=0,
                )
                headers = {"Retry-After": str(WeightMeter.retry_after(now))}
            else:
                headers = {}
            headers[USED_WEIGHT_HEADER] = str(self._weights.used)
            return web.json_response(
                reply.body, status=reply.status, headers=headers, dumps=encode_json
            )

        return handler

    def _exchange_info(self, _request: web.Request) -> RestReply:
        body = exchange_info(
            self.generator.profiles.values(),
            self.simulated_now_ms(),
            self.config.rest_weight_limit,
        )
        return RestReply(200, body, 1)

    def _ticker(self, request: web.Request) -> RestReply:
        return ticker_24hr(self.generator, request.query)

    def _klines(self, request: web.Request) -> RestReply:
        candles = self._candles
        if candles is None:  # routes exist only once started
            raise web.HTTPServiceUnavailable
        return klines(candles, request.query)

    async def _sim_events(self, request: web.Request) -> web.Response:
        records = self.events(request.query.get("symbol"), request.query.get("connection"))
        body = {
            "start_ms": self.start_ms,
            "recorded": self._ledger.recorded,
            "forgotten": self._ledger.forgotten,
            "events": [record.to_json() for record in records],
        }
        return web.json_response(body, dumps=encode_json)

    async def _sim_connections(self, _request: web.Request) -> web.Response:
        body = {"connections": [info.to_json() for info in self.connections()]}
        return web.json_response(body, dumps=encode_json)

    async def _sim_fault_log(self, _request: web.Request) -> web.Response:
        body = {"faults": [record.to_json() for record in self._fault_log]}
        return web.json_response(body, dumps=encode_json)

    async def _sim_inject(self, request: web.Request) -> web.Response:
        try:
            faults = fault_from_json(json.loads(await request.text()))
        except json.JSONDecodeError as exc:
            return web.json_response({"error": f"body is not JSON: {exc}"}, status=400)
        except ConfigError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        for fault in faults:
            self.inject(fault)
        body = {"accepted": [fault.to_json() for fault in faults]}
        return web.json_response(body, status=202, dumps=encode_json)

    async def _sim_status(self, _request: web.Request) -> web.Response:
        body = {
            "start_ms": self.start_ms,
            "simulated_now_ms": self.simulated_now_ms(),
            "ticks": self.ticks,
            "interval_ms": self.config.interval_ms,
            "speed": self.config.speed,
            "symbols": list(self.config.symbols),
            "refusals_pending": self._gate.pending,
        }
        return web.json_response(body, dumps=encode_json)


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
