"""The API app in-process over loopback, on a real runtime (store, intake) without devices."""

from __future__ import annotations

import asyncio
import logging
import sqlite3

from aiohttp.test_utils import TestClient, TestServer

from gateway.api import create_app
from gateway.runtime import StationRuntime
from tests.gateway.api.conftest import APPLICANT, ORIGIN, Client, Observed, headers

NEW_CASE = {"service": "MZ-0001", "fields": {"reason": "低保", "members": 3},
            "applicant": APPLICANT}


async def test_create_answers_201_after_the_commit(client: Client,
                                                   runtime: StationRuntime) -> None:
    resp = await client.post("/api/v1/cases", json=NEW_CASE, headers=headers())
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    case = body["case"]
    assert resp.headers["Location"] == f"/api/v1/cases/{case}"
    assert body["status"] == "draft" and body["fields"] == {"reason": "低保", "members": 3}
    # a second connection to the file sees it at once
    with sqlite3.connect(runtime.store.path) as conn:
        rows = conn.execute("SELECT count(*) FROM outbox WHERE case_id = ?", (case,)).fetchone()
    assert rows[0] == 1
    got = await (await client.get(f"/api/v1/cases/{case}", headers=headers())).json()
    assert got["applicant"]["name"] == "张三" and got["hub_status"] is None


async def test_submit_once_then_409(client: Client) -> None:
    case = (await (await client.post("/api/v1/cases", json=NEW_CASE,
                                     headers=headers())).json())["case"]
    first = await client.post(f"/api/v1/cases/{case}/submit", headers=headers())
    assert first.status == 200 and (await first.json())["status"] == "submitted"
    again = await client.post(f"/api/v1/cases/{case}/submit",
                              headers=headers(**{"Accept-Language": "en"}))
    assert again.status == 409
    error = (await again.json())["error"]
    assert error["code"] == "invalid_transition" and error["status"] == "submitted"
    assert "cannot be submitted" in error["message"]
    listed = await (await client.get("/api/v1/cases?status=submitted",
                                     headers=headers())).json()
    assert [c["case"] for c in listed["cases"]] == [case]
    drafts = await (await client.get("/api/v1/cases?status=draft", headers=headers())).json()
    assert drafts["cases"] == []


async def test_disabled_devices_answer_503(client: Client) -> None:
    case = (await (await client.post("/api/v1/cases", json=NEW_CASE,
                                     headers=headers())).json())["case"]
    for path, body, device in (
        (f"/api/v1/cases/{case}/materials", {"source": "camera"}, "camera"),
        (f"/api/v1/cases/{case}/receipt", {}, "printer"),
        (f"/api/v1/cases/{case}/idcard", {"timeout_seconds": 1}, "idcard"),
    ):
        resp = await client.post(path, json=body, headers=headers(**{"Accept-Language": "en"}))
        assert resp.status == 503, (path, await resp.text())
        error = (await resp.json())["error"]
        assert error["code"] == "device_disabled" and device in error["message"]
    resp = await client.post("/api/v1/cases", headers=headers(),
                             json={**NEW_CASE, "applicant": "idcard"})
    assert resp.status == 503
    assert "未启用" in (await resp.json())["error"]["message"]  # zh-CN by default


async def test_bodies_over_the_limit_get_413(client: Client) -> None:
    resp = await client.post("/api/v1/cases", data=b"{" + b" " * 5000 + b"}",
                             headers=headers(**{"Content-Type": "application/json"}))
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "body_too_large"


async def test_the_observer_sees_route_templates(client: Client,
                                                 observed: Observed) -> None:
    await client.get("/api/v1/cases/ST009-20260101-0001", headers=headers())
    await client.get("/api/v1/status")
    routes = [(m, r, s) for m, r, s, _ in observed]
    assert routes == [("GET", "/api/v1/cases/{id}", 404), ("GET", "/api/v1/status", 401)]
    assert all(seconds >= 0 for *_, seconds in observed)


async def test_cors_only_for_configured_origins(client: Client) -> None:
    preflight = {"Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Private-Network": "true"}
    ok = await client.options("/api/v1/status", headers={"Origin": ORIGIN, **preflight})
    assert ok.status == 204 and ok.headers["Access-Control-Allow-Private-Network"] == "true"
    no = await client.options("/api/v1/status",
                              headers={"Origin": "http://10.0.0.6:8080", **preflight})
    assert no.status == 403 and "Access-Control-Allow-Origin" not in no.headers


async def test_the_local_app_needs_no_token(runtime: StationRuntime) -> None:
    app = create_app(runtime, runtime.cfg.api, require_token=False)
    async with TestClient(TestServer(app, host="127.0.0.1")) as local:
        resp = await local.get("/api/v1/status")
        assert resp.status == 200
        status = await resp.json()
    assert status["station"] == "ST009"
    assert status["outbox"] == {"count": 0, "bytes_pending": 0, "oldest_age_seconds": None,
                                "by_class": {"control": 0, "events": 0, "materials": 0},
                                "held": 0}
    assert status["link"]["up"] is False and status["devices"] == []


async def test_recent_errors_keep_the_last_twenty(runtime: StationRuntime) -> None:
    log = logging.getLogger("cunlink.uplink")
    for n in range(25):
        log.warning("link down: attempt %d", n)
    logging.getLogger("cunlink.uplink").info("not kept: below WARNING")
    errors = (await runtime.status())["recent_errors"]
    assert len(errors) == 20
    assert errors[-1]["where"] == "uplink" and errors[-1]["message"] == "link down: attempt 24"
    assert errors[0]["message"] == "link down: attempt 5"


async def test_downlink_and_link_events_reach_the_websocket(client: Client,
                                                            runtime: StationRuntime) -> None:
    async with client.ws_connect("/api/v1/events",
                                 protocols=("cunlink.v1", "bearer.terminal-token-0123456789abcdef"),
                                 ) as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "hello"
        runtime.on_uplink_event("link_up", {})
        runtime.on_uplink_event("status_changed", {"case": "ST009-20260101-0001",
                                                   "to": "received"})
        runtime.on_uplink_event("supplement_requested", {"case": "ST009-20260101-0001",
                                                         "request": "r1", "what": "户口本"})
        runtime.on_uplink_event("link_down", {"error": "cut"})
        got = [await ws.receive_json(timeout=5) for _ in range(4)]
    assert [m["type"] for m in got] == ["link_up", "case_status_changed",
                                        "supplement_requested", "link_down"]
    assert got[1]["data"] == {"case": "ST009-20260101-0001", "to": "received"}
    assert got[2]["data"]["what"] == "户口本"
    await asyncio.sleep(0.05)
    assert runtime.bus.subscribers == 0  # the subscription ended with the socket


async def test_websocket_needs_a_token(client: Client) -> None:
    resp = await client.get("/api/v1/events", headers={"Upgrade": "websocket",
                                                       "Connection": "Upgrade"})
    assert resp.status == 401


async def test_a_case_reads_back_while_whole_store_scans_run(client: Client,
                                                              runtime: StationRuntime) -> None:
    """Scans (status, list) run on their own connection: a scan's open cursor must not give
    the create's read-back an old snapshot (it did, as a 404, before the bulk reader)."""
    for _ in range(300):
        await runtime.intake.create_case("MZ-0001", APPLICANT, {})
    stop = asyncio.Event()

    async def scanner() -> int:
        scans = 0
        while not stop.is_set():
            runtime.committed()  # force the status fold every time
            await runtime.status()
            await client.get("/api/v1/cases?limit=1", headers=headers())
            scans += 1
        return scans

    task = asyncio.create_task(scanner())
    try:
        for _ in range(40):
            resp = await client.post("/api/v1/cases", json=NEW_CASE, headers=headers())
            assert resp.status == 201, await resp.text()
    finally:
        stop.set()
        (scans,) = await asyncio.gather(task, return_exceptions=True)
    assert isinstance(scans, int) and scans >= 1
