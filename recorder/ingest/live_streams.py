"""One shard's live stream changes: its current connection brought to the wanted streams.

A :class:`StreamController` runs beside its shard's supervisor, in the supervisor's task group.
Whenever the wanted symbols change, or another connection becomes the shard's, it asks a
:class:`~recorder.ingest.subscriptions.StreamReconciler` what to do and does it on the current
connection: a ``SUBSCRIBE`` or an ``UNSUBSCRIBE`` (paced by the connection, the reply matched
by id and checked), then the next one, until the connection carries what is wanted. A request
refused or unanswered within ``open_timeout`` is sent again; after
:data:`~recorder.ingest.subscriptions.MAX_ATTEMPTS` the connection is handed over: the
supervisor opens a fresh one with the wanted streams in its URL, and closes the old one once the
fresh one delivers, so nothing is missed. A reconnect opens with the wanted streams too.

On an all-market connection (``requests=False``) there is nothing to ask the exchange: its one
``!miniTicker@arr`` stream carries every contract. A change of the symbols is then only taken
note of (:meth:`ControlledConnection.carry`, which says ``STREAMS_CHANGED`` to the pipeline,
so that the gap detector and the health check know what the connection carries).
"""

import asyncio
from typing import Protocol

from recorder.ingest.subscriptions import ControlReply, StreamReconciler
from recorder.ops.logs import get_logger

log = get_logger(__name__)


class ControlledConnection(Protocol):
    """What the controller needs of a connection: a ``MarketConnection`` is one."""

    connection_id: str
    symbols: tuple[str, ...]
    handover_due: asyncio.Event

    async def request(
        self, method: str, symbols: tuple[str, ...], reply_within: float
    ) -> ControlReply | None:
        """Send a control request; its reply, or ``None`` when none came in time."""
        ...

    async def carry(self, symbols: tuple[str, ...]) -> None:
        """Take note that the connection carries ``symbols`` now."""
        ...

    def request_handover(self) -> None:
        """Ask for the connection to be replaced by a fresh one."""
        ...


class Shard(Protocol):
    """What the controller needs of its shard's supervisor."""

    @property
    def symbols(self) -> tuple[str, ...]:
        """The symbols the shard should carry now."""
        ...

    @property
    def current(self) -> ControlledConnection | None:
        """The connection the shard follows now, if any."""
        ...

    @property
    def streams_changed(self) -> asyncio.Event:
        """Set when :attr:`symbols` or :attr:`current` changed."""
        ...


class StreamController:
    """Keeps one shard's current connection on the wanted streams.

    Args:
        shard: the shard's supervisor.
        reply_within: seconds a request's reply may take.
        requests: change streams with ``SUBSCRIBE`` and ``UNSUBSCRIBE``; ``False`` for an
            all-market connection, whose one stream carries every symbol.
    """

    def __init__(self, shard: Shard, reply_within: float, *, requests: bool = True) -> None:
        self._shard = shard
        self._reply_within = reply_within
        self._requests = requests
        self._reconciler = StreamReconciler()
        self.requests_failed = 0
        """Requests refused or unanswered so far."""
        self.handovers = 0
        """Handovers asked for after requests failed."""

    async def run(self) -> None:
        """Reconcile each time the shard changes, until cancelled."""
        changed = self._shard.streams_changed
        while True:
            await changed.wait()
            changed.clear()
            await self.reconcile()

    async def reconcile(self) -> None:
        """Bring the current connection to the wanted streams, or ask for its handover."""
        if not self._requests:
            connection = self._shard.current
            if connection is not None and connection.symbols != self._shard.symbols:
                await connection.carry(self._shard.symbols)
                log.info(
                    "recorded symbols changed; the all-market stream carries them already",
                    connection_id=connection.connection_id,
                    symbols=len(connection.symbols),
                )
            return
        while True:
            connection = self._shard.current
            if connection is None or connection.handover_due.is_set():
                return  # the next connection opens with the wanted streams
            step = self._reconciler.next_step(connection.symbols, self._shard.symbols)
            if step.handover:
                self.handovers += 1
                log.warning(
                    "stream change not confirmed; handing the connection over to a fresh one",
                    connection_id=connection.connection_id,
                )
                self._reconciler.handed_over()
                connection.request_handover()
                return
            if step.method is None:
                return
            reply = await connection.request(step.method, step.symbols, self._reply_within)
            if reply is not None and reply.ok:
                self._reconciler.succeeded()
                await connection.carry(_after(connection.symbols, step.method, step.symbols))
                log.info(
                    "streams changed",
                    connection_id=connection.connection_id,
                    method=step.method,
                    symbols=list(step.symbols),
                    streams=len(connection.symbols),
                )
                continue
            self._reconciler.failed()
            self.requests_failed += 1
            log.warning(
                "stream change refused" if reply is not None else "stream change unanswered",
                connection_id=connection.connection_id,
                method=step.method,
                symbols=list(step.symbols),
                detail=None if reply is None else reply.detail,
            )


def _after(carried: tuple[str, ...], method: str, symbols: tuple[str, ...]) -> tuple[str, ...]:
    """What a connection carries after a confirmed request.

    >>> _after(("A", "B"), "UNSUBSCRIBE", ("A",)), _after(("B",), "SUBSCRIBE", ("C",))
    (('B',), ('B', 'C'))
    """
    if method == "UNSUBSCRIBE":
        gone = frozenset(symbols)
        return tuple(symbol for symbol in carried if symbol not in gone)
    return carried + tuple(symbol for symbol in symbols if symbol not in carried)
