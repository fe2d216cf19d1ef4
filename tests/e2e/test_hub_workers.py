"""Two `cunlink hub run` workers in one shared subscription, as real subprocesses on a real
Mosquitto with TLS and the shipped ACL, sharing one SQLite store and one incoming/ directory.

Each worker has its own client certificate (the broker takes the CN as the client id, so two
workers with one certificate would throw each other off) and its own metrics port.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import pki
from gateway.testbed.deployment import CUNLINK, Daemon, Deployment, build, wait_for
from gateway.testbed.ports import free_port
from tests.e2e.hubkit import (
    ACCEPTED,
    REJECTED,
    hub_cases,
    scrape,
    set_hub_config,
    station_metrics_off,
    submit_many,
    try_scrape,
    value,
)

STATIONS = ("STA", "STB")
WORKERS = ("w1", "w2")
TRANSFER: dict[str, object] = {
    "chunk_min_bytes": 4096, "chunk_max_bytes": 16384, "stall_timeout_seconds": 5,
    "backoff_max_seconds": 2.0, "outbox_poll_seconds": 0.2}


@pytest.fixture
def county(tmp_path: Path) -> Iterator[Deployment]:
    deployment = build(tmp_path / "county", stations=STATIONS, transfer=TRANSFER)
    station_metrics_off(deployment)
    try:
        yield deployment
    finally:
        deployment.close()


def start_workers(county: Deployment) -> dict[str, tuple[Daemon, int]]:
    workers = {}
    for w in WORKERS:
        cert = pki.issue_client(county.pki_dir, f"{county.hub_id}-{w}", role="hub")
        port = free_port()
        # A short session: Mosquitto keeps handing a dead worker its share of the shared
        # subscription until the worker's session expires (QoS 0 lost, QoS 1 queued for it).
        config = set_hub_config(county, county.hub_config.with_name(f"hub-{w}.toml"),
                                metrics_port=port, cert=cert, session_expiry=60)
        daemon = Daemon(name=f"hub-{w}", argv=[*CUNLINK, "hub", "run", "--config", str(config),
                                               "--worker", w],
                        log_path=county.root / "logs" / f"hub-{w}.log")
        county.daemons.append(daemon)
        workers[w] = daemon, port
    county.broker.reload()  # the ACL now names both workers' identities
    for daemon, _ in workers.values():
        daemon.start()
    for w, (daemon, port) in workers.items():

        def up(daemon: Daemon = daemon, port: int = port) -> bool:
            return "hub connected" in daemon.log_text() and try_scrape(port) is not None

        assert wait_for(up, timeout=30), f"{w}: {daemon.log_text()[-2000:]}"
    return workers


def committed(daemon: Daemon) -> list[str]:
    return re.findall(r"committed package ([0-9a-f]{32})", daemon.log_text())


def arrived(county: Deployment, expected: dict[str, str | None]) -> bool:
    rows = {str(r["case"]): r for r in hub_cases(county)}
    for case, sha in expected.items():
        row = rows.get(case)
        if row is None:
            return False
        materials = row["materials"]
        assert isinstance(materials, list)
        if sha is not None and not any(m["sha256"] == sha and m["received"] for m in materials):
            return False
    return True


async def test_two_workers_commit_every_case_once_and_survive_losing_one(
    county: Deployment, tmp_path: Path
) -> None:
    workers = start_workers(county)
    stations = [county.station_daemon(s) for s in STATIONS]
    for daemon in stations:
        daemon.start()
    expected: dict[str, str | None] = {}
    for station in STATIONS:
        expected |= await submit_many(county, station, tmp_path, 10, tag="a")

    # Both workers take part: each has committed some packages before one of them dies.
    w1, w1_port = workers["w1"]
    w2, w2_port = workers["w2"]
    assert wait_for(lambda: len(committed(w1)) >= 2 and len(committed(w2)) >= 2, timeout=120), (
        w1.log_text()[-2000:] + w2.log_text()[-2000:])
    before_kill = scrape(w1_port)
    assert value(before_kill, ACCEPTED) >= 2
    assert value(scrape(w2_port), ACCEPTED) >= 2

    # SIGKILL one worker mid-run (with transfers in flight) and keep submitting.
    w1.kill()
    for station in STATIONS:
        expected |= await submit_many(county, station, tmp_path, 5, tag="b")
    assert len(expected) == 30 and sum(sha is not None for sha in expected.values()) == 12

    assert wait_for(lambda: arrived(county, expected), timeout=240), (
        w2.log_text()[-3000:] + "\n".join(s.log_text()[-1500:] for s in stations))

    # Exactly once: one row per case, each material once, nothing else.
    rows = hub_cases(county)
    assert sorted(str(r["case"]) for r in rows) == sorted(expected)
    for row in rows:
        materials = row["materials"]
        assert isinstance(materials, list)
        want = expected[str(row["case"])]
        assert [m["sha256"] for m in materials] == ([want] if want else [])
    # No package was committed by both workers (each logs its commits; replays only ack).
    both = Counter(committed(w1) + committed(w2))
    assert both and max(both.values()) == 1, [p for p, n in both.items() if n > 1]
    after = scrape(w2_port)
    assert value(after, REJECTED, reason="internal") == 0
    assert w2.running() and all(s.running() for s in stations)
    # Every partial transfer was finished and cleaned up, the dead worker's included.
    incoming = county.root / "hub" / "state" / "incoming"
    assert not list(incoming.glob("*.part")) and not list(incoming.glob("*.meta"))
