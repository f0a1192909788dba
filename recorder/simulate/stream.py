"""The websocket endpoint: a handshake becomes a connection served by its three loops.

Each connection has a writer task (so one slow client never delays the others or the clock),
a keepalive task (server pings, pong deadline, lifetime) and the handler's reader loop (client
requests, pings, pongs, rate limit). A handshake can be refused by a ``refuse`` fault.
"""

import asyncio
import logging

from aiohttp import WSCloseCode, WSMsgType, web

from recorder.simulate.config import SimulatorConfig
from recorder.simulate.connections import Connection, ConnectionTable, OutboundFrame
from recorder.simulate.event_clock import EventClock, wall_ms
from recorder.simulate.faults import HandshakeGate
from recorder.simulate.liveness import Keepalive, KeepaliveAction, MessageRateLimiter
from recorder.simulate.protocol import (
    OTHER_PREFIXES,
    StreamSession,
    request_method,
    route_request,
)

log = logging.getLogger(__name__)

STREAM_PATHS = (
    "/market/stream",
    "/market/ws",
    "/market/ws/{streams:.+}",
    "/stream",
    "/ws",
    "/ws/{streams:.+}",
    *(
        f"{prefix}{path}"
        for prefix in OTHER_PREFIXES
        for path in ("/stream", "/ws", "/ws/{streams:.+}")
    ),
)
"""The routed market-stream paths, then those that never get data: the old unrouted ones, and
the ``/public`` and ``/private`` ones Binance's SDKs open besides ``/market``."""
MAX_CLIENT_MESSAGE = 1024 * 1024
CLOSE_TIMEOUT = 2.0
"""Seconds a close handshake, or the server's shutdown, may take."""


class StreamEndpoint:
    """Serves websocket connections on the market-stream paths.

    Args:
        config: the connection rules (streams per connection, pings, lifetime, rate limit).
        clock: the exchange's clock (for monotonic time).
        connections: where open connections are held.
        gate: the handshakes ``refuse`` faults still have to refuse.
    """

    def __init__(
        self,
        config: SimulatorConfig,
        clock: EventClock,
        connections: ConnectionTable,
        gate: HandshakeGate,
    ) -> None:
        self._config = config
        self._clock = clock
        self._connections = connections
        self._gate = gate

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """Route every market-stream path to :meth:`handle`."""
        for path in STREAM_PATHS:
            router.add_get(path, self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Answer one websocket request, and serve the connection until it ends."""
        route = route_request(request.path, request.query.get("streams"))
        if route is None:  # the router sends only stream paths here
            raise web.HTTPNotFound
        try:
            session = StreamSession(route, self._config.max_streams)
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
        loop = self._clock.require_loop()
        config = self._config
        conn = Connection(
            connection_id=self._connections.next_id(),
            session=session,
            ws=ws,
            request=request,
            keepalive=Keepalive(
                loop.time(), config.ping_interval, config.pong_timeout, config.lifetime
            ),
            limiter=MessageRateLimiter(config.message_rate_limit),
        )
        # Registered before the 101 goes out, so a client that sees the handshake complete can
        # already find its connection id in connections().
        self._connections.add(conn)
        tasks: list[asyncio.Task[None]] = []
        try:
            await ws.prepare(request)
            log.info("connection %s opened on %s", conn.connection_id, route.path)
            tasks.append(asyncio.create_task(self._write(conn)))
            tasks.append(asyncio.create_task(self._keep_alive(conn)))
            await self._read(conn)
        finally:
            conn.ended = True
            self._connections.remove(conn)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if conn.closer is not None:
                await asyncio.gather(conn.closer, return_exceptions=True)
            elif not ws.closed and ws.prepared:
                await ws.close()
            log.info("connection %s ended (close code %s)", conn.connection_id, ws.close_code)
        return ws

    async def _read(self, conn: Connection) -> None:
        ws = conn.ws
        loop = self._clock.require_loop()
        while True:
            message = await ws.receive()
            if message.type in {WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED}:
                return
            if message.type is WSMsgType.ERROR:
                log.info("connection %s read error: %s", conn.connection_id, message.data)
                return
            now = loop.time()
            text = ""
            if message.type in {WSMsgType.TEXT, WSMsgType.BINARY}:
                text = message.data
                if message.type is WSMsgType.BINARY:
                    text = text.decode("utf-8", errors="replace")
                # Counted as the client sent it, whether a fault then ignores it or not.
                conn.requests.note(request_method(text), now, wall_ms())
            if conn.is_blackholed(now) or conn.closing:
                continue  # a dead peer hears nothing; a closing one has stopped listening
            if not conn.limiter.admit(now):
                log.info("connection %s exceeded the message rate limit", conn.connection_id)
                # Replies to the messages within the limit go out first, then the close frame.
                conn.closing = True
                conn.outbox.put_nowait(
                    OutboundFrame(
                        "too many messages",
                        is_data=False,
                        close_code=WSCloseCode.POLICY_VIOLATION,
                    )
                )
                continue
            if message.type in {WSMsgType.TEXT, WSMsgType.BINARY} and conn.is_deaf(now):
                continue  # a deaf connection ignores requests, and answers none
            if message.type in {WSMsgType.TEXT, WSMsgType.BINARY}:
                reply = conn.session.handle(text)
                conn.outbox.put_nowait(OutboundFrame(reply, is_data=False))
            elif message.type is WSMsgType.PING:
                try:
                    await ws.pong(message.data)
                except ConnectionError:
                    return
            elif message.type is WSMsgType.PONG:
                conn.keepalive.pong_received(bytes(message.data))

    async def _write(self, conn: Connection) -> None:
        loop = self._clock.require_loop()
        while True:
            item = await conn.outbox.get()
            if item.close_code is not None:
                conn.close(item.close_code, item.text)
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
                if item.binary is None:
                    await conn.ws.send_str(item.text)
                else:
                    await conn.ws.send_bytes(item.binary)
            except ConnectionError:
                for entry in marked:
                    entry.delivered_to.remove(conn.connection_id)
                return
            conn.frames_sent += 1
            conn.events_delivered += len(item.entries)

    async def _keep_alive(self, conn: Connection) -> None:
        loop = self._clock.require_loop()
        keepalive = conn.keepalive
        while True:
            now = loop.time()
            action = keepalive.due(now)
            if action is None:
                await asyncio.sleep(keepalive.next_deadline() - now)
            elif action is KeepaliveAction.LIFETIME_OVER:
                log.info("connection %s reached its lifetime", conn.connection_id)
                conn.close(WSCloseCode.GOING_AWAY, "connection lifetime reached")
                return
            elif action is KeepaliveAction.PONG_OVERDUE:
                log.info("connection %s did not answer a ping in time", conn.connection_id)
                conn.close(WSCloseCode.POLICY_VIOLATION, "pong timeout")
                return
            elif conn.is_blackholed(now):
                keepalive.ping_skipped(now)
            else:
                try:
                    await conn.ws.ping(keepalive.ping_sent(now))
                except ConnectionError:
                    return
