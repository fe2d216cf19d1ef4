"""Helpers for the hub's end-to-end tests: scrape its metrics, craft what a station would (or
should not) send, listen on the downlink, and read what the hub committed."""

from __future__ import annotations

import asyncio
import json
import os
import re
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
from prometheus_client.parser import text_string_to_metric_families

from gateway import pki
from gateway.keys import load_enrollment, load_identity
from gateway.testbed.broker import client_tls_context
from gateway.testbed.deployment import Deployment
from protocols import wire
from protocols.envelope import LocalIdentity, PeerIdentity
from sync.store import Store

APPLICANT = {"id_type": "resident", "id_number": "11010519491231002X", "name": "测试甲",
             "sex": "female"}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    """Every sample of the hub's /metrics, keyed by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def try_scrape(port: int) -> Samples | None:
    try:
        return scrape(port)
    except OSError:
        return None


def set_hub_config(county: Deployment, path: Path, *, metrics_port: int,
                   cert: pki.ClientCert | None = None, session_expiry: int | None = None) -> Path:
    """A copy of the deployment's hub.toml with its own metrics port (and client certificate,
    and MQTT session expiry)."""
    text = county.hub_config.read_text(encoding="utf-8")
    text = re.sub(r"\[metrics\]\nport = \d+", f"[metrics]\nport = {metrics_port}", text)
    if session_expiry is not None:
        text = text.replace("[mqtt]\n", f"[mqtt]\nsession_expiry_seconds = {session_expiry}\n")
    if cert is not None:
        text = re.sub(r'cert_file = ".*"', f'cert_file = "{cert.cert}"', text)
        text = re.sub(r'key_file = ".*"', f'key_file = "{cert.key}"', text)
    path.write_text(text, encoding="utf-8")
    return path


def submit_case(county: Deployment, station: str, tmp: Path, *, material_bytes: int = 0,
                tag: str = "") -> tuple[str, str | None]:
    """Submit one case into ``station``'s store with the CLI; (case id, material sha256)."""
    import hashlib

    applicant = tmp / "applicant.json"
    applicant.write_text(json.dumps(APPLICANT, ensure_ascii=False), encoding="utf-8")
    args = ["cases", "submit", "--config", str(county.station_configs[station]),
            "--service", "MZ-0001", "--applicant", str(applicant)]
    sha = None
    if material_bytes:
        scan = tmp / f"scan-{station}-{tag}.jpg"
        data = os.urandom(material_bytes)
        scan.write_bytes(data)
        args += ["--material", str(scan)]
        sha = hashlib.sha256(data).hexdigest()
    result = county.cli(*args)
    assert result.returncode == 0, result.stderr
    match = re.search(rf"{re.escape(station)}-\d{{8}}-\d{{4}}", result.stdout)
    assert match, result.stdout
    return match.group(0), sha


def hub_cases(county: Deployment, config: Path | None = None) -> list[dict[str, object]]:
    result = county.cli("hub", "cases", "--config", str(config or county.hub_config), "--json")
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, object]] = json.loads(result.stdout)
    return rows


@dataclass(frozen=True, slots=True)
class Queued:
    package_id: bytes
    kind: str
    sealed: bytes


async def queued_packages(county: Deployment, station: str) -> list[Queued]:
    """The sealed packages waiting in a station's outbox (read from its store file)."""
    state = county.station_dir(station) / "state"
    out = []
    async with await Store.open(state / "station.db", blob_dir=state / "blobs") as store:
        for entry in await store.outbox_all():
            sealed = entry.payload if entry.payload is not None else (
                entry.path.read_bytes() if entry.path else b"")
            out.append(Queued(entry.package_id, entry.kind, sealed))
    return out


def station_identity(county: Deployment, station: str) -> LocalIdentity:
    return load_identity(county.station_dir(station) / "keys", station)


def hub_identity(county: Deployment) -> LocalIdentity:
    return load_identity(county.root / "hub" / "keys", county.hub_id)


def hub_peer(county: Deployment) -> PeerIdentity:
    return load_enrollment(county.station_dir(county.stations[0]) / "hub.enrollment.json").peer()


def chunk(pid: bytes, sealed: bytes, kind: wire.PackageKind = wire.PackageKind.BATCH) -> bytes:
    return wire.encode(wire.Chunk(package_id=pid, kind=kind, size=len(sealed), offset=0,
                                  data=sealed))


@dataclass(slots=True)
class Listener:
    """A client with one station's (or a spy's) certificate, collecting what it receives."""

    client: aiomqtt.Client
    received: list[tuple[str, wire.Message | bytes]] = field(default_factory=list)

    async def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        await self.client.publish(topic, payload, qos=qos)

    def about(self, pid: bytes, kind: type) -> list[tuple[str, wire.Message]]:
        """Every (topic, message) of type ``kind`` received about package ``pid``."""
        return [(t, m) for t, m in self.received if not isinstance(m, bytes)
                and isinstance(m, kind) and getattr(m, "package_id", None) == pid]

    async def wait_for(self, pid: bytes, kind: type, within: float = 30.0,
                       count: int = 1) -> tuple[str, wire.Message]:
        """The ``count``-th downlink message of type ``kind`` about package ``pid``."""
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            if len(found := self.about(pid, kind)) >= count:
                return found[count - 1]
            await asyncio.sleep(0.1)
        raise AssertionError(f"no {kind.__name__} #{count} for {pid.hex()} within {within} s; "
                             f"got {[type(m).__name__ for _, m in self.received]}")


@asynccontextmanager
async def listener(county: Deployment, cn: str, topics: tuple[str, ...]) -> AsyncIterator[Listener]:
    cert = pki.client_cert(county.pki_dir, cn)
    client = aiomqtt.Client("127.0.0.1", county.broker.port, protocol=aiomqtt.ProtocolVersion.V5,
                            tls_context=client_tls_context(cert), timeout=10)
    async with client:
        got = Listener(client)
        for topic in topics:
            await client.subscribe(topic, qos=1)

        async def collect() -> None:
            async for message in client.messages:
                payload = message.payload
                assert isinstance(payload, bytes)
                try:
                    got.received.append((str(message.topic), wire.decode(payload)))
                except wire.WireError:
                    got.received.append((str(message.topic), payload))

        task = asyncio.create_task(collect())
        try:
            yield got
        finally:
            task.cancel()


REJECTED = "cunlink_hub_packages_rejected_total"
ACCEPTED = "cunlink_hub_packages_accepted_total"


async def hub_ready(probe: Listener, port: int, station: str, within: float = 60.0) -> Samples:
    """Publish garbage probes until the hub counts one (so its subscriptions are in place);
    returns the metrics after the last probe has settled, as the baseline for deltas."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        samples = try_scrape(port)
        if samples is not None:
            if value(samples, REJECTED, reason="garbage") >= 1:
                await asyncio.sleep(1.0)
                settled = scrape(port)
                return settled
            await probe.publish(f"cl/{station}/u", b"\xc1 probe")
        await asyncio.sleep(0.5)
    raise AssertionError(f"the hub did not count a probe within {within} s")


async def submit_many(county: Deployment, station: str, tmp: Path, n: int, *,
                      material_every: int = 3, material_bytes: int = 40_000,
                      tag: str = "") -> dict[str, str | None]:
    """Submit ``n`` cases into a station's store in-process (the same intake the CLI and API
    use; safe while the daemon runs); every ``material_every``-th case carries a material.
    Returns case -> material sha256 (None without one)."""
    import hashlib

    from gateway.config.station import load_station_config
    from gateway.runtime import open_station_store
    from gateway.wiring import suite
    from sync.intake import CaseIntake

    cfg = load_station_config(county.station_configs[station], env={})
    me = station_identity(county, station)
    out: dict[str, str | None] = {}
    async with await open_station_store(cfg) as store:
        intake = CaseIntake(store, me, hub_peer(county), suite(cfg.keys.suite), station)
        for i in range(n):
            materials: list[Path] = []
            sha = None
            if material_every and i % material_every == 0:
                data = os.urandom(material_bytes)
                scan = tmp / f"scan-{station}-{tag}{i}.jpg"
                scan.write_bytes(data)
                materials.append(scan)
                sha = hashlib.sha256(data).hexdigest()
            case = await intake.create_case("MZ-0001", APPLICANT, {}, materials, submit=True)
            out[case] = sha
    return out


def station_metrics_off(county: Deployment) -> None:
    """Several stations on one machine would all want the default API and metrics ports: give
    each a free API port and no metrics endpoint (these tests scrape the hub). A no-op for a
    section the testbed already writes."""
    from gateway.testbed.ports import free_port

    for path in county.station_configs.values():
        text = path.read_text(encoding="utf-8")
        if "[metrics]" not in text:
            text += "\n[metrics]\nport = 0\n"
        if "[api]" not in text:
            text += f"\n[api]\nport = {free_port()}\n"
        path.write_text(text, encoding="utf-8")
