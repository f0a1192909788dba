"""Time: the clocks (monotonic for scheduling, wall clock only for ``receive_time``) and UTC.

Everything that schedules (flush ticks, watchdogs, backoff, file age) reads ``monotonic()`` so
that a wall-clock step (NTP, a VM resume) never fires or suppresses a timer. Tests pass a
:class:`ManualClock` and move time by hand.
"""

import datetime as dt
import time
from typing import Protocol


class Clock(Protocol):
    """What the recorder needs to know about time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards; only differences are meaningful."""
        ...

    def wall_us(self) -> int:
        """Microseconds since the Unix epoch, UTC, from the system's wall clock."""
        ...


class SystemClock:
    """The real clocks of this machine."""

    def monotonic(self) -> float:
        """Return :func:`time.monotonic`."""
        return time.monotonic()

    def wall_us(self) -> int:
        """Return :func:`time.time_ns` in microseconds."""
        return time.time_ns() // 1000


class ManualClock:
    """A clock that moves only when told to; for tests of time-driven logic.

    Args:
        monotonic: the starting monotonic reading, in seconds.
        wall_us: the starting wall-clock reading, in microseconds since the epoch.
    """

    def __init__(self, monotonic: float = 0.0, wall_us: int = 1_700_000_000_000_000) -> None:
        self._monotonic = monotonic
        self._wall_us = wall_us

    def monotonic(self) -> float:
        """Return the current manual monotonic reading."""
        return self._monotonic

    def wall_us(self) -> int:
        """Return the current manual wall-clock reading."""
        return self._wall_us

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds``."""
        self._monotonic += seconds
        self._wall_us += round(seconds * 1_000_000)


# -- UTC instants as the dataset writes them ------------------------------------------------

MS_PER_DAY = 86_400_000
"""Milliseconds in a UTC day (no leap seconds in epoch time)."""
US_PER_MS = 1000
"""Microseconds in a millisecond: wall-clock readings are µs, event times ms."""

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_ORDINAL = _EPOCH.date().toordinal()
_ONE_US = dt.timedelta(microseconds=1)


def event_day(event_time_ms: int) -> int:
    """Return the UTC day of an event time, in days since 1970-01-01 (Arrow's ``date32``).

    >>> event_day(86_399_999), event_day(86_400_000)
    (0, 1)
    """
    return event_time_ms // MS_PER_DAY


def event_date(event_time_ms: int) -> dt.date:
    """Return the UTC calendar date of an event time in milliseconds since the epoch.

    >>> event_date(1654791723970)
    datetime.date(2022, 6, 9)
    """
    return dt.date.fromordinal(_EPOCH_ORDINAL + event_day(event_time_ms))


def day_start_ms(date: dt.date) -> int:
    """Return midnight UTC at the start of ``date``, in milliseconds since the epoch.

    >>> day_start_ms(dt.date(1970, 1, 2))
    86400000
    """
    return (date.toordinal() - _EPOCH_ORDINAL) * MS_PER_DAY


def format_utc_ms(epoch_ms: int) -> str:
    """Render milliseconds since the epoch as ISO-8601 UTC with milliseconds.

    >>> format_utc_ms(1714557600123)
    '2024-05-01T10:00:00.123Z'
    """
    moment = _EPOCH + dt.timedelta(milliseconds=epoch_ms)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def format_utc_us(epoch_us: int) -> str:
    """Render microseconds since the epoch as ISO-8601 UTC with microseconds.

    >>> format_utc_us(1714557600123456)
    '2024-05-01T10:00:00.123456Z'
    """
    moment = _EPOCH + dt.timedelta(microseconds=epoch_us)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}Z"


def parse_utc_us(text: str) -> int:
    """Parse an ISO-8601 timestamp into microseconds since the epoch; naive means UTC.

    Raises:
        ValueError: ``text`` is not an ISO-8601 date or timestamp.

    >>> parse_utc_us("2024-05-01T10:00:00.123456Z")
    1714557600123456
    >>> parse_utc_us("2024-05-01T12:00:00+02:00") == parse_utc_us("2024-05-01T10:00:00")
    True
    """
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return (moment - _EPOCH) // _ONE_US
