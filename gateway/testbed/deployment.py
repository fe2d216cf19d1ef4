"""A whole county on one machine: PKI, keys, configs, a TLS broker, hub and station processes.

Used by `cunlink demo`, the end-to-end tests and bench/link.py, so that all three exercise the
same real parts: Mosquitto with TLS and the ACL, `cunlink hub run` and `cunlink run` as
subprocesses (killable with SIGKILL), and optionally the link simulator between a station and
the broker.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gateway import pki
from gateway.keys import init_keys
from gateway.registry import StationRegistry
from gateway.testbed.broker import BrokerTls, MosquittoBroker
from gateway.testbed.ports import free_port

CUNLINK = [sys.executable, "-m", "gateway.cli"]


@dataclass(slots=True)
class Daemon:
    """One `cunlink` subprocess with its log file."""

    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    #: Extra environment (e.g. NOTIFY_SOCKET / WATCHDOG_USEC to play systemd in a test).
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        log = self.log_path.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        log.close()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") \
            if self.log_path.exists() else ""


@dataclass(slots=True, kw_only=True)
class Deployment:
    root: Path
    hub_id: str
    stations: tuple[str, ...]
    broker: MosquittoBroker
    pki_dir: Path
    hub_config: Path
    station_configs: dict[str, Path] = field(default_factory=dict)
    daemons: list[Daemon] = field(default_factory=list)

    def station_dir(self, station: str) -> Path:
        return self.root / "stations" / station

    def write_station_config(self, station: str, *, port: int | None = None,
                             transfer: dict[str, object] | None = None,
                             api_port: int | None = None, api_token: str | None = None,
                             extra: str = "") -> Path:
        """(Re)write station.toml; ``port`` points the station at the link simulator.

        The metrics endpoint is off and the terminal API listens on ``api_port`` (a free port
        when not given) so that several stations and test runs can share one machine; with
        ``api_token`` one terminal named "demo" may call it. ``extra`` is appended verbatim
        (e.g. ``[devices.idcard]`` sections)."""
        cert = pki.client_cert(self.pki_dir, station)
        home = self.station_dir(station)
        lines = [
            "[station]", f'id = "{station}"', f'state_dir = "{home / "state"}"', "",
            "[keys]", f'dir = "{home / "keys"}"',
            f'hub_enrollment = "{home / "hub.enrollment.json"}"', "",
            "[mqtt]", 'host = "127.0.0.1"', f"port = {port or self.broker.port}",
            f'ca_file = "{cert.ca}"', f'cert_file = "{cert.cert}"', f'key_file = "{cert.key}"',
            "keepalive = 10", "connect_timeout_seconds = 10", "",
            "[transfer]",
            *(f"{k} = {_toml(v)}" for k, v in (transfer or {}).items()), "",
            "[store]", "disk_floor_mb = 0", "",
            "[metrics]", "port = 0", "",
            "[log]", 'level = "info"', "",
            "[api]", 'listen = "127.0.0.1"', f"port = {api_port or free_port()}",
        ]
        if api_token is not None:
            lines += ["[[api.tokens]]", 'name = "demo"', f'token = "{api_token}"']
        lines += ["", extra]
        path = home / "station.toml"
        path.write_text("\n".join(lines), encoding="utf-8")
        self.station_configs[station] = path
        return path

    def hub_daemon(self, worker: str = "w1") -> Daemon:
        daemon = Daemon(name=f"hub-{worker}", argv=[*CUNLINK, "hub", "run", "--config",
                                                    str(self.hub_config), "--worker", worker],
                        log_path=self.root / "logs" / f"hub-{worker}.log")
        self.daemons.append(daemon)
        return daemon

    def station_daemon(self, station: str) -> Daemon:
        daemon = Daemon(name=f"station-{station}",
                        argv=[*CUNLINK, "run", "--config", str(self.station_configs[station])],
                        log_path=self.root / "logs" / f"station-{station}.log")
        self.daemons.append(daemon)
        return daemon

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CUNLINK, *args], capture_output=True, text=True,
                              timeout=timeout, check=False)

    def close(self) -> None:
        for daemon in self.daemons:
            daemon.kill()
        self.broker.close()


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def build(root: Path, *, stations: tuple[str, ...] = ("ST001",), hub_id: str = "HUB-DEMO",
          transfer: dict[str, object] | None = None) -> Deployment:
    """Create everything under ``root`` and start the broker (daemons are started by the caller)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "logs").mkdir(exist_ok=True)
    pki_dir = root / "pki"
    pki.init_pki(pki_dir, county="demo", hub_id=hub_id)
    for station in stations:
        pki.issue_client(pki_dir, station)
    now = dt.datetime.now(dt.UTC)
    hub_home = root / "hub"
    init_keys("hub", hub_id, hub_home / "keys", force=False, now=now)
    hub_enrollment = next((hub_home / "keys").glob("*.enrollment.json"))
    broker = MosquittoBroker(root / "broker", tls=BrokerTls.from_pki(pki_dir))
    broker.start()
    hub_cert = pki.client_cert(pki_dir, hub_id)
    hub_config = hub_home / "hub.toml"
    hub_config.write_text("\n".join([
        "[hub]", f'id = "{hub_id}"', f'state_dir = "{hub_home / "state"}"', "",
        "[keys]", f'dir = "{hub_home / "keys"}"', "",
        "[mqtt]", 'host = "127.0.0.1"', f"port = {broker.port}",
        f'ca_file = "{hub_cert.ca}"', f'cert_file = "{hub_cert.cert}"',
        f'key_file = "{hub_cert.key}"', "keepalive = 10", "",
        "[metrics]", "port = 0", "",
        "[log]", 'level = "info"', "",
    ]), encoding="utf-8")
    deployment = Deployment(root=root, hub_id=hub_id, stations=stations, broker=broker,
                            pki_dir=pki_dir, hub_config=hub_config)
    registry = StationRegistry(hub_home / "state" / "stations")
    for station in stations:
        home = deployment.station_dir(station)
        init_keys("station", station, home / "keys", force=False, now=now)
        shutil.copyfile(hub_enrollment, home / "hub.enrollment.json")
        registry.enroll(next((home / "keys").glob("*.enrollment.json")))
        deployment.write_station_config(station, transfer=transfer)
    return deployment


def wait_for(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.2) -> bool:
    """Poll ``predicate()`` until true or ``timeout`` seconds passed (bounded by design)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
