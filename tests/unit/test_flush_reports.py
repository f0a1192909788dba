from prometheus_client.parser import text_string_to_metric_families

from recorder.flush_reports import FlushReports
from recorder.ops.metrics import RecorderMetrics


def test_the_memory_budget_is_exported_from_the_start() -> None:
    metrics = RecorderMetrics()
    FlushReports(metrics, buffer_budget=32 * 1024 * 1024)

    body, _ = metrics.exposition()
    budgets = [
        sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.name == "recorder_buffer_budget_bytes"
    ]
    assert budgets == [32 * 1024 * 1024]
