"""``rest_fail`` faults, sans-IO: which REST requests fail next, and the answer each one gets.

A ``rest_fail`` fault (see :mod:`recorder.simulate.faults`) arms :class:`RestFaultGate` for its
next ``*COUNT`` requests; :func:`failed_answer` turns the normal answer into the failing one:
an HTTP 500, 429 or 418 (with ``Retry-After`` when the fault gives one), a 200 whose body is
not JSON or is cut in the middle, an ``exchangeInfo`` that lists no contract, or the normal
answer held back.
"""

import math
from dataclasses import dataclass, field
from http import HTTPStatus

from recorder.simulate.countdown import Countdown
from recorder.simulate.faults import DEFAULT_SLOW_REST, Fault, RestFailure
from recorder.simulate.rest import RestReply, binance_error

_ERROR_REPLIES = {
    RestFailure.HTTP_500: (500, -1000, "An unknown error occurred."),
    RestFailure.HTTP_429: (429, -1003, "Too many requests."),
    RestFailure.HTTP_418: (418, -1003, "Way too many requests; IP banned."),
}
MALFORMED_BODY = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
"""What a ``malformed`` answer carries: the page a proxy in front of the exchange sends."""


@dataclass(frozen=True, slots=True)
class FailedAnswer:
    """A REST answer as a failing request gets it.

    Attributes:
        reply: the status and JSON body (used when ``raw`` is ``None``).
        raw: a body sent as is, instead of ``reply.body`` as JSON.
        headers: extra headers (``Retry-After``).
        delay: seconds to hold the answer back first.
    """

    reply: RestReply
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class RestFaultGate:
    """Counts down the REST requests ``rest_fail`` faults still have to fail, in order."""

    def __init__(self) -> None:
        self._faults: Countdown[Fault] = Countdown()

    def arm(self, fault: Fault) -> None:
        """Fail the next ``fault.count`` requests (after those already armed)."""
        self._faults.arm(fault, fault.count)

    def take(self) -> Fault | None:
        """Decide one request: ``None`` to answer it normally, else the fault it gets."""
        return self._faults.take()

    @property
    def pending(self) -> int:
        """How many requests will still fail."""
        return self._faults.pending


def failed_answer(fault: Fault, normal: RestReply, encoded: bytes) -> FailedAnswer:
    """The answer a request failed by ``fault`` gets instead of ``normal``.

    Args:
        fault: a ``rest_fail`` fault.
        normal: the answer the request would have had.
        encoded: ``normal.body`` as JSON bytes (``truncated`` cuts it).

    >>> from recorder.simulate.faults import FaultKind
    >>> fault = Fault(FaultKind.REST_FAIL, reply=RestFailure.HTTP_429, retry_after=2.5)
    >>> answer = failed_answer(fault, RestReply(200, {}, 1), b"{}")
    >>> answer.reply.status, answer.headers
    (429, {'Retry-After': '3'})
    """
    reply = fault.reply or RestFailure.HTTP_500
    error = _ERROR_REPLIES.get(reply)
    if error is not None:
        status, code, message = error
        headers: dict[str, str] = {}
        if fault.retry_after is not None and status != HTTPStatus.INTERNAL_SERVER_ERROR:
            headers["Retry-After"] = str(math.ceil(fault.retry_after))
        # Binance does not charge a refused request against the weight.
        weight = 1 if status == HTTPStatus.INTERNAL_SERVER_ERROR else 0
        return FailedAnswer(
            binance_error(code, message, status=status, weight=weight), headers=headers
        )
    if reply is RestFailure.MALFORMED:
        return FailedAnswer(normal, raw=MALFORMED_BODY)
    if reply is RestFailure.TRUNCATED:
        return FailedAnswer(normal, raw=encoded[: len(encoded) // 2])
    if reply is RestFailure.EMPTY:
        body = normal.body
        if isinstance(body, dict) and "symbols" in body:
            return FailedAnswer(RestReply(normal.status, {**body, "symbols": []}, normal.weight))
        return FailedAnswer(normal)
    return FailedAnswer(
        normal, delay=DEFAULT_SLOW_REST if fault.duration is None else fault.duration
    )
