"""The restart state: the newest ``E`` per symbol from the state files and from crash recovery."""

import datetime as dt
from pathlib import Path

from recorder.storage.publisher import SealedFile
from recorder.storage.recovery import RecoveryReport
from recorder.storage.sealing import SealReason

DAY = dt.date(2026, 3, 27)


def recovered(symbol: str, first_ms: int, last_ms: int) -> SealedFile:
    return SealedFile(
        Path(f"date={DAY}/symbol={symbol}/part.parquet"),
        DAY,
        symbol,
        rows=(last_ms - first_ms) // 2000 + 1,
        size_bytes=1000,
        first_event_ms=first_ms,
        last_event_ms=last_ms,
        reason=SealReason.RECOVERY,
    )


def test_rows_recovery_published_after_the_last_state_write_move_the_symbol_forward() -> None:
    # The state file is written after the write-ahead log: a crash between the two leaves
    # logged rows newer than the state, which recovery publishes.
    persisted = {"BTCUSDT": 10_000, "ETHUSDT": 10_000}
    report = RecoveryReport(files_published=(recovered("BTCUSDT", 8_000, 14_000),))

    assert report.restored_event_times(persisted) == {"BTCUSDT": 14_000, "ETHUSDT": 10_000}


def test_a_symbol_only_recovery_knows_is_restored() -> None:
    report = RecoveryReport(files_published=(recovered("SOLUSDT", 2_000, 6_000),))

    assert report.restored_event_times({}) == {"SOLUSDT": 6_000}


def test_the_newest_of_several_recovered_files_wins_and_older_ones_never_move_back() -> None:
    persisted = {"BTCUSDT": 20_000}
    report = RecoveryReport(
        files_published=(
            recovered("BTCUSDT", 2_000, 9_000),  # older than the state: ignored
            recovered("ETHUSDT", 2_000, 30_000),
            recovered("ETHUSDT", 20_000, 26_000),
        )
    )

    assert report.restored_event_times(persisted) == {"BTCUSDT": 20_000, "ETHUSDT": 30_000}


def test_the_persisted_mapping_is_not_changed() -> None:
    persisted = {"BTCUSDT": 10_000}
    RecoveryReport(files_published=(recovered("BTCUSDT", 0, 12_000),)).restored_event_times(
        persisted
    )

    assert persisted == {"BTCUSDT": 10_000}


def test_rows_an_earlier_run_published_from_the_log_still_move_the_symbol_forward() -> None:
    # A recovery stopped part way (or a crash after the rename) published this partition's
    # file already; the next recovery finds it published and publishes nothing, but the rows
    # are in the dataset: the restart gap must start after them, not at the stale state.
    persisted = {"BTCUSDT": 10_000, "ETHUSDT": 10_000}
    report = RecoveryReport(files_already_published=1, newest_event_ms={"BTCUSDT": 14_000})

    assert report.restored_event_times(persisted) == {"BTCUSDT": 14_000, "ETHUSDT": 10_000}
