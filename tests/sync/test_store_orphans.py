"""The orphan sweep: what it keeps (anything a row or a material event names), what it removes
(old unreferenced files), and the periodic task the daemons run."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sync.events import EventType
from sync.store import PRIORITY_BLOBS, EventDraft, OutboxPut, Store, StoreError

CASE = "ST001-20261122-0001"
OLD = time.time() - 3 * 24 * 3600


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "s.db", blob_dir=tmp_path / "blobs")
    try:
        yield s
    finally:
        await s.close()


async def blob(store: Store, tmp_path: Path, content: bytes) -> str:
    src = tmp_path / f"src-{content.hex()}"
    src.write_bytes(content)
    return (await store.put_blob_file(src)).sha256


def age_everything(store: Store) -> None:
    for path in [*store.blob_dir.iterdir(), *store.sealed_dir.iterdir()]:
        os.utime(path, (OLD, OLD))


async def test_hub_blob_committed_before_its_events_is_kept(store: Store, tmp_path: Path) -> None:
    # On the hub a blob package can be committed (and acknowledged: the station then drops its
    # copy) days before the batch whose material_added event names it.
    early = await blob(store, tmp_path, b"scan arriving before its case")
    stray = await blob(store, tmp_path, b"never committed")
    await store.apply_remote([], package_id=b"p" * 16, sender="ST001", blob_sha256=early)
    age_everything(store)
    assert await store.cleanup_orphans() == 1
    assert store.blob_path(early).exists() and not store.blob_path(stray).exists()
    with pytest.raises(StoreError, match="not a blob name"):
        await store.apply_remote([], package_id=b"q" * 16, sender="ST001", blob_sha256="x")


async def test_superseded_and_replacement_materials_and_named_paths_are_kept(
    store: Store, tmp_path: Path,
) -> None:
    old, new = (await blob(store, tmp_path, b"first scan"),
                await blob(store, tmp_path, b"better scan"))
    transfer = await blob(store, tmp_path, b"file a transfer_in row names")
    await store.append_local("ST001", [EventDraft(
        case=CASE, type=EventType.MATERIAL_SUPERSEDED,
        body={"sha256": old, "by": new, "reason": "blurred"})])
    await store.transfer_in_put(b"t" * 16, sender="ST001", kind="blob", size=1, received=b"",
                                path=store.blob_path(transfer))
    (store.sealed_dir / "queued.blob").write_bytes(b"q")
    await store.append_local("ST001", [], outbox=[OutboxPut(
        package_id=b"o" * 16, kind="blob", priority=PRIORITY_BLOBS, destination="HUB01",
        path=store.sealed_dir / "queued.blob", size=1)])
    (store.blob_dir / ".tmp-dead").write_bytes(b"half")
    age_everything(store)
    assert await store.cleanup_orphans() == 1  # only the leftover temporary file
    assert all(store.blob_path(s).exists() for s in (old, new, transfer))
    assert (store.sealed_dir / "queued.blob").exists()


async def test_storing_an_old_orphan_again_restarts_its_grace(
    store: Store, tmp_path: Path,
) -> None:
    sha = await blob(store, tmp_path, b"scanned twice")
    age_everything(store)
    # A new case is about to name the same content: put_blob_file finds it already stored.
    await blob(store, tmp_path, b"scanned twice")
    assert await store.cleanup_orphans() == 0
    assert store.blob_path(sha).exists()


async def test_periodic_sweep_runs_until_cancelled(store: Store, tmp_path: Path) -> None:
    await blob(store, tmp_path, b"orphan")
    age_everything(store)
    task = asyncio.create_task(store.sweep_orphans_forever(interval_s=0.05))
    deadline = time.monotonic() + 10
    while any(store.blob_dir.iterdir()) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert not any(store.blob_dir.iterdir())
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ValueError, match="grace_s >= 3600"):
        await store.sweep_orphans_forever(grace_s=60)


async def test_files_are_kept_by_name_when_rows_spell_another_directory(
    store: Store, tmp_path: Path,
) -> None:
    # The state directory was moved to a bigger disk and symlinked back: the outbox rows still
    # say the old path. The sweep must not take the backlog's sealed files for orphans.
    (store.sealed_dir / "backlog.blob").write_bytes(b"sealed scan waiting for the link")
    await store.append_local("ST001", [], outbox=[OutboxPut(
        package_id=b"m" * 16, kind="blob", priority=PRIORITY_BLOBS, destination="HUB01",
        path=tmp_path / "old-state" / "sealed" / "backlog.blob", size=32)])
    (store.sealed_dir / "stray.blob").write_bytes(b"nobody names me")
    age_everything(store)
    assert await store.cleanup_orphans() == 1
    assert (store.sealed_dir / "backlog.blob").exists()
    assert not (store.sealed_dir / "stray.blob").exists()
