"""The terminal API end to end: `cunlink run` as a subprocess with emulated devices on
pseudo-terminals (`cunlink sim idcard|printer|camera`), a real TLS Mosquitto, and no hub.

One daemon serves the whole module (starting it and its emulators costs seconds); tests that
change the world (broker restart) come last in the file and restore what they change.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.testbed.deployment import CUNLINK, Daemon, Deployment, build, wait_for
from gateway.testbed.ports import free_port

STATION = "ST001"
TOKEN_1 = "counter-one-token-0123456789abcdef"
TOKEN_2 = "counter-two-token-fedcba9876543210"
ORIGIN = "http://192.168.1.20:8080"
MAX_BODY = 1024 * 1024
APPLICANT = {"id_type": "resident", "id_number": "110101199003071234", "name": "测试甲",
             "sex": "female"}
CASE_RE = re.compile(rf"{STATION}-\d{{8}}-\d{{4}}")


@dataclass
class Station:
    county: Deployment
    daemon: Daemon
    base: str
    socket: Path
    idcard: subprocess.Popen[str]
    camera: subprocess.Popen[str]
    receipts: Path
    store: Path

    def url(self, path: str) -> str:
        return f"{self.base}/api/v1{path}"

    def card(self, command: str) -> None:
        assert self.idcard.stdin is not None
        self.idcard.stdin.write(command + "\n")
        self.idcard.stdin.flush()

    async def turn_page(self) -> None:
        """A new sheet under the camera (its console's `page`); waits until it is there."""
        log = self.county.root / "logs" / "sim-camera.log"
        before = log.read_text(encoding="utf-8").count("a new page is under the camera")
        assert self.camera.stdin is not None
        self.camera.stdin.write("page\n")
        self.camera.stdin.flush()
        for _ in range(100):
            if log.read_text(encoding="utf-8").count("a new page is under the camera") > before:
                return
            await asyncio.sleep(0.1)
        raise AssertionError("the camera emulator did not turn the page")


def _spawn(argv: list[str], log: Path, *, stdin: bool = False) -> subprocess.Popen[str]:
    with log.open("w") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([*CUNLINK, *argv], stdin=subprocess.PIPE if stdin else None,
                                stdout=out, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                start_new_session=True)


def _station_toml(base: Path, *, api_port: int, camera_port: int, root: Path) -> str:
    # the testbed's own [metrics], [log] and [api] sections are replaced by this test's
    common = base.read_text(encoding="utf-8").split("[metrics]")[0]
    return "\n".join([
        common, "[log]", 'level = "info"', "",
        "[metrics]", "port = 0", "beacon_interval_seconds = 10", "",
        "[devices.idcard]", "enabled = true", f'port = "{root / "idcard"}"',
        "poll_interval_seconds = 0.1", "timeout_seconds = 1.0", "",
        "[devices.printer]", "enabled = true", f'port = "{root / "printer"}"',
        "status_poll_seconds = 0.5", "",
        "[devices.camera]", "enabled = true", 'source = "http"',
        f'url = "http://127.0.0.1:{camera_port}/snapshot.jpg"', "max_pixels = 500000", "",
        "[api]", 'listen = "127.0.0.1"', f"port = {api_port}", f"max_body_bytes = {MAX_BODY}",
        f'cors_origins = ["{ORIGIN}"]',
        "[[api.tokens]]", 'name = "counter-1"', f'token = "{TOKEN_1}"',
        "[[api.tokens]]", 'name = "counter-2"', f'token = "{TOKEN_2}"', "",
    ])


def _http_ok(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status < 500)
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    root = tmp_path_factory.mktemp("api")
    county = build(root / "county", stations=(STATION,),
                   transfer={"backoff_initial_seconds": 0.2, "backoff_max_seconds": 1.0,
                             "outbox_poll_seconds": 0.2})
    procs: list[subprocess.Popen[str]] = []
    try:
        logs = county.root / "logs"
        idcard = _spawn(["sim", "idcard", "--card", "none", "--link", str(root / "idcard")],
                        logs / "sim-idcard.log", stdin=True)
        procs.append(idcard)
        receipts = root / "receipts"
        procs.append(_spawn(["sim", "printer", "--pty", "--link", str(root / "printer"),
                             "--out", str(receipts)], logs / "sim-printer.log", stdin=True))
        camera_port = free_port()
        camera = _spawn(["sim", "camera", "--port", str(camera_port), "--width", "1200",
                         "--height", "900"], logs / "sim-camera.log", stdin=True)
        procs.append(camera)
        assert wait_for(lambda: (root / "idcard").exists() and (root / "printer").exists(),
                        timeout=30), "the emulators did not start"
        assert wait_for(lambda: _http_ok(f"http://127.0.0.1:{camera_port}/snapshot.jpg"),
                        timeout=30), "the camera emulator did not start"
        api_port = free_port()
        config = county.station_configs[STATION]
        config.write_text(_station_toml(config, api_port=api_port, camera_port=camera_port,
                                        root=root), encoding="utf-8")
        daemon = county.station_daemon(STATION)
        daemon.start()
        base = f"http://127.0.0.1:{api_port}"
        state = county.station_dir(STATION) / "state"
        station = Station(county=county, daemon=daemon, base=base, socket=state / "cunlink.sock",
                          idcard=idcard, camera=camera, receipts=receipts,
                          store=state / "station.db")
        assert wait_for(lambda: _http_ok(station.url("/status")), timeout=60), daemon.log_text()
        yield station
    finally:
        county.close()
        for proc in procs:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


def auth(token: str = TOKEN_1, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


async def devices_ready(station: Station, http: aiohttp.ClientSession) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        async with http.get(station.url("/devices"), headers=auth()) as resp:
            body = await resp.json()
        if all(d.get("state") == "ok" for d in body["devices"]):
            return body
        await asyncio.sleep(0.3)
    raise AssertionError(f"devices not ready: {body}; log:\n{station.daemon.log_text()[-3000:]}")


async def create(http: aiohttp.ClientSession, station: Station, **extra: Any) -> dict[str, Any]:
    body = {"service": "MZ-0001", "fields": {"reason": "低保申请"}, "applicant": APPLICANT,
            **extra}
    async with http.post(station.url("/cases"), json=body, headers=auth()) as resp:
        assert resp.status == 201, await resp.text()
        return dict(await resp.json())


# --- auth ---------------------------------------------------------------------------------------


async def test_requests_without_a_valid_token_are_refused(
        station: Station, http: aiohttp.ClientSession) -> None:
    async with http.get(station.url("/status")) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await resp.json())["error"]["code"] == "unauthorized"
    async with http.get(station.url("/status"), headers=auth("x" * 34)) as resp:
        assert resp.status == 401
    for token in (TOKEN_1, TOKEN_2):  # each terminal's own token works
        async with http.get(station.url("/status"), headers=auth(token)) as resp:
            assert resp.status == 200
    log = station.daemon.log_text()
    assert TOKEN_1 not in log and TOKEN_2 not in log


# --- CORS and Private Network Access ----------------------------------------------------------


async def test_preflight_is_answered_only_for_configured_origins(
        station: Station, http: aiohttp.ClientSession) -> None:
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type",
                 "Access-Control-Request-Private-Network": "true"}
    async with http.options(station.url("/cases"),
                            headers={"Origin": ORIGIN, **preflight}) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert resp.headers["Access-Control-Allow-Private-Network"] == "true"
        assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
    async with http.options(station.url("/cases"),
                            headers={"Origin": "http://evil.example", **preflight}) as resp:
        assert resp.status == 403
        assert not [h for h in resp.headers if h.lower().startswith("access-control-")]
    # an actual request from an unknown page is refused even with a valid token
    async with http.get(station.url("/status"),
                        headers=auth(Origin="http://evil.example")) as resp:
        assert resp.status == 403
        assert (await resp.json())["error"]["code"] == "origin_not_allowed"
    async with http.get(station.url("/status"), headers=auth(Origin=ORIGIN)) as resp:
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN


# --- bodies ---------------------------------------------------------------------------------


async def test_oversized_bodies_get_a_json_413(
        station: Station, http: aiohttp.ClientSession) -> None:
    case = (await create(http, station))["case"]
    big = b"\xff\xd8\xff" + b"\0" * (MAX_BODY + 10)
    # with a Content-Length: refused before the body is read
    async with http.post(station.url(f"/cases/{case}/materials"), data=io.BytesIO(big),
                         headers=auth(**{"Content-Type": "image/jpeg"})) as resp:
        assert resp.status == 413
        error = (await resp.json())["error"]
        assert error["code"] == "body_too_large" and str(MAX_BODY) in error["message"]

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 65536):
            yield big[start:start + 65536]

    # chunked, no length: stopped while reading, same answer
    async with http.post(station.url(f"/cases/{case}/materials"), data=chunked(),
                         headers=auth(**{"Content-Type": "image/jpeg"})) as resp:
        assert resp.status == 413
        assert (await resp.json())["error"]["code"] == "body_too_large"


@pytest.mark.parametrize(("body", "field"), [
    ({"fields": {}, "applicant": APPLICANT}, "service"),
    ({"service": 7, "applicant": APPLICANT}, "service"),
    ({"service": "MZ-0001", "applicant": {**APPLICANT, "name": ""}}, "applicant.name"),
    ({"service": "MZ-0001", "applicant": {"id_type": "resident"}}, "applicant.id_number"),
    ({"service": "MZ-0001", "applicant": APPLICANT, "fields": {"n": 1.5}}, "fields.n"),
    ({"service": "MZ-0001", "applicant": APPLICANT, "submit": "yes"}, "submit"),
    ({"service": "MZ-0001", "applicant": APPLICANT, "colour": "red"}, "colour"),
    ({"service": "MZ-0001", "applicant": 3}, "applicant"),
])
async def test_malformed_bodies_name_the_field(
        station: Station, http: aiohttp.ClientSession, body: dict[str, Any], field: str) -> None:
    async with http.post(station.url("/cases"), json=body,
                         headers=auth(**{"Accept-Language": "en"})) as resp:
        assert resp.status == 400, await resp.text()
        error = (await resp.json())["error"]
        assert error["field"] == field
        assert field in error["message"]


async def test_broken_json_and_unknown_things(
        station: Station, http: aiohttp.ClientSession) -> None:
    async with http.post(station.url("/cases"), data=b'{"service": ',
                         headers=auth(**{"Content-Type": "application/json"})) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "invalid_json"
    async with http.get(station.url("/cases/ST001-20000101-9999"), headers=auth()) as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "case_not_found"
    async with http.get(station.url("/nothing"), headers=auth()) as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "not_found"
    async with http.get(station.url("/cases?status=lost"), headers=auth()) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["field"] == "status"


async def test_messages_follow_accept_language(
        station: Station, http: aiohttp.ClientSession) -> None:
    url = station.url("/cases/ST001-20000101-9999")
    messages = {}
    for lang in ("zh-CN,zh;q=0.9", "en-US,en;q=0.8", None):
        headers = auth(**({"Accept-Language": lang} if lang else {}))
        async with http.get(url, headers=headers) as resp:
            assert resp.status == 404
            messages[lang] = (await resp.json())["error"]["message"]
            assert resp.headers["Content-Language"] in ("zh-CN", "en")
    assert "办件" in messages["zh-CN,zh;q=0.9"]
    assert "no case" in messages["en-US,en;q=0.8"]
    assert messages[None] == messages["zh-CN,zh;q=0.9"]  # [station] language defaults zh-CN


# --- durability ---------------------------------------------------------------------------------


async def test_201_means_the_case_is_in_the_store_file(
        station: Station, http: aiohttp.ClientSession) -> None:
    created = await create(http, station)
    case = created["case"]
    assert CASE_RE.fullmatch(case)
    # read by another process, right after the answer
    probe = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
             "print(c.execute('SELECT count(*) FROM events WHERE case_id = ?', "
             "(sys.argv[2],)).fetchone()[0]); "
             "print(c.execute('SELECT count(*) FROM outbox WHERE case_id = ?', "
             "(sys.argv[2],)).fetchone()[0])")
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", probe, str(station.store), case],
        capture_output=True, text=True, timeout=30, check=True)
    out = done.stdout.split()
    assert out == ["1", "1"], out  # case_created, and its sealed batch queued for the hub


# --- devices and the operator's flow -----------------------------------------------------------


async def test_operator_flow_with_events(station: Station, http: aiohttp.ClientSession) -> None:
    await devices_ready(station, http)
    async with http.ws_connect(station.url("/events").replace("http", "ws"),
                               protocols=("cunlink.v1", f"bearer.{TOKEN_2}")) as ws:
        assert ws.protocol == "cunlink.v1"
        hello = await ws.receive_json(timeout=10)
        assert hello["type"] == "hello" and hello["data"]["station"] == STATION

        async def next_event(kind: str) -> dict[str, Any]:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                msg = await ws.receive_json(timeout=30)
                if msg["type"] == kind:
                    return dict(msg["data"])
            raise AssertionError(f"no {kind} event")

        # 1. the citizen's card goes on the reader; the case is created from it
        station.card("insert resident")
        inserted = await next_event("card_inserted")
        assert "*" in inserted["card"]["number"]  # masked on the bus
        async with http.post(station.url("/cases"), headers=auth(), json={
                "service": "MZ-0001", "fields": {"reason": "低保"}, "applicant": "idcard",
                "card_timeout_seconds": 10}) as resp:
            assert resp.status == 201, await resp.text()
            created = await resp.json()
        case = created["case"]
        assert resp.headers["Location"] == f"/api/v1/cases/{case}"
        assert created["applicant"]["id_number"] and "photo_wlt" not in created["applicant"]
        assert created["applicant"]["photo_sha256"]
        # 2. the card is checked against the case and recorded
        async with http.post(station.url(f"/cases/{case}/idcard"), headers=auth()) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["verified"] is True
        station.card("remove")
        await next_event("card_removed")
        # 3. two pages from the camera; the same sheet twice is a duplicate, not a new page
        shas = []
        for page in range(2):
            if page:
                async with http.post(station.url(f"/cases/{case}/materials"), headers=auth(),
                                     json={"source": "camera"}) as resp:
                    assert resp.status == 200, await resp.text()
                    again = await resp.json()
                    assert again["duplicate"] is True and again["material"]["sha256"] == shas[0]
                    assert len(again["state"]["materials"]) == 1
                await station.turn_page()
            async with http.post(station.url(f"/cases/{case}/materials"), headers=auth(),
                                 json={"source": "camera"}) as resp:
                assert resp.status == 201, await resp.text()
                added = await resp.json()
                assert added["duplicate"] is False
                shas.append(added["material"]["sha256"])
            done = await next_event("capture_done")
            assert done["case"] == case and done["sha256"] == shas[-1]
        assert shas[0] != shas[1]
        # 4. submit
        async with http.post(station.url(f"/cases/{case}/submit"), headers=auth()) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["status"] == "submitted"
        async with http.post(station.url(f"/cases/{case}/submit"), headers=auth()) as resp:
            assert resp.status == 409  # twice is not a transition
        # 5. the receipt, with the case number's QR code, from the (emulated) printer
        async with http.post(station.url(f"/cases/{case}/receipt"), headers=auth(),
                             json={"wait_seconds": 30}) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["printed"] is True
    assert wait_for(lambda: any(f"[QR] {case}" in p.read_text(encoding="utf-8")
                                for p in station.receipts.glob("*.txt")), timeout=20)
    png = next(p.with_suffix(".png") for p in station.receipts.glob("*.txt")
               if f"[QR] {case}" in p.read_text(encoding="utf-8"))
    assert png.stat().st_size > 1000
    async with http.get(station.url(f"/cases/{case}"), headers=auth()) as resp:
        state = await resp.json()
    assert state["status"] == "submitted" and state["hub_status"] is None
    assert {m["sha256"] for m in state["materials"]} == set(shas)
    assert state["notes"][0]["text"].startswith("ID card checked")
    async with http.get(station.url("/cases?status=submitted"), headers=auth()) as resp:
        listed = await resp.json()
    assert case in [c["case"] for c in listed["cases"]]
    # personal data from the card never reaches the daemon's log
    log = station.daemon.log_text()
    assert created["applicant"]["id_number"] not in log
    assert created["applicant"]["name"] not in log


async def test_card_timeout_and_mismatch(station: Station, http: aiohttp.ClientSession) -> None:
    await devices_ready(station, http)
    case = (await create(http, station))["case"]
    async with http.post(station.url(f"/cases/{case}/idcard"), headers=auth(),
                         json={"timeout_seconds": 0.5}) as resp:
        assert resp.status == 408
        assert (await resp.json())["error"]["code"] == "card_timeout"
    station.card("insert resident")
    try:
        async with http.post(station.url(f"/cases/{case}/idcard"), headers=auth(),
                             json={"timeout_seconds": 10}) as resp:
            # the sample card is not this case's applicant
            assert resp.status == 409, await resp.text()
            assert (await resp.json())["error"]["code"] == "card_mismatch"
    finally:
        station.card("remove")


async def test_uploads_are_normalised_or_refused(
        station: Station, http: aiohttp.ClientSession) -> None:
    from PIL import Image

    case = (await create(http, station))["case"]
    buf = io.BytesIO()
    Image.new("RGB", (2400, 1800), "white").save(buf, "PNG")
    form = aiohttp.FormData()
    form.add_field("file", buf.getvalue(), filename="page.png", content_type="image/png")
    async with http.post(station.url(f"/cases/{case}/materials"), data=form,
                         headers=auth()) as resp:
        assert resp.status == 201, await resp.text()
        material = (await resp.json())["material"]
        assert material["width"] * material["height"] <= 500_000  # [devices.camera] max_pixels
    async with http.post(station.url(f"/cases/{case}/materials"), data=b"%PDF-1.4\n%%EOF\n",
                         headers=auth(**{"Content-Type": "application/pdf"})) as resp:
        assert resp.status == 201, await resp.text()
    async with http.post(station.url(f"/cases/{case}/materials"), data=b"MZ\x90\0 not a scan",
                         headers=auth(**{"Content-Type": "image/jpeg"})) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "invalid_material"
    async with http.get(station.url(f"/cases/{case}"), headers=auth()) as resp:
        mimes = sorted(m["mime"] for m in (await resp.json())["materials"])
    assert mimes == ["application/pdf", "image/jpeg"]


# --- the Unix socket -------------------------------------------------------------------------


async def test_unix_socket_status_without_a_token(station: Station) -> None:
    mode = stat.S_IMODE(station.socket.stat().st_mode)
    assert mode == 0o660
    connector = aiohttp.UnixConnector(path=str(station.socket))
    async with aiohttp.ClientSession(connector=connector) as local, \
            local.get("http://station/api/v1/status") as resp:
        assert resp.status == 200
        status = await resp.json()
    assert status["station"] == STATION
    assert {"link", "outbox", "devices", "disk", "cases", "recent_errors", "api"} <= set(status)
    assert status["outbox"]["count"] >= 1  # the cases created above wait: no hub
    assert {d["name"] for d in status["devices"]} == {"idcard", "printer", "camera"}
    assert status["link"]["up"] is True


# --- link events: last, since they restart the broker -----------------------------------------


async def test_link_down_and_up_reach_the_websocket(
        station: Station, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(station.url("/events").replace("http", "ws"),
                               headers=auth()) as ws:
        assert (await ws.receive_json(timeout=10))["type"] == "hello"
        await asyncio.to_thread(station.county.broker.stop)
        seen: list[str] = []
        try:
            deadline = time.monotonic() + 60
            while "link_down" not in seen and time.monotonic() < deadline:
                seen.append((await ws.receive_json(timeout=60))["type"])
        finally:
            await asyncio.to_thread(station.county.broker.start)
        while "link_up" not in seen and time.monotonic() < deadline + 60:
            seen.append((await ws.receive_json(timeout=60))["type"])
        assert seen.index("link_down") < seen.index("link_up"), seen


def test_the_store_holds_the_cases_and_the_log_no_personal_data(station: Station) -> None:
    # the database itself is where the data belongs; logs never (checked once more at the end)
    with sqlite3.connect(station.store) as conn:
        count = conn.execute("SELECT count(DISTINCT case_id) FROM events").fetchone()[0]
    assert count >= 3
    assert APPLICANT["id_number"] not in station.daemon.log_text()


def test_sigterm_stops_the_daemon_cleanly(station: Station) -> None:
    """Last: SIGTERM closes the API (the socket file goes) and exits 0 within the bound."""
    started = time.monotonic()
    code = station.daemon.terminate(timeout=40)
    assert code == 0, station.daemon.log_text()[-3000:]
    assert time.monotonic() - started < 30
    assert not station.socket.exists()
    assert "station ST001 stopped" in station.daemon.log_text()
