"""The recorded symbols change while the pipeline runs: a listing, a delisting, a relisting."""

from sample_payload import PAYLOAD, combined_frame

from recorder.gaps.detector import GapDetector
from recorder.ingest.pipeline import EventPipeline
from recorder.model import ConnectionChange, ConnectionEvent, ReceivedFrame
from recorder.ops.metrics import RecorderMetrics

T0 = 1_764_000_000_000


def tick(symbol: str, event_time: int) -> ReceivedFrame:
    data = combined_frame({**PAYLOAD, "s": symbol, "E": event_time})
    return ReceivedFrame(data, event_time * 1000 + 50_000, "0.1")


def carrying(change: ConnectionChange, *symbols: str) -> ConnectionEvent:
    return ConnectionEvent(change, "0.1", symbols, 0.0, 0)


def test_a_listed_symbol_is_accepted_and_its_first_event_is_no_gap() -> None:
    # NEWUSDT was recorded once, long ago (a relisting): that E is restored.
    restored = {"BTCUSDT": T0, "NEWUSDT": T0 - 86_400_000}
    pipeline = EventPipeline(frozenset({"BTCUSDT"}), 1 << 20, GapDetector(2000, restored))
    pipeline.feed(carrying(ConnectionChange.OPENED, "BTCUSDT"))
    pipeline.feed(tick("NEWUSDT", T0 + 2000))
    assert [r.reason.split(":")[0] for r in pipeline.take().rejections] == ["unsubscribed_symbol"]

    pipeline.accept(["NEWUSDT"])
    pipeline.feed(carrying(ConnectionChange.STREAMS_CHANGED, "BTCUSDT", "NEWUSDT"))
    pipeline.feed(tick("NEWUSDT", T0 + 4000))
    pipeline.feed(tick("NEWUSDT", T0 + 6000))
    taken = pipeline.take()
    assert [(e.symbol, e.event_time) for e in taken.events] == [
        ("NEWUSDT", T0 + 4000),
        ("NEWUSDT", T0 + 6000),
    ]
    assert taken.gaps == []
    assert pipeline.connections["0.1"].symbols == ("BTCUSDT", "NEWUSDT")


def test_a_delisted_symbol_is_refused_the_others_go_on() -> None:
    metrics = RecorderMetrics()
    pipeline = EventPipeline(frozenset({"BTCUSDT", "ETHUSDT"}), 1 << 20, GapDetector(2000), metrics)
    pipeline.feed(carrying(ConnectionChange.OPENED, "BTCUSDT", "ETHUSDT"))
    pipeline.feed(tick("ETHUSDT", T0))
    pipeline.refuse(["ETHUSDT"])
    pipeline.feed(tick("ETHUSDT", T0 + 2000))
    pipeline.feed(tick("BTCUSDT", T0 + 2000))
    taken = pipeline.take()
    assert [(e.symbol, e.event_time) for e in taken.events] == [
        ("ETHUSDT", T0),
        ("BTCUSDT", T0 + 2000),
    ]
    assert len(taken.rejections) == 1


def test_untracked_symbols_lose_their_age_but_keep_their_counters() -> None:
    metrics = RecorderMetrics()
    metrics.track_symbols(["BTCUSDT", "ETHUSDT"])
    metrics.event_received("ETHUSDT", 1)
    metrics.untrack_symbols(["ETHUSDT"])
    registry = metrics.registry
    age = "recorder_last_event_age_seconds"
    assert registry.get_sample_value(age, {"symbol": "ETHUSDT"}) is None
    assert registry.get_sample_value(age, {"symbol": "BTCUSDT"}) is not None
    received = "recorder_events_received_total"
    assert registry.get_sample_value(received, {"symbol": "ETHUSDT"}) == 1
