import datetime as dt

import pytest

from recorder.clock import day_start_ms
from recorder.errors import ConfigError
from recorder.storage.paths import PartitionKey
from recorder.storage.sealing import OpenPartition, SealPlan, SealPolicy, SealReason

DAY = dt.date(2026, 3, 27)
NEXT_DAY = dt.date(2026, 3, 28)
GRACE_MS = 5_000
MIDNIGHT_MS = day_start_ms(NEXT_DAY)


def policy(max_file_age: float = 3600.0, max_file_bytes: int = 1_000) -> SealPolicy:
    return SealPolicy(
        max_file_age=max_file_age, max_file_bytes=max_file_bytes, day_grace_ms=GRACE_MS
    )


def partition(date: dt.date, symbol: str, nbytes: int = 10) -> OpenPartition:
    return OpenPartition(PartitionKey(date, symbol), nbytes)


def plan(
    seal_policy: SealPolicy,
    partitions: list[OpenPartition],
    *,
    newest_event_ms: int | None,
    now: float = 10.0,
    segment_started_at: float = 0.0,
) -> SealPlan:
    return seal_policy.plan(
        now=now,
        segment_started_at=segment_started_at,
        newest_event_ms=newest_event_ms,
        partitions=partitions,
    )


def test_nothing_is_due_for_a_young_small_partition_of_an_open_day() -> None:
    result = plan(policy(), [partition(DAY, "BTCUSDT")], newest_event_ms=MIDNIGHT_MS - 1)
    assert result == SealPlan((), rotate_segment=False)


def test_day_closes_at_midnight_plus_grace_of_the_newest_event_time() -> None:
    partitions = [partition(DAY, "BTCUSDT"), partition(NEXT_DAY, "BTCUSDT")]
    just_before = plan(policy(), partitions, newest_event_ms=MIDNIGHT_MS + GRACE_MS - 1)
    at_close = plan(policy(), partitions, newest_event_ms=MIDNIGHT_MS + GRACE_MS)

    assert just_before.seals == ()
    assert at_close.seals == ((PartitionKey(DAY, "BTCUSDT"), SealReason.DAY_END),)
    assert not at_close.rotate_segment


def test_day_close_applies_to_every_symbol_of_that_day_in_partition_order() -> None:
    partitions = [partition(DAY, "ETHUSDT"), partition(DAY, "币安人生USDT"), partition(DAY, "A")]
    result = plan(policy(), partitions, newest_event_ms=MIDNIGHT_MS + GRACE_MS)
    assert [key.symbol for key, _ in result.seals] == ["A", "ETHUSDT", "币安人生USDT"]


def test_no_event_yet_closes_no_day() -> None:
    assert plan(policy(), [partition(DAY, "BTCUSDT")], newest_event_ms=None).seals == ()


def test_day_closes_at_ms_is_the_next_midnight_plus_grace() -> None:
    assert policy().day_closes_at_ms(DAY) == MIDNIGHT_MS + GRACE_MS


def test_a_partition_over_the_size_limit_is_sealed_early() -> None:
    partitions = [partition(DAY, "BIG", nbytes=1_001), partition(DAY, "EXACT", nbytes=1_000)]
    result = plan(policy(max_file_bytes=1_000), partitions, newest_event_ms=MIDNIGHT_MS - 1)
    assert result.seals == ((PartitionKey(DAY, "BIG"), SealReason.SIZE),)


def test_segment_age_seals_everything_and_rotates() -> None:
    partitions = [
        partition(DAY, "AGED"),
        partition(DAY, "BIG", nbytes=5_000),
        partition(NEXT_DAY, "AGED"),
    ]
    early = plan(policy(max_file_age=60), partitions, newest_event_ms=MIDNIGHT_MS, now=59.9)
    due = plan(policy(max_file_age=60), partitions, newest_event_ms=MIDNIGHT_MS, now=60.0)

    assert not early.rotate_segment
    assert early.seals == ((PartitionKey(DAY, "BIG"), SealReason.SIZE),)
    assert due.rotate_segment
    assert due.seals == (
        (PartitionKey(DAY, "AGED"), SealReason.AGE),
        (PartitionKey(DAY, "BIG"), SealReason.SIZE),
        (PartitionKey(NEXT_DAY, "AGED"), SealReason.AGE),
    )


def test_rotation_is_due_without_open_partitions() -> None:
    result = plan(
        policy(max_file_age=60), [], newest_event_ms=None, now=160, segment_started_at=100
    )
    assert result == SealPlan((), rotate_segment=True)


def test_day_end_wins_over_size_as_the_reason() -> None:
    result = plan(
        policy(max_file_bytes=1), [partition(DAY, "X", 50)], newest_event_ms=MIDNIGHT_MS + GRACE_MS
    )
    assert result.seals == ((PartitionKey(DAY, "X"), SealReason.DAY_END),)


@pytest.mark.parametrize(
    ("max_file_age", "max_file_bytes", "day_grace_ms", "named"),
    [
        (0.0, 1, 0, "max_file_age"),
        (-1.0, 1, 0, "max_file_age"),
        (float("nan"), 1, 0, "max_file_age"),
        (1.0, 0, 0, "max_file_bytes"),
        (1.0, 1, -1, "day_grace_ms"),
    ],
)
def test_limits_are_validated_naming_the_setting(
    max_file_age: float, max_file_bytes: int, day_grace_ms: int, named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        SealPolicy(
            max_file_age=max_file_age, max_file_bytes=max_file_bytes, day_grace_ms=day_grace_ms
        )


def test_a_partition_with_rows_in_a_retired_segment_stays_due_for_its_age() -> None:
    seal_policy = SealPolicy(max_file_age=3600, max_file_bytes=1 << 20, day_grace_ms=5000)
    old = OpenPartition(PartitionKey(DAY, "BTCUSDT"), 10, first_lsn=7)
    young = OpenPartition(PartitionKey(DAY, "ETHUSDT"), 10, first_lsn=9)

    result = seal_policy.plan(
        now=10.0,
        segment_started_at=0.0,
        newest_event_ms=None,
        partitions=[old, young],
        retired_through_lsn=8,
    )

    assert result == SealPlan(((old.key, SealReason.AGE),), rotate_segment=False)


def test_over_the_buffer_budget_the_largest_partitions_are_sealed_early() -> None:
    seal_policy = SealPolicy(
        max_file_age=3600, max_file_bytes=1 << 20, day_grace_ms=5000, buffer_budget=100
    )
    sizes = {"AUSDT": 30, "BUSDT": 50, "CUSDT": 20, "DUSDT": 40}
    partitions = [partition(DAY, symbol, nbytes) for symbol, nbytes in sizes.items()]

    result = plan(seal_policy, partitions, newest_event_ms=None)

    # 140 bytes > 100: the largest go until at most 75 stay buffered.
    assert result.seals == (
        (PartitionKey(DAY, "BUSDT"), SealReason.BUDGET),
        (PartitionKey(DAY, "DUSDT"), SealReason.BUDGET),
    )
    assert plan(seal_policy, partitions[:3], newest_event_ms=None).seals == ()  # 100: within


def test_partitions_already_due_count_against_the_budget_first() -> None:
    seal_policy = SealPolicy(
        max_file_age=3600, max_file_bytes=70, day_grace_ms=5000, buffer_budget=100
    )
    partitions = [
        partition(DAY, "AUSDT", 40),
        partition(DAY, "BUSDT", 75),  # over max_file_bytes: due for its size
        partition(DAY, "CUSDT", 65),  # with AUSDT, 105 would stay: over the budget
    ]

    result = plan(seal_policy, partitions, newest_event_ms=None)

    assert result.seals == (
        (PartitionKey(DAY, "BUSDT"), SealReason.SIZE),
        (PartitionKey(DAY, "CUSDT"), SealReason.BUDGET),
    )


def test_a_buffer_budget_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="buffer_budget"):
        SealPolicy(max_file_age=1, max_file_bytes=1, day_grace_ms=0, buffer_budget=0)
