"""Live subscription changes, sans-IO: the plan, the pace, the replies, the reconciler."""

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.clock import SystemClock
from recorder.ingest.shards import MarketSource
from recorder.ingest.subscriptions import (
    MAX_ATTEMPTS,
    MAX_CONTROL_PER_SECOND,
    ControlRateLimiter,
    ControlReply,
    Step,
    StreamReconciler,
    control_request,
    parse_control_reply,
    plan_changes,
)
from recorder.settings import parse_settings

names = st.sampled_from([f"S{n}USDT" for n in range(40)])


@st.composite
def shard_layouts(draw: st.DrawFn) -> tuple[list[tuple[str, ...]], int]:
    limit = draw(st.integers(1, 6))
    symbols = draw(st.lists(names, unique=True, max_size=25))
    shards = [tuple(symbols[i : i + limit]) for i in range(0, len(symbols), limit)]
    return shards, limit


@settings(max_examples=300, deadline=None)
@given(shard_layouts(), st.lists(names, max_size=15), st.data())
def test_a_plan_keeps_every_shard_within_the_limit_and_records_the_new_set(
    layout: tuple[list[tuple[str, ...]], int], listed: list[str], data: st.DataObject
) -> None:
    shards, limit = layout
    carried = [symbol for shard in shards for symbol in shard]
    delisted = data.draw(
        st.lists(st.sampled_from(carried), unique=True) if carried else st.just([])
    )
    plan = plan_changes(shards, listed, delisted, limit)
    after = plan.applied_to(shards)
    assert all(0 < len(shard) <= limit for shard in after)
    flat = [symbol for shard in after for symbol in shard]
    assert len(flat) == len(set(flat))
    expected = (set(carried) - set(delisted)) | set(listed)
    assert set(flat) == expected
    # A shard is opened only when the existing ones are full.
    if plan.new_shards:
        sizes = [len(shard) - len(plan.unsubscribe.get(i, ())) for i, shard in enumerate(shards)]
        assert all(size + len(plan.subscribe.get(i, ())) == limit for i, size in enumerate(sizes))
    # Nothing else moves: only delisted symbols leave, only new ones arrive.
    assert {s for removed in plan.unsubscribe.values() for s in removed} == set(delisted)
    subscribed = [s for added in plan.subscribe.values() for s in added]
    subscribed += [s for shard in plan.new_shards for s in shard]
    assert sorted(subscribed) == sorted(set(listed) - (set(carried) - set(delisted)))


def test_new_symbols_fill_the_emptiest_shards_first() -> None:
    plan = plan_changes([("A", "B", "C"), ("D",), ("E", "F")], ["G", "H", "I"], [], 3)
    assert dict(plan.subscribe) == {1: ("G", "H"), 2: ("I",)}
    assert plan.new_shards == ()


def test_a_symbol_already_carried_is_not_subscribed_again() -> None:
    plan = plan_changes([("A",)], ["A", "B"], [], 2)
    assert dict(plan.subscribe) == {0: ("B",)}


def test_the_limiter_allows_five_in_any_second_with_a_fake_clock() -> None:
    limiter = ControlRateLimiter()
    now = 100.0
    sent: list[float] = []
    while len(sent) < 12:
        delay = limiter.delay(now)
        if delay > 0:
            now += delay
            continue
        limiter.sent(now)
        sent.append(now)
        now += 0.01
    for index in range(len(sent) - MAX_CONTROL_PER_SECOND):
        assert sent[index + MAX_CONTROL_PER_SECOND] - sent[index] >= 1.0


@pytest.mark.parametrize(
    ("frame", "reply"),
    [
        ('{"result":null,"id":3}', ControlReply(3, ok=True)),
        (b'{"result":null,"id":3}', ControlReply(3, ok=True)),
        ('{"id":3,"result":["x"]}', ControlReply(3, ok=False, detail="unexpected result ['x']")),
        (
            '{"error":{"code":2,"msg":"no"},"id":3}',
            ControlReply(3, False, "{'code': 2, 'msg': 'no'}"),
        ),
        ('{"result":null,"id":4}', None),
        ('{"result":null,"id":"3"}', None),
        ('{"result":null,"id":true}', None),
        ('{"id":3}', None),
        ('{"stream":"btcusdt@miniTicker","data":{"e":"24hrMiniTicker"}}', None),
        ("[" * 5000 + '"id"' + "]" * 5000, None),
        (b'\xff\xfe"id"', None),
        ('not json "id"', None),
        ('{"result":null,"id":3,"pad":"' + "x" * 70_000 + '"}', None),
    ],
)
def test_replies_are_matched_by_id_and_checked(
    frame: str | bytes, reply: ControlReply | None
) -> None:
    assert parse_control_reply(frame, [3]) == reply


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_any_frame_is_a_reply_or_not_never_an_error(frame: bytes | str) -> None:
    parse_control_reply(frame, [1, 2, 3])


def test_requests_name_the_streams() -> None:
    assert control_request("UNSUBSCRIBE", ["币安人生USDT"], 9) == (
        '{"method":"UNSUBSCRIBE","params":["币安人生usdt@miniTicker"],"id":9}'
    )


def test_the_reconciler_removes_first_then_adds_then_rests() -> None:
    reconciler = StreamReconciler()
    assert reconciler.next_step(("A", "B"), ("B", "C")) == Step("UNSUBSCRIBE", ("A",))
    reconciler.succeeded()
    assert reconciler.next_step(("B",), ("B", "C")) == Step("SUBSCRIBE", ("C",))
    reconciler.succeeded()
    assert reconciler.next_step(("B", "C"), ("B", "C")) == Step()


def test_failed_requests_are_retried_then_handed_over() -> None:
    reconciler = StreamReconciler()
    for _ in range(MAX_ATTEMPTS):
        assert reconciler.next_step(("A",), ("A", "B")) == Step("SUBSCRIBE", ("B",))
        reconciler.failed()
    assert reconciler.next_step(("A",), ("A", "B")) == Step(handover=True)
    reconciler.handed_over()
    assert reconciler.next_step(("A",), ("A", "B")) == Step("SUBSCRIBE", ("B",))


def test_a_source_not_yet_running_replans_its_shards() -> None:
    settings = parse_settings(
        {"source": {"symbols": ["A1", "B1", "C1"], "max_streams_per_connection": 2}}
    ).source
    source = MarketSource(settings, SystemClock(), asyncio.Queue())
    assert source.shards == [("A1", "B1"), ("C1",)]
    # A1 leaves room on the first shard; then each shard takes one.
    assert source.apply(("D1", "E1", "F1"), ("A1",)) == 1
    assert source.shards == [("B1", "D1"), ("C1", "E1"), ("F1",)]
    assert source.apply((), ("F1",)) == 0
    assert source.shards == [("B1", "D1"), ("C1", "E1")]
