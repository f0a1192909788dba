"""The hot path of decoding: one typed parse and the checks that vouch for a frame, or ``None``.

A frame the hot path vouches for holds payloads whose every field but the decimals is right;
the caller judges the decimals of a whole batch at once
(:func:`~recorder.ingest.decimals.inexact_rows`). Whatever the hot path refuses goes to
:func:`recorder.ingest.decode.decode_slowly`, which says what is wrong: only that path makes
rejections, so the two cannot disagree about a reason (``tests/unit/ingest/test_hot_path.py``
holds them to it).
"""

from typing import Final

import msgspec

from recorder.ingest.payload import (
    PayloadColumns,
    PayloadWire,
    ScreenedPayloadWire,
    vouch_items,
    vouch_payload,
)
from recorder.symbols import ALL_MARKET_STREAM

DEFAULT_MAX_FRAME_BYTES: Final = 1 << 20
"""Frames larger than this (in UTF-8 bytes) are rejected without being parsed."""


class _CombinedWire(msgspec.Struct, frozen=True, gc=False):
    """A combined-stream frame with a typed payload: the fast path."""

    stream: str
    data: ScreenedPayloadWire | list[ScreenedPayloadWire]


class _SingleWire(msgspec.Struct, frozen=True, gc=False):
    """A combined-stream frame with one typed payload: the fast path outside all-market mode."""

    stream: str
    data: ScreenedPayloadWire


_FAST_ALL_MARKET: Final = msgspec.json.Decoder(_CombinedWire | list[ScreenedPayloadWire])
_FAST: Final = msgspec.json.Decoder(_SingleWire)


Screened = PayloadWire | tuple[PayloadColumns, list[PayloadWire]]
"""What :func:`screen_frame` vouches for: one payload, or an array's items as columns and the
ones of them recorded (the others are skipped and counted): the decimals of all the items
are to be judged, a bad item of a contract not recorded making the frame's one rejection too."""


def screen_frame(
    frame: str | bytes,
    *,
    subscribed: frozenset[str] | None,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    all_market: bool = False,
) -> Screened | None:
    """The hot path: a frame's payloads, when everything about it but its decimals is right.

    One typed msgspec decode and the checks of :func:`~recorder.ingest.payload.vouch_payload`
    (or, for an all-market array, :func:`~recorder.ingest.payload.vouch_items`). The caller
    judges the decimals of a whole batch of frames at once
    (:func:`~recorder.ingest.decimals.inexact_rows`) and hands every frame refused here, or
    with an inexact decimal, to :func:`decode_slowly`, which says what is wrong with it.

    Returns:
        The payloads, or ``None``: the frame needs the slow path (it may still hold events,
        a control reply, or be one rejection). Never raises for bad input.
    """
    # UTF-8 spends at most 4 bytes on a character: a short frame needs no measuring.
    if len(frame) * 4 > max_frame_bytes and oversize(frame, max_frame_bytes) is not None:
        return None
    if isinstance(frame, bytes) and not frame.isascii():
        return None  # the slow path checks its UTF-8: msgspec does not check skipped fields
    try:
        wire = (_FAST_ALL_MARKET if all_market else _FAST).decode(frame)
    except (msgspec.DecodeError, UnicodeError, RecursionError):
        return None
    if isinstance(wire, list):
        payloads = wire
    elif not isinstance(wire.data, list):
        return wire.data if vouch_payload(wire.data, wire.stream, subscribed) else None
    elif wire.stream == ALL_MARKET_STREAM:
        payloads = wire.data
    else:
        return None
    items = PayloadColumns(payloads)
    recorded = vouch_items(items, subscribed)
    return None if recorded is None else (items, recorded)


def oversize(frame: str | bytes, limit: int) -> int | None:
    """Return the frame's UTF-8 size when it exceeds ``limit``, else ``None``."""
    if isinstance(frame, str) and not frame.isascii():
        if len(frame) * 4 <= limit:  # UTF-8 spends at most 4 bytes on a code point
            return None
        size = len(frame.encode("utf-8", "surrogatepass"))
    else:
        size = len(frame)
    return size if size > limit else None
