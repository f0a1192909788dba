"""The shipped dashboard and alerts, run by a real Prometheus scraping a running recorder.

Every panel query, every variable's selector and every rule's query (an alert's without its
threshold) must return at least one series, and every loaded rule must evaluate without error.
Then the simulated exchange stalls and RecorderNoData must fire.

The rules Prometheus loads here are a copy of ``config/prometheus-rules.yml`` made to fire
within seconds (:func:`prometheus_support.fast_rules`): every ``for`` is ``0s`` and every range
is ``[5s]`` instead of ``[2m]`` or ``[1h]``; queries, comparisons and thresholds are as shipped.
"""

import json
import sys
from pathlib import Path

import pytest
import yaml
from prometheus_support import (
    PrometheusServer,
    dashboard_expressions,
    fast_rules,
    have_prometheus,
    load_dashboard,
    load_rules,
    rule_expressions,
    wait_for_series,
)
from support import StartRecorder, StartSimulator, wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not have_prometheus(), reason="no prometheus server installed"),
]

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
# A stall shorter than stall_timeout: the recorder waits it out on the same connection, so no
# replacement connection brings the events back before the alert fires.
CONFIG = """
[source]
stall_timeout = "60s"
backoff_initial = "100ms"
"""


def test_every_panel_and_rule_returns_series_and_no_data_fires(
    tmp_path: Path, start_simulator: StartSimulator, start_recorder: StartRecorder
) -> None:
    simulator = start_simulator("--symbols", ",".join(SYMBOLS), "--speed", "20")
    recorder = start_recorder(
        root=tmp_path / "data", url=simulator.url, symbols=SYMBOLS, config=CONFIG
    )
    target = str(recorder.wait_for_log("metrics listening")["address"])
    rules_path = tmp_path / "rules.yml"
    rules_path.write_text(yaml.safe_dump(fast_rules(load_rules())), encoding="utf-8")
    expressions = dashboard_expressions(load_dashboard()) + rule_expressions(load_rules())

    with PrometheusServer.running(tmp_path, target, [rules_path]) as server:
        recorder.wait_for_log("ready")
        # Reconnect reasons and quarantine reasons have no series before their first one.
        simulator.inject("garbage,drop@500ms")
        never = wait_for_series(server, expressions, timeout=30)
        assert not never, "no series: " + "; ".join(f"{e.where}: {e.query}" for e in never)

        loaded = server.rules()
        assert len(loaded) == len(rule_expressions(load_rules()))
        assert [(r["name"], r["lastError"]) for r in loaded if r["health"] != "ok"] == []
        assert "RecorderNoData" not in {a["labels"]["alertname"] for a in server.alerts()}

        simulator.inject("stall+60s")

        def no_data() -> list[dict[str, object]]:
            return [
                alert
                for alert in server.alerts()
                if alert["labels"]["alertname"] == "RecorderNoData" and alert["state"] == "firing"
            ]

        wait_until(lambda: bool(no_data()), 20, "RecorderNoData to fire")
        fired = no_data()
        sys.stdout.write("the alert that fired: " + json.dumps(fired, indent=2) + "\n")
        assert fired[0]["labels"] == {
            "alertname": "RecorderNoData",
            "job": "recorder",
            "instance": target,
            "severity": "critical",
        }
        assert float(str(fired[0]["value"])) == 0
    assert recorder.terminate() == 0
