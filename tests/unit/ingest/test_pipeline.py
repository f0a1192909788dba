import json

from recorder.gaps.detector import GapCause, GapDetector
from recorder.ingest.pipeline import EventPipeline
from recorder.model import ConnectionChange, ConnectionEvent, ReceivedFrame
from recorder.ops.metrics import RecorderMetrics

T0 = 1_764_000_000_000


def frame(symbol: str, event_time: int, connection: str = "0.1", **extra: object) -> ReceivedFrame:
    payload = {
        "e": "24hrMiniTicker",
        "E": event_time,
        "s": symbol,
        "c": "1.50",
        "o": "1.00",
        "h": "2.00",
        "l": "0.90",
        "v": "100",
        "q": "150.5",
        **extra,
    }
    data = json.dumps({"stream": symbol.lower() + "@miniTicker", "data": payload})
    return ReceivedFrame(data, event_time * 1000 + 50_000, connection)


def change(kind: ConnectionChange, connection: str = "0.1") -> ConnectionEvent:
    return ConnectionEvent(kind, connection, ("BTCUSDT", "ETHUSDT"), 0.0, 0)


def pipeline(metrics: RecorderMetrics | None = None) -> EventPipeline:
    return EventPipeline(frozenset({"BTCUSDT", "ETHUSDT"}), 1 << 20, GapDetector(2000), metrics)


def test_events_come_out_once_in_arrival_order_and_take_empties() -> None:
    p = pipeline()
    p.feed(change(ConnectionChange.OPENED))
    for item in (frame("BTCUSDT", T0), frame("ETHUSDT", T0 + 5), frame("BTCUSDT", T0)):
        p.feed(item)
    taken = p.take()
    assert [(e.symbol, e.event_time) for e in taken.events] == [
        ("BTCUSDT", T0),
        ("ETHUSDT", T0 + 5),
    ]
    assert p.counters.duplicates == 1
    assert taken.last_event_times == {"BTCUSDT": T0, "ETHUSDT": T0 + 5}
    assert len(p.take().events) == 0


def test_bad_frames_become_rejections_with_the_connection() -> None:
    p = pipeline()
    p.feed(ReceivedFrame("not json", 1, "0.7"))
    p.feed(frame("SOLUSDT", T0))
    taken = p.take()
    assert len(taken.events) == 0
    assert [r.reason.split(":")[0] for r in taken.rejections] == ["not_json", "unsubscribed_symbol"]
    assert {r.connection_id for r in taken.rejections} == {"0.7", "0.1"}


def test_a_drop_between_two_events_is_a_disconnect_gap() -> None:
    p = pipeline()
    p.feed(change(ConnectionChange.OPENED, "0.1"))
    p.feed(frame("BTCUSDT", T0, "0.1"))
    p.feed(change(ConnectionChange.DROPPED, "0.1"))
    p.feed(change(ConnectionChange.OPENED, "0.2"))
    p.feed(frame("BTCUSDT", T0 + 10_000, "0.2"))
    (gap,) = p.take().gaps
    assert (gap.symbol, gap.from_ms, gap.to_ms, gap.missed) == ("BTCUSDT", T0, T0 + 10_000, 4)
    assert gap.cause is GapCause.DISCONNECT
    assert p.counters.missed == 4


def test_live_connections_and_metrics_follow_connection_events() -> None:
    metrics = RecorderMetrics()
    p = pipeline(metrics)
    p.feed(change(ConnectionChange.OPENED, "0.1"))
    p.feed(frame("BTCUSDT", T0, "0.1"))
    assert p.connections["0.1"].last_frame_us == T0 * 1000 + 50_000
    p.feed(change(ConnectionChange.STALLED, "0.1"))
    p.feed(change(ConnectionChange.OPENED, "0.2"))
    p.feed(change(ConnectionChange.RETIRED, "0.2"))
    assert p.connections == {}
    body, _ = metrics.exposition()
    text = body.decode()
    assert 'recorder_reconnects_total{reason="stalled"} 1.0' in text
    assert "recorder_open_connections 0.0" in text
    assert 'recorder_events_received_total{symbol="BTCUSDT"} 1.0' in text


def test_a_far_future_event_is_quarantined_and_never_reaches_the_detector_or_storage() -> None:
    p = pipeline()
    p.feed(change(ConnectionChange.OPENED))
    ten_years = 3650 * 86_400_000
    future = frame("ETHUSDT", T0 + ten_years)
    # Delivered at T0 by the local clock, which is right.
    future = ReceivedFrame(future.data, T0 * 1000, future.connection_id)
    for item in (frame("BTCUSDT", T0), frame("ETHUSDT", T0 + 10), future):
        p.feed(item)
    p.feed(frame("ETHUSDT", T0 + 2010))
    p.feed(frame("ETHUSDT", T0 + 30_010))
    taken = p.take()
    assert [(e.symbol, e.event_time) for e in taken.events] == [
        ("BTCUSDT", T0),
        ("ETHUSDT", T0 + 10),
        ("ETHUSDT", T0 + 2010),
        ("ETHUSDT", T0 + 30_010),
    ]
    [rejection] = taken.rejections
    assert rejection.reason.startswith("implausible_event_time: E=2035-")
    assert rejection.raw == future.data
    assert rejection.connection_id == "0.1"
    assert taken.last_event_times == {"BTCUSDT": T0, "ETHUSDT": T0 + 30_010}
    # The later real gap of that symbol is still found, with a sane count.
    assert [(g.symbol, g.missed) for g in taken.gaps] == [("ETHUSDT", 13)]
    assert p.counters.rejections == 1


def test_a_held_event_is_quarantined_when_the_pipeline_settles() -> None:
    p = pipeline()
    p.feed(frame("BTCUSDT", T0))
    late = frame("BTCUSDT", T0 + 3650 * 86_400_000)
    p.feed(ReceivedFrame(late.data, T0 * 1000 + 1, late.connection_id))
    assert p.take().rejections == []
    p.settle()
    [rejection] = p.take().rejections
    assert rejection.reason.endswith("nothing vouched for it before the recorder stopped")
    assert p.clock_offset_ms == 50


def test_a_connection_a_silence_check_found_quiet_stays_alive_until_the_next_check_is_due() -> None:
    fresh_us, quiet_us = 30_000_000, 540_000_000
    p = pipeline()
    p.feed(change(ConnectionChange.OPENED))
    p.feed(frame("BTCUSDT", 1_700_000_000_000))
    state = p.connections["0.1"]
    last_frame = state.last_frame_us
    assert last_frame is not None
    silent = last_frame + 2 * fresh_us  # a frame this old no longer counts
    assert state.alive_at(last_frame + fresh_us, fresh_us=fresh_us, quiet_us=quiet_us)
    assert not state.alive_at(silent, fresh_us=fresh_us, quiet_us=quiet_us)

    p.feed(ConnectionEvent(ConnectionChange.QUIET_CONFIRMED, "0.1", ("BTCUSDT",), 0.0, silent))

    assert state.quiet_confirmed_us == silent
    assert state.alive_at(silent + quiet_us, fresh_us=fresh_us, quiet_us=quiet_us)
    assert not state.alive_at(silent + quiet_us + 1, fresh_us=fresh_us, quiet_us=quiet_us)
    # The detector reads the event too, as no frame and no end: the connection stays live.
    assert "0.1" in p.connections
