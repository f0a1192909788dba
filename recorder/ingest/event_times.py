"""Plausible event times, sans-IO: an ``E`` from the network cannot move the recording's clock.

Every event's ``E`` is data from the network. One event ten years ahead, if accepted, would
land in a partition of that year, be logged as a gap of millions of missed updates, hide its
symbol's later gaps (older events are out of order for the detector), make the day-end rule
seal every partition on every tick and be persisted in the state file. An ``E`` far behind
(a year ago) would land in an old day's partition. So :class:`EventTimeGuard` judges each
event before the duplicate filter, the gap detector and storage see it.

The rule, with ``skew`` = ``[source] max_event_time_skew`` (one day by default):

* An event is **plausible** when its ``E`` is within ``skew`` of the local clock at arrival
  (``receive_time``), *or* within ``skew`` of the reference: the newest ``E`` accepted so far,
  of any symbol (the other symbols', or its own when that is the newest: a symbol whose
  companions went silent, or a recording of one symbol, still vouches for itself). The state
  restored at start counts as accepted. A plausible event is accepted at once.
* An event that is neither (a **suspect**) is held, not dropped: the local clock may be the
  one that is wrong (a host without a real-time clock boots in 1970), and the reference may
  be stale (everything was silent for longer than ``skew``). The next events decide:

  - a plausible event of any symbol: each held event within ``skew`` of it is accepted,
    the others are rejected (the exchange's own time contradicts them);
  - a suspect within ``skew`` of the held ones: held with them; once they come from two
    symbols, or number the quorum for one symbol (:func:`quorum_for`: a few when the
    recording has that one symbol only, which has no other witness; a minute of updates
    otherwise, so that a burst of one symbol cannot outvote the others), the exchange has
    vouched for them: all are accepted, and they become the reference;
  - a suspect far from the held ones: the held ones are rejected, and it is held instead.

So a wrong local clock never drops a real event: real events of different symbols agree with
each other, and a symbol's consecutive events (seconds apart, far less than the bound divided
by the quorum) agree with themselves. It only delays the first events after a start, until an
event of a second symbol (or the quorum of the only one) arrives; once accepted, they are the
reference.
One implausible event among real ones is rejected as soon as the next real event arrives.
What is still held when the recorder stops (fewer than the quorum, and only right after a
start with a wrong clock, or the last implausible one) is rejected by :meth:`EventTimeGuard.settle`:
nothing vouched for it. A rejected event goes to the quarantine, raw, with reason code
``implausible_event_time``.

Known limit: a server that sends a quorum of consecutive events of one symbol far ahead, with
no other event in between, is believed.

:func:`screen_restored` applies the same bound to the state persisted by earlier runs (an older
version may have persisted a far-future ``E``), and :class:`ClockOffsetAlarm` says when the
local clock is far enough from the exchange's ``E`` to log it.
"""

import enum
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from recorder.clock import US_PER_MS, format_utc_ms
from recorder.settings.units import format_duration

T = TypeVar("T")

DEFAULT_MAX_SKEW_MS: Final = 86_400_000
"""The default bound: one day, in milliseconds."""
SINGLE_SYMBOL_QUORUM: Final = 3
"""Agreeing suspects that vouch for themselves in a recording of one symbol (no other witness)."""
MULTI_SYMBOL_QUORUM: Final = 30
"""Agreeing suspects of one symbol, with no other symbol in between, that vouch for themselves
when other symbols are recorded: a minute of 2 s updates, far more than a burst of bad frames."""
REASON_CODE: Final = "implausible_event_time"
"""The quarantine reason code of a rejected event time."""

_CONTRADICTED: Final = "contradicted by a later event"

# Within what datetime renders; the decoder already refuses E outside 2017..2100.
_RENDERABLE_MS: Final = range(253_402_300_800_000)


@dataclass(frozen=True, slots=True)
class _Held(Generic[T]):
    """A suspect event waiting for a verdict."""

    symbol: str
    event_time: int
    local_ms: int
    item: T


def _show(epoch_ms: int) -> str:
    """Render ``epoch_ms`` for a reason: ISO-8601 when representable, else the number."""
    return format_utc_ms(epoch_ms) if epoch_ms in _RENDERABLE_MS else str(epoch_ms)


def implausible_reason(
    event_time: int, local_ms: int, reference_ms: int | None, max_skew_ms: int, why: str
) -> str:
    """Say why an event time was rejected, code first.

    >>> implausible_reason(1_900_000_000_000, 1_764_000_000_000, None, 60_000, "held")[:62]
    'implausible_event_time: E=2030-03-17T17:46:40.000Z is more tha'
    """
    reference = (
        "no other event vouches for it"
        if reference_ms is None
        else f"from the newest E accepted ({_show(reference_ms)})"
    )
    return (
        f"{REASON_CODE}: E={_show(event_time)} is more than {format_duration(max_skew_ms / 1000)} "
        "from the "
        f"local clock ({_show(local_ms)}) and {reference}; {why}"
    )


class EventTimeGuard(Generic[T]):
    """Accepts or rejects each event by its ``E``; see the module documentation for the rule.

    Sans-IO and generic: each event comes with an ``item`` (the pipeline passes the event and
    its frame) that is handed back with the verdict, possibly after later events.

    Args:
        max_skew_ms: the bound, in milliseconds; positive.
        restored: the newest ``E`` per symbol persisted by earlier runs, already screened
            (:func:`screen_restored`); they count as accepted.
        quorum: agreeing suspects of one symbol that are accepted without another symbol
            (:func:`quorum_for`).

    Raises:
        ValueError: ``max_skew_ms`` or ``quorum`` is not positive.
    """

    def __init__(
        self,
        max_skew_ms: int = DEFAULT_MAX_SKEW_MS,
        restored: Mapping[str, int] | None = None,
        quorum: int = MULTI_SYMBOL_QUORUM,
    ) -> None:
        if max_skew_ms <= 0 or quorum <= 0:
            raise ValueError(f"max_skew_ms and quorum must be positive: {max_skew_ms}, {quorum}")
        self._skew = max_skew_ms
        self._quorum = quorum
        self._newest: int | None = None
        self._held: list[_Held[T]] = []
        self.clock_offset_ms: int | None = None
        """Local clock minus ``E`` of the latest accepted event: how far this host's clock is
        ahead of the exchange's (plus the network's latency); ``None`` before the first."""
        for event_time in (restored or {}).values():
            self._note(event_time)

    @property
    def max_skew_ms(self) -> int:
        """The bound, in milliseconds."""
        return self._skew

    @property
    def held(self) -> int:
        """How many suspect events wait for a verdict."""
        return len(self._held)

    @property
    def reference_ms(self) -> int | None:
        """The newest ``E`` accepted (or restored) so far, of any symbol; ``None`` before any."""
        return self._newest

    def accept_plausible(self, event_time: int, receive_time_us: int) -> bool:
        """Accept a plausible ``E`` at once, when no suspect is held: nearly every event.

        ``False`` leaves everything as it was: the caller then calls :meth:`admit`, which
        decides this event with whatever is held. The hot path's shortcut: no item, no list.
        """
        if self._held:
            return False
        local_ms = receive_time_us // US_PER_MS
        if not self._plausible(event_time, local_ms):
            return False
        self._accept(event_time, local_ms)
        return True

    def admit(
        self, symbol: str, event_time: int, receive_time_us: int, item: T
    ) -> list[tuple[T, str | None]]:
        """Judge one event; return every item decided now, in arrival order.

        Args:
            symbol: the event's symbol.
            event_time: its ``E``, milliseconds since the epoch.
            receive_time_us: the local wall clock at arrival, microseconds since the epoch.
            item: handed back with the verdict.

        Returns:
            ``(item, None)`` for each accepted item, ``(item, reason)`` for each rejected one;
            held events decided by this one come first; empty when this one is held.
        """
        local_ms = receive_time_us // US_PER_MS
        skew = self._skew
        if self._plausible(event_time, local_ms):
            decided = self._decide_held(event_time) if self._held else []
            self._accept(event_time, local_ms)
            decided.append((item, None))
            return decided
        held = self._held
        suspect = _Held(symbol, event_time, local_ms, item)
        if held and abs(event_time - held[0].event_time) > skew:
            rejected: list[tuple[T, str | None]] = [*self._reject_held(_CONTRADICTED)]
            self._held.append(suspect)
            return rejected
        held.append(suspect)
        symbols = {waiting.symbol for waiting in held}
        if len(symbols) < 2 and len(held) < self._quorum:
            return []
        self._held = []
        for waiting in held:
            self._accept(waiting.event_time, waiting.local_ms)
        return [(waiting.item, None) for waiting in held]

    def settle(self) -> list[tuple[T, str]]:
        """Reject what is still held (the recorder stops: nothing vouched for it)."""
        return self._reject_held("nothing vouched for it before the recorder stopped")

    def _decide_held(self, plausible_ms: int) -> list[tuple[T, str | None]]:
        held, self._held = self._held, []
        decided: list[tuple[T, str | None]] = []
        for waiting in held:
            if abs(waiting.event_time - plausible_ms) <= self._skew:
                self._accept(waiting.event_time, waiting.local_ms)
                decided.append((waiting.item, None))
            else:
                decided.append((waiting.item, self._reason(waiting, _CONTRADICTED)))
        return decided

    def _reject_held(self, why: str) -> list[tuple[T, str]]:
        held, self._held = self._held, []
        return [(waiting.item, self._reason(waiting, why)) for waiting in held]

    def _reason(self, waiting: _Held[T], why: str) -> str:
        return implausible_reason(
            waiting.event_time, waiting.local_ms, self._newest, self._skew, why
        )

    def _plausible(self, event_time: int, local_ms: int) -> bool:
        """Within the skew of the local clock, or of the newest ``E`` accepted."""
        skew, newest = self._skew, self._newest
        return abs(event_time - local_ms) <= skew or (
            newest is not None and abs(event_time - newest) <= skew
        )

    def _accept(self, event_time: int, local_ms: int) -> None:
        self.clock_offset_ms = local_ms - event_time
        self._note(event_time)

    def _note(self, event_time: int) -> None:
        if self._newest is None or event_time > self._newest:
            self._newest = event_time


def quorum_for(subscribed: int) -> int:
    """The quorum for a recording of ``subscribed`` symbols.

    >>> quorum_for(1), quorum_for(200)
    (3, 30)
    """
    return SINGLE_SYMBOL_QUORUM if subscribed <= 1 else MULTI_SYMBOL_QUORUM


def screen_restored(
    restored: Mapping[str, int], now_ms: int, max_skew_ms: int = DEFAULT_MAX_SKEW_MS
) -> tuple[dict[str, int], dict[str, int]]:
    """Split persisted newest ``E`` per symbol into the plausible ones and the far-future ones.

    A state written by an older version may hold an ``E`` years ahead; restored, it would
    hide that symbol's gaps and be written back forever. An ``E`` is dropped when it is more
    than ``max_skew_ms`` ahead of the local clock *and* of the median of the other symbols'
    (or there is no other symbol). Old ones are kept: a recorder stopped for a week restores
    week-old times, and its first events close ``restart`` gaps.

    Returns:
        ``(kept, dropped)``.

    >>> screen_restored({"A": 1_000, "B": 2_000, "C": 10**12}, now_ms=3_000, max_skew_ms=500)
    ({'A': 1000, 'B': 2000}, {'C': 1000000000000})
    """
    kept: dict[str, int] = {}
    dropped: dict[str, int] = {}
    for symbol, event_time in restored.items():
        others = [other for name, other in restored.items() if name != symbol]
        ahead_of_clock = event_time - now_ms > max_skew_ms
        if ahead_of_clock and (not others or event_time - statistics.median(others) > max_skew_ms):
            dropped[symbol] = event_time
        else:
            kept[symbol] = event_time
    return kept, dropped


class ClockOffsetChange(enum.StrEnum):
    """What a :class:`ClockOffsetAlarm` has to say."""

    FAR = "far"
    """The local clock is (still) further than the threshold from the exchange's ``E``."""
    BACK = "back"
    """It is back within the threshold."""


class ClockOffsetAlarm:
    """Decides when the local clock's offset from the exchange's ``E`` is worth a log line.

    Once when the offset first exceeds ``threshold_ms`` (either way), then at most once per
    ``every_s`` while it stays beyond, and once when it is back within.

    Args:
        threshold_ms: the offset that is worth a warning.
        every_s: seconds between two warnings of a lasting offset (monotonic clock).
    """

    def __init__(self, threshold_ms: int = 60_000, every_s: float = 3600.0) -> None:
        self.threshold_ms = threshold_ms
        self._every_s = every_s
        self._warned_at: float | None = None

    def observe(self, offset_ms: int | None, now_s: float) -> ClockOffsetChange | None:
        """Return what to log now, if anything.

        Args:
            offset_ms: local clock minus the exchange's ``E``; ``None`` when unknown.
            now_s: monotonic seconds now.
        """
        if offset_ms is None:
            return None
        if abs(offset_ms) <= self.threshold_ms:
            if self._warned_at is None:
                return None
            self._warned_at = None
            return ClockOffsetChange.BACK
        if self._warned_at is not None and now_s - self._warned_at < self._every_s:
            return None
        self._warned_at = now_s
        return ClockOffsetChange.FAR
