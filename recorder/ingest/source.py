"""The exchange connections of every shard: connecting, backoff, handovers, silence checks.

Each shard of at most ``max_streams_per_connection`` symbols has one :class:`ShardSupervisor`
that keeps exactly one live connection for its symbols, forever:

* it connects to the combined-stream URL, with capped exponential backoff and jitter between
  attempts (honouring ``Retry-After`` when the exchange says 418/429);
* aiohttp answers the server's pings and sends its own (``heartbeat``), so a dead peer (no pong)
  ends the connection within 1.5 x ``ping_interval``;
* ``open_timeout`` bounds the handshake (aiohttp alone would wait up to 300 s);
* a :class:`~recorder.ingest.connection.ConnectionWatchdog` ends a connection that delivers
  nothing at all after opening (loudly: that is what an unrouted Binance URL does);
* a connection silent for ``stall_timeout`` is checked, not closed: a ``LIST_SUBSCRIPTIONS``
  probe goes out on it and a replacement is opened beside it, and
  :class:`~recorder.ingest.connection.SilenceCheck` decides from what they show whether it is
  quiet (kept, the replacement closed) or stalled (closed, the replacement kept);
* before the connection's planned lifetime ends, a replacement is opened, and the old one is
  closed only once the replacement delivers, so the handover loses nothing (the pipeline drops
  the overlap's duplicates); when the old connection dies first, the replacement already open
  becomes the connection;
* its symbols can change while it runs
  (:meth:`recorder.ingest.shards.MarketSource.apply`): a
  :class:`~recorder.ingest.live_streams.StreamController` changes the open connection's
  streams, and every connection opened later subscribes the current set in its URL.

In all-market mode (``settings.all_market``) the one shard connects to the
``!miniTicker@arr`` stream instead (:func:`~recorder.ingest.connection.all_market_stream_url`),
which carries every contract: everything above holds as it is, except that a change of its
symbols sends no request (the controller only takes note of it).

Frames and :class:`~recorder.model.ConnectionEvent` values go, in arrival order, into one
bounded queue: when the pipeline falls behind, reading pauses (backpressure), nothing is dropped.
"""

import asyncio
import random
from collections import Counter
from collections.abc import Iterable
from typing import Any, Final

import aiohttp

from recorder.clock import Clock
from recorder.ingest.connection import (
    SilenceCheck,
    SilenceOutcome,
    all_market_stream_url,
    backoff_delay,
    combined_stream_url,
)
from recorder.ingest.live_streams import StreamController
from recorder.ingest.market_connection import (
    CLOSE_TIMEOUT,
    ConnectionEnd,
    MarketConnection,
    StreamItem,
)
from recorder.model import ConnectionChange
from recorder.ops.logs import get_logger
from recorder.settings import SourceSettings

__all__ = ["ShardSupervisor", "StreamItem"]

_CONNECT_ERRORS: Final = (aiohttp.ClientError, TimeoutError, OSError)
_HANDOVER_RETRY: Final = 30.0
"""Seconds to wait before trying a failed planned handover again."""

log = get_logger(__name__)


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
        self.index = shard
        self.symbols = symbols
        """The symbols the shard should carry; :meth:`change_streams` changes them."""
        self.current: MarketConnection | None = None
        """The connection followed now."""
        self.streams_changed = asyncio.Event()
        self.emptied = asyncio.Event()
        """Set once the shard carries no symbol: its connection is closed and the shard ends."""
        self._settings = settings
        self._session = session
        self._clock = clock
        self._sink = sink
        self._rng = rng
        self._serial = 0
        self.controller = StreamController(
            self, settings.open_timeout, requests=not settings.all_market
        )
        self.reconnects = 0
        """Times the shard was left without a connection and connected again."""
        self.silence_checks: Counter[SilenceOutcome] = Counter()
        """Outcomes of the silence checks run so far."""

    async def run(self) -> None:
        """Connect, follow connections through handovers, reconnect after failures; forever."""
        attempt = 0
        async with asyncio.TaskGroup() as tg:
            controlling = tg.create_task(self.controller.run(), name=f"streams {self._shard}")
            while not self.emptied.is_set():
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
                if self.emptied.is_set():
                    break
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
            controlling.cancel()

    @property
    def _url(self) -> str:
        if self._settings.all_market:
            return all_market_stream_url(self._settings.url)
        return combined_stream_url(self._settings.url, self.symbols)

    def change_streams(self, add: tuple[str, ...], remove: tuple[str, ...]) -> None:
        """Carry ``add`` and no longer ``remove`` from now on (the controller does it)."""
        gone = frozenset(remove)
        kept = tuple(symbol for symbol in self.symbols if symbol not in gone)
        self.symbols = kept + tuple(symbol for symbol in add if symbol not in kept)
        self.streams_changed.set()

    async def _open(self, *, held: bool = False) -> MarketConnection:
        self._serial += 1
        connection_id = f"{self._shard}.{self._serial}"
        settings = self._settings
        # ClientWSTimeout bounds reads and the close only; the handshake needs its own bound.
        async with asyncio.timeout(settings.open_timeout):
            ws = await self._session.ws_connect(
                self._url,
                heartbeat=settings.ping_interval,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CLOSE_TIMEOUT),
                max_msg_size=max(4 << 20, 4 * settings.max_frame_bytes),
                autoping=True,
            )
        connection = MarketConnection(
            ws,
            connection_id=connection_id,
            symbols=self.symbols,
            url=self._url,
            settings=settings,
            clock=self._clock,
            sink=self._sink,
            held=held,
        )
        log.info("connected", connection_id=connection_id, url=self._url, streams=len(self.symbols))
        await self._sink.put(connection.event(ConnectionChange.OPENED))
        return connection

    async def _follow(self, connection: MarketConnection, tg: asyncio.TaskGroup) -> ConnectionEnd:
        """Run ``connection`` and its successors until one ends with no replacement open."""
        task = tg.create_task(connection.run(), name=f"connection {connection.connection_id}")
        while True:
            # A new connection, or a handover that failed: the controller looks at it again.
            self.current = connection
            self.streams_changed.set()
            due = (connection.handover_due, connection.silence_due, self.emptied)
            await _first_of((task,), due)
            if self.emptied.is_set() and not task.done():
                await connection.retire()  # its end is reported below, as any other end
                await asyncio.wait([task])
            if task.done():
                end = task.result()
                await self._report_end(connection, end)
                return end
            if connection.silence_due.is_set():
                connection, task = await self._check_silence(connection, task, tg)
                continue
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
        """Open a replacement for ``old``; close ``old`` once the replacement delivers.

        Returns what to follow next, or ``None`` to keep ``old`` and try again later.
        """
        log.info("planned handover", connection_id=old.connection_id)
        replacement = await self._open_beside(old, tg)
        if replacement is None:
            return None
        new, new_task = replacement
        await _first_of((new_task, old_task), (new.first_data,), self._settings.handover_timeout)
        if old_task.done() and not new_task.done():
            return await self._take_over(old, old_task, new, new_task)
        if new.first_data.is_set():
            await old.retire()
            await self._report_end(old, await old_task)
            return new, new_task
        log.warning(
            "replacement delivered nothing; keeping the old connection",
            connection_id=old.connection_id,
            replacement=new.connection_id,
        )
        await self._discard(new, new_task)
        if old_task.done():
            # Both ended: the old one's unplanned end surfaces through _follow.
            return old, old_task
        return None

    async def _check_silence(
        self,
        old: MarketConnection,
        old_task: asyncio.Task[ConnectionEnd],
        tg: asyncio.TaskGroup,
    ) -> tuple[MarketConnection, asyncio.Task[ConnectionEnd]]:
        """Tell whether silent ``old`` is quiet or stalled, from a probe and a replacement.

        Returns what to follow next: ``old`` when it is quiet (or ended, to surface its end),
        the replacement when ``old`` stalled or died meanwhile.
        """
        watchdog = old.watchdog
        if watchdog.last_data_at is None and watchdog.checked_at is None:
            # Said at once: an unrouted URL looks like this, whatever the check then finds.
            log.error(
                "connection delivered no data at all; is the url the routed /market endpoint?",
                connection_id=old.connection_id,
                url=old.url,
                silent_for=watchdog.first_data_timeout,
                next="probing it beside a replacement",
            )
        else:
            log.info(
                "silent connection: probing it beside a replacement",
                connection_id=old.connection_id,
                silent_for=round(watchdog.allowed_silence, 3),
            )
        await old.probe()
        check = SilenceCheck(self._clock.monotonic(), self._settings.handover_timeout)
        replacement = await self._open_beside(old, tg, held=True)
        check.replacement_failed = replacement is None
        outcome = None
        while not old_task.done():
            now = self._clock.monotonic()
            tasks: list[asyncio.Task[ConnectionEnd]] = [old_task]
            events = _gather_evidence(check, old, replacement, now, tasks)
            outcome = check.decide(now)
            if outcome is not None:
                break
            await _first_of(tasks, events, check.next_decision_at() - now)
        alive = replacement if replacement is not None and not replacement[1].done() else None
        if old_task.done():
            if alive is not None:
                successor = await self._take_over(old, old_task, *alive)
                await alive[0].release()
                return successor
        elif outcome is SilenceOutcome.QUIET and old.watchdog.last_data_at is None:
            self.silence_checks[outcome] += 1
            # Alive but never delivered: symbols quiet from the start look exactly like an
            # unrouted URL. Reconnecting helps neither, so it is kept and checked again; it
            # stays unhealthy until data comes (no QUIET_CONFIRMED).
            log.warning(
                "connection is alive but has delivered nothing yet (quiet symbols, or an "
                "unrouted url); keeping it",
                connection_id=old.connection_id,
                url=old.url,
            )
            old.quiet_confirmed()
        elif outcome is SilenceOutcome.QUIET:
            self.silence_checks[outcome] += 1
            log.info(
                "silent connection is alive and its symbols are quiet; keeping it",
                connection_id=old.connection_id,
                delivered_again=check.old_data_at is not None,
                probe_answered=check.probe_answered_at is not None,
            )
            old.quiet_confirmed()
            await self._sink.put(old.event(ConnectionChange.QUIET_CONFIRMED))
        else:
            self.silence_checks[SilenceOutcome.STALLED] += 1
            log.warning(
                "silence check found a stall: data is withheld, or the connection is dead",
                connection_id=old.connection_id,
                replacement=None if alive is None else alive[0].connection_id,
                replacement_delivered=check.replacement_data_at is not None,
                probe_answered=check.probe_answered_at is not None,
            )
            await old.stall()
            if alive is not None:
                await asyncio.wait({old_task})
                successor = await self._take_over(old, old_task, *alive)
                await alive[0].release()
                return successor
        if replacement is not None:
            await self._discard(*replacement)
        return old, old_task

    async def _open_beside(
        self, old: MarketConnection, tg: asyncio.TaskGroup, *, held: bool = False
    ) -> tuple[MarketConnection, asyncio.Task[ConnectionEnd]] | None:
        """Open a replacement for ``old`` and start running it; ``None`` when it cannot."""
        try:
            new = await self._open(held=held)
        except _CONNECT_ERRORS as exc:
            log.warning(
                "replacement connect failed", connection_id=old.connection_id, error=repr(exc)
            )
            return None
        return new, tg.create_task(new.run(), name=f"connection {new.connection_id}")

    async def _take_over(
        self,
        old: MarketConnection,
        old_task: asyncio.Task[ConnectionEnd],
        new: MarketConnection,
        new_task: asyncio.Task[ConnectionEnd],
    ) -> tuple[MarketConnection, asyncio.Task[ConnectionEnd]]:
        """``old`` ended while its replacement was open: the replacement is the connection."""
        end = old_task.result()
        log.warning(
            "connection lost",
            shard=self._shard,
            connection_id=old.connection_id,
            change=end.change.value,
            reason=end.reason,
            replaced_by=new.connection_id,
        )
        await self._report_end(old, end)
        return new, new_task

    async def _discard(self, new: MarketConnection, new_task: asyncio.Task[ConnectionEnd]) -> None:
        await new.retire()
        await self._report_end(new, await new_task)

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


async def _first_of(
    tasks: Iterable[asyncio.Future[Any]],
    events: Iterable[asyncio.Event],
    seconds: float | None = None,
) -> None:
    """Return once one of ``tasks`` is done, one of ``events`` is set, or ``seconds`` passed."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait([*tasks, *waiters], timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _gather_evidence(
    check: SilenceCheck,
    old: MarketConnection,
    replacement: tuple[MarketConnection, asyncio.Task[ConnectionEnd]] | None,
    now: float,
    tasks: list[asyncio.Task[ConnectionEnd]],
) -> list[asyncio.Event]:
    """Note in ``check`` what happened by ``now``; return the events still worth waiting for.

    The replacement's task is added to ``tasks`` while it runs (its end is evidence too).
    """
    pending = [event for event in (old.data_again, old.probe_answered) if not event.is_set()]
    if old.data_again.is_set() and check.old_data_at is None:
        check.old_data_at = now
    if old.probe_answered.is_set() and check.probe_answered_at is None:
        check.probe_answered_at = now
    if replacement is not None:
        new, new_task = replacement
        if not new.first_data.is_set():
            pending.append(new.first_data)
        elif check.replacement_data_at is None:
            check.replacement_data_at = now
        if not new_task.done():
            tasks.append(new_task)
        elif not new.first_data.is_set():
            check.replacement_failed = True
    return pending
