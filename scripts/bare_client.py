"""A bare aiohttp websocket client, the baseline of ``compare_clients.py``.

It imports nothing but the standard library and aiohttp, so that its memory and CPU are the
client's own: it reads text frames from ``URL`` until the server closes (with ``json.loads``
of each frame when ``--json`` is given), prints ``{"frames": N}`` and waits for SIGTERM.

Usage::

    .venv/bin/python scripts/bare_client.py URL [--json]
"""

import asyncio
import json
import signal
import sys
from collections.abc import Sequence

import aiohttp


async def read_frames(url: str, parse: bool) -> int:
    """Read text frames until the server closes; return how many (``json.loads`` each if asked)."""
    count = 0
    async with aiohttp.ClientSession() as session, session.ws_connect(url, compress=0) as socket:
        async for message in socket:
            if message.type is aiohttp.WSMsgType.TEXT:
                if parse:
                    json.loads(message.data)
                count += 1
    return count


def main(argv: Sequence[str] | None = None) -> int:
    """Count the frames, print them as JSON, and exit 0 on SIGTERM."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    parse = "--json" in arguments
    (url,) = [argument for argument in arguments if argument != "--json"]
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    frames = asyncio.run(read_frames(url, parse))
    print(json.dumps({"frames": frames}), flush=True)
    signal.sigwait({signal.SIGTERM})
    return 0


if __name__ == "__main__":
    sys.exit(main())
