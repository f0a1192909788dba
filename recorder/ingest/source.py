"""The only websocket code: connections to the exchange, watchdogs, backoff and handover.

Each shard of at most ``max_streams_per_connection`` symbols has one :class:`ShardSupervisor`
that keeps exactly one live connection for its symbols, forever:

* it connects to the combined-stream URL, with capped exponential backoff and jitter between
  attempts (honouring ``Retry-After`` when the exchange says 418/429);
* aiohttp answers the server's pings and sends its own (``heartbeat``), so a dead peer (no pong)
  ends the connection within 1.5 x ``ping_interval``;
* a :class:`~recorder.ingest.connection.ConnectionWatchdog` ends a connection that delivers
  nothing at all after opening (loudly: that is what an unrouted Binance URL does) or that stalls;
* before the connection's planned lifetime ends, a replacement is opened, and the old one is
  closed only once the replacement delivers, so the handover loses nothing (the pipeline drops
  the overlap's duplicates).

Frames and :class:`~recorder.model.ConnectionEvent` values go, in arrival order, into one
bounded queue: when the pipeline falls behind, reading pauses (backpressure), nothing is dropped.
"""

import asyncio
import random
from dataclasses import dataclass
from typing import Final

import aiohttp

from recorder.clock import Clock
from recorder.ingest.connection import (
    ConnectionWatchdog,
    Verdict,
    backoff_delay,
    combined_stream_url,
    plan_shards,
)
from recorder.model import ConnectionChange, ConnectionEvent, ReceivedFrame
from recorder.ops.logs import get_logger
from recorder.settings import SourceSettings

StreamItem = ReceivedFrame | ConnectionEvent
"""What the source puts on the queue."""

_CONNECT_ERRORS: Final = (aiohttp.ClientError, TimeoutError, OSError)
_STABLE_AFTER: Final = 10.0
"""Seconds of delivering data after which a connection counts as stable (backoff resets)."""
_HANDOVER_RETRY: Final = 30.0
"""Seconds to wait before trying a failed planned handover again."""
_CLOSE_TIMEOUT: Final = 2.0

log = get_logger(__name__)


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
        symbols: the symbols subscribed through the URL.
        url: where it is connected (for logs).
        settings: source settings (watchdog bounds).
        clock: the injectable clock.
        sink: where frames and connection events go.
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
        self._verdict: Verdict | None = None
        self._retiring = False

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

    def postpone_handover(self, seconds: float) -> None:
        """After a failed handover, keep this connection and try again in ``seconds``."""
        self.watchdog.lifetime = self._clock.monotonic() - self.watchdog.opened_at + seconds
        self.watchdog.handover_requested = False
        self.handover_due.clear()

    async def _read(self) -> str:
        ws = self._ws
        while True:
            message = await ws.receive()
            if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                now = self._clock.monotonic()
                self.watchdog.on_data(now)
                if not self.first_data.is_set():
                    self.first_data.set()
                    await self._sink.put(self.event(ConnectionChange.FIRST_DATA))
                await self._sink.put(
                    ReceivedFrame(message.data, self._clock.wall_us(), self.connection_id)
                )
            elif message.type is aiohttp.WSMsgType.ERROR:
                return f"error: {ws.exception()!r}"
            elif message.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
            ):
                return f"closed by peer (code {ws.close_code})"

    async def _watch(self) -> None:
        while True:
            now = self._clock.monotonic()
            verdict = self.watchdog.verdict(now)
            if verdict is Verdict.HANDOVER_DUE:
                self.watchdog.handover_requested = True
                self.handover_due.set()
            elif verdict is not None:
                self._verdict = verdict
                await self._close()
                return
            # The first frame can move the next deadline earlier than computed here (a stall
            # counts from the last frame); waking every half stall_timeout bounds detection to
            # 1.5 x stall_timeout without a wake-up per frame.
            wait = min(self.watchdog.next_check_at() - now, self.watchdog.stall_timeout / 2)
            await asyncio.sleep(max(0.0, wait))

    async def _close(self) -> None:
        if not self._ws.closed:
            try:
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await self._ws.close()
            except TimeoutError:
                log.warning("close handshake timed out", connection_id=self.connection_id)

    def _end(self, reason: str) -> ConnectionEnd:
        watchdog = self.watchdog
        stable = (
            watchdog.last_data_at is not None
            and watchdog.last_data_at - watchdog.opened_at >= _STABLE_AFTER
        )
        if self._retiring:
            return ConnectionEnd(ConnectionChange.RETIRED, "replaced", stable)
        if self._verdict is Verdict.NO_DATA:
            return ConnectionEnd(
                ConnectionChange.STALLED,
                f"no data at all {watchdog.first_data_timeout:g}s after subscribing",
                stable,
            )
        if self._verdict is Verdict.STALLED:
            return ConnectionEnd(
                ConnectionChange.STALLED,
                f"no frame for {watchdog.stall_timeout:g}s",
                stable,
            )
        return ConnectionEnd(ConnectionChange.DROPPED, reason, stable)


class ShardSupervisor:
    """Keeps one live connection for one shard of symbols until cancelled.

    Args:
        shard: the shard's index (the first part of connection ids).
        symbols: the shard's symbols.
        settings: source settings.
        session: the HTTP session to connect with.
        clock: the injectable clock.
        sink: where frames and connection events go.
        rng: randomness for backoff jitter (seeded in tests).
    """

    def __init__(
        self,
        shard: int,
        symbols: tuple[str, ...],
        *,
        settings: SourceSettings,
        session: aiohttp.ClientSession,
        clock: Clock,
        sink: asyncio.Queue[StreamItem],
        rng: random.Random,
    ) -> None:
        self._shard = shard
        self._symbols = symbols
        self._settings = settings
        self._session = session
        self._clock = clock
        self._sink = sink
        self._rng = rng
        self._serial = 0
        self._url = combined_stream_url(settings.url, symbols)
        self.reconnects = 0

    async def run(self) -> None:
        """Connect, follow connections through handovers, reconnect after failures; forever."""
        attempt = 0
        async with asyncio.TaskGroup() as tg:
            while True:
                try:
                    connection = await self._open()
                except _CONNECT_ERRORS as exc:
                    delay = self._retry_delay(attempt, exc)
                    log.warning(
                        "connect failed",
                        shard=self._shard,
                        url=self._url,
                        error=repr(exc),
                        retry_in=round(delay, 3),
                    )
                    attempt += 1
                    await asyncio.sleep(delay)
                    continue
                end = await self._follow(connection, tg)
                attempt = 0 if end.stable else attempt + 1
                self.reconnects += 1
                delay = backoff_delay(
                    attempt, self._settings.backoff_initial, self._settings.backoff_max, self._rng
                )
                log.warning(
                    "connection lost",
                    shard=self._shard,
                    change=end.change.value,
                    reason=end.reason,
                    retry_in=round(delay, 3),
                )
                await asyncio.sleep(delay)

    async def _open(self) -> MarketConnection:
        self._serial += 1
        connection_id = f"{self._shard}.{self._serial}"
        settings = self._settings
        ws = await self._session.ws_connect(
            self._url,
            heartbeat=settings.ping_interval,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=_CLOSE_TIMEOUT),
            max_msg_size=max(4 << 20, 4 * settings.max_frame_bytes),
            autoping=True,
        )
        connection = MarketConnection(
            ws,
            connection_id=connection_id,
            symbols=self._symbols,
            url=self._url,
            settings=settings,
            clock=self._clock,
            sink=self._sink,
        )
        log.info(
            "connected", connection_id=connection_id, url=self._url, streams=len(self._symbols)
        )
        await self._sink.put(connection.event(ConnectionChange.OPENED))
        return connection

    async def _follow(self, connection: MarketConnection, tg: asyncio.TaskGroup) -> ConnectionEnd:
        """Run ``connection`` and its planned successors until one ends unplanned."""
        task = tg.create_task(connection.run(), name=f"connection {connection.connection_id}")
        while True:
            due = tg.create_task(connection.handover_due.wait())
            await asyncio.wait({task, due}, return_when=asyncio.FIRST_COMPLETED)
            due.cancel()
            if task.done():
                end = task.result()
                await self._report_end(connection, end)
                return end
            successor = await self._hand_over(connection, task, tg)
            if successor is None:
                connection.postpone_handover(_HANDOVER_RETRY)
            else:
                connection, task = successor

    async def _hand_over(
        self,
        old: MarketConnection,
        old_task: asyncio.Task[ConnectionEnd],
        tg: asyncio.TaskGroup,
    ) -> tuple[MarketConnection, asyncio.Task[ConnectionEnd]] | None:
        """Open a replacement for ``old``; close ``old`` once the replacement delivers."""
        log.info("planned handover", connection_id=old.connection_id)
        try:
            new = await self._open()
        except _CONNECT_ERRORS as exc:
            log.warning("handover connect failed", connection_id=old.connection_id, error=repr(exc))
            return None
        new_task = tg.create_task(new.run(), name=f"connection {new.connection_id}")
        delivering = tg.create_task(new.first_data.wait())
        await asyncio.wait(
            {delivering, new_task, old_task},
            timeout=self._settings.handover_timeout,
            return_when=asyncio.FIRST_COMPLETED,
        )
        delivering.cancel()
        if not new.first_data.is_set():
            log.warning(
                "replacement delivered nothing; keeping the old connection",
                connection_id=old.connection_id,
                replacement=new.connection_id,
            )
            await new.retire()
            await self._report_end(new, await new_task)
            if old_task.done():
                # The old one died meanwhile: the unplanned end surfaces through _follow.
                return old, old_task
            return None
        await old.retire()
        await self._report_end(old, await old_task)
        return new, new_task

    async def _report_end(self, connection: MarketConnection, end: ConnectionEnd) -> None:
        if end.change is ConnectionChange.STALLED and connection.watchdog.last_data_at is None:
            log.error(
                "connection delivered no data at all; is the url the routed /market endpoint?",
                connection_id=connection.connection_id,
                url=connection.url,
            )
        await self._sink.put(connection.event(end.change, end.reason))

    def _retry_delay(self, attempt: int, exc: BaseException) -> float:
        delay = backoff_delay(
            attempt, self._settings.backoff_initial, self._settings.backoff_max, self._rng
        )
        if isinstance(exc, aiohttp.WSServerHandshakeError) and exc.status in (418, 429):
            retry_after = exc.headers.get("Retry-After", "") if exc.headers else ""
            if retry_after.isdecimal():
                delay = max(delay, float(retry_after))
        return delay


class MarketSource:
    """All shards of the configured symbols, under one task group.

    Args:
        settings: source settings.
        clock: the injectable clock.
        sink: the bounded queue the pipeline reads.
        rng: randomness for backoff jitter.
    """

    def __init__(
        self,
        settings: SourceSettings,
        clock: Clock,
        sink: asyncio.Queue[StreamItem],
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._sink = sink
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.shards = plan_shards(settings.symbols, settings.max_streams_per_connection)
        self.supervisors: list[ShardSupervisor] = []

    async def run(self) -> None:
        """Run every shard until cancelled."""
        async with aiohttp.ClientSession() as session, asyncio.TaskGroup() as tg:
            for index, symbols in enumerate(self.shards):
                supervisor = ShardSupervisor(
                    index,
                    symbols,
                    settings=self._settings,
                    session=session,
                    clock=self._clock,
                    sink=self._sink,
                    rng=self._rng,
                )
                self.supervisors.append(supervisor)
                tg.create_task(supervisor.run(), name=f"shard {index}")
