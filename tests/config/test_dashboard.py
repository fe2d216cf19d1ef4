"""The Grafana dashboard: valid JSON of the expected shape, every query valid PromQL reading
only contract metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.config.metric_names import HUB_METRICS, STATION_METRICS, metric_names
from tests.config.promtool import REPO, run

DASHBOARD = REPO / "config" / "grafana" / "cunlink-dashboard.json"


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def _exprs(dash: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def test_shape_and_variables() -> None:
    dash = _dashboard()
    assert 36 <= dash["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    station = variables["station"]
    assert station["type"] == "query" and station["multi"] and station["includeAll"]
    assert (
        "label_values(cunlink_hub_station_last_seen_timestamp_seconds, station)"
        in (station["definition"])
    )
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]


def test_required_panels() -> None:
    titles = " | ".join(p["title"].lower() for p in _dashboard()["panels"])
    for needle in (
        "stations online",
        "backlog age",
        "bytes up",
        "rejected packages by reason",
        "commit latency p99",
        "device states",
        "disk free",
        "clock offset",
    ):
        assert needle in titles


def test_queries_read_only_contract_metrics() -> None:
    for expr in _exprs(_dashboard()):
        names = metric_names(expr)
        assert names, f"panel query reads no cunlink metric: {expr}"
        assert names <= STATION_METRICS | HUB_METRICS, f"not in the contract: {names}: {expr}"


def test_per_station_panels_follow_the_station_variable() -> None:
    for expr in _exprs(_dashboard()):
        if "cunlink_hub_station_" in expr or "cunlink_link_" in expr:
            assert 'station=~"$station"' in expr, expr


def test_queries_are_valid_promql(tmp_path: Path) -> None:
    # promtool parses every query as a recording rule, with Grafana's variables filled in.
    rules = ["groups:", "  - name: dashboard", "    rules:"]
    for i, expr in enumerate(_exprs(_dashboard())):
        concrete = expr.replace("$__rate_interval", "5m").replace("$station", ".*")
        rules += [f"      - record: dashboard:query{i}", f"        expr: {json.dumps(concrete)}"]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text("\n".join(rules) + "\n", encoding="utf-8")
    result = run("check", "rules", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
