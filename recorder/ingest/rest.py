"""The exchange's REST API over aiohttp: ``exchangeInfo`` and ``klines``, with typed errors.

Every failure is a :class:`~recorder.errors.RestError` (a ``ConnectionError``) with a short
``reason`` for logs and metrics: no connection or a cut answer (``connection``), no answer in
time (``timeout``), an HTTP error status (``http_<status>``), and Binance's refusals, HTTP 429
(``rate_limited``: the request weight of this minute is spent) and 418 (``banned``: the IP is
banned for ignoring 429s), as :class:`~recorder.errors.RateLimitedError` with the seconds of
``Retry-After``. A body that cannot be used is an :class:`~recorder.errors.ExchangeInfoError`
or a :class:`~recorder.errors.KlinesError`.
Each answer's ``X-MBX-USED-WEIGHT-1M`` (the weight used this minute) is kept in
:attr:`RestClient.used_weight`.
"""

import math
from http import HTTPStatus
from typing import Final

import aiohttp

from recorder.errors import ExchangeInfoError, KlinesError, RateLimitedError, RestError
from recorder.ingest.exchange_info import MAX_EXCHANGE_INFO_BYTES, ExchangeInfo, parse_exchange_info
from recorder.ingest.klines import MAX_KLINES, MAX_KLINES_BYTES, Candle, parse_klines

EXCHANGE_INFO_PATH: Final = "/fapi/v1/exchangeInfo"
KLINES_PATH: Final = "/fapi/v1/klines"
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
        body = await self._get(EXCHANGE_INFO_PATH, {}, MAX_EXCHANGE_INFO_BYTES)
        if body is None:
            msg = f"exchangeInfo answer over {MAX_EXCHANGE_INFO_BYTES} bytes"
            raise ExchangeInfoError(msg, "too_large")
        return parse_exchange_info(body)

    async def klines(self, symbol: str, start_ms: int, end_ms: int) -> list[Candle]:
        """Read the one-minute candles of ``symbol`` opening from ``start_ms`` to ``end_ms``.

        One request (``interval=1m``, ``limit`` the minutes asked for, at most
        :data:`~recorder.ingest.klines.MAX_KLINES`); candles outside the span are dropped.

        Raises:
            ValueError: the span is empty or longer than one request may ask.
            RestError: no connection, a timeout or an HTTP error status.
            RateLimitedError: HTTP 429 or 418, with ``Retry-After``.
            KlinesError: the body is too large or not rows of one-minute candles.
        """
        limit = (end_ms - start_ms) // 60_000 + 1
        if not 1 <= limit <= MAX_KLINES:
            raise ValueError(f"{limit} minutes asked for: expected 1 to {MAX_KLINES}")
        params = {
            "symbol": symbol,
            "interval": "1m",
            "startTime": str(start_ms),
            "endTime": str(end_ms),
            "limit": str(limit),
        }
        body = await self._get(KLINES_PATH, params, MAX_KLINES_BYTES)
        if body is None:
            raise KlinesError(f"klines answer over {MAX_KLINES_BYTES} bytes", "too_large")
        return [c for c in parse_klines(body) if start_ms <= c.open_time <= end_ms]

    async def _get(self, path: str, params: dict[str, str], limit: int) -> bytes | None:
        """The body of ``GET path?params``; ``None`` when it is over ``limit`` bytes."""
        url = self._base_url + path
        try:
            async with self._session.get(url, params=params, timeout=self._timeout) as response:
                self._note_weight(response.headers.get(USED_WEIGHT_HEADER))
                _check_status(url, response)
                return await _read_bounded(response, limit)
        except RestError:
            raise  # a ConnectionError, so an OSError: not to be caught below
        except TimeoutError:
            raise RestError(f"{url}: no answer within {self._timeout.total}s", "timeout") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise RestError(f"{url}: {type(exc).__name__}: {exc}", "connection") from None

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


async def _read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The body, read chunk by chunk; ``None`` one byte over ``limit``, never a big buffer."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
