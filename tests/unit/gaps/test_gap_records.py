"""A gap as a gap log record and back: every field checked on the way in."""

import pytest
from gap_samples import T0, gap

from recorder.gaps.records import GapRecordError, gap_from_record, gap_to_record


def test_record_validation() -> None:
    record = gap_to_record(gap(), "host-a")
    assert gap_from_record(record) == gap(instance_id="host-a")
    with pytest.raises(GapRecordError, match="JSON object"):
        gap_from_record([1])
    for name, value, expected in [
        ("symbol", "", "symbol"),
        ("from_ms", "1", "from_ms"),
        ("missed", True, "missed"),
        ("missed", 0, "missed"),
        ("to_ms", T0, "to_ms"),
        ("cause", "gremlins", "cause"),
        ("detected_at", 5, "detected_at"),
        ("connection_id", 5, "connection_id"),
    ]:
        with pytest.raises(GapRecordError, match=expected):
            gap_from_record({**record, name: value})
    with pytest.raises(ValueError, match="isoformat"):
        gap_from_record({**record, "detected_at": "yesterday"})
