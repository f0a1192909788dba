from recorder.simulate.liveness import Keepalive, KeepaliveAction, MessageRateLimiter


def test_rate_limiter_allows_the_limit_and_refuses_one_more() -> None:
    limiter = MessageRateLimiter(limit=10)
    assert all(limiter.admit(100.0 + i * 0.01) for i in range(10))
    assert not limiter.admit(100.5)


def test_rate_limiter_window_slides() -> None:
    limiter = MessageRateLimiter(limit=2, window=1.0)
    assert limiter.admit(0.0)
    assert limiter.admit(0.5)
    assert limiter.admit(1.0)  # the arrival at 0.0 left the window
    assert not limiter.admit(1.2)
    assert limiter.admit(2.6)


def keepalive() -> Keepalive:
    return Keepalive(opened_at=0.0, ping_interval=10.0, pong_timeout=30.0, lifetime=100.0)


def test_ping_is_due_every_interval() -> None:
    state = keepalive()
    assert state.due(9.9) is None
    assert state.next_deadline() == 10.0
    assert state.due(10.0) is KeepaliveAction.PING
    state.ping_sent(10.0)
    assert state.due(15.0) is None
    assert state.next_deadline() == 20.0


def test_an_echoing_pong_answers_its_ping_and_earlier_ones() -> None:
    state = keepalive()
    first = state.ping_sent(10.0)
    second = state.ping_sent(20.0)
    assert first != second
    assert state.pong_deadline == 40.0
    assert state.pong_received(second)
    assert state.pong_deadline is None


def test_an_unsolicited_pong_does_not_keep_the_connection_alive() -> None:
    state = keepalive()
    state.ping_sent(10.0)
    assert not state.pong_received(b"unsolicited")
    assert state.due(40.0) is KeepaliveAction.PONG_OVERDUE


def test_pong_overdue_after_the_timeout() -> None:
    state = keepalive()
    payload = state.ping_sent(10.0)
    state.ping_sent(20.0)
    assert state.due(39.9) is KeepaliveAction.PING  # the third ping
    assert state.due(40.0) is KeepaliveAction.PONG_OVERDUE
    state.pong_received(payload)
    assert state.pong_deadline == 50.0


def test_lifetime_wins_over_everything() -> None:
    state = keepalive()
    state.ping_sent(80.0)
    assert state.due(100.0) is KeepaliveAction.LIFETIME_OVER
    assert state.next_deadline() == 90.0


def test_a_skipped_ping_is_not_awaited() -> None:
    state = keepalive()
    state.ping_skipped(10.0)
    assert state.pong_deadline is None
    assert state.due(19.0) is None
    assert state.due(20.0) is KeepaliveAction.PING
