"""Gaps for the gap log tests: one ``disconnect`` of BTCUSDT on 2024-05-01 unless told otherwise."""

from recorder.gaps.detector import Gap, GapCause

T0 = 1_714_557_600_000  # 2024-05-01T10:00:00Z
DETECTED = 1_714_557_610_123_456  # 2024-05-01T10:00:10.123456Z


def gap(
    symbol: str = "BTCUSDT",
    from_ms: int = T0,
    to_ms: int = T0 + 10_000,
    cause: GapCause = GapCause.DISCONNECT,
    instance_id: str | None = None,
) -> Gap:
    """A gap of ``symbol`` between two events, detected at :data:`DETECTED` on connection 0.3."""
    missed = max((to_ms - from_ms) // 2000 - 1, 1)
    return Gap(symbol, from_ms, to_ms, missed, cause, DETECTED, "0.3", instance_id)
