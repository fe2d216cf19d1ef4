"""The real station daemon under a pretend systemd: READY=1 once it serves, watchdog pings,
its Prometheus endpoint scraped, SIGHUP reloading what may change live (a new terminal token,
the log level) without a restart, and SIGTERM saying STOPPING=1 and exiting 0 within the
unit's stop bound."""

from __future__ import annotations

import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.testbed.deployment import Deployment, build, wait_for
from gateway.testbed.ports import free_port

STATION = "ST001"
TOKEN_A = "terminal-a-token-0123456789abcdef"
TOKEN_B = "terminal-b-token-fedcba9876543210"
#: systemd/cunlink.service: TimeoutStopSec=30 (the daemon bounds its own shutdown at 20 s)
STOP_BOUND_SECONDS = 30.0


class NotifySocket:
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                return self.messages

    def seen(self, line: str) -> bool:
        return any(line in m.splitlines() for m in self.drain())

    def close(self) -> None:
        self.sock.close()


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())
    except OSError:
        return ""


def status_code(url: str, token: str) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


@pytest.fixture
def county(tmp_path: Path) -> Iterator[Deployment]:
    deployment = build(tmp_path / "county", stations=(STATION,))
    try:
        yield deployment
    finally:
        deployment.close()


def test_ready_watchdog_reload_and_stop_like_systemd_sees_them(county: Deployment,
                                                                tmp_path: Path) -> None:
    api_port = free_port()
    config = county.write_station_config(STATION, api_port=api_port, api_token=TOKEN_A)
    metrics_port = free_port()
    config.write_text(config.read_text(encoding="utf-8").replace(
        "[metrics]\nport = 0", f"[metrics]\nport = {metrics_port}"), encoding="utf-8")
    notify = NotifySocket(tmp_path / "notify.sock")
    daemon = county.station_daemon(STATION)
    daemon.env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "2000000"}
    daemon.start()
    assert daemon.proc is not None
    daemon.env["WATCHDOG_PID"] = str(daemon.proc.pid)
    status = f"http://127.0.0.1:{api_port}/api/v1/status"
    try:
        assert wait_for(lambda: notify.seen("READY=1"), timeout=60), daemon.log_text()
        # READY means serving: the API answers at once, for token A only
        assert status_code(status, TOKEN_A) == 200
        assert status_code(status, TOKEN_B) == 401
        # the watchdog is fed (every half of WATCHDOG_USEC) while the engine runs
        assert wait_for(lambda: sum("WATCHDOG=1" in m for m in notify.drain()) >= 2,
                        timeout=10), notify.messages

        # county ops scrape the box: link, API and store figures are there, named as documented
        assert wait_for(lambda: "cunlink_link_up 1.0" in scrape(metrics_port), timeout=30), \
            scrape(metrics_port)
        families = {f.name: f for f in text_string_to_metric_families(scrape(metrics_port))}
        assert families["cunlink_build_info"].samples[0].labels["version"]
        assert families["cunlink_link_connects"].samples[0].value >= 1  # a _total counter
        requests = families["cunlink_api_requests"].samples
        assert any(s.labels["code"] == "200" and s.value >= 1 for s in requests
                   if s.name == "cunlink_api_requests_total"), requests
        assert any(s.labels["code"] == "401" for s in requests)
        assert families["cunlink_disk_free_bytes"].samples[0].value > 0
        assert {s.labels["class"] for s in families["cunlink_outbox_items"].samples} == {
            "control", "events", "materials"}

        text = config.read_text(encoding="utf-8")
        text = text.replace('level = "info"', 'level = "debug"')
        text += f'\n[[api.tokens]]\nname = "counter-b"\ntoken = "{TOKEN_B}"\n'
        config.write_text(text, encoding="utf-8")
        pid = daemon.proc.pid
        os.kill(pid, 1)  # SIGHUP
        assert wait_for(lambda: notify.seen("RELOADING=1"), timeout=20), daemon.log_text()
        assert wait_for(lambda: sum(m.startswith("READY=1") or "\nREADY=1" in m
                                    for m in notify.drain()) >= 2, timeout=20), notify.messages
        assert status_code(status, TOKEN_B) == 200, "the reloaded token is not accepted"
        assert status_code(status, TOKEN_A) == 200
        assert daemon.proc.pid == pid and daemon.running()
        assert 'log.level: "info" -> "debug"' in daemon.log_text()
        assert "DEBUG cunlink" in daemon.log_text()  # and it took effect

        # a broken file on reload changes nothing and keeps serving
        config.write_text(text + "\n[transfer]\nwindow = 99\n", encoding="utf-8")
        os.kill(pid, 1)
        assert wait_for(lambda: "still running the previous configuration" in daemon.log_text(),
                        timeout=20), daemon.log_text()[-2000:]
        assert status_code(status, TOKEN_B) == 200

        started = time.monotonic()
        assert daemon.terminate(timeout=STOP_BOUND_SECONDS) == 0, daemon.log_text()[-3000:]
        assert time.monotonic() - started < STOP_BOUND_SECONDS
        assert notify.seen("STOPPING=1")
    finally:
        notify.close()
