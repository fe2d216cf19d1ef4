"""The demo's counter: emulated devices and one case walked through the terminal API.

The station daemon runs with the ID-card reader and the receipt printer emulated on
pseudo-terminals and the document camera emulated over HTTP (`cunlink sim ...`, the same byte
protocols as the real devices). An operator's terminal would make exactly these calls: wait for
the citizen's card, create the case from it, capture two pages, submit, print the receipt.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from gateway.testbed.deployment import CUNLINK, wait_for
from gateway.testbed.ports import free_port

#: WebSocket events worth showing (link up/down happen every few seconds on the 2G profile).
SHOWN_EVENTS = ("card_inserted", "card_removed", "capture_done", "case_status_changed",
                "supplement_requested")


#: What `cunlink sim camera` prints once a new sheet is under it.
NEW_PAGE = "a new page is under the camera"


class DemoError(RuntimeError):
    pass


@dataclass(slots=True)
class DemoDevices:
    """The three emulators as child processes; `close()` stops them."""

    root: Path
    camera_port: int = 0
    procs: list[subprocess.Popen[str]] = field(default_factory=list)
    idcard: subprocess.Popen[str] | None = None
    camera: subprocess.Popen[str] | None = None

    @property
    def receipts(self) -> Path:
        return self.root / "receipts"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.idcard = self._spawn("idcard", ["sim", "idcard", "--card", "none",
                                             "--link", str(self.root / "idcard")], stdin=True)
        self._spawn("printer", ["sim", "printer", "--pty", "--link", str(self.root / "printer"),
                                "--out", str(self.receipts)], stdin=True)
        self.camera_port = free_port()
        self.camera = self._spawn("camera", ["sim", "camera", "--port", str(self.camera_port),
                                             "--width", "2480", "--height", "3508"],
                                  stdin=True)
        if not wait_for(lambda: (self.root / "idcard").exists()
                        and (self.root / "printer").exists(), timeout=30):
            raise DemoError(f"the device emulators did not start; see {self.root}/*.log")

    def _spawn(self, name: str, argv: list[str], *, stdin: bool = False
               ) -> subprocess.Popen[str]:
        with (self.root / f"sim-{name}.log").open("w") as out:
            proc = subprocess.Popen([*CUNLINK, *argv],
                                    stdin=subprocess.PIPE if stdin else None, stdout=out,
                                    stderr=subprocess.STDOUT, text=True,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                    start_new_session=True)
        self.procs.append(proc)
        return proc

    def card(self, command: str) -> None:
        """Type a command at the ID-card emulator's console (insert / remove)."""
        _type(self.idcard, command)

    async def next_page(self) -> None:
        """Put another sheet under the emulated camera (its console's `page`) and wait until
        the emulator says it is there (bounded: 15 s)."""
        log = self.root / "sim-camera.log"
        before = log.read_text(encoding="utf-8").count(NEW_PAGE)
        _type(self.camera, "page")
        for _ in range(150):
            if log.read_text(encoding="utf-8").count(NEW_PAGE) > before:
                return
            await asyncio.sleep(0.1)
        raise DemoError(f"the camera emulator did not turn the page; see {log}")

    def station_config(self) -> str:
        """The `[devices.*]` sections pointing the station at the emulators."""
        return "\n".join([
            "[devices.idcard]", "enabled = true", f'port = "{self.root / "idcard"}"',
            "poll_interval_seconds = 0.2", "",
            "[devices.printer]", "enabled = true", f'port = "{self.root / "printer"}"',
            "status_poll_seconds = 1.0", "",
            "[devices.camera]", "enabled = true", 'source = "http"',
            f'url = "http://127.0.0.1:{self.camera_port}/snapshot.jpg"',
            "max_pixels = 1000000", "jpeg_quality = 60", "",
        ])

    def receipt_png(self, case: str) -> Path | None:
        """The emulator writes receipt-N.png with a .txt of the printed lines beside it."""
        for text in sorted(self.receipts.glob("receipt-*.txt")):
            if f"[QR] {case}" in text.read_text(encoding="utf-8", errors="replace"):
                png = text.with_suffix(".png")
                return png if png.exists() else None
        return None

    def close(self) -> None:
        for proc in self.procs:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _type(proc: subprocess.Popen[str] | None, command: str) -> None:
    assert proc is not None and proc.stdin is not None, "emulator not started"
    proc.stdin.write(command + "\n")
    proc.stdin.flush()


@dataclass(slots=True)
class Terminal:
    """The operator's terminal: an HTTP client with its bearer token."""

    base: str
    token: str
    session: aiohttp.ClientSession
    say: Callable[[str], None]

    def url(self, path: str) -> str:
        return f"{self.base}/api/v1{path}"

    async def call(self, method: str, path: str, *, expect: tuple[int, ...] = (200, 201),
                   body: dict[str, Any] | None = None) -> dict[str, Any]:
        async with self.session.request(
            method, self.url(path), json=body,
            headers={"Authorization": f"Bearer {self.token}", "Accept-Language": "en"},
        ) as resp:
            data: dict[str, Any] = await resp.json(content_type=None)
            if resp.status not in expect:
                raise DemoError(f"{method} {path} answered {resp.status}: "
                                f"{json.dumps(data, ensure_ascii=False)}")
            return data

    async def wait_up(self, timeout: float) -> None:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status = await self.call("GET", "/status")
                states = {d["name"]: d["state"] for d in status["devices"]}
                if len(states) == 3 and all(s == "ok" for s in states.values()):
                    return
            except (aiohttp.ClientError, DemoError):
                pass
            await asyncio.sleep(0.5)
        raise DemoError(f"the station's API or devices were not ready in {timeout:.0f} s")

    async def watch(self, shown: list[str]) -> None:
        """Print the WebSocket events an operator's screen would react to."""
        async with self.session.ws_connect(
                self.url("/events"), headers={"Authorization": f"Bearer {self.token}"},
                heartbeat=20) as ws:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                event = json.loads(msg.data)
                if event.get("type") in SHOWN_EVENTS:
                    data = event.get("data", {})
                    detail = str(data.get("case", ""))
                    if data.get("to"):
                        detail += f" -> {data['to']}"
                    if data.get("what"):
                        detail += f": {data['what']}"
                    line = f"    [terminal] event {event['type']} {detail}".rstrip()
                    shown.append(event["type"])
                    self.say(line)


async def operator_case(terminal: Terminal, devices: DemoDevices) -> tuple[str, Path | None]:
    """One citizen at the counter; returns the case number and the receipt's PNG."""
    say = terminal.say
    say("  at the counter (terminal API, emulated ID-card reader, camera and printer):")
    devices.card("insert")
    created = await terminal.call("POST", "/cases", expect=(201,), body={
        "service": "MZ-0001", "fields": {"reason": "低保申请"}, "applicant": "idcard",
        "card_timeout_seconds": 20})
    case = str(created["case"])
    say(f"    POST /cases (applicant from the ID card) -> 201 {case}, durable on disk")
    await terminal.call("POST", f"/cases/{case}/idcard")
    say("    POST /cases/{id}/idcard -> the card on the reader is the applicant's")
    devices.card("remove")
    for page in (1, 2):
        if page > 1:
            await devices.next_page()
        added = await terminal.call("POST", f"/cases/{case}/materials", expect=(201,),
                                    body={"source": "camera"})
        material = added["material"]
        say(f"    POST /cases/{{id}}/materials (camera) -> page {page}: "
            f"{material['width']}x{material['height']}, {int(material['bytes']) / 1024:.0f} KiB "
            f"(from {int(material['bytes_in']) / 1024:.0f} KiB), "
            f"sha256 {str(material['sha256'])[:12]}…")
    await terminal.call("POST", f"/cases/{case}/submit")
    say("    POST /cases/{id}/submit -> submitted to the county")
    printed = await terminal.call("POST", f"/cases/{case}/receipt", expect=(200, 202))
    png = None
    for _ in range(60):  # the emulator renders the PNG once the paper is cut (bounded: 18 s)
        if (png := devices.receipt_png(case)) is not None:
            break
        await asyncio.sleep(0.3)
    outcome = "printed" if printed.get("printed") else "queued (printer not ready)"
    say(f"    POST /cases/{{id}}/receipt -> {outcome}; receipt "
        f"(with the case number as a QR code): {png or 'not found'}")
    return case, png
