"""cryptofeed on the local feed, a peer of ``bare_client.py`` in ``compare_clients.py``.

It records Binance USD-M futures tickers the way a cryptofeed user does: a ``FeedHandler`` runs
a ``BinanceFutures`` feed (cryptofeed's own websocket connection handling, its
``ConnectionHandler`` and websockets connection options, uvloop as its default configuration
enables), every message goes through the feed's ``message_handler`` (yapic ``json.loads`` with
``parse_float=Decimal``, the combined-stream envelope unwrapped, the exchange symbol mapped to
cryptofeed's normalised one) into one of cryptofeed's data types with ``Decimal`` values, and
an ``async`` callback per update counts. When the server has closed the connection and every
message before the close has been handled, it prints ``{"frames": N}`` on stdout, stops the
feed handler (no reconnection), and waits for SIGTERM to exit 0.

What differs from a run against Binance, and why:

1. The addresses. A subclass of ``BinanceFutures`` points its websocket endpoint at ``URL``'s
   base and its REST endpoint at ``--rest``: cryptofeed reads ``GET /fapi/v1/exchangeInfo``
   at start-up (with its own HTTP client) to build its symbol mapping, and the comparison's
   server answers it with the simulator's listing of the same ten contracts. Nothing of the
   start-up is skipped; it happens before the feed connects, outside the measurement.
2. The channel. cryptofeed has no miniTicker channel (its ``TICKER`` is ``bookTicker``; a
   ``24hrMiniTicker`` message reaches its "Unexpected message" warning). The subclass adds one,
   :data:`MINI_TICKER` (``miniTicker`` in the stream names that cryptofeed's own ``_address``
   builds), and a branch of ``message_handler`` that turns each ``24hrMiniTicker`` event into
   cryptofeed's ``Candle``, the closest of its types: a rolling 24-hour window (start ``E`` less
   24 h, stop ``E``, interval ``1d``, not closed) with open, close, high, low and volume as
   ``Decimal``, exactly as cryptofeed's own kline parse builds one, ``raw`` the message. The
   quote volume ``q`` has no slot in ``Candle``; it is converted to ``Decimal`` in ``raw``, so
   that every decimal field of the message is parsed. Any other message still goes to
   ``BinanceFutures.message_handler``.
3. The connection. cryptofeed's ``WSAsyncConn`` refuses any address that is not ``wss://``,
   and the feed is plain ``ws://`` on loopback, as for every client of the comparison (TLS
   would add a cost no other client pays). The subclass's ``connect()`` makes the one
   connection that ``Feed.connect()`` would make for this subscription, from cryptofeed's own
   ``_address()`` (checked equal to ``URL``), with the endpoint's options, as a
   ``WSAsyncConn`` subclass that accepts ``ws://`` and tells the script when the connection has
   closed. That is also how the run ends: cryptofeed reconnects after a close by default, and
   here the close of the one connection stops the feed handler instead.
4. The event loop. ``FeedHandler.run()`` takes ``asyncio.get_event_loop()``, which the uvloop
   policy that the handler installs (cryptofeed's default configuration asks for uvloop) no
   longer creates in the uvloop release that installs with it; the script sets a new loop
   first, as such a user has to.

Usage::

    .venv/bin/python scripts/peer_cryptofeed.py URL --rest HTTP_BASE [--log FILE]
"""

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

from cryptofeed import FeedHandler
from cryptofeed.connection import RestEndpoint, Routes, WebsocketEndpoint, WSAsyncConn
from cryptofeed.exchanges import BinanceFutures
from cryptofeed.types import Candle
from yapic import json as yapic_json

MINI_TICKER = "mini_ticker"
"""The channel the subclass adds: Binance's ``<symbol>@miniTicker`` streams."""
DAY_MS = 86_400_000
"""A miniTicker's window: the last 24 hours before its event time."""


class LoopbackConnection(WSAsyncConn):  # type: ignore[misc]  # cryptofeed ships no types
    """cryptofeed's websocket connection, on a plain ``ws://`` address, that reports its close.

    Args:
        address: the ``ws://`` address.
        conn_id: the feed's id, as ``Feed.connect()`` passes it.
        closed: called once, after the first close of the connection.
        kwargs: ``WSAsyncConn``'s own (subscription, websockets options).
    """

    def __init__(
        self, address: str, conn_id: str, closed: Callable[[], None], **kwargs: Any
    ) -> None:
        # WSAsyncConn checks for wss:// and keeps the address; nothing else depends on it.
        super().__init__(address.replace("ws://", "wss://", 1), conn_id, **kwargs)
        self.address = address
        self._closed: Callable[[], None] | None = closed

    async def close(self) -> None:
        """Close as cryptofeed does, then report the close (once)."""
        await super().close()
        closed, self._closed = self._closed, None
        if closed is not None:
            closed()


def local_feed(ws_base: str, rest_base: str) -> type[Any]:
    """Return the ``BinanceFutures`` subclass on the local feed (see the module's docstring)."""
    options = dict(BinanceFutures.websocket_endpoints[0].options)
    exchange_info_route = BinanceFutures.rest_endpoints[0].routes.instruments

    class LocalBinanceFutures(BinanceFutures):  # type: ignore[misc]  # cryptofeed ships no types
        websocket_endpoints: ClassVar[list[Any]] = [WebsocketEndpoint(ws_base, options=options)]
        rest_endpoints: ClassVar[list[Any]] = [
            RestEndpoint(rest_base, routes=Routes(exchange_info_route))
        ]
        websocket_channels: ClassVar[dict[str, str]] = {
            **BinanceFutures.websocket_channels,
            MINI_TICKER: "miniTicker",
        }

        def __init__(self, closed: Callable[[], None], **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._on_close = closed

        def connect(self) -> list[tuple[Any, Any, Any, Any]]:
            address = self._address()
            connection = LoopbackConnection(
                address,
                self.id,
                self._on_close,
                subscription=dict(self.subscription),
                **self.websocket_endpoints[0].options,
            )
            return [(connection, self.subscribe, self.message_handler, self.authenticate)]

        async def message_handler(self, msg: str, conn: Any, timestamp: float) -> None:
            message = yapic_json.loads(msg, parse_float=Decimal)
            data = message.get("data")
            if isinstance(data, dict) and data.get("e") == "24hrMiniTicker":
                await self._mini_ticker(data, timestamp)
                return
            await super().message_handler(msg, conn, timestamp)

        async def _mini_ticker(self, msg: dict[str, Any], timestamp: float) -> None:
            """Parse one ``24hrMiniTicker`` event into a ``Candle`` of its 24-hour window.

            ``{"e": "24hrMiniTicker", "E": 1654791723970, "s": "BTCUSDT", "c": "30180.00",
            "o": "30463.50", "h": "30691.90", "l": "29900.00", "v": "315252.128",
            "q": "9537613226.33"}``
            """
            event_time = msg["E"]
            msg["q"] = Decimal(msg["q"])  # no slot in Candle: parsed in raw
            candle = Candle(
                self.id,
                self.exchange_symbol_to_std_symbol(msg["s"]),
                self.timestamp_normalize(event_time - DAY_MS),
                self.timestamp_normalize(event_time),
                "1d",
                None,
                Decimal(msg["o"]),
                Decimal(msg["c"]),
                Decimal(msg["h"]),
                Decimal(msg["l"]),
                Decimal(msg["v"]),
                closed=False,
                timestamp=self.timestamp_normalize(event_time),
                raw=msg,
            )
            await self.callback(MINI_TICKER, candle, timestamp)

    return LocalBinanceFutures


def split_url(url: str) -> tuple[str, list[str]]:
    """Split a combined-stream URL into its base and its exchange symbols, in order.

    >>> split_url("ws://h:1/market/stream?streams=btcusdt@miniTicker/%E5%B8%81usdt@miniTicker")
    ('ws://h:1/market', ['BTCUSDT', '币USDT'])
    """
    parts = urlsplit(url)
    base, _, _ = url.partition("/stream?")
    (streams,) = parse_qs(parts.query)["streams"]
    return base, [stream.partition("@")[0].upper() for stream in streams.split("/")]


def record(url: str, rest_base: str, log_file: str) -> int:
    """Run cryptofeed on ``url`` until the server closes; return the updates counted."""
    ws_base, exchange_symbols = split_url(url)
    frames = 0
    feed_class = local_feed(ws_base, rest_base)
    handler = FeedHandler(
        config={"uvloop": True, "log": {"filename": log_file, "level": "WARNING"}}
    )

    async def count(update: Any, receipt_timestamp: float) -> None:
        del update, receipt_timestamp
        nonlocal frames
        frames += 1

    def closed() -> None:
        # Every message before the close has been handled: report, then stop cryptofeed
        # rather than let it reconnect; the feed handler's own shutdown follows.
        print(json.dumps({"frames": frames}), flush=True)
        feed.stop()
        asyncio.get_running_loop().stop()

    mapping = {exchange: std for std, exchange in feed_class.symbol_mapping().items()}
    feed = feed_class(
        closed,
        symbols=[mapping[symbol] for symbol in exchange_symbols],
        channels=[MINI_TICKER],
        callbacks={MINI_TICKER: count},
    )
    address = feed._address()  # the address cryptofeed's connect() will use
    if address != unquote(url):
        raise SystemExit(f"cryptofeed would connect to {address}, not to {url}")
    handler.add_feed(feed)
    # See the module's docstring, 4.
    asyncio.set_event_loop(asyncio.new_event_loop())
    handler.run()
    return frames


def main(argv: Sequence[str] | None = None) -> int:
    """Record until the server closes, print the count as JSON, and exit 0 on SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("url", help="the combined-stream URL of the local feed")
    parser.add_argument("--rest", required=True, help="the base URL of the local exchangeInfo")
    parser.add_argument("--log", default="cryptofeed.log", help="cryptofeed's log file")
    args = parser.parse_args(argv)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    record(args.url, args.rest, args.log)
    signal.sigwait({signal.SIGTERM})
    return 0


if __name__ == "__main__":
    sys.exit(main())
