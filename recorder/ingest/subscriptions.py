"""Live subscription changes, sans-IO: where new streams go, the control messages, their replies.

When the recorded symbols change while running (``symbols = "all"`` and a listing or a
delisting), the open connections change their streams with ``SUBSCRIBE`` and ``UNSUBSCRIBE``
instead of reconnecting:

* :func:`plan_changes` puts each new symbol on a shard with room (the emptiest first) and
  opens a new shard only when every one is full; a removed symbol leaves its shard;
* :class:`ControlRateLimiter` keeps each connection at :data:`MAX_CONTROL_PER_SECOND` control
  messages in any second (Binance closes a connection that sends more than 10 messages a
  second; it asks clients to stay at or below 5 for these);
* :func:`control_request` writes a request, :func:`parse_control_reply` recognises the reply
  to a pending id (``{"result": null, "id": 7}`` is success, ``{"error": {...}, "id": 7}`` a
  refusal), whatever else the frame holds;
* :class:`StreamReconciler` compares what a connection carries with what it should, says which
  request to send next, and after :data:`MAX_ATTEMPTS` refused or unanswered requests for the
  same change asks for a planned handover to a fresh connection opened with the wanted set.
"""

import json
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from recorder.symbols import stream_name

MAX_CONTROL_PER_SECOND: Final = 5
"""Control messages a connection sends in any one second, at most."""
MAX_ATTEMPTS: Final = 3
"""Requests sent for one change before the connection is replaced instead."""
MAX_REPLY_BYTES: Final = 64 * 1024
"""Larger frames are data, never a control reply (a LIST_SUBSCRIPTIONS of 1024 streams fits)."""


@dataclass(frozen=True, slots=True)
class ChangePlan:
    """Where the symbols of a change go.

    Attributes:
        subscribe: per existing shard index, the symbols it subscribes, in order.
        unsubscribe: per existing shard index, the symbols it unsubscribes.
        new_shards: symbols for shards to open, each within the stream limit.
    """

    subscribe: Mapping[int, tuple[str, ...]]
    unsubscribe: Mapping[int, tuple[str, ...]]
    new_shards: tuple[tuple[str, ...], ...]

    def applied_to(self, shards: Sequence[tuple[str, ...]]) -> list[tuple[str, ...]]:
        """The shards' symbols once the plan is carried out; shards left empty dropped.

        >>> plan_changes([("A", "B"), ("C",)], ["D"], ["C"], 2).applied_to([("A", "B"), ("C",)])
        [('A', 'B'), ('D',)]
        """
        changed = []
        for index, shard in enumerate(shards):
            gone = frozenset(self.unsubscribe.get(index, ()))
            kept = tuple(symbol for symbol in shard if symbol not in gone)
            changed.append(kept + self.subscribe.get(index, ()))
        return [shard for shard in (*changed, *self.new_shards) if shard]


def plan_changes(
    shards: Sequence[tuple[str, ...]],
    listed: Iterable[str],
    delisted: Iterable[str],
    max_streams: int,
) -> ChangePlan:
    """Plan a change of the recorded symbols over the shards that carry them.

    Removed symbols make room first; each added symbol then goes to the shard with the fewest
    symbols (the lowest index among equals), new shards are opened for what does not fit.

    >>> plan = plan_changes([("A", "B"), ("C",)], ["D", "E", "F"], ["B"], 2)
    >>> dict(plan.subscribe), dict(plan.unsubscribe), plan.new_shards
    ({0: ('D',), 1: ('E',)}, {0: ('B',)}, (('F',),))
    """
    gone = frozenset(delisted)
    sizes = [len(shard) for shard in shards]
    unsubscribe: dict[int, tuple[str, ...]] = {}
    carried: set[str] = set()
    for index, shard in enumerate(shards):
        removed = tuple(symbol for symbol in shard if symbol in gone)
        if removed:
            unsubscribe[index] = removed
            sizes[index] -= len(removed)
        carried.update(shard)
    subscribe: dict[int, list[str]] = {}
    overflow: list[str] = []
    for symbol in dict.fromkeys(listed):
        if symbol in carried and symbol not in gone:
            continue
        roomy = [index for index, size in enumerate(sizes) if size < max_streams]
        if not roomy:
            overflow.append(symbol)
            continue
        index = min(roomy, key=lambda candidate: (sizes[candidate], candidate))
        subscribe.setdefault(index, []).append(symbol)
        sizes[index] += 1
    new_shards = tuple(
        tuple(overflow[start : start + max_streams])
        for start in range(0, len(overflow), max_streams)
    )
    return ChangePlan(
        {index: tuple(symbols) for index, symbols in sorted(subscribe.items())},
        unsubscribe,
        new_shards,
    )


class ControlRateLimiter:
    """At most ``limit`` control messages in any window of ``window`` seconds.

    >>> limiter = ControlRateLimiter(limit=2, window=1.0)
    >>> [limiter.delay(0.0), limiter.sent(0.0), limiter.sent(0.1), limiter.delay(0.5)]
    [0.0, None, None, 0.5]
    >>> limiter.delay(1.0)
    0.0
    """

    def __init__(self, limit: int = MAX_CONTROL_PER_SECOND, window: float = 1.0) -> None:
        self._limit = limit
        self._window = window
        self._sent: deque[float] = deque()

    def delay(self, now: float) -> float:
        """Seconds to wait from ``now`` before the next message may go."""
        while self._sent and self._sent[0] <= now - self._window:
            self._sent.popleft()
        if len(self._sent) < self._limit:
            return 0.0
        return self._sent[0] + self._window - now

    def sent(self, now: float) -> None:
        """Note a message sent at ``now``."""
        self._sent.append(now)


def control_request(method: str, symbols: Sequence[str], request_id: int) -> str:
    """A ``SUBSCRIBE`` or ``UNSUBSCRIBE`` request for the symbols' miniTicker streams.

    >>> control_request("SUBSCRIBE", ["BTCUSDT"], 3)
    '{"method":"SUBSCRIBE","params":["btcusdt@miniTicker"],"id":3}'
    """
    params = [stream_name(symbol) for symbol in symbols]
    return json.dumps(
        {"method": method, "params": params, "id": request_id},
        separators=(",", ":"),
        ensure_ascii=False,
    )


@dataclass(frozen=True, slots=True)
class ControlReply:
    """The exchange's answer to one control request.

    Attributes:
        request_id: the id it answers.
        ok: ``{"result": null}``: the change is made.
        detail: the error (or unexpected result), for logs.
    """

    request_id: int
    ok: bool
    detail: str = ""


def parse_control_reply(data: str | bytes, pending: Iterable[int]) -> ControlReply | None:
    """The reply to one of the ``pending`` request ids that ``data`` is, if it is one.

    Never raises, whatever the frame holds; a data frame (no ``"id"``) is turned away before
    any parsing.

    >>> parse_control_reply('{"result":null,"id":4}', [4])
    ControlReply(request_id=4, ok=True, detail='')
    >>> parse_control_reply('{"error":{"code":2,"msg":"Invalid request"},"id":4}', [4]).ok
    False
    >>> parse_control_reply('{"result":null,"id":5}', [4]) is None
    True
    """
    message = small_reply_object(data)
    if message is None:
        return None
    reply_id = message.get("id")
    if type(reply_id) is not int or reply_id not in frozenset(pending):
        return None
    if "error" in message:
        return ControlReply(reply_id, ok=False, detail=repr(message["error"])[:200])
    if "result" not in message:
        return None
    result = message["result"]
    if result is not None:
        return ControlReply(reply_id, ok=False, detail=f"unexpected result {result!r}"[:200])
    return ControlReply(reply_id, ok=True)


def small_reply_object(data: str | bytes) -> dict[str, object] | None:
    """``data`` as a JSON object with an ``"id"``, if it is a small one; never raises.

    Market data frames carry no ``"id"``: most frames are turned away before any parsing.

    >>> small_reply_object('{"result":null,"id":1}'), small_reply_object(b"[[[")
    ({'result': None, 'id': 1}, None)
    """
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
    if len(raw) > MAX_REPLY_BYTES or b'"id"' not in raw:
        return None
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):
        # ValueError covers invalid JSON and invalid UTF-8 in a binary frame.
        return None
    return message if isinstance(message, dict) else None


@dataclass(frozen=True, slots=True)
class Step:
    """The next thing to do about one connection's streams.

    Attributes:
        method: ``SUBSCRIBE`` or ``UNSUBSCRIBE``; ``None`` for none.
        symbols: the symbols of the request.
        handover: give up on requests: replace the connection by one opened with the wanted
            streams.
    """

    method: str | None = None
    symbols: tuple[str, ...] = ()
    handover: bool = False


class StreamReconciler:
    """Brings a connection's streams to the wanted set, one checked request at a time.

    Removals go first (they make room within the stream limit). A request refused or not
    answered is sent again, up to :data:`MAX_ATTEMPTS` times for the same change; then a
    handover is asked for.

    >>> reconciler = StreamReconciler()
    >>> reconciler.next_step(("A", "B"), ("B", "C"))
    Step(method='UNSUBSCRIBE', symbols=('A',), handover=False)
    >>> reconciler.failed(); reconciler.failed(); reconciler.failed()
    >>> reconciler.next_step(("A", "B"), ("B", "C")).handover
    True
    """

    def __init__(self, max_attempts: int = MAX_ATTEMPTS) -> None:
        self._max_attempts = max_attempts
        self._failures = 0

    def next_step(self, carried: Sequence[str], wanted: Sequence[str]) -> Step:
        """What to do for a connection carrying ``carried`` that should carry ``wanted``."""
        keep = frozenset(wanted)
        have = frozenset(carried)
        remove = tuple(symbol for symbol in carried if symbol not in keep)
        add = tuple(symbol for symbol in wanted if symbol not in have)
        if not remove and not add:
            self._failures = 0
            return Step()
        if self._failures >= self._max_attempts:
            return Step(handover=True)
        if remove:
            return Step("UNSUBSCRIBE", remove)
        return Step("SUBSCRIBE", add)

    def succeeded(self) -> None:
        """The last request was made: the next change starts with a clean slate."""
        self._failures = 0

    def failed(self) -> None:
        """The last request was refused or not answered."""
        self._failures += 1

    def handed_over(self) -> None:
        """A fresh connection replaced the one the failures were about."""
        self._failures = 0
