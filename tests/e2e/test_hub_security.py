"""The hub's own checks, with the broker's ACL out of the way: a real Mosquitto without ACL and
with a packet limit above the protocol's (a misconfigured county broker), a real `cunlink hub
run` subprocess, and messages crafted with the stations' real keys and certificates.

Every refused message must leave a log line and a count in the scraped metrics, and the hub must
keep serving: a station daemon's real case is committed afterwards.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from gateway import pki
from gateway.testbed.broker import BrokerTls
from gateway.testbed.deployment import Deployment, build, wait_for
from gateway.testbed.ports import free_port
from protocols import wire
from protocols.envelope import (
    MAGIC_BATCH,
    LocalIdentity,
    PeerIdentity,
    Suite,
    encode_batch_signed,
    open_batch,
    seal_batch,
)
from protocols.envelope_core import seal_frame
from sync.events import decode_events, encode_events
from tests.e2e.hubkit import (
    ACCEPTED,
    APPLICANT,
    REJECTED,
    Samples,
    chunk,
    hub_cases,
    hub_identity,
    hub_peer,
    hub_ready,
    listener,
    queued_packages,
    scrape,
    set_hub_config,
    station_identity,
    station_metrics_off,
    submit_case,
    value,
)

A, B, STRANGER = "STA", "STB", "STX"
REASON = wire.RejectReason


@pytest.fixture
def county(tmp_path: Path) -> Iterator[tuple[Deployment, int]]:
    deployment = build(tmp_path / "county", stations=(A, B),
                       transfer={"stall_timeout_seconds": 5, "backoff_max_seconds": 2.0,
                                 "outbox_poll_seconds": 0.2})
    station_metrics_off(deployment)
    try:
        # Misconfigured on purpose: any certificate may use any topic, and packets up to 1 MB.
        deployment.broker.tls = BrokerTls.from_pki(deployment.pki_dir, acl=False)
        deployment.broker.max_packet_size = 1_000_000
        deployment.broker.restart()
        pki.issue_client(deployment.pki_dir, STRANGER)  # a county certificate, never enrolled
        port = free_port()
        set_hub_config(deployment, deployment.hub_config, metrics_port=port)
        yield deployment, port
    finally:
        deployment.close()


def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def settle(port: int, predicate: object, timeout: float = 30.0) -> Samples:
    """Scrape until ``predicate(samples)`` holds (bounded), and return those samples."""
    assert callable(predicate)
    found: list[Samples] = []

    def check() -> bool:
        found.append(scrape(port))
        return bool(predicate(found[-1]))

    assert wait_for(check, timeout=timeout, interval=0.3), f"metrics never settled: {found[-1:]}"
    return found[-1]


def legit_case_arrives(county: Deployment, tmp: Path, station: str) -> str:
    """A station daemon delivers a real case to the hub (it keeps serving); returns its id."""
    daemon = county.station_daemon(station)
    daemon.start()
    case, _ = submit_case(county, station, tmp, material_bytes=20_000, tag="legit")
    assert wait_for(lambda: case in {str(r["case"]) for r in hub_cases(county)}, timeout=90), (
        daemon.log_text()[-3000:])
    return case


async def test_a_package_signed_by_a_on_bs_topic_is_rejected_and_counted(
    county: tuple[Deployment, int], tmp_path: Path
) -> None:
    dep, port = county
    hub = dep.hub_daemon()
    hub.start()
    case_a, _ = submit_case(dep, A, tmp_path)  # sealed by station A's own code
    package = next(p for p in await queued_packages(dep, A) if p.kind == "batch")
    async with listener(dep, A, (f"cl/{A}/d", f"cl/{B}/d")) as a:
        before = await hub_ready(a, port, A)
        # With A's certificate, on B's uplink: the broker (no ACL) lets it through.
        await a.publish(f"cl/{B}/u", chunk(package.package_id, package.sealed))
        topic, reject = await a.wait_for(package.package_id, wire.Reject)
    assert topic == f"cl/{B}/d"
    assert isinstance(reject, wire.Reject) and reject.reason == REASON.SENDER_MISMATCH
    assert f"'{A}'" in reject.detail and f"'{B}'" in reject.detail
    after = settle(port, lambda s: delta(s, before, REJECTED, reason="sender_mismatch") >= 1)
    assert delta(after, before, REJECTED, reason="sender_mismatch") == 1
    assert delta(after, before, ACCEPTED) == 0
    assert f"rejected from {B}: sender_mismatch" in hub.log_text()
    assert hub_cases(dep) == []  # nothing of A's package was committed, under any name

    case_b = legit_case_arrives(dep, tmp_path, B)
    assert {str(r["case"]) for r in hub_cases(dep)} == {case_b}
    assert case_a not in {str(r["case"]) for r in hub_cases(dep)}
    assert value(scrape(port), ACCEPTED) >= 2  # B's batch and blob
    assert hub.running()


def forged_packages(dep: Deployment, sealed: bytes) -> dict[str, tuple[bytes, bytes]]:
    """name -> (package id, sealed bytes) of packages that claim to come from station A."""
    me, hub = station_identity(dep, A), hub_peer(dep)
    opened = open_batch(sealed, me=hub_identity(dep), peers={me.signing_key_id: me.public()},
                        expected_sender=A, seen=lambda _pid: False)
    payload = opened.payload
    impostor = LocalIdentity(id=A, signing_key=Ed25519PrivateKey.generate(),
                             encryption_key=X25519PrivateKey.generate())
    other_hub = LocalIdentity(id="HUB-OTHER", signing_key=Ed25519PrivateKey.generate(),
                              encryption_key=X25519PrivateKey.generate()).public()
    out: dict[str, tuple[bytes, bytes]] = {}

    def seal(name: str, body: bytes, *, sender: LocalIdentity = me,
             recipient: PeerIdentity = hub) -> None:
        pid = os.urandom(16)
        out[name] = pid, seal_batch(body, sender=sender, recipient=recipient, package_id=pid,
                                    created_ms=opened.created_ms)

    # A's key id in the header, but signed by another key: a forgery.
    pid = os.urandom(16)
    signed = encode_batch_signed(payload, sender=me, recipient=hub, package_id=pid,
                                 created_ms=opened.created_ms, suite=Suite.X25519_SHA256_AES256GCM)
    out["bad_signature"] = pid, seal_frame(
        magic=MAGIC_BATCH, suite=Suite.X25519_SHA256_AES256GCM, sender=A,
        sender_key_id=me.signing_key_id, recipient=hub, package_id=pid,
        plaintext=signed + impostor.signing_key.sign(signed))
    seal("unknown_key", payload, sender=impostor)          # A's name, keys never enrolled
    seal("wrong_recipient", payload, recipient=other_hub)  # sealed to another county's hub
    # Properly signed by A, but carrying events that claim to be B's.
    events = [dataclasses.replace(e, origin=B) for e in decode_events(payload)]
    seal("bad_content", encode_events(events))
    return out


async def test_forged_replayed_oversized_and_garbage_are_rejected_logged_and_counted(
    county: tuple[Deployment, int], tmp_path: Path
) -> None:
    dep, port = county
    hub = dep.hub_daemon()
    hub.start()
    submit_case(dep, A, tmp_path)
    real = next(p for p in await queued_packages(dep, A) if p.kind == "batch")
    forged = forged_packages(dep, real.sealed)
    huge = os.urandom(16)
    up, state, health = f"cl/{A}/u", f"cl/{A}/s", f"cl/{A}/h"
    async with listener(dep, A, (f"cl/{A}/d",)) as a, listener(dep, STRANGER, ()) as stranger:
        before = await hub_ready(a, port, A)
        # -- replay: the real package twice; the second is acknowledged again, not re-applied
        await a.publish(up, chunk(real.package_id, real.sealed))
        await a.wait_for(real.package_id, wire.Ack)
        await a.publish(up, chunk(real.package_id, real.sealed))
        await a.wait_for(real.package_id, wire.Ack, count=2)
        # -- forged
        for pid, sealed in forged.values():
            await a.publish(up, chunk(pid, sealed))
        await stranger.publish(f"cl/{STRANGER}/u", chunk(os.urandom(16), real.sealed))
        # -- oversized: over the message limit; a batch claiming 1.5 GB
        await a.publish(up, b"\x00" * (wire.MAX_MESSAGE_BYTES + 1))
        await a.publish(up, wire.encode(wire.Chunk(
            package_id=huge, kind=wire.PackageKind.BATCH, size=1_500_000_000, offset=0,
            data=b"x" * 64)))
        # -- garbage: not msgpack, wrong version, wrong types, a state that is not one
        await a.publish(up, b"\xc1\xc1 not msgpack at all")
        await a.publish(up, msgpack.packb([2, 3, b"future"]))
        await a.publish(up, msgpack.packb([1, 3, "not-an-id", 0, 5, 0, b"hello"]))
        await a.publish(state, msgpack.packb([1, 32, "yes", 0, "", {}]))
        # -- a hub-to-station message on the uplink
        await a.publish(up, wire.encode(wire.Need(package_id=real.package_id, ranges=((0, 1),),
                                                  hub_hlc=1)))
        # -- health beacons that are not
        await a.publish(health, b"\x93\x01\x02\x03")
        await a.publish(health, b"\x00" * 3000)

        rejects = {}
        for name, (pid, _) in forged.items():
            _, msg = await a.wait_for(pid, wire.Reject)
            assert isinstance(msg, wire.Reject)
            rejects[name] = msg.reason
        _, too_big = await a.wait_for(huge, wire.Reject)
        assert isinstance(too_big, wire.Reject)

    assert rejects == {"bad_signature": REASON.BAD_SIGNATURE,
                       "unknown_key": REASON.UNKNOWN_STATION,
                       "wrong_recipient": REASON.WRONG_RECIPIENT,
                       "bad_content": REASON.BAD_CONTENT}
    assert too_big.reason == REASON.TOO_LARGE and "1500000000" in too_big.detail
    expected = {"replay": 1, "bad_signature": 1, "unknown_station": 2, "wrong_recipient": 1,
                "bad_content": 1, "oversized": 2, "garbage": 4, "wrong_topic": 1}

    def counted(s: Samples) -> bool:
        return all(delta(s, before, REJECTED, reason=r) >= n for r, n in expected.items()) and \
            delta(s, before, "cunlink_hub_beacons_invalid_total", station=A) >= 2

    after = settle(port, counted)
    for reason, n in expected.items():
        assert delta(after, before, REJECTED, reason=reason) == n, reason
    assert delta(after, before, "cunlink_hub_beacons_invalid_total", station=A) == 2
    assert delta(after, before, ACCEPTED) == 1  # the real package, once
    assert value(after, REJECTED, reason="internal") == 0

    log = hub.log_text()
    for line in (f"rejected from {A}: replay", f"rejected from {A}: bad_signature",
                 f"rejected from {A}: unknown_station", f"rejected from {STRANGER}: "
                 "unknown_station", f"rejected from {A}: wrong_recipient",
                 f"rejected from {A}: bad_content", f"rejected from {A}: oversized",
                 f"rejected from {A}: garbage", f"rejected from {A}: wrong_topic",
                 f"invalid health beacon from {A}"):
        assert line in log, f"no log line {line!r}"
    assert "Traceback" not in log
    # Refusals name packages and reasons, never the applicant.
    assert APPLICANT["name"] not in log and APPLICANT["id_number"] not in log

    # Committed once: one case, one inbox entry, although the package arrived twice.
    rows = hub_cases(dep)
    assert len(rows) == 1 and str(rows[0]["case"]).startswith(f"{A}-")
    # ... and the hub keeps serving a real station.
    case_b = legit_case_arrives(dep, tmp_path, B)
    assert case_b in {str(r["case"]) for r in hub_cases(dep)}
    assert hub.running()


async def test_a_burst_of_garbage_does_not_stop_the_hub(
    county: tuple[Deployment, int], tmp_path: Path
) -> None:
    """200 random payloads in a burst, then a real case: the worker neither dies nor stalls."""
    dep, port = county
    hub = dep.hub_daemon()
    hub.start()
    async with listener(dep, A, ()) as a:
        before = await hub_ready(a, port, A)
        for i in range(200):
            await a.publish(f"cl/{A}/u", os.urandom(1 + i * 37 % 3000), qos=0)
        await asyncio.sleep(0)
    after = settle(port, lambda s: delta(s, before, REJECTED, reason="garbage") >= 150)
    assert value(after, REJECTED, reason="internal") == 0
    legit_case_arrives(dep, tmp_path, B)
    assert hub.running()
