"""One open websocket to the exchange: reading frames, watching liveness, probing, closing.

A :class:`MarketConnection` reads one shard's frames into the bounded queue in arrival order
(with :class:`~recorder.model.ConnectionEvent` values about itself), runs its
:class:`~recorder.ingest.connection.ConnectionWatchdog`, and tells its supervisor
(:mod:`recorder.ingest.source`) when a handover is due or a silence needs checking. It sends the
silence check's ``LIST_SUBSCRIPTIONS`` probe and recognises the reply; deciding what the
evidence means is :class:`~recorder.ingest.connection.SilenceCheck`'s job. It also sends the
``SUBSCRIBE`` and ``UNSUBSCRIBE`` requests of live stream changes and hands back their replies,
matched by id (:meth:`MarketConnection.request`); every control message, probes included, is
paced by a :class:`~recorder.ingest.subscriptions.ControlRateLimiter`.
"""

import asyncio
import itertools
from collections import deque
from dataclasses import dataclass
from typing import Final

import aiohttp

from recorder.clock import Clock
from recorder.ingest.connection import (
    ConnectionWatchdog,
    Verdict,
    is_probe_reply,
    probe_request,
)
from recorder.ingest.subscriptions import (
    ControlRateLimiter,
    ControlReply,
    control_request,
    parse_control_reply,
)
from recorder.model import ConnectionChange, ConnectionEvent, ReceivedFrame
from recorder.ops.logs import get_logger
from recorder.settings import SourceSettings

StreamItem = ReceivedFrame | ConnectionEvent
"""What the source puts on the queue."""

STABLE_AFTER: Final = 10.0
"""Seconds of delivering data after which a connection counts as stable (backoff resets)."""
CLOSE_TIMEOUT: Final = 2.0
"""Seconds a close handshake may take."""

log = get_logger(__name__)


_DATA_MESSAGES: Final = frozenset({aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY})


@dataclass(frozen=True, slots=True)
class ConnectionEnd:
    """How a connection ended.

    Attributes:
        change: ``DROPPED``, ``STALLED`` or ``RETIRED``.
        reason: a human detail.
        stable: it delivered data for long enough that backoff starts over.
    """

    change: ConnectionChange
    reason: str
    stable: bool


class MarketConnection:
    """One open websocket carrying one shard's symbols.

    Args:
        ws: the open websocket.
        connection_id: ``"<shard>.<serial>"``.
        symbols: the symbols subscribed through the URL; :meth:`carry` changes them.
        url: where it is connected (for logs).
        settings: source settings (watchdog bounds).
        clock: the injectable clock.
        sink: where frames and connection events go.
        held: keep what it reads until :meth:`release` (a silence check's replacement: its
            frames must follow the silent connection's end, so that the gaps they close are
            blamed on the stall).
    """

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        *,
        connection_id: str,
        symbols: tuple[str, ...],
        url: str,
        settings: SourceSettings,
        clock: Clock,
        sink: asyncio.Queue[StreamItem],
        held: bool = False,
    ) -> None:
        self.connection_id = connection_id
        self.symbols = symbols
        self.url = url
        self._ws = ws
        self._clock = clock
        self._sink = sink
        self.watchdog = ConnectionWatchdog(
            opened_at=clock.monotonic(),
            first_data_timeout=settings.first_data_timeout,
            stall_timeout=settings.stall_timeout,
            lifetime=settings.connection_lifetime,
        )
        self.first_data = asyncio.Event()
        self.handover_due = asyncio.Event()
        self.silence_due = asyncio.Event()
        self.data_again = asyncio.Event()
        """Set by data once :meth:`probe` cleared it: the silent connection delivers again."""
        self.probe_answered = asyncio.Event()
        # One series of request ids for probes and stream changes: replies never mix up.
        self._probe_ids = itertools.count(1)
        self._probe_id: int | None = None
        self._pacing = ControlRateLimiter()
        self._replies: dict[int, asyncio.Future[ControlReply]] = {}
        self._stalled = False
        self._retiring = False
        self._held: deque[StreamItem] | None = deque() if held else None

    def event(self, change: ConnectionChange, reason: str = "") -> ConnectionEvent:
        """Build a :class:`ConnectionEvent` about this connection, stamped now."""
        return ConnectionEvent(
            change=change,
            connection_id=self.connection_id,
            symbols=self.symbols,
            monotonic=self._clock.monotonic(),
            wall_us=self._clock.wall_us(),
            reason=reason,
        )

    async def run(self) -> ConnectionEnd:
        """Read frames into the sink until the connection ends; say how it ended."""
        try:
            async with asyncio.TaskGroup() as tg:
                watchdog = tg.create_task(self._watch(), name=f"watchdog {self.connection_id}")
                reason = await self._read()
                watchdog.cancel()
        finally:
            await self._close()
        return self._end(reason)

    async def retire(self) -> None:
        """Close the connection on purpose (its replacement is delivering, or we stop)."""
        self._retiring = True
        await self._close()

    async def release(self) -> None:
        """Pass on what was held, then everything as it comes."""
        held = self._held
        # Frames read while the held ones drain join the end of the same queue: order is kept.
        while held:
            await self._sink.put(held.popleft())
        self._held = None

    async def _emit(self, item: StreamItem) -> None:
        if self._held is None:
            await self._sink.put(item)
        else:
            # Bounded by time: a silence check decides within SAME_DATA_GRACE of this
            # connection's first data, or closes it.
            self._held.append(item)

    async def stall(self) -> None:
        """Close the connection because a silence check found it stalled."""
        self._stalled = True
        await self._close()

    async def probe(self) -> None:
        """Start a silence check: send a ``LIST_SUBSCRIPTIONS`` probe, watch for data again.

        A probe that cannot be sent stays unanswered, which is the evidence it gives.
        """
        self.data_again.clear()
        self.probe_answered.clear()
        probe_id = next(self._probe_ids)
        await self._pace()
        self._probe_id = probe_id
        try:
            await self._ws.send_str(probe_request(probe_id))
        except (aiohttp.ClientError, ConnectionError) as exc:
            log.warning("probe not sent", connection_id=self.connection_id, error=repr(exc))

    async def request(
        self, method: str, symbols: tuple[str, ...], reply_within: float
    ) -> ControlReply | None:
        """Send a ``SUBSCRIBE`` or ``UNSUBSCRIBE`` of ``symbols``; its reply, ``None`` if none.

        ``None`` also when the request cannot be sent (the connection is closing): either way
        the caller tries again or replaces the connection.
        """
        request_id = next(self._probe_ids)
        await self._pace()
        reply: asyncio.Future[ControlReply] = asyncio.get_running_loop().create_future()
        self._replies[request_id] = reply
        try:
            await self._ws.send_str(control_request(method, symbols, request_id))
            async with asyncio.timeout(reply_within):
                return await reply
        except (TimeoutError, aiohttp.ClientError, ConnectionError):
            return None
        finally:
            self._replies.pop(request_id, None)

    async def carry(self, symbols: tuple[str, ...]) -> None:
        """The exchange confirmed a change: the connection carries ``symbols`` now."""
        self.symbols = symbols
        await self._emit(self.event(ConnectionChange.STREAMS_CHANGED))

    def request_handover(self) -> None:
        """Ask the supervisor for a planned handover to a fresh connection, now."""
        self.watchdog.handover_requested = True
        self.handover_due.set()

    async def _pace(self) -> None:
        """Wait until another control message may go, and count it as sent."""
        # The wait is for the rate window to pass, not for an event.
        while (delay := self._pacing.delay(self._clock.monotonic())) > 0:  # noqa: ASYNC110
            await asyncio.sleep(delay)
        # No await between the check and the count: two senders cannot both pass.
        self._pacing.sent(self._clock.monotonic())

    def quiet_confirmed(self) -> None:
        """The silence check found the connection alive and quiet: keep watching it."""
        self._probe_id = None
        self.silence_due.clear()
        self.watchdog.quiet_confirmed(self._clock.monotonic())

    def postpone_handover(self, seconds: float) -> None:
        """After a failed handover, keep this connection and try again in ``seconds``."""
        self.watchdog.lifetime = self._clock.monotonic() - self.watchdog.opened_at + seconds
        self.watchdog.handover_requested = False
        self.handover_due.clear()

    async def _read(self) -> str:
        ws = self._ws
        while True:
            message = await ws.receive()
            if message.type in _DATA_MESSAGES:
                if self._replies and self._answer(message.data):
                    continue  # not data, like a probe's reply
                if self._probe_id is not None and is_probe_reply(message.data, self._probe_id):
                    # Not data: neither the watchdog nor the health check may take it for the
                    # end of the silence. The gap detector hears of it in stream order.
                    self._probe_id = None
                    self.probe_answered.set()
                    await self._emit(self.event(ConnectionChange.PROBE_ANSWERED))
                    continue
                self._on_data()
                if not self.first_data.is_set():
                    self.first_data.set()
                    await self._emit(self.event(ConnectionChange.FIRST_DATA))
                frame = ReceivedFrame(message.data, self._clock.wall_us(), self.connection_id)
                if self._held is None:
                    try:
                        self._sink.put_nowait(frame)  # nearly every frame: no coroutine
                    except asyncio.QueueFull:
                        await self._sink.put(frame)
                else:
                    await self._emit(frame)
            elif message.type is aiohttp.WSMsgType.ERROR:
                return f"error: {ws.exception()!r}"
            elif message.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
            ):
                return f"closed by peer (code {ws.close_code})"

    def _answer(self, data: str | bytes) -> bool:
        """Hand a reply to its pending request; ``False`` when ``data`` is not one."""
        reply = parse_control_reply(data, self._replies)
        if reply is None:
            return False
        waiting = self._replies.pop(reply.request_id)
        if not waiting.done():
            waiting.set_result(reply)
        return True

    def _on_data(self) -> None:
        self.watchdog.on_data(self._clock.monotonic())
        if not self.data_again.is_set():
            self.data_again.set()

    async def _watch(self) -> None:
        while True:
            now = self._clock.monotonic()
            verdict = self.watchdog.verdict(now)
            if verdict is Verdict.HANDOVER_DUE:
                self.watchdog.handover_requested = True
                self.handover_due.set()
            elif verdict is not None:
                # SILENT or NO_DATA: a silence check decides whether it is alive.
                self.watchdog.check_requested = True
                self.silence_due.set()
            # The first frame can move the next deadline earlier than computed here (a silence
            # counts from the last frame); waking every half stall_timeout bounds detection to
            # 1.5 x the allowed silence without a wake-up per frame.
            wait = min(self.watchdog.next_check_at() - now, self.watchdog.stall_timeout / 2)
            await asyncio.sleep(max(0.0, wait))

    async def _close(self) -> None:
        if not self._ws.closed:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self._ws.close()
            except TimeoutError:
                log.warning("close handshake timed out", connection_id=self.connection_id)

    def _end(self, reason: str) -> ConnectionEnd:
        watchdog = self.watchdog
        stable = (
            watchdog.last_data_at is not None
            and watchdog.last_data_at - watchdog.opened_at >= STABLE_AFTER
        )
        if self._retiring:
            return ConnectionEnd(ConnectionChange.RETIRED, "replaced", stable)
        if self._stalled and watchdog.last_data_at is None:
            return ConnectionEnd(
                ConnectionChange.STALLED,
                f"no data at all {watchdog.first_data_timeout:g}s after subscribing, and a "
                "replacement delivered or its probe went unanswered",
                stable,
            )
        if self._stalled:
            return ConnectionEnd(
                ConnectionChange.STALLED,
                f"no data for {watchdog.allowed_silence:g}s while its replacement delivered,"
                " or a probe went unanswered",
                stable,
            )
        return ConnectionEnd(ConnectionChange.DROPPED, reason, stable)
