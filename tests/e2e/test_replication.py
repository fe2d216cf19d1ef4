"""End to end with real processes: Mosquitto (TLS + ACL), `cunlink hub run`, `cunlink run`.

Cases are submitted with the CLI into the station's store while the daemon runs; they must
arrive at the hub exactly once with matching hashes, and the hub's answer must come back.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.testbed.deployment import Deployment, build, wait_for

APPLICANT = {
    "id_type": "resident",
    "id_number": "11010519491231002X",
    "name": "测试甲",
    "sex": "female",
}


@pytest.fixture
def county(tmp_path: Path) -> Iterator[Deployment]:
    deployment = build(tmp_path / "county", stations=("ST001",),
                       transfer={"chunk_min_bytes": 4096, "chunk_max_bytes": 32768,
                                 "stall_timeout_seconds": 5, "backoff_max_seconds": 2.0,
                                 "outbox_poll_seconds": 0.2})
    try:
        yield deployment
    finally:
        deployment.close()


def submit(county: Deployment, tmp: Path, n: int, size: int) -> dict[str, str]:
    """Submit ``n`` cases with one ``size``-byte material each; returns case -> material sha256."""
    applicant = tmp / "applicant.json"
    applicant.write_text(json.dumps(APPLICANT, ensure_ascii=False), encoding="utf-8")
    out: dict[str, str] = {}
    for i in range(n):
        scan = tmp / f"scan{i}.jpg"
        data = os.urandom(size)
        scan.write_bytes(data)
        result = county.cli("cases", "submit", "--config", str(county.station_configs["ST001"]),
                            "--service", "MZ-0001", "--applicant", str(applicant),
                            "--material", str(scan))
        assert result.returncode == 0, result.stderr
        match = re.search(r"ST001-\d{8}-\d{4}", result.stdout)
        assert match, result.stdout
        out[match.group(0)] = hashlib.sha256(data).hexdigest()
    return out


def hub_cases(county: Deployment) -> list[dict[str, object]]:
    result = county.cli("hub", "cases", "--config", str(county.hub_config), "--json")
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, object]] = json.loads(result.stdout)
    return rows


def all_arrived(county: Deployment, expected: dict[str, str]) -> bool:
    rows = {str(r["case"]): r for r in hub_cases(county)}
    for case, sha in expected.items():
        row = rows.get(case)
        if row is None:
            return False
        materials = row["materials"]
        assert isinstance(materials, list)
        if not any(m["sha256"] == sha and m["received"] for m in materials):
            return False
    return True


def test_cases_cross_and_the_hub_answers_back(county: Deployment, tmp_path: Path) -> None:
    hub = county.hub_daemon()
    hub.start()
    station = county.station_daemon("ST001")
    station.start()
    expected = submit(county, tmp_path, 3, 150_000)
    assert wait_for(lambda: all_arrived(county, expected), timeout=60), (
        station.log_text()[-3000:] + hub.log_text()[-3000:])
    rows = hub_cases(county)
    assert sorted(str(r["case"]) for r in rows) == sorted(expected)  # exactly once

    def hub_saw_station() -> bool:  # `cunlink hub stations`: last seen, packages, backlog
        out = county.cli("hub", "stations", "--config", str(county.hub_config), "--json")
        row = json.loads(out.stdout)[0] if out.returncode == 0 else {}
        return bool(row.get("last_seen_ms")) and int(row.get("packages", 0)) >= 6 \
            and row.get("backlog") is not None

    assert wait_for(hub_saw_station, timeout=20), hub.log_text()[-2000:]

    case = sorted(expected)[0]
    for status in ("received", "in_review", "approved"):
        result = county.cli("hub", "case", "set-status", case, status, "--config",
                            str(county.hub_config))
        assert result.returncode == 0, result.stderr

    def station_sees_approved() -> bool:
        shown = county.cli("cases", "show", case, "--config",
                           str(county.station_configs["ST001"]), "--json")
        return shown.returncode == 0 and json.loads(shown.stdout)["status"] == "approved"

    assert wait_for(station_sees_approved, timeout=30), station.log_text()[-3000:]

    # The station's outbox drains: every entry was acknowledged after the hub's commit.
    def outbox_empty() -> bool:
        stats = county.cli("outbox", "stats", "--config", str(county.station_configs["ST001"]),
                           "--json")
        return stats.returncode == 0 and json.loads(stats.stdout)["count"] == 0

    assert wait_for(outbox_empty, timeout=30)
    # An invalid hub transition is refused with a clear message and changes nothing.
    result = county.cli("hub", "case", "set-status", case, "received", "--config",
                        str(county.hub_config))
    assert result.returncode == 1
    assert ("the hub cannot move a case from approved to received; from approved it may go "
            "to completed") in result.stderr
    assert station.terminate(timeout=30) == 0
