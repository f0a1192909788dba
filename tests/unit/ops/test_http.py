"""The /healthz body built from a health verdict (the server itself: tests/integration)."""

from recorder.ops.http import health_body


def test_health_body() -> None:
    assert health_body(True, {"connections": 2}) == {"status": "ok", "connections": 2}
    assert health_body(False, {"reasons": ["last flush failed: disk full"]}) == {
        "status": "unhealthy",
        "reasons": ["last flush failed: disk full"],
    }
    assert health_body(False, {}) == {"status": "unhealthy", "reasons": []}
    # The verdict decides the status, whatever the details say.
    assert health_body(False, {"status": "ok"})["status"] == "unhealthy"
