"""The shipped Grafana dashboard and Prometheus rules, read without a server.

``promtool check rules`` runs when Prometheus is installed and is skipped with the reason
otherwise; the structural checks always run. ``tests/e2e/test_dashboards.py`` evaluates every
expression listed here against a real Prometheus scraping a running recorder.
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_support import (
    DASHBOARD,
    GRAFANA_VARIABLES,
    JOB,
    RULES,
    Expression,
    dashboard_expressions,
    fast_rules,
    load_dashboard,
    load_rules,
    rule_expressions,
    rules_of,
    split_threshold,
)

from recorder.ops.metrics import RecorderMetrics

ALERTS = {
    "RecorderDown",
    "RecorderNoData",
    "RecorderStaleSymbol",
    "RecorderGapRate",
    "RecorderFlushFailing",
    "RecorderMemoryBudgetNearFull",
    "RecorderRestarted",
}
# What the operator must see on the dashboard, by the series that shows it.
DASHBOARD_TOPICS = {
    "events per second": "recorder_events_received_total",
    "gaps by cause": "recorder_gaps_total",
    "missed updates": "recorder_missed_updates_total",
    "reconnects by reason": "recorder_reconnects_total",
    "last event age": "recorder_last_event_age_seconds",
    "flush duration": "recorder_flush_duration_seconds_bucket",
    "buffered rows": "recorder_buffered_rows",
    "buffered bytes": "recorder_buffered_bytes",
    "memory budget": "recorder_buffer_budget_bytes",
    "quarantine by reason": "recorder_frames_quarantined_total",
    "open connections": "recorder_open_connections",
    "exchangeInfo readings": "recorder_exchange_info_readings_total",
    "restarts": "process_start_time_seconds",
}
SELECTOR = '{job=~"$job", instance=~"$instance"}'
_NAME = r"\b(?:(?:recorder[_:]|process_)[a-z0-9_:]*[a-z0-9]|up\b)"
_SERIES_NAME = re.compile(_NAME)
_SELECTED = re.compile(_NAME + r"(\{[^}]*\})?")
_SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "gauge": ("",),
    "info": ("_info",),
}


def exported_series() -> set[str]:
    """Every sample name the recorder exports, whether or not a sample exists yet."""
    body, _ = RecorderMetrics().exposition()
    return {
        family.name + suffix
        for family in text_string_to_metric_families(body.decode())
        for suffix in _SAMPLE_SUFFIXES[family.type]
    }


def series_names(expression: Expression) -> set[str]:
    """The series an expression reads: the recorder's, the process's, ``up``, recorded ones."""
    return set(_SERIES_NAME.findall(expression.query))


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


@pytest.fixture(scope="module")
def rules() -> dict[str, Any]:
    return load_rules()


def test_every_expression_is_listed(dashboard: dict[str, Any], rules: dict[str, Any]) -> None:
    expressions = dashboard_expressions(dashboard) + rule_expressions(rules)
    sys.stdout.write("".join(f"{e.where}: {e.query}\n" for e in expressions))

    assert len(rule_expressions(rules)) == len(ALERTS) + 2  # and two recording rules
    assert len(dashboard_expressions(dashboard)) >= 30
    for expression in expressions:
        assert expression.query.strip(), expression.where
        assert "$" not in expression.query, f"{expression.where}: a variable is left"


needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (prometheus) not installed"
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``promtool *args`` and fail the test, with its output, unless it succeeds."""
    result = subprocess.run(
        ["promtool", *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert f"SUCCESS: {len(ALERTS) + 2} rules found" in checked.stdout


def test_each_alert_has_a_delay_a_severity_and_words_for_the_operator(
    rules: dict[str, Any],
) -> None:
    assert [group["name"] for group in rules["groups"]] == ["recorder"]
    alerts = {rule["alert"]: rule for rule in rules_of(rules) if "alert" in rule}
    assert set(alerts) == ALERTS
    for name, alert in alerts.items():
        assert re.fullmatch(r"[0-9]+[smh]", alert["for"]), name
        assert alert["labels"]["severity"] in {"critical", "warning"}, name
        annotations = alert["annotations"]
        assert set(annotations) == {"summary", "description"}, name
        assert "$labels.instance" in annotations["summary"], name
        assert annotations["description"].strip(), name
        # "query OPERATOR threshold": what the end-to-end test evaluates without the threshold.
        query, _, _ = split_threshold(alert["expr"])
        assert f'job="{JOB}"' in query or "recorder:" in query, name


def test_the_alert_thresholds_are_the_documented_ones(rules: dict[str, Any]) -> None:
    thresholds = {
        rule["alert"]: split_threshold(rule["expr"])[1:]
        for rule in rules_of(rules)
        if "alert" in rule
    }

    assert thresholds == {
        "RecorderDown": ("==", 0),
        "RecorderNoData": ("==", 0),
        "RecorderStaleSymbol": (">", 900),
        "RecorderGapRate": (">", 0.01),
        "RecorderFlushFailing": ("==", 0),
        "RecorderMemoryBudgetNearFull": (">", 0.8),
        "RecorderRestarted": (">", 3),
    }


def test_every_series_read_is_one_the_recorder_exports(
    dashboard: dict[str, Any], rules: dict[str, Any]
) -> None:
    recorded = {rule["record"] for rule in rules_of(rules) if "record" in rule}
    known = exported_series() | recorded | {"up"}
    if sys.platform == "linux":
        assert "process_start_time_seconds" in known  # the restart alert's series
    known |= {"process_start_time_seconds", "process_resident_memory_bytes"}
    for expression in dashboard_expressions(dashboard) + rule_expressions(rules):
        names = series_names(expression)
        assert names, expression.where
        assert names <= known, f"{expression.where}: {names - known} not exported"


def test_the_dashboard_covers_what_the_operator_watches(dashboard: dict[str, Any]) -> None:
    read = set().union(*(series_names(e) for e in dashboard_expressions(dashboard)))

    missing = {topic for topic, series in DASHBOARD_TOPICS.items() if series not in read}
    assert not missing


def test_the_dashboard_is_importable_with_a_prometheus_datasource(
    dashboard: dict[str, Any],
) -> None:
    assert dashboard["schemaVersion"] >= 39
    assert [(i["name"], i["pluginId"]) for i in dashboard["__inputs"]] == [
        ("DS_PROMETHEUS", "prometheus")
    ]
    assert dashboard["id"] is None  # import assigns one
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert set(variables) == {"job", "instance"}
    assert variables["instance"]["includeAll"]
    assert set(GRAFANA_VARIABLES) == {"$__rate_interval", "$job", "$instance"}
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        where = panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, where
        assert panel["description"], where
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, where
        references = [target["refId"] for target in panel["targets"]]
        assert len(references) == len(set(references)), where
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], where


def test_every_panel_query_follows_the_selected_job_and_instance(
    dashboard: dict[str, Any],
) -> None:
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            selectors = _SELECTED.findall(expr)
            assert selectors, panel["title"]
            assert all(selector == SELECTOR for selector in selectors), (panel["title"], expr)


def test_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, (panel["title"], cells[(x, y)])
                cells[(x, y)] = panel["title"]


def test_the_file_is_tidy_json() -> None:
    text = DASHBOARD.read_text(encoding="utf-8")

    assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"


def test_the_fast_copy_of_the_rules_keeps_queries_and_thresholds(rules: dict[str, Any]) -> None:
    fast = fast_rules(rules)

    for shipped, copied in zip(rules_of(rules), rules_of(fast), strict=True):
        assert copied.get("for", "0s") == "0s"
        assert "[1h]" not in copied["expr"]
        assert "[2m]" not in copied["expr"]
        if "alert" in shipped:
            assert split_threshold(copied["expr"])[1:] == split_threshold(shipped["expr"])[1:]
    assert rules_of(rules)[0]["expr"] != rules_of(fast)[0]["expr"]  # the original is untouched


# --- each alert fires on its condition, and not before its delay: promtool test rules ------

_AT = 'job="recorder", instance="r1:9464"'
_OTHER = 'job="recorder", instance="r2:9464"'


def _firing(alert: str, eval_time: str, *labels: str) -> dict[str, Any]:
    """A promtool case: the alert is firing at ``eval_time`` with ``labels`` (none: not)."""
    query = f'ALERTS{{alertname="{alert}", alertstate="firing"}}'
    expected = [
        {"labels": f'ALERTS{{alertname="{alert}", alertstate="firing", {label}}}', "value": 1}
        for label in labels
    ]
    return {"expr": query, "eval_time": eval_time, "exp_samples": expected}


PROMTOOL_CASES: list[dict[str, Any]] = [
    {
        "name": "down for 2m",
        "series": [
            (f"up{{{_AT}}}", "0x10"),
            (f"up{{{_OTHER}}}", "1x10"),
        ],
        "cases": [
            _firing("RecorderDown", "1m"),
            _firing("RecorderDown", "3m", f'{_AT}, severity="critical"'),
        ],
    },
    {
        "name": "no event in 2m, for 3m",
        "series": [
            # 60 events a minute until 5m, then none.
            (f'recorder_events_received_total{{{_AT}, symbol="BTCUSDT"}}', "0+60x5 300x15"),
            (f'recorder_events_received_total{{{_OTHER}, symbol="BTCUSDT"}}', "0+60x20"),
        ],
        "cases": [
            _firing("RecorderNoData", "8m"),
            _firing("RecorderNoData", "11m", f'{_AT}, severity="critical"'),
        ],
    },
    {
        "name": "one symbol silent for more than 15m, for 5m",
        "series": [
            (f'recorder_last_event_age_seconds{{{_AT}, symbol="ETHUSDT"}}', "0+60x30"),
            (f'recorder_last_event_age_seconds{{{_AT}, symbol="BTCUSDT"}}', "1x30"),
        ],
        "cases": [
            _firing("RecorderStaleSymbol", "18m"),
            _firing("RecorderStaleSymbol", "22m", f'{_AT}, severity="warning", symbol="ETHUSDT"'),
        ],
    },
    {
        "name": "more than 1% of the updates missed in an hour, quiet gaps aside",
        "series": [
            # r1: 10 missed for 600 received a minute (1.6%); r2: 1 for 600, and quiet ones.
            (f'recorder_events_received_total{{{_AT}, symbol="BTCUSDT"}}', "0+600x70"),
            (f'recorder_missed_updates_total{{{_AT}, cause="disconnect"}}', "0+10x70"),
            (f'recorder_events_received_total{{{_OTHER}, symbol="BTCUSDT"}}', "0+600x70"),
            (f'recorder_missed_updates_total{{{_OTHER}, cause="stall"}}', "0+1x70"),
            (f'recorder_missed_updates_total{{{_OTHER}, cause="quiet"}}', "0+1000x70"),
        ],
        "cases": [
            _firing("RecorderGapRate", "5m"),
            _firing("RecorderGapRate", "70m", f'{_AT}, severity="warning"'),
        ],
    },
    {
        "name": "flushes failing for 2m",
        "series": [
            (f"recorder_last_flush_success{{{_AT}}}", "1 1 0x10"),
            (f"recorder_last_flush_success{{{_OTHER}}}", "1x12"),
        ],
        "cases": [
            _firing("RecorderFlushFailing", "3m"),
            _firing("RecorderFlushFailing", "5m", f'{_AT}, severity="critical"'),
        ],
    },
    {
        "name": "more than 80% of the memory budget for 5m",
        "series": [
            (f"recorder_buffered_bytes{{{_AT}}}", "90x10"),
            (f"recorder_buffer_budget_bytes{{{_AT}}}", "100x10"),
            (f"recorder_buffered_bytes{{{_OTHER}}}", "70x10"),
            (f"recorder_buffer_budget_bytes{{{_OTHER}}}", "100x10"),
        ],
        "cases": [
            _firing("RecorderMemoryBudgetNearFull", "4m"),
            _firing("RecorderMemoryBudgetNearFull", "6m", f'{_AT}, severity="warning"'),
        ],
    },
    {
        "name": "more than 3 restarts in an hour",
        "series": [
            (f"process_start_time_seconds{{{_AT}}}", "100 160 220 280 340x5"),
            (f"process_start_time_seconds{{{_OTHER}}}", "100 160 220x6"),
        ],
        "cases": [
            _firing("RecorderRestarted", "3m"),
            _firing("RecorderRestarted", "6m", f'{_AT}, severity="warning"'),
        ],
    },
]


@needs_promtool
def test_promtool_sees_each_alert_fire_on_its_condition_only(tmp_path: Path) -> None:
    tests = [
        {
            "name": case["name"],
            "interval": "1m",
            "input_series": [
                {"series": series, "values": values} for series, values in case["series"]
            ],
            "promql_expr_test": case["cases"],
        }
        for case in PROMTOOL_CASES
    ]
    unit = tmp_path / "rules-test.yml"
    unit.write_text(
        yaml.safe_dump({"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": tests}),
        encoding="utf-8",
    )
    tested = {case["expr"].split('"')[1] for group in PROMTOOL_CASES for case in group["cases"]}
    assert tested == ALERTS

    promtool("test", "rules", str(unit))
