"""Per-connection state of the simulated exchange: open websockets, their outboxes, snapshots.

A :class:`Connection` is one open websocket: its sans-IO session and liveness, the socket, the
queue its writer task drains, and the faults in force on it. The :class:`ConnectionTable` names
and holds the open ones, fans each tick's events out to those that subscribed them, and slows
the start of new ones that a ``slow_start`` fault asked for.
"""

import asyncio
import logging
import math
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from aiohttp import web

from recorder.simulate.event_clock import format_server_time, wall_ms
from recorder.simulate.ledger import LedgerEntry
from recorder.simulate.liveness import Keepalive, MessageRateLimiter, RequestLog
from recorder.simulate.protocol import StreamSession, array_json, stream_symbol
from recorder.symbols import ALL_MARKET_STREAM

log = logging.getLogger(__name__)

MAX_PENDING_FRAMES = 100_000
"""Frames queued for one connection beyond which it is a hopelessly slow consumer and is cut."""


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
        held: a ``slow_start`` holds its data back now.
        requests: requests received, by method (``invalid``: no well-formed request).
        request_peak_per_second: the most requests received in any one second.
        latest_requests: ``(wall ms, method)`` of the latest requests received, oldest first.
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
    held: bool = False
    requests: Mapping[str, int] = field(default_factory=dict)
    request_peak_per_second: int = 0
    latest_requests: tuple[tuple[int, str], ...] = ()

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
            "held": self.held,
            "requests": dict(self.requests),
            "request_peak_per_second": self.request_peak_per_second,
            "latest_requests": [list(request) for request in self.latest_requests],
        }


@dataclass(frozen=True, slots=True)
class OutboundFrame:
    """A frame to write, or, with ``close_code``, a close to start after the frames before it.

    Attributes:
        text: the frame, or the close reason.
        entries: the ledger entries of the events it carries.
        is_data: market data (a stall holds it back), not a reply or a close.
        close_code: the close code, for a close.
        binary: sent as a binary frame instead of ``text`` (a fault's bytes), when set.
    """

    text: str
    entries: tuple[LedgerEntry, ...] = ()
    is_data: bool = True
    close_code: int | None = None
    binary: bytes | None = None


class Connection:
    """One open websocket: its sans-IO session and liveness, the socket, its tasks.

    Args:
        connection_id: its name, ``c1``, ``c2``...
        session: its subscriptions and framing.
        ws: the websocket response.
        request: the upgrade request (its transport is what a ``drop`` aborts).
        keepalive: its server-side liveness.
        limiter: its incoming message rate limit.
    """

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
        self.opened_at_ms = wall_ms()
        self.outbox: asyncio.Queue[OutboundFrame] = asyncio.Queue()
        self.stalled_until = -math.inf
        self.blackholed_until = -math.inf
        self.deaf_until = -math.inf
        self.events_delivered = 0
        self.events_withheld = 0
        self.frames_sent = 0
        self.requests = RequestLog()
        self.closer: asyncio.Task[bool] | None = None
        self.ended = False
        self.closing = False
        self._held: list[OutboundFrame] | None = None
        """Frames a ``slow_start`` holds back; ``None`` when nothing is held."""

    def hold_data(self, seconds: float) -> None:
        """Hold every frame queued from now on for ``seconds``, then queue them all in order.

        What a ``slow_start`` does: the data arrives late, none of it is lost. Replies to
        requests do not pass through :meth:`enqueue` and are never held.
        """
        if self._held is None:
            self._held = []
            asyncio.get_running_loop().call_later(seconds, self._release)

    def _release(self) -> None:
        held, self._held = self._held or [], None
        if self.ended:
            return
        for item in held:
            self.enqueue(item)

    def is_blackholed(self, now: float) -> bool:
        """Whether a ``blackhole`` is in force at ``now`` (monotonic seconds)."""
        return now < self.blackholed_until

    def is_deaf(self, now: float) -> bool:
        """Whether a ``deaf`` fault ignores requests at ``now`` (monotonic seconds)."""
        return now < self.deaf_until

    def is_stalled(self, now: float) -> bool:
        """Whether a ``stall`` or a ``blackhole`` is in force at ``now``."""
        return now < self.stalled_until or self.is_blackholed(now)

    def withhold(self, entries: tuple[LedgerEntry, ...]) -> None:
        """Record in the ledger that a fault kept these events from this connection."""
        for entry in entries:
            if self.connection_id not in entry.withheld_from:
                entry.withheld_from.append(self.connection_id)
        self.events_withheld += len(entries)

    def info(self, now: float) -> ConnectionInfo:
        """Return a snapshot of the connection as it is at ``now``."""
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
            held=self._held is not None,
            requests=dict(self.requests.by_method),
            request_peak_per_second=self.requests.peak_per_second,
            latest_requests=tuple(self.requests.latest),
        )

    def send_data(self, item: OutboundFrame, now: float) -> None:
        """Queue market data, unless a ``stall`` or ``blackhole`` withholds it at ``now``."""
        if self.is_stalled(now):
            self.withhold(item.entries)
        else:
            self.enqueue(item)

    def enqueue(self, item: OutboundFrame) -> None:
        """Queue a frame for the writer; a connection with too many pending is dropped instead."""
        if self._held is not None:
            self._held.append(item)
            return
        if self.outbox.qsize() >= MAX_PENDING_FRAMES:
            log.warning(
                "connection %s is not reading (%d frames pending): dropping it",
                self.connection_id,
                MAX_PENDING_FRAMES,
            )
            self.drop()
            return
        self.outbox.put_nowait(item)

    def close(self, code: int, reason: str) -> None:
        """Start a proper close (close frame) in a task of its own.

        The handler's cleanup cancels the connection's tasks; a close running in one of them
        could be cut halfway.
        """
        if self.closer is None and not self.ws.closed:
            self.closer = asyncio.create_task(self.ws.close(code=code, message=reason.encode()))

    def drop(self) -> None:
        """Abort the TCP connection: no close frame, queued frames are lost."""
        self.ended = True
        transport = self.request.transport
        if transport is not None:
            transport.abort()


class ConnectionTable:
    """The open connections by id, oldest first, and the serial that names new ones."""

    def __init__(self) -> None:
        self._open: dict[str, Connection] = {}
        self._serial = 0
        self._slow_starts: deque[float] = deque()

    def __iter__(self) -> Iterator[Connection]:
        """Iterate over a snapshot, so that connections may come and go meanwhile."""
        return iter(list(self._open.values()))

    def next_id(self) -> str:
        """Name the next connection: ``c1``, ``c2``..."""
        self._serial += 1
        return f"c{self._serial}"

    def slow_next_starts(self, seconds: float, count: int) -> None:
        """Make the next ``count`` connections added hold their data back for ``seconds``."""
        self._slow_starts.extend([seconds] * count)

    @property
    def opened(self) -> int:
        """How many connections were ever opened (closed ones too)."""
        return self._serial

    def __len__(self) -> int:
        return len(self._open)

    @property
    def slow_starts_pending(self) -> int:
        """How many connections still to open a ``slow_start`` will slow."""
        return len(self._slow_starts)

    def add(self, conn: Connection) -> None:
        """Hold ``conn`` as open (slowing its start if a ``slow_start`` asks for it)."""
        if self._slow_starts:
            conn.hold_data(self._slow_starts.popleft())
        self._open[conn.connection_id] = conn

    def remove(self, conn: Connection) -> None:
        """Forget ``conn`` (it ended); forgetting it twice is harmless."""
        self._open.pop(conn.connection_id, None)

    def infos(self, now: float) -> list[ConnectionInfo]:
        """Return snapshots of the open connections at ``now``, oldest first."""
        return [conn.info(now) for conn in self._open.values()]

    def publish(self, entries: Sequence[LedgerEntry], now: float) -> None:
        """Queue one tick's events to every routed connection that subscribed their symbols.

        A connection under a ``stall`` or ``blackhole`` gets none: the ledger shows them
        withheld from it. ``!miniTicker@arr`` has its own pace: :meth:`publish_array`.

        Args:
            entries: the tick's ledger entries, one per event.
            now: the loop's monotonic time.
        """
        by_symbol = {entry.event.symbol: entry for entry in entries}
        for conn in self._routed():
            session = conn.session
            for stream in session.streams:
                symbol = stream_symbol(stream)
                entry = by_symbol.get(symbol) if symbol is not None else None
                if entry is not None:
                    frame = OutboundFrame(session.frame(stream, entry.event.payload_json), (entry,))
                    conn.send_data(frame, now)

    def publish_array(self, entries: Sequence[LedgerEntry], now: float) -> None:
        """Queue one second's ``!miniTicker@arr`` array to every routed connection subscribed.

        Args:
            entries: the ledger entries of the events whose ``E`` fell in that second; none
                gives an empty array.
            now: the loop's monotonic time.
        """
        items = array_json([entry.event.payload_json for entry in entries])
        for conn in self._routed():
            if conn.session.all_market:
                frame = OutboundFrame(conn.session.frame(ALL_MARKET_STREAM, items), tuple(entries))
                conn.send_data(frame, now)

    def _routed(self) -> Iterator[Connection]:
        return (conn for conn in self if not conn.ended and conn.session.route.routed)
