"""Below the disk floor new materials are refused with the documented error; nothing accepted
is damaged, and events for existing cases are still taken."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from protocols.envelope import Suite
from sync.events import EventType
from sync.intake import CaseIntake
from sync.store import DiskFloorError, EventDraft, Store
from sync.store.blobs import free_bytes
from tests.sync.test_intake import APPLICANT, make_keys


async def test_materials_are_refused_below_the_floor(tmp_path: Path) -> None:
    keys = make_keys(tmp_path)
    state = tmp_path / "state"
    db, blobs = state / "station.db", state / "blobs"
    scan = tmp_path / "scan.jpg"
    scan.write_bytes(os.urandom(50_000))

    # Accept one case with a material while there is room.
    async with await Store.open(db, blob_dir=blobs) as store:
        intake = CaseIntake(store, keys.station, keys.hub_peer,
                            Suite.X25519_SHA256_AES256GCM, "ST001")
        kept = await intake.create_case("SVC-001", APPLICANT, {}, [scan])
        before_events = await store.events_for_case(kept)
        before_outbox = await store.outbox_all()
        before_files = sorted(p.name for p in blobs.iterdir())

    # Restart with a floor above the free space (as if the disk had filled up).
    floor = free_bytes(blobs) + 1024**3
    async with await Store.open(db, blob_dir=blobs, disk_floor_bytes=floor) as store:
        intake = CaseIntake(store, keys.station, keys.hub_peer,
                            Suite.X25519_SHA256_AES256GCM, "ST001")
        with pytest.raises(DiskFloorError) as caught:
            await intake.create_case("SVC-001", APPLICANT, {}, [scan])
        message = str(caught.value)
        assert "refusing 1 new material(s)" in message
        assert "bytes free" in message and "store.disk_floor_mb" in message
        assert "Accepted cases are kept" in message
        assert caught.value.floor_bytes == floor and caught.value.free_bytes < floor

        with pytest.raises(DiskFloorError, match=r"refusing material scan\.jpg"):
            await store.put_blob_file(scan)
        with pytest.raises(DiskFloorError):
            await intake.add_materials(kept, [scan])

        # Finishing an open case still works: events are accepted below the floor.
        await intake.add_events(kept, [EventDraft(
            case=kept, type=EventType.NOTE_ADDED, body={"text": "applicant called"})])
        await intake.submit(kept)
        # A case without materials may still be opened (its events are small).
        light = await intake.create_case("SVC-002", APPLICANT, {})

        # Nothing accepted before was touched, and the refused calls left no trace.
        assert (await store.events_for_case(kept))[:len(before_events)] == before_events
        now_outbox = {e.package_id: e for e in await store.outbox_all()}
        assert all(now_outbox[e.package_id] == e for e in before_outbox)
        assert sorted(p.name for p in blobs.iterdir()) == before_files
        assert set(await store.case_ids()) == {kept, light}
        assert len(list(store.sealed_dir.iterdir())) == 1  # the accepted case's container
        statuses = {c.case: c.status for c in await store.list_cases()}
        assert statuses == {kept: "submitted", light: "draft"}
