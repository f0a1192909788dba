"""Binance's websocket market-stream protocol, sans-IO: paths, stream names, methods, frames.

Everything here is a plain function or a small state class; the aiohttp server only moves bytes
in and out. The rules the server enforces over time on a connection (pings, lifetime, message
rate) are in :mod:`recorder.simulate.liveness`.

Requests and replies follow Binance's documentation of live subscribing::

    {"method": "SUBSCRIBE", "params": ["btcusdt@miniTicker"], "id": 1} -> {"result": null, "id": 1}
    {"method": "LIST_SUBSCRIPTIONS", "id": "a1"} -> {"result": ["btcusdt@miniTicker"], "id": "a1"}

and errors are ``{"error": {"code": N, "msg": "..."}, "id": ...}`` with Binance's codes: 0 unknown
property, 1 invalid value type, 2 invalid request, 3 invalid JSON. A request id is an unsigned
64-bit integer or any string (Binance's own SDKs send UUID strings); it comes back exactly as sent,
a string as a string.
"""

import json
from dataclasses import dataclass

from recorder.simulate.market import encode_json
from recorder.symbols import ALL_MARKET_STREAM, STREAM_SUFFIX

ROUTED_PREFIX = "/market"
"""Since 2026-04-23 Binance serves market streams only under this path."""
OTHER_PREFIXES = ("/public", "/private")
"""Binance's other routed paths (book tickers and depth; user data): no miniTicker there.

Binance's SDKs open one connection on each; the simulator accepts them and delivers nothing."""

RequestId = int | str
"""A client's request ``id``: an unsigned 64-bit integer or a string, echoed as it came."""
MAX_INTEGER_ID = 2**64 - 1
"""Binance reads integer ids as unsigned 64-bit numbers; a larger one is refused."""

METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
COMBINED_PROPERTY = "combined"

UNKNOWN_PROPERTY = 0
INVALID_VALUE_TYPE = 1
INVALID_REQUEST = 2
INVALID_JSON = 3


@dataclass(frozen=True, slots=True)
class Route:
    """What a websocket URL asks for.

    Attributes:
        path: the request path as received (decoded).
        routed: under ``/market``; an unrouted connection accepts everything, delivers nothing.
        combined: frames wrapped as ``{"stream": ..., "data": ...}`` (``/stream``) or raw (``/ws``).
        streams: the streams named in the URL, first occurrence order, without duplicates.
    """

    path: str
    routed: bool
    combined: bool
    streams: tuple[str, ...]


def route_request(path: str, streams_query: str | None) -> Route | None:
    """Tell what a websocket request path and its ``streams`` query parameter ask for.

    ``/market/stream?streams=a/b`` is combined, ``/market/ws/a/b`` is raw, ``/market/ws`` and
    ``/market/stream`` start empty; the same without ``/market`` are the old unrouted paths, and
    under ``/public`` or ``/private`` paths of other streams: neither is ``routed``.

    >>> route = route_request("/market/ws/btcusdt@miniTicker", None)
    >>> route.routed, route.combined, route.streams
    (True, False, ('btcusdt@miniTicker',))
    >>> route_request("/stream", "a@miniTicker/a@miniTicker").streams
    ('a@miniTicker',)
    >>> route_request("/public/stream", "a@miniTicker").routed
    False
    >>> route_request("/api/v3", None) is None
    True

    Args:
        path: the decoded request path.
        streams_query: the decoded ``streams`` query parameter, if any.

    Returns:
        The route, or ``None`` when the path is not a market-stream path.
    """
    routed = path == ROUTED_PREFIX or path.startswith(ROUTED_PREFIX + "/")
    rest = path[len(ROUTED_PREFIX) :] if routed else path
    for prefix in OTHER_PREFIXES:
        if not routed and rest.startswith(prefix + "/"):
            rest = rest[len(prefix) :]
    if rest == "/stream":
        names = streams_query.split("/") if streams_query else []
        return Route(path, routed, combined=True, streams=_unique(names))
    if rest == "/ws" or rest.startswith("/ws/"):
        names = rest[len("/ws/") :].split("/") if rest.startswith("/ws/") else []
        return Route(path, routed, combined=False, streams=_unique(names))
    return None


def _unique(names: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name for name in names if name))


def stream_symbol(stream: str) -> str | None:
    """Return the symbol a ``<symbol>@miniTicker`` stream carries, or ``None`` for any other.

    The symbol part must be lower-case, as Binance's stream names are; the symbol is its
    upper-case form.

    >>> stream_symbol("币安人生usdt@miniTicker"), stream_symbol("btcusdt_260327@miniTicker")
    ('币安人生USDT', 'BTCUSDT_260327')
    >>> stream_symbol("BTCUSDT@miniTicker"), stream_symbol("btcusdt@aggTrade")
    (None, None)
    """
    if not stream.endswith(STREAM_SUFFIX):
        return None
    lower = stream[: -len(STREAM_SUFFIX)]
    if not lower or lower != lower.lower():
        return None
    return lower.upper()


@dataclass(frozen=True, slots=True)
class MethodCall:
    """A well-formed client request.

    Attributes:
        method: one of :data:`METHODS`.
        params: the ``params`` array (empty when absent).
        request_id: the client's ``id``, as sent.
    """

    method: str
    params: tuple[object, ...]
    request_id: RequestId


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """A request Binance would answer with an error.

    Attributes:
        code: 0 unknown property, 1 invalid value type, 2 invalid request, 3 invalid JSON.
        msg: the message, worded as Binance words it.
        request_id: the request's ``id`` when it could be read, else ``None``.
    """

    code: int
    msg: str
    request_id: RequestId | None = None


def request_id_of(value: object) -> RequestId | None:
    """Return ``value`` if it is an id Binance accepts, else ``None``.

    >>> request_id_of(7), request_id_of("1c9e-ab"), request_id_of(""), request_id_of(-1)
    (7, '1c9e-ab', '', None)
    >>> request_id_of(True), request_id_of(1.0), request_id_of(None), request_id_of(2**64)
    (None, None, None, None)
    """
    if isinstance(value, str):
        return value
    # bool is an int in Python but not an unsigned integer in JSON.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_INTEGER_ID:
        return value
    return None


def parse_method_call(text: str) -> MethodCall | ProtocolError:  # noqa: PLR0911 - one per error
    """Parse one client message into a request, or the error Binance would reply with.

    Args:
        text: the text frame as received.

    Returns:
        The request, or the error to send back.
    """
    try:
        message = json.loads(text)
    except json.JSONDecodeError as exc:
        return ProtocolError(
            INVALID_JSON, f"Invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        )
    if not isinstance(message, dict):
        kind = type(message).__name__
        return ProtocolError(
            INVALID_REQUEST, f"Invalid request: invalid type: {kind}, expected map"
        )
    request_id = request_id_of(message.get("id"))
    method = message.get("method")
    if method is None:
        return ProtocolError(
            INVALID_REQUEST,
            f"Invalid request: missing field `method` at line 1 column {len(text)}",
            request_id,
        )
    if method not in METHODS:
        expected = ", ".join(f"`{name}`" for name in METHODS)
        return ProtocolError(
            INVALID_REQUEST,
            f"Invalid request: unknown variant `{method}`, expected one of {expected}",
            request_id,
        )
    if request_id is None:
        return ProtocolError(
            INVALID_REQUEST, "Invalid request: request ID must be an unsigned integer"
        )
    params = message.get("params", [])
    if not isinstance(params, list):
        return ProtocolError(
            INVALID_REQUEST,
            "Invalid request: invalid type: params, expected a sequence",
            request_id,
        )
    return MethodCall(method, tuple(params), request_id)


def request_method(text: str) -> str:
    """Name the method of one client message, ``invalid`` when it is no well-formed request.

    >>> request_method('{"method":"SUBSCRIBE","params":["btcusdt@miniTicker"],"id":1}')
    'SUBSCRIBE'
    >>> request_method('{"method":"SUBSCRIBE"}'), request_method("nope")
    ('invalid', 'invalid')
    """
    call = parse_method_call(text)
    return "invalid" if isinstance(call, ProtocolError) else call.method


def result_reply(result: object, request_id: RequestId) -> str:
    """Build Binance's success reply ``{"result": ..., "id": ...}``."""
    return encode_json({"result": result, "id": request_id})


def error_reply(error: ProtocolError) -> str:
    """Build Binance's error reply ``{"error": {"code": N, "msg": "..."}, "id": ...}``."""
    return encode_json({"error": {"code": error.code, "msg": error.msg}, "id": error.request_id})


class StreamSession:
    """One connection's subscriptions and framing, and its answers to client requests.

    Args:
        route: what the URL asked for; its streams are the initial subscriptions.
        max_streams: the most streams the connection may carry.

    Raises:
        ValueError: the URL names more than ``max_streams`` streams.
    """

    def __init__(self, route: Route, max_streams: int) -> None:
        if len(route.streams) > max_streams:
            raise ValueError(
                f"{len(route.streams)} streams requested; at most {max_streams} per connection"
            )
        self.route = route
        self.max_streams = max_streams
        self.combined = route.combined
        self._streams: dict[str, None] = dict.fromkeys(route.streams)

    @property
    def streams(self) -> tuple[str, ...]:
        """The subscribed streams, in subscription order."""
        return tuple(self._streams)

    @property
    def symbols(self) -> frozenset[str]:
        """The symbols whose own ``@miniTicker`` stream is subscribed."""
        return frozenset(
            symbol for symbol in map(stream_symbol, self._streams) if symbol is not None
        )

    @property
    def all_market(self) -> bool:
        """Whether ``!miniTicker@arr`` is subscribed."""
        return ALL_MARKET_STREAM in self._streams

    def handle(self, text: str) -> str:
        """Apply one client message and return the reply to send."""
        call = parse_method_call(text)
        if isinstance(call, ProtocolError):
            return error_reply(call)
        outcome = self._apply(call)
        if isinstance(outcome, ProtocolError):
            return error_reply(outcome)
        return result_reply(outcome, call.request_id)

    def _apply(self, call: MethodCall) -> object:
        if call.method in {"SUBSCRIBE", "UNSUBSCRIBE"}:
            names = self._stream_params(call)
            if isinstance(names, ProtocolError):
                return names
            if call.method == "UNSUBSCRIBE":
                for name in names:
                    self._streams.pop(name, None)
                return None
            added = [name for name in dict.fromkeys(names) if name not in self._streams]
            if len(self._streams) + len(added) > self.max_streams:
                return ProtocolError(
                    INVALID_REQUEST,
                    f"Invalid request: too many streams: {len(self._streams) + len(added)}"
                    f" exceeds the limit of {self.max_streams} per connection",
                    call.request_id,
                )
            self._streams.update(dict.fromkeys(added))
            return None
        if call.method == "LIST_SUBSCRIPTIONS":
            return list(self._streams)
        return self._property(call)

    @staticmethod
    def _stream_params(call: MethodCall) -> list[str] | ProtocolError:
        names = []
        for param in call.params:
            if not isinstance(param, str):
                return ProtocolError(
                    INVALID_REQUEST,
                    f"Invalid request: invalid type: {json.dumps(param)}, expected a stream name",
                    call.request_id,
                )
            names.append(param)
        return names

    def _property(self, call: MethodCall) -> object:
        expected = 2 if call.method == "SET_PROPERTY" else 1
        if len(call.params) > expected:
            return ProtocolError(
                INVALID_REQUEST, "Invalid request: too many parameters", call.request_id
            )
        name = call.params[0] if call.params else None
        if not isinstance(name, str):
            return ProtocolError(
                INVALID_REQUEST, "Invalid request: property name must be a string", call.request_id
            )
        if name != COMBINED_PROPERTY:
            return ProtocolError(UNKNOWN_PROPERTY, "Unknown property", call.request_id)
        if call.method == "GET_PROPERTY":
            return self.combined
        value = call.params[1] if len(call.params) > 1 else None
        if not isinstance(value, bool):
            return ProtocolError(
                INVALID_VALUE_TYPE, "Invalid value type: expected Boolean", call.request_id
            )
        self.combined = value
        return None

    def frame(self, stream: str, data_json: str) -> str:
        """Frame one stream's data as this connection wants it: wrapped or raw."""
        if self.combined:
            return f'{{"stream":{encode_json(stream)},"data":{data_json}}}'
        return data_json


def array_json(items_json: list[str]) -> str:
    """Join already-serialised payloads into the JSON array of ``!miniTicker@arr``."""
    return "[" + ",".join(items_json) + "]"
