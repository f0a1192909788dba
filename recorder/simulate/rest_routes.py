"""The REST endpoints on aiohttp: the sans-IO answers of :mod:`recorder.simulate.rest`, metered.

Every request is charged its weight against the per-minute limit; one over it is refused with
Binance's HTTP 429 and ``Retry-After``, and every answer reports the weight used this minute.
Every request is also counted by path, for ``/_sim/status`` (what a client's polling costs).
A request that an armed ``rest_fail`` fault takes gets the failing answer
:func:`~recorder.simulate.rest_faults.failed_answer` builds instead.
"""

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from aiohttp import web

from recorder.simulate.event_clock import EventClock
from recorder.simulate.exchange_info import exchange_info
from recorder.simulate.listings import ContractBook
from recorder.simulate.market import encode_json
from recorder.simulate.rest import (
    PING,
    USED_WEIGHT_HEADER,
    CandleBook,
    RestReply,
    WeightMeter,
    binance_error,
    klines,
    server_time,
    ticker_24hr,
)
from recorder.simulate.rest_faults import RestFaultGate, failed_answer


class RestRoutes:
    """Serves ``ping``, ``time``, ``exchangeInfo``, ``ticker/24hr`` and ``klines`` (``/fapi/v1``).

    Args:
        clock: the exchange's clock (the market and the server time).
        weights: the weight used this minute and its limit, shared by every REST endpoint.
        candles: the candles ``klines`` answers from.
        contracts: the listed contracts.
        faults: the REST requests ``rest_fail`` faults fail.
        requests: where every request is counted by path, refused ones too.
    """

    def __init__(
        self,
        clock: EventClock,
        weights: WeightMeter,
        candles: CandleBook,
        contracts: ContractBook,
        faults: RestFaultGate,
        *,
        requests: Counter[str],
    ) -> None:
        self._clock = clock
        self._weights = weights
        self._candles = candles
        self._contracts = contracts
        self._faults = faults
        self._requests = requests

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """Route the REST endpoints."""
        router.add_get("/fapi/v1/ping", self._metered(lambda _request: PING))
        router.add_get("/fapi/v1/time", self._metered(self._time))
        router.add_get("/fapi/v1/exchangeInfo", self._metered(self._exchange_info))
        router.add_get("/fapi/v1/ticker/24hr", self._metered(self._ticker))
        router.add_get("/fapi/v1/klines", self._metered(self._klines))

    def _metered(
        self, answer: Callable[[web.Request], RestReply]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            self._requests[request.path] += 1
            reply = answer(request)
            now = time.time()
            if not self._weights.spend(reply.weight, now):
                limit = self._weights.limit
                reply = binance_error(
                    -1003,
                    f"Too many requests; current limit of IP is {limit} requests per minute.",
                    status=429,
                    weight=0,
                )
                headers = {"Retry-After": str(WeightMeter.retry_after(now))}
            else:
                headers = {}
            headers[USED_WEIGHT_HEADER] = str(self._weights.used)
            fault = self._faults.take()
            if fault is None:
                return web.json_response(
                    reply.body, status=reply.status, headers=headers, dumps=encode_json
                )
            failed = failed_answer(fault, reply, encode_json(reply.body).encode())
            await asyncio.sleep(failed.delay)
            headers.update(failed.headers)
            if failed.raw is not None:
                return web.Response(
                    body=failed.raw,
                    status=failed.reply.status,
                    headers=headers,
                    content_type="application/json",
                )
            return web.json_response(
                failed.reply.body, status=failed.reply.status, headers=headers, dumps=encode_json
            )

        return handler

    def _time(self, _request: web.Request) -> RestReply:
        return server_time(self._clock.simulated_now_ms())

    def _exchange_info(self, _request: web.Request) -> RestReply:
        body = exchange_info(
            self._contracts.contracts(), self._clock.simulated_now_ms(), self._weights.limit
        )
        return RestReply(200, body, 1)

    def _ticker(self, request: web.Request) -> RestReply:
        listed = [contract.symbol for contract in self._contracts.contracts()]
        return ticker_24hr(self._clock.generator, listed, request.query)

    def _klines(self, request: web.Request) -> RestReply:
        return klines(self._candles, request.query)
