"""The pipeline under hostile frames (issue 9): one rejection per frame, and never a raise."""

import json

import pytest
from prometheus_client import CollectorRegistry
from sample_payload import PAYLOAD, combined_frame

import recorder.ingest.pipeline
from recorder.gaps.detector import GapDetector
from recorder.ingest.decode import Decoded, decode_slowly
from recorder.ingest.pipeline import EventPipeline
from recorder.ingest.screen import Screened, screen_frame
from recorder.model import ReceivedFrame, reason_code
from recorder.ops.metrics import RecorderMetrics

T0 = 1_764_000_000_000
POISON = "the frame that trips a bug"


def ticker(event_time: int, **extra: object) -> ReceivedFrame:
    data = combined_frame({**PAYLOAD, "E": event_time, **extra})
    return ReceivedFrame(data, event_time * 1000 + 50_000, "0.1")


def pipeline(metrics: RecorderMetrics | None = None) -> EventPipeline:
    return EventPipeline(frozenset({"BTCUSDT"}), 1 << 20, GapDetector(2000), metrics)


def quarantined(registry: CollectorRegistry, reason: str) -> float | None:
    return registry.get_sample_value("recorder_frames_quarantined_total", {"reason": reason})


def test_hostile_frames_cost_one_rejection_each_and_good_ones_still_pass() -> None:
    metrics = RecorderMetrics()
    p = pipeline(metrics)
    hostile: list[str | bytes] = [
        "[" + ",".join(["0"] * 500_000) + "]",
        '{"stream": "btcusdt@miniTicker", "data": ' + "[" * 100_000 + "]" * 100_000 + "}",
        json.dumps({f"k{i}": i for i in range(20_000)}).encode(),
        b'{"stream": "btcusdt@miniTicker", "data": {"s": "\xff"}}',
    ]
    for data in hostile:
        p.feed(ReceivedFrame(data, T0 * 1000, "0.1"))
    p.feed(ticker(T0, x=json.loads("[" * 200 + "]" * 200)))
    good = ticker(T0 + 2000)
    assert isinstance(good.data, str)
    deep_field = '"q": "9537613226.33", "x": ' + "[" * 50_000 + "]" * 50_000
    deep = good.data.replace('"q": "9537613226.33"', deep_field)
    assert deep != good.data
    p.feed(ReceivedFrame(deep, good.receive_time, "0.1"))
    taken = p.take()
    assert [e.event_time for e in taken.events] == [T0, T0 + 2000]
    assert [reason_code(r.reason) for r in taken.rejections] == [
        "not_object",
        "too_deep",
        "missing_field:e",
        "not_utf8",
    ]
    assert p.counters.rejections == 4
    assert quarantined(metrics.registry, "not_object") == 1


def test_an_unexpected_error_in_decoding_quarantines_that_frame_and_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A stand-in for a bug nobody has found yet: decoding one particular frame raises, on the
    # hot path and on the slow path alike.
    def screen_with_a_bug(frame: str | bytes, **options: object) -> Screened | None:
        if frame == POISON:
            raise KeyError("a bug")
        return screen_frame(frame, **options)  # type: ignore[arg-type]

    def decode_with_a_bug(frame: str | bytes, **options: object) -> Decoded:
        if frame == POISON:
            raise KeyError("a bug")
        return decode_slowly(frame, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(recorder.ingest.pipeline, "screen_frame", screen_with_a_bug)
    monkeypatch.setattr(recorder.ingest.pipeline, "decode_slowly", decode_with_a_bug)
    metrics = RecorderMetrics()
    p = pipeline(metrics)
    p.feed(ticker(T0))
    p.feed(ReceivedFrame(POISON, T0 * 1000 + 1, "0.3"))
    p.feed(ticker(T0 + 2000))
    taken = p.take()
    assert [e.event_time for e in taken.events] == [T0, T0 + 2000]
    (rejection,) = taken.rejections
    assert rejection.reason == "decode_failed: KeyError: \"'a bug'\""
    assert (rejection.raw, rejection.connection_id) == (POISON, "0.3")
    assert p.counters.rejections == 1
    assert quarantined(metrics.registry, "decode_failed") == 1
