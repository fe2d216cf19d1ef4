"""The Prometheus alert rules: valid for promtool, unit-tested, and reading contract metrics."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.config.metric_names import HUB_METRICS, STATION_METRICS, metric_names
from tests.config.promtool import PROMETHEUS_DIR, run

RULES = PROMETHEUS_DIR / "cunlink-alerts.yml"
RULES_TEST = PROMETHEUS_DIR / "cunlink-alerts.test.yml"


def _exprs(text: str) -> list[str]:
    return re.findall(r"^\s+expr: (.+)$", text, flags=re.MULTILINE)


def test_promtool_check_rules() -> None:
    result = run("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 16 rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = run("test", "rules", RULES_TEST.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_unit_tests_catch_a_wrong_threshold(tmp_path: Path) -> None:
    # The unit tests have teeth: the same tests against rules with the silent-station and
    # backlog thresholds changed must fail, naming both alerts.
    text = RULES.read_text(encoding="utf-8")
    broken = text.replace(
        "last_seen_timestamp_seconds > 0) > 900", "last_seen_timestamp_seconds > 0) > 9000"
    )
    broken = broken.replace(
        "station_outbox_oldest_age_seconds) > 4 * 3600",
        "station_outbox_oldest_age_seconds) > 5 * 3600",
    )
    assert broken.count("9000") == 1 and broken.count("5 * 3600") == 1
    (tmp_path / RULES.name).write_text(broken, encoding="utf-8")
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    result = run("test", "rules", RULES_TEST.name, cwd=tmp_path)
    assert result.returncode != 0
    report = result.stdout + result.stderr
    assert "alertname: CunlinkStationSilent" in report
    assert "alertname: CunlinkStationBacklogOld" in report


def test_example_prometheus_config_is_valid() -> None:
    result = run("check", "config", "prometheus.example.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_read_only_contract_metrics() -> None:
    text = RULES.read_text(encoding="utf-8")
    exprs = _exprs(text)
    assert len(exprs) == text.count("- alert:") == 16  # every expression is on one line
    for expr in exprs:
        names = metric_names(expr)
        assert names, f"alert expression reads no cunlink metric: {expr}"
        assert names <= STATION_METRICS | HUB_METRICS, f"not in the contract: {names}: {expr}"


def test_every_alert_says_what_to_do() -> None:
    text = RULES.read_text(encoding="utf-8")
    blocks = text.split("- alert: ")[1:]
    required = {
        "CunlinkStationSilent",
        "CunlinkStationBacklogOld",
        "CunlinkStationDeviceDown",
        "CunlinkStationDiskLow",
        "CunlinkStationClockSkew",
        "CunlinkHubRejectingPackages",
        "CunlinkLinkDown",
        "CunlinkBacklogOld",
        "CunlinkDeviceDown",
        "CunlinkDiskLow",
        "CunlinkClockSkew",
    }
    assert required <= {b.split()[0] for b in blocks}
    for block in blocks:
        name = block.split()[0]
        assert re.search(r"severity: (critical|warning|info)\b", block), name
        assert "summary:" in block and "description:" in block, name
        # the rejection alerts may fire on the first event; the others must persist first
        assert "for:" in block or name.startswith("CunlinkHub"), name
        assert re.search(r"cunlink (status|doctor|outbox)|County (ops|staff)", block), name
