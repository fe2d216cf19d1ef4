"""Planning and sealing a bundle of small queued packages (sync.bundling)."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from protocols.bundle import MAX_BUNDLE_ITEMS, encoded_size
from protocols.envelope import LocalIdentity, Suite, open_batch
from sync import bundling
from sync.packages import PackageContentError, open_bundle
from sync.store import OutboxEntry

STATION, HUB = "ST1", "HUB"
OVERHEAD = bundling.seal_overhead(STATION, HUB)


def entry(n: int, *, kind: str = "batch", size: int = 400, priority: int = 1,
          plain: bytes | None = None, sha: str | None = None, state: str = "queued",
          ) -> OutboxEntry:
    if kind == "batch" and plain is None:
        plain = bytes([n % 256]) * size
    return OutboxEntry(
        package_id=n.to_bytes(16, "big"), kind=kind,  # type: ignore[arg-type]
        priority=priority, destination=HUB, payload=b"x" if kind == "batch" else None,
        path=None if kind == "batch" else Path(f"/nonexistent/{n}.blob"),
        size=size + 240, case=None, state=state,  # type: ignore[arg-type]
        attempts=0, bytes_acked=0, first_queued_ms=n, last_attempt_ms=None,
        plain=plain if kind == "batch" else None, blob_sha256=sha)


def ids(entries: list[OutboxEntry]) -> list[int]:
    return [int.from_bytes(e.package_id, "big") for e in entries]


def test_a_run_of_small_packages_fills_one_bundle_up_to_the_cap() -> None:
    run = [entry(n) for n in range(100)]
    members = bundling.plan(run, cap=16384, overhead=OVERHEAD)
    assert ids(members) == list(range(len(members)))  # in order, from the first
    fits = OVERHEAD + encoded_size([400] * len(members))
    assert fits <= 16384 < OVERHEAD + encoded_size([400] * (len(members) + 1))


def test_no_bundle_of_one() -> None:
    assert bundling.plan([entry(1)], cap=16384, overhead=OVERHEAD) == []
    # the second does not fit: the first goes on its own
    assert bundling.plan([entry(1, size=3000), entry(2, size=3000)], cap=4096,
                         overhead=OVERHEAD) == []


def test_the_run_stops_at_a_package_that_cannot_be_bundled() -> None:
    run = [entry(0), entry(1), entry(2, size=9000), entry(3), entry(4)]  # 2: over half the cap
    assert ids(bundling.plan(run, cap=16384, overhead=OVERHEAD)) == [0, 1]
    old = replace(entry(1), plain=None)  # queued before bundles existed: goes alone
    assert bundling.plan([entry(0), old, entry(2)], cap=16384, overhead=OVERHEAD) == []
    held = entry(1, state="held")
    assert bundling.plan([entry(0), held, entry(2)], cap=16384, overhead=OVERHEAD) == []


def test_one_priority_class_per_bundle() -> None:
    run = [entry(0), entry(1), entry(2, kind="blob", priority=2, sha="ab" * 32),
           entry(3, kind="blob", priority=2, sha="cd" * 32)]
    assert ids(bundling.plan(run, cap=16384, overhead=OVERHEAD)) == [0, 1]
    assert ids(bundling.plan(run[2:], cap=16384, overhead=OVERHEAD)) == [2, 3]


def test_at_most_the_codec_limit_of_members() -> None:
    run = [entry(n, size=1) for n in range(MAX_BUNDLE_ITEMS + 10)]
    assert len(bundling.plan(run, cap=1 << 20, overhead=OVERHEAD)) == MAX_BUNDLE_ITEMS


def identity(name: str) -> LocalIdentity:
    return LocalIdentity(id=name, signing_key=Ed25519PrivateKey.generate(),
                         encryption_key=X25519PrivateKey.generate())


def test_a_sealed_bundle_opens_to_its_members_and_fits_the_plan(tmp_path: Path) -> None:
    station, hub = identity(STATION), identity(HUB)
    scan = b"scan bytes " * 300
    sha = hashlib.sha256(scan).hexdigest()
    (tmp_path / sha).write_bytes(scan)
    from sync.events import Event, EventType, encode_events
    event = Event(id="01936f3e-2a40-7c1d-8e5f-0a1b2c3d4e5f", case="ST1-20261205-0001",
                  origin=STATION, seq=1, hlc=1 << 20, type=EventType.STATUS_CHANGED,
                  body={"to": "submitted"})
    members = [entry(1, plain=encode_events([event])),
               entry(2, kind="blob", size=len(scan), sha=sha)]
    sealed = bundling.build(members, blob_path=lambda s: tmp_path / s, sender=station,
                            recipient=hub.public(), suite=Suite.X25519_SHA256_AES256GCM,
                            package_id=b"B" * 16, created_ms=1)
    bound = OVERHEAD + encoded_size([len(members[0].plain or b""), len(scan)])
    assert len(sealed) <= bound  # the planner's bound holds for real envelopes
    opened, got = open_bundle(sealed, me=hub, peers={station.signing_key_id: station.public()},
                              expected_sender=STATION)
    assert opened.package_id == b"B" * 16
    assert [m.package_id for m in got] == [e.package_id for e in members]
    assert got[0].events == [event] and got[0].blob is None
    assert got[1].blob == scan and got[1].events is None
    # it is a plain sealed batch on the outside: the envelope checks apply unchanged
    assert open_batch(sealed, me=hub, peers={station.signing_key_id: station.public()},
                      expected_sender=STATION, seen=lambda _p: False).sender == STATION


def test_a_damaged_scan_is_never_bundled(tmp_path: Path) -> None:
    station, hub = identity(STATION), identity(HUB)
    sha = hashlib.sha256(b"the scan").hexdigest()
    (tmp_path / sha).write_bytes(b"the scaN")  # a flipped bit on the station's disk
    members = [entry(1), entry(2, kind="blob", size=8, sha=sha)]
    with pytest.raises(OSError, match="no longer matches"):
        bundling.build(members, blob_path=lambda s: tmp_path / s, sender=station,
                       recipient=hub.public(), suite=Suite.X25519_SHA256_AES256GCM,
                       package_id=b"B" * 16, created_ms=1)


def test_the_hub_refuses_a_bundle_whose_events_claim_another_origin(tmp_path: Path) -> None:
    station, hub = identity(STATION), identity(HUB)
    from sync.events import Event, EventType, encode_events
    forged = Event(id="01936f3e-2a40-7c1d-8e5f-0a1b2c3d4e5f", case="ST1-20261205-0001",
                   origin=HUB, seq=1, hlc=1 << 20, type=EventType.STATUS_CHANGED,
                   body={"to": "approved"})
    members = [entry(2, plain=encode_events([forged])), entry(1)]
    sealed = bundling.build(members, blob_path=lambda s: tmp_path / s, sender=station,
                            recipient=hub.public(), suite=Suite.X25519_SHA256_AES256GCM,
                            package_id=b"B" * 16, created_ms=1)
    with pytest.raises(PackageContentError, match="claiming origin 'HUB'"):
        open_bundle(sealed, me=hub, peers={station.signing_key_id: station.public()},
                    expected_sender=STATION)
