"""What ``/healthz`` answers: every shard's connection delivering and the last flush working."""

from collections.abc import Mapping

from recorder.flush_reports import FlushHealth
from recorder.ingest.connection import MAX_SILENCE_FACTOR
from recorder.ingest.pipeline import ConnectionState
from recorder.settings import SourceSettings


def recorder_health(
    *,
    source: SourceSettings,
    connections: Mapping[str, ConnectionState],
    expected: int,
    flush: FlushHealth,
    instance_id: str,
    now_us: int,
) -> tuple[bool, Mapping[str, object]]:
    """Healthy when ``expected`` connections deliver data and the last flush worked.

    A connection counts as delivering when its newest frame is younger than half the stall
    timeout (the health check turns red before a silence check begins), or when a silence
    check found it alive and its symbols quiet since the longest silence allowed before the
    next check (``MAX_SILENCE_FACTOR`` stall timeouts) and that check's own time: a quiet
    symbol's connection does not flap.

    Returns:
        Whether it is healthy, and the details ``/healthz`` shows (with the reasons when not).
    """
    fresh_us = source.stall_timeout / 2 * 1_000_000
    quiet_us = (MAX_SILENCE_FACTOR * source.stall_timeout + source.handover_timeout) * 1e6
    delivering = [
        connection_id
        for connection_id, state in connections.items()
        if state.alive_at(now_us, fresh_us=fresh_us, quiet_us=quiet_us)
    ]
    reasons = []
    if len(delivering) < expected:
        reasons.append(
            f"{expected - len(delivering)} of {expected} connections delivered no data in "
            f"the last {fresh_us / 1_000_000:g}s"
        )
    if not flush.ok:
        reasons.append(f"the last flush failed: {flush.last_error}")
    details: dict[str, object] = {
        "instance_id": instance_id,
        "connections_expected": expected,
        "connections_delivering": sorted(delivering),
        "last_flush_ok": flush.ok,
        "reasons": reasons,
    }
    return not reasons, details
