"""The exchange's REST API over aiohttp: ``exchangeInfo``, with timeouts, limits and typed errors.

Every failure is a :class:`~recorder.errors.RestError` (a ``ConnectionError``) with a short
``reason`` for logs and metrics: no connection or a cut answer (``connection``), no answer in
time (``timeout``), an HTTP error status (``http_<status>``), and Binance's refusals, HTTP 429
(``rate_limited``: the request weight of this minute is spent) and 418 (``banned``: the IP is
banned for ignoring 429s), as :class:`~recorder.errors.RateLimitedError` with the seconds of
``Retry-After``. A body that cannot be used is an :class:`~recorder.errors.ExchangeInfoError`.
Each answer's ``X-MBX-USED-WEIGHT-1M`` (the weight used this minute) is kept in
:attr:`RestClient.used_weight`.
"""

import math
from http import HTTPStatus
from typing import Final

import aiohttp

from recorder.errors import ExchangeInfoError, RateLimitedError, RestError
from recorder.ingest.exchange_info import MAX_EXCHANGE_INFO_BYTES, ExchangeInfo, parse_exchange_info

EXCHANGE_INFO_PATH: Final = "/fapi/v1/exchangeInfo"
USED_WEIGHT_HEADER: Final = "X-MBX-USED-WEIGHT-1M"
_RATE_LIMIT_REASONS: Final = {429: "rate_limited", 418: "banned"}
_CHUNK: Final = 64 * 1024


def retry_after_seconds(value: str | None) -> float | None:
    """Read a ``Retry-After`` header in seconds; ``None`` when absent or not a number.

    Binance sends whole seconds; an HTTP date is not expected and is ignored.

    >>> retry_after_seconds("7"), retry_after_seconds(None), retry_after_seconds("soon")
    (7.0, None, None)
    """
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class RestClient:
    """Reads the exchange's REST endpoints.

    Args:
        session: the HTTP session.
        base_url: the REST base URL, such as ``https://fapi.binance.com``.
        timeout: seconds one request may take, answer included.
    """

    def __init__(self, session: aiohttp.ClientSession, base_url: str, *, timeout: float) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self.used_weight: int | None = None

    async def exchange_info(self) -> ExchangeInfo:
        """Read ``GET /fapi/v1/exchangeInfo`` and parse its contracts.

        Raises:
            RestError: no connection, a timeout or an HTTP error status.
            RateLimitedError: HTTP 429 or 418, with ``Retry-After``.
            ExchangeInfoError: the body is too large or not an ``exchangeInfo`` answer.
        """
        url = self._base_url + EXCHANGE_INFO_PATH
        try:
            async with self._session.get(url, timeout=self._timeout) as response:
                self._note_weight(response.headers.get(USED_WEIGHT_HEADER))
                _check_status(url, response)
                body = await _read_bounded(response, MAX_EXCHANGE_INFO_BYTES)
        except RestError:
            raise  # a ConnectionError, so an OSError: not to be caught below
        except TimeoutError:
            raise RestError(f"{url}: no answer within {self._timeout.total}s", "timeout") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise RestError(f"{url}: {type(exc).__name__}: {exc}", "connection") from None
        return parse_exchange_info(body)

    def _note_weight(self, header: str | None) -> None:
        if header is not None and header.strip().isdecimal():
            self.used_weight = int(header.strip())


def _check_status(url: str, response: aiohttp.ClientResponse) -> None:
    """Raise the error an HTTP status other than 200 means."""
    if response.status in _RATE_LIMIT_REASONS:
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        msg = f"{url}: HTTP {response.status}, Retry-After {retry_after}"
        raise RateLimitedError(msg, _RATE_LIMIT_REASONS[response.status], retry_after)
    if response.status != HTTPStatus.OK:
        msg = f"{url}: HTTP {response.status}"
        raise RestError(msg, f"http_{response.status}")


async def _read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, read chunk by chunk; one byte over ``limit`` is an error, not a big buffer."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > limit:
            msg = f"exchangeInfo answer over {limit} bytes"
            raise ExchangeInfoError(msg, "too_large")
        chunks.append(chunk)
    return b"".join(chunks)
