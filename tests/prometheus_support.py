"""A real Prometheus server for the tests, and the PromQL the project ships in ``config/``.

:class:`PrometheusServer` runs the ``prometheus`` binary (Debian's package, which ``.ci/run``
installs when it can) against a generated configuration: one scrape job named ``recorder``
with a 1 s scrape and rule evaluation interval, optional rule files, and an HTTP API on a free
loopback port. The functions below it list every expression of
``config/grafana-dashboard.json`` and ``config/prometheus-rules.yml`` in a form a plain
Prometheus evaluates, for the unit tests that read them and the end-to-end test that runs them.
"""

import contextlib
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "config" / "grafana-dashboard.json"
RULES = REPO / "config" / "prometheus-rules.yml"
JOB = "recorder"
"""The scrape job name the rules select (``job="recorder"``) and the tests' server uses."""

GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$instance": ".+",
    "$job": JOB,
}
"""What each Grafana variable of the dashboard stands for when a plain Prometheus runs it."""

_THRESHOLD = re.compile(
    r"^(?P<query>.*\S)\s*(?P<operator>==|!=|>=|<=|>|<)\s*(?P<threshold>-?[0-9]+(?:\.[0-9]+)?)\s*$",
    re.DOTALL,
)
_RANGE = re.compile(r"\[[0-9]+[smhdw]\]")
_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*[A-Za-z_][A-Za-z0-9_]*\)$")


def free_port() -> int:
    """A TCP port free on loopback now (another process may take it before it is used)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def have_prometheus() -> bool:
    """Whether the ``prometheus`` server binary is installed."""
    return shutil.which("prometheus") is not None


class PrometheusServer:
    """A running ``prometheus`` scraping one target every second, with its HTTP API.

    Args:
        directory: where the configuration, the TSDB and the server's log go.
        target: ``host:port`` of the recorder's metrics endpoint.
        rule_files: rule files to load, evaluated every second.
    """

    def __init__(self, directory: Path, target: str, rule_files: Sequence[Path] = ()) -> None:
        config: dict[str, Any] = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [target]}]}],
        }
        if rule_files:
            config["rule_files"] = [str(path) for path in rule_files]
        config_path = directory / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.listen = f"127.0.0.1:{free_port()}"
        self.log_path = directory / "prometheus.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config_path}",
                f"--storage.tsdb.path={directory / 'tsdb'}",
                f"--web.listen-address={self.listen}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @classmethod
    @contextlib.contextmanager
    def running(
        cls, directory: Path, target: str, rule_files: Sequence[Path] = ()
    ) -> Iterator["PrometheusServer"]:
        """Start a server for the ``with`` block; stop it afterwards, whatever happened."""
        server = cls(directory, target, rule_files)
        try:
            yield server
        finally:
            server.stop()

    def api(self, path: str, **parameters: str) -> Any:
        """GET ``/api/v1/<path>`` and return its ``data``; ``None`` while it is not up yet.

        Raises:
            AssertionError: Prometheus rejected the request (a query that does not parse or
                cannot be evaluated), with its error message.
        """
        url = f"http://{self.listen}/api/v1/{path}"
        if parameters:
            url += "?" + urllib.parse.urlencode(parameters)
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
                return json.load(response)["data"]
        except urllib.error.HTTPError as error:
            if error.code in (400, 422):
                raise AssertionError(f"{parameters}: {json.load(error)['error']}") from None
            return None
        except (urllib.error.URLError, ConnectionError):
            return None

    def query(self, expression: str) -> list[dict[str, Any]]:
        """The instant vector (or scalar, as one sample) ``expression`` evaluates to now."""
        data = self.api("query", query=expression)
        if data is None:
            return []
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        """Every pending or firing alert of the loaded rules."""
        data = self.api("alerts")
        return [] if data is None else list(data["alerts"])

    def rules(self) -> list[dict[str, Any]]:
        """Every loaded rule with its health, last error and state."""
        data = self.api("rules")
        if data is None:
            return []
        return [rule for group in data["groups"] for rule in group["rules"]]

    def stop(self) -> None:
        """Stop the server and close its log."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@dataclass(frozen=True, slots=True)
class Expression:
    """One PromQL expression of the shipped configuration.

    Attributes:
        where: what it belongs to (a panel's title and query, a variable, a rule).
        expr: the expression as written in the file.
        query: what a plain Prometheus evaluates to check it: Grafana variables replaced, and
            for an alert the query without its threshold comparison.
    """

    where: str
    expr: str
    query: str


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def grafana_query(expr: str) -> str:
    """``expr`` with the dashboard's Grafana variables replaced by what they stand for."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def dashboard_expressions(dashboard: dict[str, Any]) -> list[Expression]:
    """Every panel query and the metric selector of every ``label_values`` variable."""
    found = []
    for panel in _panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            where = f"panel {panel['title']!r} query {target['refId']}"
            found.append(Expression(where, target["expr"], grafana_query(target["expr"])))
    for variable in dashboard["templating"]["list"]:
        definition = variable["query"]["query"]
        matched = _LABEL_VALUES.match(definition)
        assert matched, f"variable {variable['name']}: not label_values(selector, label)"
        selector = matched["selector"]
        found.append(Expression(f"variable {variable['name']}", selector, grafana_query(selector)))
    return found


def split_threshold(expr: str) -> tuple[str, str, float]:
    """Split an alert's ``query OPERATOR number`` into its parts.

    Raises:
        ValueError: ``expr`` does not end in a comparison with a number.
    """
    matched = _THRESHOLD.match(expr.strip())
    if matched is None:
        raise ValueError(f"not 'query OPERATOR number': {expr!r}")
    return matched["query"], matched["operator"], float(matched["threshold"])


def rules_of(rules_file: dict[str, Any]) -> list[dict[str, Any]]:
    """Every rule of every group of a parsed rules file."""
    return [rule for group in rules_file["groups"] for rule in group["rules"]]


def rule_expressions(rules_file: dict[str, Any]) -> list[Expression]:
    """Every recording rule's expression, and every alert's query without its threshold."""
    found = []
    for rule in rules_of(rules_file):
        expr = str(rule["expr"])
        if "alert" in rule:
            found.append(Expression(f"alert {rule['alert']}", expr, split_threshold(expr)[0]))
        else:
            found.append(Expression(f"record {rule['record']}", expr, expr))
    return found


def load_dashboard() -> dict[str, Any]:
    """``config/grafana-dashboard.json``, parsed."""
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return dashboard


def load_rules() -> dict[str, Any]:
    """``config/prometheus-rules.yml``, parsed."""
    rules: dict[str, Any] = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return rules


def fast_rules(rules_file: dict[str, Any], window: str = "5s") -> dict[str, Any]:
    """A copy of the rules that a test can see fire within seconds.

    Every ``for`` becomes ``0s`` and every range selector (``[2m]``, ``[1h]``) becomes
    ``window``; the queries, comparisons and thresholds stay as shipped.
    """
    copied: dict[str, Any] = json.loads(json.dumps(rules_file))
    for rule in rules_of(copied):
        rule["expr"] = _RANGE.sub(f"[{window}]", str(rule["expr"]))
        if "for" in rule:
            rule["for"] = "0s"
    return copied


def wait_for_series(
    server: PrometheusServer, expressions: Sequence[Expression], timeout: float
) -> list[Expression]:
    """Evaluate each expression until it returns a series; return those that never did."""
    pending = list(expressions)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        pending = [expression for expression in pending if not server.query(expression.query)]
        if pending:
            time.sleep(0.5)
    return pending
