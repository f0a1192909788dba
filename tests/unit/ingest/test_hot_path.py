"""The hot path and the slow path agree: frame by frame, and batch by batch (issue 13).

The pipeline screens each frame on the hot path (:func:`screen_frame`), judges the decimals of
a whole run of frames at once, and sends only what the hot path cannot vouch for to the slow
path (:func:`decode_slowly`), which is the reference. These properties generate frames that
are valid, nearly valid and wrong in every field the hot path checks, and require the same
events, rejections and counts either way.
"""

import dataclasses
import gc
import itertools
import json
import tracemalloc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sample_payload import PAYLOAD

from recorder.gaps.detector import GapDetector
from recorder.ingest.decode import decode_frame, decode_slowly
from recorder.ingest.payload import MAX_EVENT_TIME_MS, MIN_EVENT_TIME_MS
from recorder.ingest.pipeline import EventPipeline, FlushBatch
from recorder.ingest.screen import screen_frame
from recorder.model import ReceivedFrame

E0 = int(PAYLOAD["E"])
SUBSCRIBED = frozenset({"BTCUSDT", "币安人生USDT", "ETHUSDT"})
DROP = object()
# The bounds of a plausible E, each side: the hot path's type checks them, the slow path too.
E_EDGES = [
    MIN_EVENT_TIME_MS - 1,
    MIN_EVENT_TIME_MS,
    MAX_EVENT_TIME_MS - 1,
    MAX_EVENT_TIME_MS,
]

decimals = st.one_of(
    st.sampled_from(["30180.00", "0.001", "1" * 21, "0." + "1" * 19, "00" * 20 + "1.5"]),
    st.from_regex(r"[-+]?[0-9]{0,3}[.eE]?[0-9]{0,3}", fullmatch=True),
    st.just(DROP),
    st.just(1.5),
)
payloads = st.fixed_dictionaries(
    {
        "e": st.sampled_from(["24hrMiniTicker", "24hrTicker", "24hrminiticker", 1, DROP]),
        "E": st.sampled_from(
            [E0, E0 + 2000, E0 + 9000, 0, 9_000_000_000_000, "1", True, 1.5, DROP, *E_EDGES]
        ),
        "s": st.sampled_from(["BTCUSDT", "ETHUSDT", "SOLUSDT", "币安人生USDT", "../x", "", 7]),
        "c": decimals,
        "o": decimals,
        "h": st.just("30691.90"),
        "l": st.just("29900.00"),
        "v": decimals,
        "q": st.just("9537613226.33"),
        "ps": st.sampled_from([DROP, "BTCUSDT", None, 3]),
        "st": st.sampled_from([DROP, 1, "2", 300, "x", -1, None]),
    }
).map(lambda fields: {key: value for key, value in fields.items() if value is not DROP})
# Mostly valid payloads, so that the hot path has something to vouch for.
valid_payloads = st.builds(
    lambda symbol, offset: {**PAYLOAD, "s": symbol, "E": E0 + offset},
    st.sampled_from(["BTCUSDT", "ETHUSDT", "币安人生USDT"]),
    st.integers(0, 20_000),
)
# Valid but for an E at a bound, on either side of it.
edge_payloads = st.builds(
    lambda symbol, event_time: {**PAYLOAD, "s": symbol, "E": event_time},
    st.sampled_from(["BTCUSDT", "ETHUSDT"]),
    st.sampled_from(E_EDGES),
)
# Wrong values of each field, each alone in a valid payload: every check must refuse it.
WRONG_VALUES: dict[str, list[Any]] = {
    "e": ["24hrTicker", "24hrminiticker", "", 1, None],
    "E": [0, 9_000_000_000_000, "1", True, 1.5, None, *E_EDGES],
    "s": ["SOLUSDT", "btcusdt", "../x", "", 7, None],
    "c": ["1.", ".5", "-1", "1e5", "1" * 21, 1.5, None],
    "q": ["0." + "1" * 19, "1,5", "", None],
    "ps": [3, []],
    "st": ["x", 300, -1, "2", 2.5],
}


any_payload = st.one_of(valid_payloads, valid_payloads, edge_payloads, payloads)


def stream_of(payload: dict[str, Any], wrong: bool) -> str:
    symbol = str(payload.get("s", ""))
    return ("xrpusdt" if wrong else symbol.lower()) + "@miniTicker"


@st.composite
def frames(draw: st.DrawFn, items: st.SearchStrategy[dict[str, Any]] = any_payload) -> str:
    shape = draw(st.sampled_from(["combined", "raw", "array", "combined array", "control"]))
    if shape == "control":
        return json.dumps({"result": None, "id": draw(st.integers(0, 9))})
    if shape.endswith("array"):
        array = draw(st.lists(items, max_size=6))
        if shape == "array":
            return json.dumps(array, ensure_ascii=False)
        return json.dumps({"stream": "!miniTicker@arr", "data": array}, ensure_ascii=False)
    payload = draw(items)
    if shape == "raw":
        return json.dumps(payload, ensure_ascii=False)
    wrapped = {"stream": stream_of(payload, draw(st.booleans())), "data": payload}
    return json.dumps(wrapped, ensure_ascii=False)


def assert_same_on_either_path(
    frame: str, subscribed: frozenset[str] | None, all_market: bool, as_bytes: bool
) -> None:
    data: str | bytes = frame.encode() if as_bytes else frame
    options: dict[str, Any] = {
        "receive_time": E0 * 1000,
        "subscribed": subscribed,
        "connection_id": "0.1",
        "all_market": all_market,
    }
    assert decode_frame(data, **options) == decode_slowly(data, **options)


@settings(max_examples=400)
@given(frames(), st.sampled_from([SUBSCRIBED, None]), st.booleans(), st.booleans())
def test_a_frame_decodes_the_same_on_either_path(
    frame: str, subscribed: frozenset[str] | None, all_market: bool, as_bytes: bool
) -> None:
    assert_same_on_either_path(frame, subscribed, all_market, as_bytes)


@pytest.mark.parametrize("field", sorted(WRONG_VALUES))
def test_a_payload_wrong_in_one_field_gets_one_verdict_on_either_path(field: str) -> None:
    # Every wrong value of the field, in every frame shape: a hot path that skipped one check
    # would vouch for what the slow path refuses.
    for wrong in WRONG_VALUES[field]:
        payload = {**PAYLOAD, field: wrong}
        stream = str(payload.get("s", "")).lower() + "@miniTicker"
        shapes = [
            json.dumps(payload, ensure_ascii=False),
            json.dumps({"stream": stream, "data": payload}, ensure_ascii=False),
            json.dumps({"stream": "!miniTicker@arr", "data": [PAYLOAD, payload, PAYLOAD]}),
        ]
        for frame, subscribed, all_market in itertools.product(
            shapes, [SUBSCRIBED, None], [True, False]
        ):
            assert_same_on_either_path(frame, subscribed, all_market, as_bytes=False)


def pipeline(all_market: bool) -> EventPipeline:
    return EventPipeline(SUBSCRIBED, 1 << 20, GapDetector(2000), all_market=all_market)


def outcome(batch: FlushBatch, p: EventPipeline) -> tuple[Any, ...]:
    return (
        list(batch.events),
        batch.rejections,
        batch.gaps,
        batch.last_event_times,
        dataclasses.astuple(p.counters),
    )


@settings(max_examples=200)
@given(st.lists(frames(), max_size=12), st.booleans())
def test_a_run_of_frames_at_once_is_the_frames_one_by_one(
    texts: list[str], all_market: bool
) -> None:
    received = [
        ReceivedFrame(text, (E0 + 500 * index) * 1000, f"0.{index % 2}")
        for index, text in enumerate(texts)
    ]
    at_once, one_by_one = pipeline(all_market), pipeline(all_market)
    at_once.feed_all(received)
    for frame in received:
        one_by_one.feed(frame)
    assert outcome(at_once.take(), at_once) == outcome(one_by_one.take(), one_by_one)


def test_what_the_hot_path_remembers_stays_small_whatever_the_server_sends() -> None:
    # Megabyte-long streams and symbols, each one new: refused, and none of them kept.
    long_name = "X" * (1 << 20)
    frames = []
    for index in range(20):
        payload = {**PAYLOAD, "s": f"{index}{long_name}"}
        frames.append(json.dumps({"stream": f"{index}{long_name}", "data": payload}))
        frames.append(json.dumps({"stream": f"{index}{long_name}", "data": PAYLOAD}))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for frame in frames:
            for subscribed in (SUBSCRIBED, None):
                assert screen_frame(frame, subscribed=subscribed, max_frame_bytes=1 << 22) is None
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 1 << 20, f"{kept:,} bytes kept after 40 MiB of hostile names"
