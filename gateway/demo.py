"""`cunlink demo`: a county on this machine, a village on a bad 2G link, cases crossing it.

Starts Mosquitto with TLS and the ACL on free loopback ports, the hub, and a station whose
broker connection goes through the link simulator (scaled 2G: cuts every few seconds, some of
them silent stalls) and whose ID-card reader, receipt printer and document camera are
emulators. Walks one case through the terminal API as an operator would (card, two camera
pages, submit, receipt), submits more cases with scan-sized materials from the CLI, shows them
crossing, approves the counter's case at the hub, shows the answer arriving back at the
station's terminal, and ends with what the hub received and verified.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import secrets
import shutil
import tempfile
import time
from pathlib import Path

import aiohttp

from gateway.demo_operator import DemoDevices, DemoError, Terminal, operator_case
from gateway.testbed.deployment import Deployment, build
from gateway.testbed.linksim import LinkProfile, LinkSimulator
from gateway.testbed.ports import free_port

STATION = "ST001"
#: Transfer settings scaled like the link (about 12x faster than a real 2G cell).
SCALED_TRANSFER: dict[str, object] = {
    "chunk_min_bytes": 4096, "chunk_max_bytes": 32768, "chunk_target_seconds": 0.5,
    "window": 3, "stall_timeout_seconds": 5, "backoff_initial_seconds": 0.2,
    "backoff_max_seconds": 2.0, "outbox_poll_seconds": 0.2,
}


def say(text: str) -> None:
    print(text, flush=True)


def scan_page(seed: int) -> bytes:
    """A scan-sized page (about 300 KB): a real JPEG with noise, as a camera would give."""
    from PIL import Image, ImageDraw

    image = Image.effect_noise((1100, 1500), 60 + seed).convert("L")
    draw = ImageDraw.Draw(image)
    draw.rectangle((80, 80, 1020, 200), fill=255)
    draw.text((100, 120), f"cunlink demo page {seed}", fill=0)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()


async def cli(county: Deployment, *args: str) -> str:
    result = await asyncio.to_thread(county.cli, *args)
    if result.returncode != 0:
        raise RuntimeError(f"cunlink {' '.join(args[:3])} failed: {result.stderr.strip()}")
    return result.stdout


async def hub_cases(county: Deployment) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = json.loads(
        await cli(county, "hub", "cases", "--config", str(county.hub_config), "--json"))
    return rows


async def run_demo(*, cases: int = 5, keep: bool = False) -> int:
    root = Path(tempfile.mkdtemp(prefix="cunlink-demo-"))
    started = time.monotonic()
    say(f"cunlink demo — working in {root}")
    county = await asyncio.to_thread(build, root, stations=(STATION,), hub_id="HUB-DEMO",
                                     transfer=SCALED_TRANSFER)
    profile = LinkProfile.gprs_2g()
    devices: DemoDevices | None = None
    try:
        say(f"  county PKI, hub and station keys made; Mosquitto (TLS, ACL) on "
            f"127.0.0.1:{county.broker.port}")
        devices = DemoDevices(root / "devices")
        devices.start()
        say("  emulated ID-card reader and receipt printer on pseudo-terminals, document "
            f"camera on 127.0.0.1:{devices.camera_port} (cunlink sim ...)")
        async with LinkSimulator("127.0.0.1", county.broker.port, profile, seed=7) as link, \
                aiohttp.ClientSession() as session:
            api_port = free_port()
            token = secrets.token_hex(24)
            county.write_station_config(STATION, port=link.port, transfer=SCALED_TRANSFER,
                                        api_port=api_port, api_token=token,
                                        extra=devices.station_config())
            say(f"  station {STATION} reaches the broker through a simulated 2G link on port "
                f"{link.port}: {profile.up_rate:.0f} B/s, {profile.latency * 1000:.0f} ms, "
                f"a failure every ~{profile.cut_every} s ({profile.stall_share:.0%} silent "
                "stalls)")
            hub = county.hub_daemon()
            hub.start()
            station = county.station_daemon(STATION)
            station.start()
            terminal = Terminal(base=f"http://127.0.0.1:{api_port}", token=token,
                                session=session, say=say)
            await terminal.wait_up(timeout=60)
            say(f"  station API on {terminal.base}/api/v1 (bearer token), devices up")
            shown: list[str] = []
            watcher = asyncio.create_task(terminal.watch(shown), name="terminal-events")
            try:
                code = await _walk(county, link, cases, terminal, devices)
            finally:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
            say("  stopping the station (SIGTERM) and the hub")
            await asyncio.to_thread(station.terminate)
            await asyncio.to_thread(hub.terminate)
        say(f"demo finished in {time.monotonic() - started:.1f} s")
        if code:
            say(f"  logs kept in {root / 'logs'} and {root / 'devices'}")
        return code
    except DemoError as exc:
        say(f"  demo failed: {exc}; logs in {root / 'logs'}")
        return 1
    finally:
        if devices is not None:
            await asyncio.to_thread(devices.close)
        await asyncio.to_thread(county.close)
        if keep:
            say(f"  kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


async def _walk(county: Deployment, link: LinkSimulator, n: int, terminal: Terminal,
                devices: DemoDevices) -> int:
    config = str(county.station_configs[STATION])
    t0 = time.monotonic()
    counter_case, receipt = await operator_case(terminal, devices)
    counter = await terminal.call("GET", f"/cases/{counter_case}")
    expected: dict[str, set[str]] = {
        counter_case: {str(m["sha256"]) for m in counter["materials"]}}
    payload = sum(int(m["size"]) for m in counter["materials"])

    applicant = county.root / "applicant.json"
    applicant.write_text(json.dumps({
        "id_type": "resident", "id_number": "11010519491231002X", "name": "测试甲",
        "sex": "female", "nation": "汉"}, ensure_ascii=False), encoding="utf-8")
    say(f"  {n} more cases submitted from the command line (cunlink cases submit), "
        "one scan each:")
    for i in range(n):
        page = scan_page(i)
        scan = county.root / f"scan-{i}.jpg"
        scan.write_bytes(page)
        out = await cli(county, "cases", "submit", "--config", config, "--service", "MZ-0001",
                        "--applicant", str(applicant), "--material", str(scan))
        case = out.strip().split()[-1]
        expected[case] = {hashlib.sha256(page).hexdigest()}
        payload += len(page)
        say(f"    accepted case {case}: 1 page, {len(page) / 1024:.0f} KiB (sealed, on disk)")
    total = len(expected)
    say(f"  {total} cases, {payload / 1024:.0f} KiB of scans queued; crossing the link …")

    deadline = time.monotonic() + 600
    arrived: set[str] = set()
    while time.monotonic() < deadline:
        rows = {str(r["case"]): r for r in await hub_cases(county)}
        arrived = {c for c, shas in expected.items() if c in rows and shas <= {
            str(m["sha256"]) for m in rows[c]["materials"]  # type: ignore[attr-defined]
            if m["received"]}}
        s = link.stats
        say(f"    {time.monotonic() - t0:5.1f} s  arrived {len(arrived)}/{total}  "
            f"link: {s.bytes_up / 1024:.0f} KiB up, {s.cuts} cuts, {s.stalls} stalls")
        if len(arrived) == total:
            break
        await asyncio.sleep(2)
    if len(arrived) != total:
        say(f"  only {len(arrived)} of {total} cases arrived in time")
        return 1
    crossing = time.monotonic() - t0

    case = counter_case
    say(f"  the county reviews {case} (the counter's case): received -> in_review -> approved")
    for status in ("received", "in_review", "approved"):
        await cli(county, "hub", "case", "set-status", case, status, "--config",
                  str(county.hub_config), "--reason", "demo")
    t1 = time.monotonic()
    while time.monotonic() - t1 < 120:
        shown = await terminal.call("GET", f"/cases/{case}")
        if shown.get("hub_status") == "approved":
            say(f"  the station's terminal sees {case} approved {time.monotonic() - t1:.1f} s "
                "after the county decided (GET /api/v1/cases/{id}: status "
                f"{shown['status']})")
            break
        await asyncio.sleep(1)
    else:
        say("  the hub's answer did not reach the station in time")
        return 1

    final = await hub_cases(county)
    s = link.stats
    verified = sum(1 for r in final if str(r["case"]) in expected)
    say("  at the hub:")
    say(f"    cases received and verified: {verified} (expected {total}, duplicates "
        f"{len(final) - len({str(r['case']) for r in final})})")
    say(f"    material hashes match: {len(arrived)}/{total} cases "
        f"({sum(len(v) for v in expected.values())} scans)")
    say(f"    payload {payload / 1024:.0f} KiB in {crossing:.1f} s over a link that moved "
        f"{s.bytes_up / 1024:.0f} KiB up; survived {s.cuts} cuts and {s.stalls} silent stalls "
        f"({s.connections} connections)")
    say(f"  the counter's receipt: {receipt or 'not printed'}")
    return 0
