"""unicorn-binance-websocket-api on the local feed, a peer of ``bare_client.py``.

It records Binance USD-M futures miniTickers the way the library's users do: a
``BinanceWebSocketApiManager`` for exchange ``binance.com-futures`` creates one stream of
channel ``miniTicker`` for the feed's markets; the library's stream thread connects, reads
every frame and appends it to the manager's ``stream_buffer`` (its default output, the raw
frame as ``str``), and this script's main thread pops the buffer and counts each frame. When
the server has closed the connection and the buffer is empty, it prints ``{"frames": N}`` on
stdout, stops the manager, and waits for SIGTERM to exit 0.

What differs from a run against Binance, and why:

1. The address. The manager's ``websocket_base_uri`` option (its documented way to use
   another endpoint) is ``URL``'s ``scheme://host:port/``; the library itself adds the futures
   category path (``market/``) and ``stream?streams=``. As it does for any stream of several
   markets, it puts one stream in the URI and subscribes the others with a ``SUBSCRIBE``
   message after connecting, then pauses 1/3 s (its pacing of Binance's limit of 5 messages a
   second). The feed ignores the message and sends every stream's frames from the start; the
   pause is inside the clock, as it is on a real connection. The URI it used is checked to be
   ``URL``'s base with ``market/stream?streams=``.
2. No release check: ``warn_on_update=False`` (the default asks the project's release page
   whether a newer version exists, which cannot be reached here); ``disable_colorama=True``
   keeps stdout for the count.
3. The end. The library restarts a stream whose connection closed. Its stream signals, which
   it calls synchronously in the stream thread (``process_stream_signals``), tell the script
   of the ``DISCONNECT``; the script stops the stream at once (``stop_stream``), so that it is
   not reconnected, and counts what the buffer still holds.

Usage::

    .venv/bin/python scripts/peer_unicorn.py URL
"""

import json
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from unicorn_binance_websocket_api import BinanceWebSocketApiManager

POLL_SECONDS = 0.01
"""How long the main thread sleeps when the buffer is empty, as the library's examples do."""


def split_url(url: str) -> tuple[str, list[str]]:
    """Split a combined-stream URL into the manager's base URI and the markets, in order.

    >>> split_url("ws://h:1/market/stream?streams=btcusdt@miniTicker/%E5%B8%81usdt@miniTicker")
    ('ws://h:1/', ['btcusdt', '币usdt'])
    """
    parts = urlsplit(url)
    (streams,) = parse_qs(parts.query)["streams"]
    markets = [stream.partition("@")[0] for stream in streams.split("/")]
    return f"{parts.scheme}://{parts.netloc}/", markets


def record(url: str) -> int:
    """Run the manager on ``url`` until the server closes; return the frames counted."""
    base_uri, markets = split_url(url)
    disconnected = threading.Event()
    streams: list[str] = []

    def on_signal(
        signal_type: str | None = None,
        stream_id: str | None = None,
        data_record: Any = None,
        error_msg: str | None = None,
    ) -> None:
        del data_record, error_msg
        if signal_type == "DISCONNECT" and stream_id in streams:
            manager.stop_stream(stream_id)
            disconnected.set()

    manager = BinanceWebSocketApiManager(
        exchange="binance.com-futures",
        websocket_base_uri=base_uri,
        warn_on_update=False,
        disable_colorama=True,
        process_stream_signals=on_signal,
    )
    streams.append(manager.create_stream(channels="miniTicker", markets=markets))
    frames = 0
    while True:
        # The stream thread appends every frame before it signals the DISCONNECT: once the
        # signal is seen, an empty buffer means every frame has been counted.
        finished = disconnected.is_set()
        if manager.pop_stream_data_from_stream_buffer() is not None:
            frames += 1
        elif finished:
            break
        else:
            time.sleep(POLL_SECONDS)
    print(json.dumps({"frames": frames}), flush=True)
    uri = str(manager.stream_list[streams[0]]["websocket_uri"])
    manager.stop_manager()
    if not uri.startswith(f"{base_uri}market/stream?streams="):
        raise SystemExit(f"the manager connected to {uri}, not to {url}")
    return frames


def main(argv: Sequence[str] | None = None) -> int:
    """Record until the server closes, print the count as JSON, and exit 0 on SIGTERM."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    (url,) = arguments
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # inherited by its threads
    record(url)
    signal.sigwait({signal.SIGTERM})
    return 0


if __name__ == "__main__":
    sys.exit(main())
