"""Station intake: a case's events, its sealed batch and sealed materials land in one commit."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.keys import enrollment_path, init_keys, load_enrollment, load_identity
from protocols.envelope import LocalIdentity, PeerIdentity, Suite
from sync.blobfile import open_file
from sync.events import EventType
from sync.intake import CaseIntake, IntakeError
from sync.packages import open_event_batch
from sync.store import PRIORITY_BLOBS, PRIORITY_EVENTS, EventDraft, Store

APPLICANT = {"id_type": "resident_id", "id_number": "110101199003077777", "name": "张三",
             "sex": "男", "address": "某某村3组"}
NOW_MS = 1_795_000_000_000  # 2026-11-18 (local date decides the case number's day)


@dataclass(frozen=True, slots=True, kw_only=True)
class Keys:
    station: LocalIdentity
    hub: LocalIdentity
    hub_peer: PeerIdentity


def make_keys(tmp: Path) -> Keys:
    now = datetime.now(UTC)
    init_keys("station", "ST001", tmp / "station-keys", force=False, now=now)
    init_keys("hub", "HUB01", tmp / "hub-keys", force=False, now=now)
    return Keys(
        station=load_identity(tmp / "station-keys", "ST001"),
        hub=load_identity(tmp / "hub-keys", "HUB01"),
        hub_peer=load_enrollment(enrollment_path(tmp / "hub-keys", "HUB01")).peer(),
    )


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "state" / "station.db", blob_dir=tmp_path / "state" / "blobs")
    yield s
    await s.close()


def intake_for(store: Store, keys: Keys) -> CaseIntake:
    return CaseIntake(store, keys.station, keys.hub_peer, Suite.X25519_SHA256_AES256GCM,
                      "ST001", wall_ms=lambda: NOW_MS)


def scan(tmp: Path, name: str, size: int) -> Path:
    path = tmp / name
    path.write_bytes(os.urandom(size))
    return path


async def test_create_case_commits_events_batch_and_blobs_together(
    store: Store, keys: Keys, tmp_path: Path
) -> None:
    intake = intake_for(store, keys)
    scans = [scan(tmp_path, "id-front.jpg", 70_000), scan(tmp_path, "form.pdf", 3_000)]
    case = await intake.create_case("SVC-001", APPLICANT, {"phone": "13800000000"}, scans)
    day = datetime.fromtimestamp(NOW_MS / 1000).strftime("%Y%m%d")
    assert case == f"ST001-{day}-0001"

    events = await store.events_for_case(case)
    assert [e.type for e in events] == [EventType.CASE_CREATED] + [EventType.MATERIAL_ADDED] * 2
    assert {e.body["mime"] for e in events[1:]} == {"image/jpeg", "application/pdf"}
    assert all(e.body["kind"] == "scan" and e.body["pages"] == 1 for e in events[1:])

    entries = await store.outbox_pending()
    assert [(e.kind, e.priority) for e in entries] == [
        ("batch", PRIORITY_EVENTS), ("blob", PRIORITY_BLOBS), ("blob", PRIORITY_BLOBS)]
    assert {e.case for e in entries} == {case} and {e.destination for e in entries} == {"HUB01"}

    # The hub can open the batch: the same events, signed by this station.
    peers = {keys.station.signing_key_id: keys.station.public()}
    assert entries[0].payload is not None
    opened, sent = open_event_batch(entries[0].payload, me=keys.hub, peers=peers,
                                    expected_sender="ST001")
    assert opened.package_id == entries[0].package_id
    assert sorted(sent, key=lambda e: e.seq) == sorted(events, key=lambda e: e.seq)

    # And each blob container opens to the material, by the hash the event names.
    by_sha = {e.body["sha256"]: e for e in events[1:]}
    for entry in entries[1:]:
        assert entry.path is not None and entry.path.parent == store.sealed_dir
        assert entry.size == entry.path.stat().st_size
        plain = tmp_path / f"opened-{entry.package_id.hex()}"
        manifest = open_file(entry.path, plain, me=keys.hub, peers=peers,
                             expected_sender="ST001", seen=lambda _pid: False)
        assert manifest.digest.hex() in by_sha
        assert plain.read_bytes() == store.blob_path(manifest.digest.hex()).read_bytes()
    assert {p.read_bytes() for p in scans} == {
        store.blob_path(sha).read_bytes() for sha in by_sha}


async def test_case_numbers_count_per_day_and_submit_moves_status(
    store: Store, keys: Keys
) -> None:
    intake = intake_for(store, keys)
    first = await intake.create_case("SVC-001", APPLICANT, {})
    second = await intake.create_case("SVC-001", APPLICANT, {}, submit=True)
    assert first.endswith("-0001") and second.endswith("-0002")
    status = {c.case: c.status for c in await store.list_cases()}
    assert status == {first: "draft", second: "submitted"}
    await intake.submit(first)
    assert {c.case: c.status for c in await store.list_cases()}[first] == "submitted"
    # Every step is its own sealed batch package.
    assert [e.kind for e in await store.outbox_pending()] == ["batch"] * 3


async def test_later_steps_add_events_and_materials(
    store: Store, keys: Keys, tmp_path: Path
) -> None:
    intake = intake_for(store, keys)
    case = await intake.create_case("SVC-001", APPLICANT, {"phone": "1"})
    await intake.add_events(case, [EventDraft(
        case=case, type=EventType.FIELD_SET, body={"name": "phone", "value": "2"})])
    await intake.add_materials(case, [scan(tmp_path, "more.png", 500)], answers="REQ-1")
    events = await store.events_for_case(case)
    assert events[-1].body["answers"] == "REQ-1" and events[-1].body["mime"] == "image/png"
    assert events[-1].body["sha256"] in await store.referenced_blobs()


async def test_bad_requests_are_refused_before_anything_is_written(
    store: Store, keys: Keys, tmp_path: Path
) -> None:
    intake = intake_for(store, keys)
    with pytest.raises(ValueError, match="applicant"):
        await intake.create_case("SVC-001", {"name": "no id number"}, {})
    with pytest.raises(IntakeError, match="cannot read material"):
        await intake.create_case("SVC-001", APPLICANT, {}, [tmp_path / "absent.jpg"])
    empty = tmp_path / "empty.jpg"
    empty.touch()
    with pytest.raises(IntakeError, match="empty"):
        await intake.create_case("SVC-001", APPLICANT, {}, [empty])
    with pytest.raises(IntakeError, match="no case"):
        await intake.submit("ST001-20261122-0999")
    assert await store.case_ids() == []
    assert await store.outbox_pending() == []
    assert list(store.blob_dir.iterdir()) == [] and list(store.sealed_dir.iterdir()) == []
    # No case number was spent on the refused requests.
    assert (await intake.create_case("SVC-001", APPLICANT, {})).endswith("-0001")


async def test_identity_must_be_the_station(store: Store, keys: Keys) -> None:
    with pytest.raises(IntakeError, match="station is 'ST002'"):
        CaseIntake(store, keys.station, keys.hub_peer, Suite.X25519_SHA256_AES256GCM, "ST002")
