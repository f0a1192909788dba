"""The stream controller against a scripted connection: no socket, replies given by the test."""

import asyncio
from collections import deque

import pytest

from recorder.ingest.live_streams import StreamController
from recorder.ingest.subscriptions import MAX_ATTEMPTS, ControlReply


class ScriptedConnection:
    """Answers each request with the next scripted reply (``None``: no reply in time)."""

    def __init__(self, symbols: tuple[str, ...], replies: list[bool | None]) -> None:
        self.connection_id = "0.1"
        self.symbols = symbols
        self.handover_due = asyncio.Event()
        self.sent: list[tuple[str, tuple[str, ...]]] = []
        self.carried: list[tuple[str, ...]] = []
        self._replies = deque(replies)

    async def request(
        self, method: str, symbols: tuple[str, ...], reply_within: float
    ) -> ControlReply | None:
        self.sent.append((method, symbols))
        ok = self._replies.popleft() if self._replies else True
        if ok is None:
            return None
        return ControlReply(len(self.sent), ok=ok, detail="" if ok else "refused")

    async def carry(self, symbols: tuple[str, ...]) -> None:
        self.symbols = symbols
        self.carried.append(symbols)

    def request_handover(self) -> None:
        self.handover_due.set()


class ScriptedShard:
    def __init__(self, symbols: tuple[str, ...], current: ScriptedConnection) -> None:
        self.symbols = symbols
        self.current: ScriptedConnection | None = current
        self.streams_changed = asyncio.Event()


async def reconcile(shard: ScriptedShard) -> StreamController:
    controller = StreamController(shard, reply_within=1.0)
    await controller.reconcile()
    return controller


@pytest.mark.asyncio
async def test_removals_then_additions_each_confirmed() -> None:
    connection = ScriptedConnection(("A", "B"), [])
    shard = ScriptedShard(("B", "C"), connection)
    await reconcile(shard)
    assert connection.sent == [("UNSUBSCRIBE", ("A",)), ("SUBSCRIBE", ("C",))]
    assert connection.carried == [("B",), ("B", "C")]
    assert not connection.handover_due.is_set()


@pytest.mark.asyncio
async def test_a_refused_request_is_sent_again() -> None:
    connection = ScriptedConnection(("A",), [False, None, True])
    shard = ScriptedShard(("A", "B"), connection)
    controller = await reconcile(shard)
    assert connection.sent == [("SUBSCRIBE", ("B",))] * 3
    assert connection.symbols == ("A", "B")
    assert controller.requests_failed == 2
    assert not connection.handover_due.is_set()


@pytest.mark.asyncio
async def test_requests_that_keep_failing_end_in_a_handover() -> None:
    connection = ScriptedConnection(("A",), [False, None] * MAX_ATTEMPTS)
    shard = ScriptedShard(("A", "B"), connection)
    controller = await reconcile(shard)
    assert connection.sent == [("SUBSCRIBE", ("B",))] * MAX_ATTEMPTS
    assert connection.symbols == ("A",)  # never confirmed: the fresh connection carries it
    assert connection.handover_due.is_set()
    assert controller.handovers == 1
