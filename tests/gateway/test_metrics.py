"""Station metrics scraped over real HTTP from a real server on a loopback port."""

from __future__ import annotations

import asyncio
import copy
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import (
    MetricsServer,
    SnapshotCache,
    StationMetrics,
    refresh_snapshot,
    serve_metrics,
    start_metrics_server,
)
from gateway.testbed.ports import LOOPBACK, free_port
from tests.config.metric_names import STATION_METRICS, metric_names

SNAPSHOT: dict[str, Any] = {
    "station": "ST001",
    "software": "cunlink 0.1.0",
    "started_at": "2026-11-22T08:00:00Z",
    "uptime_seconds": 12.5,
    "link": {
        "up": True,
        "since": "2026-11-22T08:00:01Z",
        "connects": 3,
        "disconnects": 2,
        "stalls": 1,
        "bytes_up": 123_456,
        "bytes_down": 4_567,
        "chunks_sent": 10,
        "chunks_resent": 4,
        "bytes_resent": 4096,
        "delivered": 5,
        "rejected": 0,
        "beacons_sent": 7,
        "rtt_seconds": 0.8,
        "hub_offset_ms": -1500,
        "last_error": "",
    },
    "outbox": {
        "count": 4,
        "bytes_pending": 900_000,
        "oldest_age_seconds": 30.0,
        "by_class": {"control": 0, "events": 1, "materials": 3},
        "held": 2,
    },
    "devices": [
        {"name": "reader", "kind": "idcard", "state": "ok", "message": "", "failures": 0},
        {
            "name": "printer",
            "kind": "escpos",
            "state": "degraded",
            "message": "paper low",
            "failures": 5,
        },
        {"name": "camera", "kind": "v4l2", "state": "wedged", "message": "?", "failures": 1},
    ],
    "disk": {"free_bytes": 5_000_000_000, "floor_bytes": 209_715_200},
    "cases": {"by_status": {"draft": 1, "submitted": 3, "future_status": 2}, "conflicts": 1},
    "recent_errors": [],
    "api": {"requests": 12},
}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> tuple[Samples, set[str], str]:
    """GET /metrics over TCP; samples keyed by (name, labels), family types, raw text."""
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    samples: Samples = {}
    types: set[str] = set()
    for family in text_string_to_metric_families(text):
        types.add(f"{family.name}:{family.type}")
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples, types, text


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture
def cache() -> SnapshotCache:
    c = SnapshotCache()
    c.set(copy.deepcopy(SNAPSHOT))
    return c


@pytest.fixture
def served(cache: SnapshotCache) -> Iterator[tuple[StationMetrics, MetricsServer]]:
    metrics = StationMetrics(cache.get, version="0.1.0")
    server = serve_metrics(metrics, LOOPBACK, 0)
    try:
        yield metrics, server
    finally:
        server.close()


def test_snapshot_series_over_http(served: tuple[StationMetrics, MetricsServer]) -> None:
    _, server = served
    s, types, _ = scrape(server.port)
    assert value(s, "cunlink_build_info", version="0.1.0") == 1
    # outbox
    assert value(s, "cunlink_outbox_items", **{"class": "control"}) == 0
    assert value(s, "cunlink_outbox_items", **{"class": "events"}) == 1
    assert value(s, "cunlink_outbox_items", **{"class": "materials"}) == 3
    assert value(s, "cunlink_outbox_bytes") == 900_000
    assert value(s, "cunlink_outbox_oldest_age_seconds") == 30.0
    assert value(s, "cunlink_outbox_held_items") == 2
    # link: counters come out as _total from the cumulative LinkStats values
    assert value(s, "cunlink_link_up") == 1
    assert value(s, "cunlink_link_connects_total") == 3
    assert value(s, "cunlink_link_disconnects_total") == 2
    assert value(s, "cunlink_link_stalls_total") == 1
    assert value(s, "cunlink_link_sent_bytes_total") == 123_456
    assert value(s, "cunlink_link_received_bytes_total") == 4_567
    assert value(s, "cunlink_link_chunks_resent_total") == 4
    assert value(s, "cunlink_beacons_sent_total") == 7
    assert value(s, "cunlink_link_rtt_seconds") == pytest.approx(0.8)
    assert value(s, "cunlink_clock_offset_seconds") == pytest.approx(-1.5)
    assert {"cunlink_link_connects:counter", "cunlink_link_up:gauge"} <= types
    # devices
    assert value(s, "cunlink_device_up", device="reader", kind="idcard") == 1
    assert value(s, "cunlink_device_up", device="printer", kind="escpos") == 0
    assert value(s, "cunlink_device_state", device="printer", state="degraded") == 1
    assert value(s, "cunlink_device_state", device="printer", state="ok") == 0
    assert value(s, "cunlink_device_state", device="printer", state="down") == 0
    assert value(s, "cunlink_device_state", device="camera", state="wedged") == 1  # unknown kept
    assert value(s, "cunlink_device_errors_total", device="printer") == 5
    # cases: every workflow status is present, unknown ones are kept
    assert value(s, "cunlink_cases", status="submitted") == 3
    assert value(s, "cunlink_cases", status="approved") == 0
    assert value(s, "cunlink_cases", status="future_status") == 2
    assert value(s, "cunlink_case_conflicts") == 1
    assert value(s, "cunlink_disk_free_bytes") == 5_000_000_000


def test_api_requests_and_latency(served: tuple[StationMetrics, MetricsServer]) -> None:
    metrics, server = served
    metrics.observe_request("post", "/api/v1/cases", 201, 0.03)
    metrics.observe_request("POST", "/api/v1/cases", 201, 0.2)
    metrics.observe_request("GET", "/api/v1/cases/{id}", 404, 0.002)
    s, types, _ = scrape(server.port)
    assert (
        value(s, "cunlink_api_requests_total", method="POST", route="/api/v1/cases", code="201")
        == 2
    )
    assert (
        value(s, "cunlink_api_requests_total", method="GET", route="/api/v1/cases/{id}", code="404")
        == 1
    )
    h = "cunlink_api_request_duration_seconds"
    assert f"{h}:histogram" in types
    assert value(s, f"{h}_count", route="/api/v1/cases") == 2
    assert value(s, f"{h}_sum", route="/api/v1/cases") == pytest.approx(0.23)
    assert value(s, f"{h}_bucket", route="/api/v1/cases", le="0.05") == 1
    assert value(s, f"{h}_bucket", route="/api/v1/cases", le="0.25") == 2
    assert value(s, f"{h}_bucket", route="/api/v1/cases/{id}", le="0.005") == 1


def test_each_scrape_reads_the_latest_snapshot(
    served: tuple[StationMetrics, MetricsServer], cache: SnapshotCache
) -> None:
    _, server = served
    changed = copy.deepcopy(SNAPSHOT)
    changed["link"].update(up=False, rtt_seconds=None, hub_offset_ms=None, bytes_up=200_000)
    changed["outbox"].update(oldest_age_seconds=None, count=0)
    changed["devices"] = [{"name": "reader", "kind": "idcard", "state": "down", "failures": 9}]
    cache.set(changed)
    s, _, text = scrape(server.port)
    assert value(s, "cunlink_link_up") == 0
    assert value(s, "cunlink_link_sent_bytes_total") == 200_000
    assert value(s, "cunlink_outbox_oldest_age_seconds") == 0  # empty outbox: nothing is old
    assert value(s, "cunlink_device_up", device="reader", kind="idcard") == 0
    assert value(s, "cunlink_device_state", device="reader", state="down") == 1
    # unknown values are absent, not zero; devices gone from the snapshot are gone too
    assert "cunlink_link_rtt_seconds" not in text
    assert "cunlink_clock_offset_seconds" not in text
    assert 'device="printer"' not in text


def test_before_the_first_snapshot_only_build_info() -> None:
    cache = SnapshotCache()
    assert cache.age() is None
    metrics = StationMetrics(cache.get, version="9.9")
    server = serve_metrics(metrics, LOOPBACK, 0)
    try:
        s, _, text = scrape(server.port)
    finally:
        server.close()
    assert value(s, "cunlink_build_info", version="9.9") == 1
    assert "cunlink_link_up" not in text
    assert "cunlink_outbox_items" not in text


def test_two_stations_in_one_process_do_not_share_series() -> None:
    a = StationMetrics(lambda: None, version="a")
    b = StationMetrics(lambda: None, version="b")
    a.observe_request("GET", "/api/v1/status", 200, 0.01)
    assert (
        a.registry.get_sample_value(
            "cunlink_api_requests_total",
            {"method": "GET", "route": "/api/v1/status", "code": "200"},
        )
        == 1
    )
    assert (
        b.registry.get_sample_value(
            "cunlink_api_requests_total",
            {"method": "GET", "route": "/api/v1/status", "code": "200"},
        )
        is None
    )


def test_port_zero_turns_metrics_off() -> None:
    assert start_metrics_server(StationMetrics(lambda: None), LOOPBACK, 0) is None


def test_start_on_configured_port_and_close_frees_it() -> None:
    port = free_port()
    server = start_metrics_server(StationMetrics(lambda: None, version="x"), LOOPBACK, port)
    assert server is not None and server.port == port
    s, _, _ = scrape(port)
    assert value(s, "cunlink_build_info", version="x") == 1
    server.close()
    again = start_metrics_server(StationMetrics(lambda: None), LOOPBACK, port)  # port is free
    assert again is not None
    again.close()


def test_port_in_use_is_a_clear_error(served: tuple[StationMetrics, MetricsServer]) -> None:
    _, server = served
    with pytest.raises(
        OSError,
        match=rf"cannot serve metrics on 127.0.0.1:{server.port}.*"
        r"set another \[metrics\] port",
    ):
        start_metrics_server(StationMetrics(lambda: None), LOOPBACK, server.port)


async def test_refresh_snapshot_keeps_the_cache_fresh_and_survives_errors() -> None:
    cache = SnapshotCache()
    calls = 0

    async def status() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("one bad round")
        return {"round": calls}

    stop = asyncio.Event()
    task = asyncio.create_task(refresh_snapshot(cache, status, interval=0.02, stop=stop))
    for _ in range(500):  # bounded: at most ~10 s on a contended machine
        if calls >= 4:
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, timeout=10)
    assert calls >= 4
    snap = cache.get()
    assert snap is not None and snap["round"] >= 3  # rounds after the failure still landed
    age = cache.age()
    assert age is not None and age < 10


async def test_refresh_snapshot_rejects_bad_interval() -> None:
    async def status() -> dict[str, Any]:
        return {}

    with pytest.raises(ValueError, match="must be positive"):
        await refresh_snapshot(SnapshotCache(), status, interval=0)


def test_exposes_exactly_the_contract_names(
    served: tuple[StationMetrics, MetricsServer],
) -> None:
    # The dashboard and alert tests check against the same list (tests/config/metric_names.py).
    metrics, server = served
    metrics.observe_request("GET", "/api/v1/status", 200, 0.01)
    samples, _, _ = scrape(server.port)
    exposed = set().union(*(metric_names(name) for name, _ in samples))
    # prometheus_client adds a _created sample to its own counters and histograms
    exposed = {n for n in exposed if not n.endswith("_created")}
    assert exposed == STATION_METRICS


def test_cache_keeps_its_own_copy() -> None:
    # The loop may keep mutating its dicts while a scrape thread reads the cached snapshot.
    live = copy.deepcopy(SNAPSHOT)
    cache = SnapshotCache()
    cache.set(live)
    live["outbox"]["by_class"]["events"] = 99
    snap = cache.get()
    assert snap is not None and snap["outbox"]["by_class"]["events"] == 1
