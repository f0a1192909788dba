"""The pipeline fed all-market arrays: what is recorded, skipped, quarantined, and gap causes."""

import json

import pytest
from sample_payload import PAYLOAD

from recorder.gaps.detector import GapCause, GapDetector
from recorder.ingest.pipeline import EventPipeline
from recorder.model import ConnectionChange, ConnectionEvent, ReceivedFrame, reason_code
from recorder.ops.metrics import RecorderMetrics

T0 = 1_764_000_000_000
RECORDED = ("BTCUSDT", "ETHUSDT")
YEAR_MS = 365 * 86_400_000


def item(symbol: str, event_time: int, **extra: object) -> dict[str, object]:
    return {**PAYLOAD, "s": symbol, "E": event_time, **extra}


def array(second_ms: int, *items: dict[str, object], connection: str = "0.1") -> ReceivedFrame:
    """The array of one second, as the exchange pushes it just after that second."""
    data = json.dumps({"stream": "!miniTicker@arr", "data": list(items)})
    return ReceivedFrame(data, (second_ms + 1000) * 1000 + 50_000, connection)


def event(kind: ConnectionChange, connection: str = "0.1") -> ConnectionEvent:
    return ConnectionEvent(kind, connection, RECORDED, 0.0, 0)


class CountingMetrics(RecorderMetrics):
    """Real metrics that also note how often the not-recorded counter is moved."""

    def __init__(self) -> None:
        super().__init__()
        self.not_recorded_calls = 0

    def events_not_recorded(self, count: int) -> None:
        self.not_recorded_calls += 1
        super().events_not_recorded(count)


def all_market(
    metrics: RecorderMetrics | None = None, restored: dict[str, int] | None = None
) -> EventPipeline:
    detector = GapDetector(2000, restored, all_market=True)
    return EventPipeline(frozenset(RECORDED), 1 << 20, detector, metrics, all_market=True)


def test_items_of_contracts_not_recorded_are_skipped_and_counted_once_per_frame() -> None:
    metrics = CountingMetrics()
    pipeline = all_market(metrics)
    pipeline.feed(event(ConnectionChange.OPENED))
    others = [item(f"X{n}USDT", T0 + n) for n in range(50)]
    pipeline.feed(array(T0, item("BTCUSDT", T0), *others, item("BTCUSDT_260327", T0)))
    pipeline.feed(array(T0 + 1000, item("ETHUSDT", T0 + 1000), *others))
    pipeline.feed(array(T0 + 2000))  # nothing changed
    taken = pipeline.take()
    assert [(e.symbol, e.event_time) for e in taken.events] == [
        ("BTCUSDT", T0),
        ("ETHUSDT", T0 + 1000),
    ]
    assert taken.rejections == []
    assert pipeline.counters.not_recorded == 101
    assert metrics.registry.get_sample_value("recorder_events_not_recorded_total") == 101
    assert metrics.not_recorded_calls == 2


def test_per_symbol_mode_rejects_an_array_frame_whole() -> None:
    pipeline = EventPipeline(frozenset(RECORDED), 1 << 20, GapDetector(2000))
    pipeline.feed(array(T0, item("BTCUSDT", T0)))
    taken = pipeline.take()
    assert len(taken.events) == 0
    assert [reason_code(r.reason) for r in taken.rejections] == ["stream_mismatch"]


def test_bad_items_and_a_far_future_e_make_one_record_for_the_frame() -> None:
    pipeline = all_market()
    pipeline.feed(event(ConnectionChange.OPENED))
    pipeline.feed(array(T0, item("BTCUSDT", T0), item("ETHUSDT", T0)))
    bad = array(
        T0 + 1000,
        item("BTCUSDT", T0 + 1000),
        item("../../x", T0 + 1000),
        item("X1USDT", T0 + 1000, c="NaN"),
        item("ETHUSDT", T0 + 10 * YEAR_MS),
    )
    pipeline.feed(bad)
    # The next plausible event decides the far-future one held for its E: rejected.
    pipeline.feed(array(T0 + 2000, item("ETHUSDT", T0 + 2000)))
    taken = pipeline.take()
    assert [(e.symbol, e.event_time) for e in taken.events] == [
        ("BTCUSDT", T0),
        ("ETHUSDT", T0),
        ("BTCUSDT", T0 + 1000),
        ("ETHUSDT", T0 + 2000),
    ]
    (record,) = taken.rejections
    assert record.raw == bad.data
    assert reason_code(record.reason) == "unsafe_symbol"
    assert record.reason.endswith("(2 of 4 items rejected)")
    # Both verdicts are counted by their reason, one record kept.
    assert pipeline.counters.rejections == 2


# --- gap causes --------------------------------------------------------------------------------


def causes(pipeline: EventPipeline) -> list[tuple[str, int, GapCause]]:
    return [(gap.symbol, gap.missed, gap.cause) for gap in pipeline.take().gaps]


def test_a_symbol_changing_every_second_is_never_a_gap() -> None:
    pipeline = all_market()
    pipeline.feed(event(ConnectionChange.OPENED))
    for second in range(20):
        at = T0 + 1000 * second
        pipeline.feed(array(at, item("BTCUSDT", at + 7), item("ETHUSDT", at + 900)))
    assert causes(pipeline) == []


def test_a_symbol_that_did_not_change_while_arrays_came_is_quiet() -> None:
    pipeline = all_market()
    pipeline.feed(event(ConnectionChange.OPENED))
    pipeline.feed(array(T0, item("BTCUSDT", T0), item("ETHUSDT", T0)))
    for second in range(1, 10):
        at = T0 + 1000 * second
        # ETHUSDT unchanged; some seconds nothing recorded changed at all.
        pipeline.feed(array(at, item("BTCUSDT", at)) if second % 3 else array(at))
    pipeline.feed(array(T0 + 10_000, item("ETHUSDT", T0 + 10_000)))
    assert causes(pipeline) == [("ETHUSDT", 4, GapCause.QUIET)]


def test_arrays_stopping_on_an_open_connection_is_a_stall() -> None:
    pipeline = all_market()
    pipeline.feed(event(ConnectionChange.OPENED))
    pipeline.feed(array(T0, item("BTCUSDT", T0), item("ETHUSDT", T0 + 10)))
    # Twenty seconds without a frame, then one array with both: the connection was silent.
    pipeline.feed(array(T0 + 20_000, item("BTCUSDT", T0 + 20_000), item("ETHUSDT", T0 + 20_010)))
    assert causes(pipeline) == [("BTCUSDT", 9, GapCause.STALL), ("ETHUSDT", 9, GapCause.STALL)]


def test_a_stall_the_silence_check_ends_is_a_stall_for_what_the_replacement_brings() -> None:
    pipeline = all_market()
    pipeline.feed(event(ConnectionChange.OPENED))
    pipeline.feed(array(T0, item("BTCUSDT", T0), item("ETHUSDT", T0)))
    pipeline.feed(event(ConnectionChange.OPENED, "0.2"))
    pipeline.feed(event(ConnectionChange.STALLED))
    pipeline.feed(array(T0 + 9000, item("BTCUSDT", T0 + 9000), connection="0.2"))
    assert causes(pipeline) == [("BTCUSDT", 4, GapCause.STALL)]


def test_a_dropped_connection_is_a_disconnect_for_the_symbols_that_ticked_meanwhile() -> None:
    pipeline = all_market()
    pipeline.feed(event(ConnectionChange.OPENED))
    pipeline.feed(array(T0, item("BTCUSDT", T0), item("ETHUSDT", T0)))
    pipeline.feed(event(ConnectionChange.DROPPED))
    pipeline.feed(event(ConnectionChange.OPENED, "0.2"))
    # BTCUSDT ticked while nothing was connected; ETHUSDT changed right after.
    pipeline.feed(array(T0 + 6000, item("BTCUSDT", T0 + 6000), connection="0.2"))
    pipeline.feed(array(T0 + 1000, item("ETHUSDT", T0 + 1500), connection="0.2"))
    assert causes(pipeline) == [("BTCUSDT", 2, GapCause.DISCONNECT)]


def test_a_planned_handover_is_no_gap_and_no_duplicate() -> None:
    pipeline = all_market()
    pipeline.feed(event(ConnectionChange.OPENED))
    pipeline.feed(array(T0, item("BTCUSDT", T0), item("ETHUSDT", T0)))
    pipeline.feed(event(ConnectionChange.OPENED, "0.2"))
    # Both connections deliver the same second's array while they overlap.
    same = (item("BTCUSDT", T0 + 1000), item("ETHUSDT", T0 + 1000))
    pipeline.feed(array(T0 + 1000, *same))
    pipeline.feed(array(T0 + 1000, *same, connection="0.2"))
    pipeline.feed(event(ConnectionChange.RETIRED))
    pipeline.feed(array(T0 + 2000, item("BTCUSDT", T0 + 2000), connection="0.2"))
    taken = pipeline.take()
    assert taken.gaps == []
    assert len(taken.events) == 5
    assert pipeline.counters.duplicates == 2


@pytest.mark.parametrize("symbol", RECORDED)
def test_a_restart_is_a_restart(symbol: str) -> None:
    pipeline = all_market(restored={symbol: T0 - 60_000})
    pipeline.feed(event(ConnectionChange.OPENED))
    pipeline.feed(array(T0, item(symbol, T0)))
    assert causes(pipeline) == [(symbol, 29, GapCause.RESTART)]


def test_one_recorded_symbol_on_silent_arrays_is_a_stall_not_its_own_silence() -> None:
    detector = GapDetector(2000, all_market=True)
    pipeline = EventPipeline(frozenset({"BTCUSDT"}), 1 << 20, detector, all_market=True)
    pipeline.feed(ConnectionEvent(ConnectionChange.OPENED, "0.1", ("BTCUSDT",), 0.0, 0))
    pipeline.feed(array(T0, item("BTCUSDT", T0)))
    # The arrays carry every contract: ten seconds without one is the connection's silence
    # (on a per-symbol connection carrying one symbol, it would be that symbol's: quiet).
    pipeline.feed(array(T0 + 10_000, item("BTCUSDT", T0 + 10_000)))
    assert causes(pipeline) == [("BTCUSDT", 4, GapCause.STALL)]
