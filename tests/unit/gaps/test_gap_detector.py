from collections.abc import Iterable

import pytest

from recorder.gaps.detector import Gap, GapCause, GapDetector, missed_updates
from recorder.model import ConnectionChange, ConnectionEvent, MiniTicker

BTC = "BTCUSDT"
ETH = "ETHUSDT"
XRP = "XRPUSDT"
T0 = 1_714_557_600_000  # 2024-05-01T10:00:00Z, a whole multiple of 2 s


def tick(symbol: str, event_time: int) -> MiniTicker:
    return MiniTicker(symbol, event_time, "1", "1", "1", "1", "1", "1", event_time * 1000)


class Feed:
    """Drives a detector the way the service does: frame first, then its events."""

    def __init__(self, detector: GapDetector) -> None:
        self.detector = detector
        self.gaps: list[Gap] = []

    def frame(self, connection_id: str, *events: tuple[str, int]) -> list[Gap]:
        self.detector.on_frame(connection_id)
        found = []
        for symbol, offset in events:
            gap = self.detector.observe(tick(symbol, T0 + offset), connection_id, 42)
            if gap is not None:
                found.append(gap)
        self.gaps.extend(found)
        return found

    def duplicate_frame(self, connection_id: str) -> None:
        """A frame whose events the de-duplicator dropped: counted, never observed."""
        self.detector.on_frame(connection_id)

    def connection(
        self, change: ConnectionChange, connection_id: str, symbols: Iterable[str] = (BTC,)
    ) -> None:
        self.detector.on_connection(ConnectionEvent(change, connection_id, tuple(symbols), 0.0, 0))

    def stream(self, connection_id: str, symbols: Iterable[str], offsets: Iterable[int]) -> None:
        """Every symbol each offset, one frame per event, as the combined stream delivers."""
        names = list(symbols)
        for offset in offsets:
            for position, symbol in enumerate(names):
                self.frame(connection_id, (symbol, offset + position))


def open_connection(feed: Feed, connection_id: str, symbols: Iterable[str] = (BTC,)) -> None:
    feed.connection(ConnectionChange.OPENED, connection_id, symbols)
    feed.connection(ConnectionChange.FIRST_DATA, connection_id, symbols)


# -- the formula ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delta_ms", "missed"),
    [
        (0, 0),
        (1000, 0),
        (2000, 0),
        (2900, 0),  # jitter below the threshold
        (2999, 0),
        (3000, 1),  # exactly 1.5 intervals: half rounds up
        (3100, 1),  # jitter above the threshold
        (4000, 1),
        (5000, 2),  # 2.5: banker's rounding would say 1
        (7000, 3),  # 3.5
        (20_000, 9),
    ],
)
def test_missed_updates_rounds_half_up(delta_ms: int, missed: int) -> None:
    assert missed_updates(T0, T0 + delta_ms) == missed


def test_missed_updates_with_another_interval() -> None:
    assert missed_updates(0, 1500, 1000) == 1
    assert missed_updates(0, 1499, 1000) == 0
    assert missed_updates(0, 10_000, 1000) == 9


def test_missed_updates_never_negative() -> None:
    assert missed_updates(T0, T0 - 10_000) == 0


@pytest.mark.parametrize("interval_ms", [0, -2000])
def test_interval_must_be_positive(interval_ms: int) -> None:
    with pytest.raises(ValueError, match="interval_ms"):
        missed_updates(0, 1, interval_ms)
    with pytest.raises(ValueError, match="interval_ms"):
        GapDetector(interval_ms)


# -- steady streams and quiet symbols -------------------------------------------------------


def test_steady_stream_has_no_gaps() -> None:
    feed = Feed(GapDetector())
    open_connection(feed, "0.1", (BTC, ETH))
    feed.stream("0.1", (BTC, ETH), range(0, 200_000, 2000))
    assert feed.gaps == []
    assert feed.detector.last_event_times() == {BTC: T0 + 198_000, ETH: T0 + 198_001}


def test_jitter_around_the_threshold() -> None:
    feed = Feed(GapDetector())
    open_connection(feed, "0.1", (BTC, ETH))
    assert feed.frame("0.1", (BTC, 0)) == []
    feed.frame("0.1", (ETH, 1000))
    assert feed.frame("0.1", (BTC, 2900)) == []
    feed.frame("0.1", (ETH, 4000))
    [gap] = feed.frame("0.1", (BTC, 6000))
    assert (gap.from_ms, gap.to_ms, gap.missed) == (T0 + 2900, T0 + 6000, 1)


def test_one_missed_update_of_a_symbol_while_the_connection_delivers_is_quiet() -> None:
    feed = Feed(GapDetector())
    open_connection(feed, "0.1", (BTC, ETH))
    feed.stream("0.1", (BTC, ETH), range(0, 10_000, 2000))
    feed.stream("0.1", (ETH,), [10_000])  # BTC did not change: no push
    feed.stream("0.1", (BTC, ETH), range(12_000, 20_000, 2000))
    assert feed.gaps == [
        Gap(BTC, T0 + 8000, T0 + 12_000, 1, GapCause.QUIET, 42, "0.1"),
    ]


def test_many_missed_updates_of_a_quiet_symbol() -> None:
    feed = Feed(GapDetector())
    open_connection(feed, "0.1", (BTC, ETH))
    feed.stream("0.1", (BTC, ETH), [0])
    feed.stream("0.1", (BTC,), range(2000, 62_000, 2000))
    [gap] = feed.frame("0.1", (ETH, 62_001))
    assert gap == Gap(ETH, T0 + 1, T0 + 62_001, 30, GapCause.QUIET, 42, "0.1")
    assert gap.key == (ETH, T0 + 1, T0 + 62_001)


# -- disconnects, stalls, handovers ---------------------------------------------------------


def test_disconnect_is_blamed_on_the_connection_that_dropped() -> None:
    feed = Feed(GapDetector())
    open_connection(feed, "0.1")
    feed.stream("0.1", (BTC,), range(0, 10_000, 2000))
    feed.connection(ConnectionChange.DROPPED, "0.1")
    open_connection(feed, "0.2")
    [gap] = feed.frame("0.2", (BTC, 16_000))
    assert gap == Gap(BTC, T0 + 8000, T0 + 16_000, 3, GapCause.DISCONNECT, 42, "0.1")
    feed.stream("0.2", (BTC,), range(18_000, 30_000, 2000))
    assert len(feed.gaps) == 1


def test_reconnect_fast_enough_makes_no_gap() -> None:
    feed = Feed(GapDetector())
    open_connection(feed, "0.1")
    feed.stream("0.1", (BTC,), range(0, 10_000, 2000))
    feed.connection(ConnectionChange.DROPPED, "0.1")
    open_connection(feed, "0.2")
    feed.stream("0.2", (BTC,), range(10_000, 20_000, 2000))
    assert feed.gaps == []


def test_several_symbols_on_several_connections() -> None:
    feed = Feed(GapDetector())
    open_connection(feed, "0.1", (BTC, ETH))
    open_connection(feed, "1.1", (XRP,))
    for offset in range(0, 10_000, 2000):
        feed.frame("0.1", (BTC, offset))
        feed.frame("1.1", (XRP, offset + 1))
        feed.frame("0.1", (ETH, offset + 2))
    feed.connection(ConnectionChange.DROPPED, "1.1", (XRP,))
    for offset in range(10_000, 20_000, 2000):
        feed.frame("0.1", (BTC, offset))
        feed.frame("0.1", (ETH, offset + 2))
    open_connection(feed, "1.2", (XRP,))
    feed.frame("1.2", (XRP, 20_001))
    assert feed.gaps == [
        Gap(XRP, T0 + 8001, T0 + 20_001, 5, GapCause.DISCONNECT, 42, "1.1"),
    ]


def test_stall_ended_by_the_watchdog() -> None:
    feed = Feed(GapDetector())
    open_connection(feed, "0.1", (BTC, ETH))
    feed.stream("0.1", (BTC, ETH), range(0, 10_000, 2000))
    feed.connection(ConnectionChange.STALLED, "0.1", (BTC, ETH))
    open_connection(feed, "0.2", (BTC, ETH))
    feed.stream("0.2", (BTC, ETH), [80_000])
    assert [(g.symbol, g.missed, g.cause, g.connection_id) for g in feed.gaps] == [
        (BTC, 35, GapCause.STALL, "0.1"),
        (ETH, 35, GapCause.STALL, "0.1"),
    ]


def test_stall_without_the_watchdog_two_symbols() -> None:
    feed = Feed(GapDetector())
    open_connection(feed, "0.1", (BTC, ETH))
    feed.stream("0.1", (BTC,), range(0, 10_000, 2000))
    [gap] = feed.frame("0.1", (BTC, 20_000))  # nothing at all in between, ETH silent too
    assert (gap.cause, gap.missed, gap.connection_id) == (GapCause.STALL, 5, "0.1")


def test_a_one_symbol_connection_silent_as_a_whole_is_quiet() -> None:
    # Its silence is the symbol's own: the exchange pushed nothing, the connection is alive.
    feed = Feed(GapDetector())
    open_connection(feed, "0.1", (BTC,))
    feed.stream("0.1", (BTC,), range(0, 10_000, 2000))
    [gap] = feed.frame("0.1", (BTC, 20_000))
    assert (gap.cause, gap.missed, gap.connection_id) == (GapCause.QUIET, 5, "0.1")
    feed.stream("0.1", (BTC,), range(40_000, 50_000, 2000))  # and again: no stall either
    assert [g.cause for g in feed.gaps] == [GapCause.QUIET, GapCause.QUIET]


def test_a_one_symbol_connection_found_stalled_by_its_silence_check_is_stall() -> None:
    feed = Feed(GapDetector())
    open_connection(feed, "0.1", (BTC,))
    feed.stream("0.1", (BTC,), range(0, 10_000, 2000))
    feed.connection(ConnectionChange.PROBE_ANSWERED, "0.1", (BTC,))  # a stall answers requests
    open_connection(feed, "0.2", (BTC,))
    # The replacement delivered at once, 0.1 did not: the source ends 0.1 before it passes on
    # what the replacement delivered.
    feed.connection(ConnectionChange.STALLED, "0.1", (BTC,))
    feed.frame("0.2", (BTC, 70_000))
    feed.stream("0.2", (BTC,), range(72_000, 80_000, 2000))
    assert [(g.symbol, g.missed, g.cause, g.connection_id) for g in feed.gaps] == [
        (BTC, 30, GapCause.STALL, "0.1")
    ]


def test_rule_4_alone_blames_a_connection_silent_between_two_events_of_a_symbol() -> None:
    # ETH's E runs ahead of BTC's: the connection's newest E makes its learnt silence only 5 s
    # of BTC's 20 s gap (rule 5 does not apply), yet nothing at all arrived between BTC's two
    # events: rule 4 alone calls it a stall.
    feed = Feed(GapDetector())
    open_connection(feed, "0.1", (BTC, ETH))
    feed.frame("0.1", (ETH, 15_000))
    feed.frame("0.1", (BTC, 0))
    [gap] = feed.frame("0.1", (BTC, 20_000))
    assert (gap.symbol, gap.missed, gap.cause) == (BTC, 9, GapCause.STALL)


def test_an_answered_probe_shows_a_connection_whose_symbols_all_went_quiet_alive() -> None:
    feed = Feed(GapDetector())
    open_connection(feed, "0.1", (BTC, ETH))
    feed.stream("0.1", (BTC, ETH), range(0, 10_000, 2000))
    feed.connection(ConnectionChange.PROBE_ANSWERED, "0.1", (BTC, ETH))  # the silence check
    feed.stream("0.1", (BTC, ETH), range(80_000, 84_000, 2000))
    assert [(g.symbol, g.cause) for g in feed.gaps] == [
        (BTC, GapCause.QUIET),
        (ETH, GapCause.QUIET),
    ]


def test_connection_wide_stall_without_the_watchdog_blames_every_symbol() -> None:
    feed = Feed(GapDetector())
    open_connection(feed, "0.1", (BTC, ETH, XRP))
    feed.stream("0.1", (BTC, ETH, XRP), range(0, 10_000, 2000))
    # 12 s of silence, then everyone resumes: only BTC sees "no frame in between".
    feed.stream("0.1", (BTC, ETH, XRP), range(20_000, 30_000, 2000))
    assert [(g.symbol, g.cause, g.missed) for g in feed.gaps] == [
        (BTC, GapCause.STALL, 5),
        (ETH, GapCause.STALL, 5),
        (XRP, GapCause.STALL, 5),
    ]


def test_a_long_quiet_symbol_stays_quiet_across_a_short_stall() -> None:
    feed = Feed(GapDetector())
    open_connection(feed, "0.1", (BTC, ETH))
    feed.stream("0.1", (BTC, ETH), [0])
    feed.stream("0.1", (BTC,), range(2000, 60_000, 2000))
    feed.stream("0.1", (BTC,), range(66_000, 120_000, 2000))  # BTC: 6 s of stall
    feed.frame("0.1", (ETH, 120_001))
    assert [(g.symbol, g.cause) for g in feed.gaps] == [
        (BTC, GapCause.STALL),
        (ETH, GapCause.QUIET),  # silent for 2 min; the 6 s stall does not explain that
    ]


def test_duplicate_frames_during_an_overlap_are_not_silence() -> None:
    feed = Feed(GapDetector())
    open_connection(feed, "0.1", (BTC, ETH))
    open_connection(feed, "0.2", (BTC, ETH))
    feed.frame("0.2", (BTC, 0), (ETH, 1))  # the new connection wins these
    for offset in range(2000, 12_000, 2000):  # the old one wins BTC from now on
        feed.frame("0.1", (BTC, offset))
        feed.duplicate_frame("0.2")
    # ETH was quiet; connection 0.2 delivered (duplicate) frames all along.
    [gap] = feed.frame("0.2", (ETH, 12_001))
    assert (gap.cause, gap.connection_id) == (GapCause.QUIET, "0.2")


def test_planned_handover_makes_no_gap() -> None:
    feed = Feed(GapDetector())
    open_connection(feed, "0.1", (BTC, ETH))
    feed.stream("0.1", (BTC, ETH), range(0, 20_000, 2000))
    open_connection(feed, "0.2", (BTC, ETH))
    for offset in range(20_000, 26_000, 2000):  # overlap: both deliver, 0.1 first
        feed.frame("0.1", (BTC, offset))
        feed.duplicate_frame("0.2")
        feed.frame("0.1", (ETH, offset + 1))
        feed.duplicate_frame("0.2")
    feed.connection(ConnectionChange.RETIRED, "0.1", (BTC, ETH))
    feed.stream("0.2", (BTC, ETH), range(26_000, 40_000, 2000))
    assert feed.gaps == []


def test_missed_updates_across_a_handover_are_quiet() -> None:
    feed = Feed(GapDetector())
    open_connection(feed, "0.1", (BTC, ETH))
    feed.stream("0.1", (BTC, ETH), range(0, 20_000, 2000))
    open_connection(feed, "0.2", (BTC, ETH))
    feed.frame("0.2", (ETH, 20_001))
    feed.connection(ConnectionChange.RETIRED, "0.1", (BTC, ETH))
    feed.stream("0.2", (ETH,), [22_001])
    [gap] = feed.frame("0.2", (BTC, 24_000))
    assert (gap.cause, gap.missed, gap.connection_id) == (GapCause.QUIET, 2, "0.1")


def test_only_the_first_end_of_a_connection_counts() -> None:
    feed = Feed(GapDetector())
    open_connection(feed, "0.1")
    feed.stream("0.1", (BTC,), [0])
    feed.connection(ConnectionChange.STALLED, "0.1")
    feed.connection(ConnectionChange.DROPPED, "0.1")
    open_connection(feed, "0.2")
    [gap] = feed.frame("0.2", (BTC, 10_000))
    assert gap.cause is GapCause.STALL


# -- restarts and overlaps ------------------------------------------------------------------


def test_restart_from_restored_state() -> None:
    feed = Feed(GapDetector(restored={BTC: T0, ETH: T0 + 1}))
    assert feed.detector.last_event_times() == {BTC: T0, ETH: T0 + 1}
    open_connection(feed, "0.1", (BTC, ETH))
    [gap] = feed.frame("0.1", (BTC, 60_000))
    assert gap == Gap(BTC, T0, T0 + 60_000, 29, GapCause.RESTART, 42, None)
    assert feed.frame("0.1", (ETH, 2001)) == []  # restarted quickly enough: no gap
    feed.stream("0.1", (BTC, ETH), [62_000])
    [later] = feed.frame("0.1", (ETH, 70_001))
    assert later.cause is not GapCause.RESTART


def test_an_event_older_than_the_restored_one_is_ignored() -> None:
    feed = Feed(GapDetector(restored={BTC: T0 + 10_000}))
    open_connection(feed, "0.1")
    assert feed.frame("0.1", (BTC, 4000)) == []
    assert feed.detector.last_event_times() == {BTC: T0 + 10_000}
    assert feed.frame("0.1", (BTC, 12_000)) == []


def test_out_of_order_events_of_overlapping_connections() -> None:
    feed = Feed(GapDetector())
    open_connection(feed, "0.1", (BTC, ETH))
    feed.stream("0.1", (BTC, ETH), range(0, 12_000, 2000))
    open_connection(feed, "0.2", (BTC, ETH))
    feed.frame("0.2", (BTC, 12_000))  # the new connection is ahead
    assert feed.frame("0.1", (BTC, 11_000)) == []  # late: neither a gap nor a step back
    assert feed.detector.last_event_times()[BTC] == T0 + 12_000
    assert feed.frame("0.2", (BTC, 14_000)) == []
    assert feed.frame("0.1", (BTC, 5000)) == []
    assert feed.gaps == []


def test_a_late_event_does_not_undo_a_gap_already_reported() -> None:
    feed = Feed(GapDetector())
    open_connection(feed, "0.1", (BTC, ETH))
    feed.stream("0.1", (BTC, ETH), range(0, 12_000, 2000))
    open_connection(feed, "0.2", (BTC, ETH))
    [gap] = feed.frame("0.2", (BTC, 14_000))
    assert (gap.from_ms, gap.to_ms, gap.cause) == (T0 + 10_000, T0 + 14_000, GapCause.QUIET)
    assert feed.frame("0.1", (BTC, 12_000)) == []
    assert feed.detector.last_event_times()[BTC] == T0 + 14_000


def test_repeated_event_time_is_not_a_gap() -> None:
    feed = Feed(GapDetector())
    open_connection(feed, "0.1")
    feed.frame("0.1", (BTC, 0))
    assert feed.frame("0.1", (BTC, 0)) == []


def test_array_frames_carry_many_symbols() -> None:
    feed = Feed(GapDetector())
    open_connection(feed, "all.1", (BTC, ETH, XRP))
    for offset in range(0, 10_000, 1000):
        feed.frame("all.1", (BTC, offset), (ETH, offset + 1), (XRP, offset + 2))
    feed.frame("all.1", (BTC, 10_000), (ETH, 10_001))  # XRP unchanged for a while
    feed.frame("all.1", (BTC, 11_000), (ETH, 11_001))
    feed.frame("all.1", (BTC, 12_000), (ETH, 12_001), (XRP, 12_002))
    assert [(g.symbol, g.cause) for g in feed.gaps] == [(XRP, GapCause.QUIET)]


def test_another_interval() -> None:
    feed = Feed(GapDetector(interval_ms=1000))
    assert feed.detector.interval_ms == 1000
    open_connection(feed, "0.1")
    feed.stream("0.1", (BTC,), [0, 1000, 2500])
    [gap] = feed.gaps
    assert gap.missed == 1


def test_ended_connections_are_forgotten() -> None:
    detector = GapDetector()
    feed = Feed(detector)
    for serial in range(100):
        connection_id = f"0.{serial}"
        open_connection(feed, connection_id)
        feed.stream(connection_id, (BTC,), [serial * 2000])
        feed.connection(ConnectionChange.DROPPED, connection_id)
    assert feed.gaps == []
    # Only the connection still carrying BTC's newest event is remembered.
    assert list(detector._connections) == ["0.99"]
