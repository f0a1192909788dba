"""A valid ``24hrMiniTicker`` payload as the exchange sends it, for tests that build frames."""

import json
from collections.abc import Mapping
from typing import Final

PAYLOAD: Final[Mapping[str, str | int]] = {
    "e": "24hrMiniTicker",
    "E": 1654791723970,
    "s": "BTCUSDT",
    "c": "30180.00",
    "o": "30463.50",
    "h": "30691.90",
    "l": "29900.00",
    "v": "315252.128",
    "q": "9537613226.33",
}
"""The documentation's combined sample, BTCUSDT at 2022-06-09T16:22:03.970Z."""


def combined_frame(payload: Mapping[str, object]) -> str:
    """The combined-stream frame carrying ``payload`` under its own symbol's stream."""
    stream = str(payload["s"]).lower() + "@miniTicker"
    return json.dumps({"stream": stream, "data": payload}, ensure_ascii=False)
