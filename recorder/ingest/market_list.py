"""``symbols = "all"``: the list of contracts to record, read from exchangeInfo and kept fresh.

:class:`MarketList` reads the first list at start, retrying with backoff while the exchange
cannot be reached (a stop still ends the wait at once: the caller cancels it), and refuses an
answer that lists no contract to record: :class:`~recorder.errors.NoContractsError`, which
says so. It then reads exchangeInfo again every ``refresh_interval`` and hands each change of
the list (contracts listed, contracts delisted or no longer ``TRADING``) to a callback. A
reading that fails (no connection, a timeout, an HTTP error, 429/418 whose ``Retry-After``
then delays the next reading, a malformed or cut answer, a list with no contract) keeps the
current list: it is counted, and logged once, then every :data:`FAILURE_LOG_EVERY` seconds
while the failures go on, and once when a reading works again.

The decisions are sans-IO: :func:`list_change` and :class:`FailureReport`.
"""

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

import aiohttp

from recorder.clock import Clock
from recorder.errors import ExchangeInfoError, NoContractsError, RateLimitedError, RestError
from recorder.ingest.connection import backoff_delay
from recorder.ingest.rest import RestClient
from recorder.ops.logs import get_logger
from recorder.ops.market_metrics import MarketListMetrics
from recorder.settings import SourceSettings

log = get_logger(__name__)

FAILURE_LOG_EVERY: Final = 600.0
"""Seconds between two log lines about the same run of failed readings."""

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ListChange:
    """How a new list differs from the recorded one.

    Attributes:
        listed: symbols to add, in the new list's order.
        delisted: symbols to remove, in the old list's order.
    """

    listed: tuple[str, ...]
    delisted: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.listed or self.delisted)


def list_change(current: Sequence[str], new: Sequence[str]) -> ListChange:
    """Compare the recorded list with a new one.

    >>> list_change(["BTCUSDT", "ETHUSDT"], ["ETHUSDT", "NEWUSDT"])
    ListChange(listed=('NEWUSDT',), delisted=('BTCUSDT',))
    """
    old, fresh = frozenset(current), frozenset(new)
    return ListChange(
        tuple(symbol for symbol in new if symbol not in old),
        tuple(symbol for symbol in current if symbol not in fresh),
    )


MASS_DELISTING_SHARE: Final = 0.1
"""A reading that drops more than this share of the recorded list at once is held..."""
MASS_DELISTING_MIN: Final = 10
"""...and more than this many contracts: Binance delists a few at a time, not a tenth."""


class DelistingCheck:
    """Holds a mass delisting until the next reading confirms it.

    A valid answer that lists only part of the market (a truncated list a proxy passed on, a
    hostile server) would otherwise unsubscribe most of the recording at once. A change that
    removes more than :data:`MASS_DELISTING_SHARE` of the recorded symbols and more than
    :data:`MASS_DELISTING_MIN` is applied without its delistings; the next reading that
    removes exactly the same symbols confirms them. Listings always apply at once.

    >>> check = DelistingCheck()
    >>> gone = tuple(f"S{n}" for n in range(20))
    >>> check.admit(ListChange(("NEW",), gone), recorded=100)
    ListChange(listed=('NEW',), delisted=())
    >>> check.admit(ListChange((), gone), recorded=99) == ListChange((), gone)
    True
    """

    def __init__(self) -> None:
        self._held: frozenset[str] | None = None

    def admit(self, change: ListChange, recorded: int) -> ListChange:
        """The part of ``change`` to apply now, against ``recorded`` symbols recorded."""
        gone = frozenset(change.delisted)
        bound = max(MASS_DELISTING_MIN, recorded * MASS_DELISTING_SHARE)
        if len(gone) <= bound or gone == self._held:
            self._held = None
            return change
        self._held = gone
        return ListChange(change.listed, ())


class FailureReport:
    """Decides which failed readings are logged: the first of a run, then one per interval.

    Args:
        every: seconds between two log lines of one run of failures.

    >>> report = FailureReport(every=600.0)
    >>> [report.failed(now) for now in (0.0, 60.0, 599.0, 600.0)]
    [True, False, False, True]
    >>> report.recovered(), report.recovered()
    (4, 0)
    """

    def __init__(self, every: float = FAILURE_LOG_EVERY) -> None:
        self._every = every
        self._failures = 0
        self._logged_at: float | None = None

    def failed(self, now: float) -> bool:
        """Count a failed reading at ``now`` (monotonic seconds); ``True`` to log it."""
        self._failures += 1
        if self._logged_at is None or now - self._logged_at >= self._every:
            self._logged_at = now
            return True
        return False

    def recovered(self) -> int:
        """End the run of failures: how many there were (0: nothing to report)."""
        failures, self._failures, self._logged_at = self._failures, 0, None
        return failures


def failure_reason(error: RestError | ExchangeInfoError) -> str:
    """The metric label of a failed reading: its reason, any HTTP status as ``http_error``."""
    reason = error.reason
    return "http_error" if reason.startswith("http_") else reason


class MarketList:
    """The contracts to record: exchangeInfo's ``TRADING`` ones of the recorded types.

    Args:
        client: reads exchangeInfo.
        contract_types: the recorded ``contractType`` values.
        refresh_interval: seconds between two readings while recording.
        backoff: the first and the largest delay between attempts at the first reading.
        clock: the injectable clock.
        metrics: where readings are counted.
        rng: randomness for backoff jitter.
        sleep: how to wait (``asyncio.sleep``; a test may pass a faster one).
    """

    def __init__(
        self,
        client: RestClient,
        contract_types: tuple[str, ...],
        *,
        refresh_interval: float,
        backoff: tuple[float, float],
        clock: Clock,
        metrics: MarketListMetrics,
        rng: random.Random,
        sleep: Sleep,
    ) -> None:
        self._client = client
        self._contract_types = contract_types
        self._refresh_interval = refresh_interval
        self._backoff = backoff
        self._clock = clock
        self._metrics = metrics
        self._rng = rng
        self._sleep = sleep
        self._report = FailureReport()
        self._delistings = DelistingCheck()

    async def read(self) -> tuple[str, ...]:
        """Read exchangeInfo once: the symbols to record, in its order.

        Raises:
            RestError: the request failed.
            ExchangeInfoError: the answer is unusable, or lists no contract to record
                (reason ``empty``).
        """
        info = await self._client.exchange_info()
        symbols = info.trading(self._contract_types)
        if not symbols:
            types = ", ".join(self._contract_types)
            msg = (
                f"exchangeInfo lists no TRADING contract of type {types} "
                f"({len(info.contracts)} contracts in all)"
            )
            raise ExchangeInfoError(msg, "empty")
        if info.skipped:
            log.warning("exchangeInfo entries skipped: not valid contracts", skipped=info.skipped)
        self._metrics.reading_ok(self._clock.wall_us() / 1_000_000)
        return symbols

    async def first(self) -> tuple[str, ...]:
        """The list to start with; retried with backoff until the exchange answers.

        Raises:
            NoContractsError: the exchange answered with no contract to record.
        """
        attempt = 0
        while True:
            try:
                symbols = await self.read()
            except ExchangeInfoError as exc:
                if exc.reason == "empty":
                    self._metrics.reading_failed(exc.reason)
                    raise NoContractsError(str(exc)) from None
                delay = self._failed(exc, attempt)
            except RestError as exc:
                delay = self._failed(exc, attempt)
            else:
                self._recovered()
                return symbols
            attempt += 1
            await self._sleep(delay)

    async def follow(
        self, current: tuple[str, ...], apply: Callable[[ListChange, tuple[str, ...]], None]
    ) -> None:
        """Read exchangeInfo every ``refresh_interval`` forever; call ``apply`` on a change.

        Args:
            current: the list recorded now.
            apply: called with the change and the new list whenever a reading differs.
        """
        delay = self._refresh_interval
        while True:
            await self._sleep(delay)
            delay = self._refresh_interval
            try:
                symbols = await self.read()
            except (RestError, ExchangeInfoError) as exc:
                delay = max(delay, self._failed(exc, None))
                continue
            self._recovered()
            change = list_change(current, symbols)
            admitted = self._delistings.admit(change, len(current))
            if admitted != change:
                self._metrics.delisting_held(len(change.delisted))
                log.warning(
                    "exchangeInfo dropped many contracts at once; they stay recorded until "
                    "the next reading confirms it",
                    delisted=len(change.delisted),
                    recorded=len(current),
                )
                symbols = current + admitted.listed
            if admitted:
                apply(admitted, symbols)
                current = symbols

    def _failed(self, error: RestError | ExchangeInfoError, attempt: int | None) -> float:
        """Count and maybe log a failed reading; the delay before the next attempt."""
        reason = failure_reason(error)
        self._metrics.reading_failed(reason)
        delay = 0.0 if attempt is None else backoff_delay(attempt, *self._backoff, self._rng)
        if isinstance(error, RateLimitedError) and error.retry_after is not None:
            delay = max(delay, error.retry_after)
        if self._report.failed(self._clock.monotonic()):
            log.warning(
                "exchangeInfo reading failed; the list of symbols is kept"
                if attempt is None
                else "exchangeInfo reading failed; retrying before recording starts",
                reason=reason,
                error=str(error),
                retry_in=round(delay, 3) if delay else None,
            )
        return delay

    def _recovered(self) -> None:
        failures = self._report.recovered()
        if failures:
            log.info("exchangeInfo readable again", failed_readings=failures)


@dataclass(frozen=True, slots=True)
class MarketListSource:
    """What :class:`MarketList` is built from, its HTTP session aside.

    Attributes:
        settings: source settings (``rest_url``, ``contract_types``, ``refresh_interval``,
            ``open_timeout`` for each request, ``backoff_*`` for the first reading).
        clock: the injectable clock.
        metrics: where readings are counted.
        rng: randomness for backoff jitter.
    """

    settings: SourceSettings
    clock: Clock
    metrics: MarketListMetrics
    rng: random.Random

    def market_list(self, session: aiohttp.ClientSession) -> MarketList:
        """The list, reading through ``session``."""
        settings = self.settings
        return MarketList(
            RestClient(session, settings.rest_url, timeout=settings.open_timeout),
            settings.contract_types,
            refresh_interval=settings.refresh_interval,
            backoff=(settings.backoff_initial, settings.backoff_max),
            clock=self.clock,
            metrics=self.metrics,
            rng=self.rng,
            sleep=asyncio.sleep,
        )

    async def read(self) -> tuple[str, ...]:
        """One reading, in a session of its own (see :meth:`MarketList.read`).

        Raises:
            RestError: the request failed.
            ExchangeInfoError: the answer is unusable or lists no contract to record.
        """
        async with aiohttp.ClientSession() as session:
            return await self.market_list(session).read()

    async def first(self) -> tuple[str, ...]:
        """The first list, in a session of its own (see :meth:`MarketList.first`)."""
        async with aiohttp.ClientSession() as session:
            return await self.market_list(session).first()

    async def follow(
        self, current: tuple[str, ...], apply: Callable[[ListChange, tuple[str, ...]], None]
    ) -> None:
        """Follow the list forever, in a session of its own (see :meth:`MarketList.follow`)."""
        async with aiohttp.ClientSession() as session:
            await self.market_list(session).follow(current, apply)
