"""Per-symbol accounts of write-ahead batches: counts, ranges, protected rows, first rows after."""

import pyarrow as pa
from writer_support import DAY_MS, ticker

from recorder.storage.held_rows import (
    SymbolRows,
    first_rows_after,
    rows_by_symbol,
    split_protected,
)
from recorder.storage.wal_batch import build_flush_batch


def batch_of(*pairs: tuple[str, int]) -> pa.RecordBatch:
    return build_flush_batch([ticker(symbol, at) for symbol, at in pairs], [])


def test_rows_are_counted_per_symbol_with_their_event_time_range() -> None:
    first = batch_of(("BTCUSDT", DAY_MS), ("ETHUSDT", DAY_MS + 1000))
    second = batch_of(("BTCUSDT", DAY_MS + 2000), ("BTCUSDT", DAY_MS + 4000))
    assert rows_by_symbol([first, second]) == {
        "BTCUSDT": SymbolRows(3, DAY_MS, DAY_MS + 4000),
        "ETHUSDT": SymbolRows(1, DAY_MS + 1000, DAY_MS + 1000),
    }
    assert rows_by_symbol([]) == {}


def test_protected_rows_are_split_off_and_the_rest_kept_in_order() -> None:
    batch = batch_of(("BTCUSDT", DAY_MS), ("BTCUSDT", DAY_MS + 2000), ("ETHUSDT", DAY_MS))
    spared, given_up = split_protected(batch, {"BTCUSDT": frozenset({DAY_MS + 2000})})
    assert rows_by_symbol([spared]) == {"BTCUSDT": SymbolRows(1, DAY_MS + 2000, DAY_MS + 2000)}
    assert rows_by_symbol([given_up]) == {
        "BTCUSDT": SymbolRows(1, DAY_MS, DAY_MS),
        "ETHUSDT": SymbolRows(1, DAY_MS, DAY_MS),
    }
    nothing, everything = split_protected(batch, {})
    assert (nothing.num_rows, everything.num_rows) == (0, 3)


def test_the_first_row_after_a_point_is_found_per_symbol() -> None:
    batches = [
        batch_of(("BTCUSDT", DAY_MS), ("ETHUSDT", DAY_MS)),
        batch_of(("BTCUSDT", DAY_MS + 4000), ("BTCUSDT", DAY_MS + 2000)),
    ]
    found = first_rows_after(batches, {"BTCUSDT": DAY_MS, "XRPUSDT": 0})
    assert found == {"BTCUSDT": DAY_MS + 2000}
