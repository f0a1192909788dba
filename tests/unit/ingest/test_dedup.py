import pytest

from recorder.ingest.dedup import DuplicateFilter


def test_overlapping_handover_streams_keep_each_event_once() -> None:
    seen = DuplicateFilter()
    old = [("BTCUSDT", e) for e in range(1000, 1010)]
    new = [("BTCUSDT", e) for e in range(1006, 1020)]
    interleaved = old[:6] + [x for pair in zip(old[6:], new, strict=False) for x in pair] + new[4:]
    kept = [e for s, e in interleaved if seen.accept(s, e)]
    assert sorted(kept) == list(range(1000, 1020))
    assert len(kept) == 20
    assert seen.duplicates == len(interleaved) - 20


def test_symbols_are_independent() -> None:
    seen = DuplicateFilter()
    assert seen.accept("BTCUSDT", 5)
    assert seen.accept("ETHUSDT", 5)
    assert not seen.accept("ETHUSDT", 5)


def test_window_is_bounded() -> None:
    seen = DuplicateFilter(window=3)
    for e in range(10):
        assert seen.accept("X", e)
    assert seen.accept("X", 0)  # forgotten: outside the window
    assert not seen.accept("X", 9)


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="window"):
        DuplicateFilter(window=0)
