"""The Grafana dashboard and the Prometheus rules use only metrics the services export."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from langscale import metrics

FILES = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "langscale" / "files"
METRIC = re.compile(r"\blangscale_[a-z0-9_]+")
RECORDED = re.compile(r"\blangscale:[a-z0-9_:]+")


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FILES / "grafana-dashboard.json").read_text())
    return loaded


def _rules() -> list[dict[str, Any]]:
    return [
        rule
        for group in yaml.safe_load((FILES / "prometheus-rules.yaml").read_text())
        for rule in group["rules"]
    ]


def _dashboard_exprs() -> list[str]:
    dashboard = _dashboard()
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs


def test_every_metric_in_the_dashboard_and_rules_is_exported() -> None:
    exported = metrics.metric_names()
    exprs = _dashboard_exprs() + [rule["expr"] for rule in _rules()]
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    assert used, "no langscale_* metric found: did the expression syntax change?"
    unknown = sorted(used - exported)
    assert not unknown, f"not exported by gateway or worker: {unknown}"


def test_recorded_series_used_by_alerts_are_recorded() -> None:
    rules = _rules()
    recorded = {rule["record"] for rule in rules if "record" in rule}
    used = {name for rule in rules for name in RECORDED.findall(rule["expr"])}
    assert used <= recorded, sorted(used - recorded)


def test_queue_gauges_are_aggregated_with_max_never_sum() -> None:
    for expr in _dashboard_exprs() + [rule["expr"] for rule in _rules()]:
        for gauge in re.findall(r"langscale_queue_[a-z_]+", expr):
            assert f"sum(rate({gauge}" not in expr and f"sum by (queue) ({gauge}" not in expr


def test_dashboard_shows_what_an_sre_needs() -> None:
    exprs = "\n".join(_dashboard_exprs())
    for needed in (
        "langscale_runs_total",  # throughput
        "histogram_quantile(0.95",  # latency percentiles
        "langscale_queue_backlog_jobs",  # queue depth
        "langscale_queue_oldest_ready_age_seconds",  # queue age
        "kube_deployment_status_replicas",  # replicas
        "langscale_run_errors_total",  # errors by type
        "langscale_llm_rate_limit_wait_seconds_total",  # rate-limit waits
    ):
        assert needed in exprs, needed
    assert _dashboard()["uid"] == "langscale-overview"


def test_alerts_cover_backlog_age_errors_and_missing_workers() -> None:
    alerts = {rule["alert"] for rule in _rules() if "alert" in rule}
    assert {
        "LangscaleQueueBacklogGrowing",
        "LangscaleQueueOldestJobTooOld",
        "LangscaleRunFailureRateHigh",
        "LangscaleNoWorkers",
    } <= alerts
    for rule in _rules():
        if "alert" in rule:
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
