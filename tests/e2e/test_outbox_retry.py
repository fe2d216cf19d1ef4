"""A package the county rejected is held at the station; once the cause is fixed at the county,
`cunlink outbox retry` sends it again while the daemon keeps running (no restart).

The cause here is the common one: the station was re-keyed (`keys init --force`) after its
enrollment, so the hub does not know the new signing key and rejects with unknown_station.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.keys import enrollment_path, init_keys
from gateway.testbed.deployment import Deployment, build, wait_for

STATION = "ST001"
FAST: dict[str, object] = {"backoff_initial_seconds": 0.2, "backoff_max_seconds": 1.0,
                           "outbox_poll_seconds": 0.2, "stall_timeout_seconds": 5}


@pytest.fixture
def county(tmp_path: Path) -> Iterator[Deployment]:
    deployment = build(tmp_path / "county", stations=(STATION,), transfer=FAST)
    try:
        yield deployment
    finally:
        deployment.close()


def cli_json(county: Deployment, *args: str) -> object:
    result = county.cli(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_rejected_package_goes_again_after_retry_without_a_restart(
        county: Deployment, tmp_path: Path) -> None:
    keys = county.station_dir(STATION) / "keys"
    init_keys("station", STATION, keys, force=True, now=dt.datetime.now(dt.UTC))  # re-keyed
    config = str(county.station_configs[STATION])
    hub, station = county.hub_daemon(), county.station_daemon(STATION)
    hub.start()
    station.start()
    applicant = tmp_path / "applicant.json"
    applicant.write_text(json.dumps({"id_type": "resident", "id_number": "11010519491231002X",
                                     "name": "测试甲", "sex": "female"}), encoding="utf-8")
    submitted = county.cli("cases", "submit", "--config", config, "--service", "MZ-0001",
                           "--applicant", str(applicant), "--lang", "en")
    assert submitted.returncode == 0, submitted.stderr
    case = submitted.stdout.split()[-1]

    def held() -> list[dict[str, object]]:
        listing = cli_json(county, "outbox", "list", "--config", config, "--held")
        assert isinstance(listing, dict)
        entries: list[dict[str, object]] = listing["entries"]
        return entries

    assert wait_for(lambda: len(held()) == 1, timeout=60), station.log_text()[-3000:]
    assert "UNKNOWN_STATION" in str(held()[0].get("reason", "")).upper()

    # The county enrolls the new keys; the technician resends. The daemon keeps running.
    enrolled = county.cli("hub", "enroll", str(enrollment_path(keys, STATION)), "--config",
                          str(county.hub_config), "--force")
    assert enrolled.returncode == 0, enrolled.stderr
    retried = county.cli("outbox", "retry", case, "--config", config, "--lang", "en")
    assert retried.returncode == 0, retried.stderr
    pid = station.proc.pid if station.proc else None

    def at_hub() -> bool:
        rows = cli_json(county, "hub", "cases", "--config", str(county.hub_config))
        return isinstance(rows, list) and any(r.get("case") == case for r in rows)

    assert wait_for(at_hub, timeout=90), station.log_text()[-3000:]
    assert station.running() and station.proc is not None and station.proc.pid == pid
    assert held() == []
    assert station.terminate() == 0
