"""The ``/_sim/*`` control endpoints: the ground truth and the fault switch, over HTTP.

For a test or a demo that runs the exchange in another process (``recorder simulate``):

* ``GET /_sim/events?symbol=&connection=``: generated events and where they went;
* ``GET /_sim/connections``: the open connections;
* ``GET /_sim/faults``: the faults that fired; ``POST /_sim/faults``: inject faults (a body
  :func:`~recorder.simulate.faults.fault_from_json` reads), answered 202;
* ``GET /_sim/status``: the clock, the symbols, the refusals still pending, the connections
  open and ever opened, and the REST requests received by path;
* ``GET /_sim/listings``: the listed contracts; ``POST /_sim/listings`` with
  ``{"symbol": "NEWUSDT", "status": "PENDING_TRADING"}`` lists a contract or moves a listed one
  to ``PENDING_TRADING``, ``TRADING`` or ``SETTLING``, and ``"status": "DELISTED"`` removes it,
  effective at once (answered 200 with the contract, ``null`` once delisted).
"""

import json
from collections.abc import Mapping

from aiohttp import web

from recorder.errors import ConfigError
from recorder.simulate.config import SimulatorConfig
from recorder.simulate.connections import ConnectionTable
from recorder.simulate.event_clock import EventClock
from recorder.simulate.faults import fault_from_json
from recorder.simulate.injector import FaultInjector
from recorder.simulate.ledger import EventLedger
from recorder.simulate.listings import ContractBook
from recorder.simulate.market import encode_json


class ControlRoutes:
    """Serves ``/_sim/*`` from the exchange's parts.

    Args:
        config: the exchange's settings (for the status).
        clock: the exchange's clock.
        ledger: the ground truth.
        connections: the open connections.
        injector: fires injected faults and keeps their record.
        contracts: the listed contracts.
        rest_requests: the REST requests received so far, by path.
    """

    def __init__(
        self,
        config: SimulatorConfig,
        clock: EventClock,
        ledger: EventLedger,
        connections: ConnectionTable,
        injector: FaultInjector,
        *,
        contracts: ContractBook,
        rest_requests: Mapping[str, int],
    ) -> None:
        self._config = config
        self._clock = clock
        self._ledger = ledger
        self._connections = connections
        self._injector = injector
        self._contracts = contracts
        self._rest_requests = rest_requests

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """Route the ``/_sim/*`` endpoints."""
        router.add_get("/_sim/events", self._events)
        router.add_get("/_sim/connections", self._connection_list)
        router.add_get("/_sim/faults", self._fault_log)
        router.add_post("/_sim/faults", self._inject)
        router.add_get("/_sim/status", self._status)
        router.add_get("/_sim/listings", self._listings)
        router.add_post("/_sim/listings", self._change_listing)

    async def _events(self, request: web.Request) -> web.Response:
        query = request.query
        records = self._ledger.events(query.get("symbol"), query.get("connection"))
        body = {
            "start_ms": self._clock.start_ms,
            "recorded": self._ledger.recorded,
            "forgotten": self._ledger.forgotten,
            "events": [record.to_json() for record in records],
        }
        return web.json_response(body, dumps=encode_json)

    async def _connection_list(self, _request: web.Request) -> web.Response:
        infos = self._connections.infos(self._clock.monotonic())
        body = {"connections": [info.to_json() for info in infos]}
        return web.json_response(body, dumps=encode_json)

    async def _fault_log(self, _request: web.Request) -> web.Response:
        body = {"faults": [record.to_json() for record in self._injector.records()]}
        return web.json_response(body, dumps=encode_json)

    async def _inject(self, request: web.Request) -> web.Response:
        try:
            faults = fault_from_json(json.loads(await request.text()))
        except json.JSONDecodeError as exc:
            return web.json_response({"error": f"body is not JSON: {exc}"}, status=400)
        except ConfigError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        for fault in faults:
            self._injector.inject(fault)
        body = {"accepted": [fault.to_json() for fault in faults]}
        return web.json_response(body, status=202, dumps=encode_json)

    async def _status(self, _request: web.Request) -> web.Response:
        body = {
            "start_ms": self._clock.start_ms,
            "simulated_now_ms": self._clock.simulated_now_ms(),
            "ticks": self._clock.ticks,
            "interval_ms": self._config.interval_ms,
            "speed": self._config.speed,
            "symbols": list(self._config.symbols),
            "refusals_pending": self._injector.refusals_pending,
            "connections_open": len(self._connections),
            "connections_opened": self._connections.opened,
            "rest_requests": dict(sorted(self._rest_requests.items())),
        }
        return web.json_response(body, dumps=encode_json)

    async def _listings(self, _request: web.Request) -> web.Response:
        body = {"contracts": [contract.to_json() for contract in self._contracts.contracts()]}
        return web.json_response(body, dumps=encode_json)

    async def _change_listing(self, request: web.Request) -> web.Response:
        try:
            change = json.loads(await request.text())
        except json.JSONDecodeError as exc:
            return web.json_response({"error": f"body is not JSON: {exc}"}, status=400)
        symbol = change.get("symbol") if isinstance(change, dict) else None
        status = change.get("status") if isinstance(change, dict) else None
        if not isinstance(symbol, str) or not isinstance(status, str):
            error = 'expected {"symbol": "...", "status": "..."}'
            return web.json_response({"error": error}, status=400)
        try:
            contract = self._contracts.change(symbol, status, self._clock.simulated_now_ms())
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        body = {"contract": None if contract is None else contract.to_json()}
        return web.json_response(body, dumps=encode_json)
