"""A damaged database is detected at start-up, moved aside with a timestamp, and reported."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sync.events import EventType
from sync.store import (
    EventDraft,
    Store,
    StoreCorruptError,
    StoreError,
    check_and_quarantine,
    quarantine_reports,
)

WHEN = datetime(2026, 11, 22, 3, 4, 5, tzinfo=UTC)


async def _make_store(tmp: Path, cases: int = 300) -> Path:
    db = tmp / "station.db"
    async with await Store.open(db, blob_dir=tmp / "blobs") as store:
        for i in range(cases):
            await store.append_local("ST001", [EventDraft(
                case=f"C-{i}", type=EventType.NOTE_ADDED, body={"text": f"note {i} " * 20})])
    assert not db.with_name("station.db-wal").exists()  # closed cleanly: all in the main file
    return db


def _truncate(db: Path) -> None:
    size = db.stat().st_size
    with open(db, "r+b") as fh:
        fh.truncate(size // 2 + 123)


def _scribble(db: Path) -> None:
    # Overwrite the middle pages (b-tree headers and cells) with junk.
    page = 4096
    pages = db.stat().st_size // page
    with open(db, "r+b") as fh:
        for n in range(2, pages, 3):
            fh.seek(n * page)
            fh.write(b"\xa5" * 64)


def _header(db: Path) -> None:
    with open(db, "r+b") as fh:
        fh.write(b"this is not an SQLite header")


@pytest.mark.parametrize("damage", [_truncate, _scribble, _header])
async def test_damaged_store_is_moved_aside_and_reported(tmp_path: Path, damage: object) -> None:
    db = await _make_store(tmp_path)
    original = db.read_bytes()
    damage(db)  # type: ignore[operator]
    damaged = db.read_bytes()
    assert damaged != original

    with pytest.raises(StoreCorruptError) as caught:
        await Store.open(db, blob_dir=tmp_path / "blobs")
    report = caught.value.report
    assert not db.exists(), "the damaged file must not stay in place"
    moved = report.moved_to[0]
    assert moved.name.startswith("station.db.corrupt-")
    assert moved.read_bytes() == damaged, "nothing is deleted or repaired"
    assert "integrity" in str(caught.value) and ".recover" in str(caught.value)
    assert quarantine_reports(db) == [report]  # what the CLI shows
    assert report.reason

    # The next start begins empty, and the report stays until someone removes the marker.
    async with await Store.open(db, blob_dir=tmp_path / "blobs") as store:
        assert await store.case_ids() == []
    assert quarantine_reports(db) == [report]


async def test_wal_and_shm_are_moved_with_the_database(tmp_path: Path) -> None:
    db = await _make_store(tmp_path, cases=50)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE extra (x)")  # leaves a -wal file while this connection lives
    conn.commit()
    _scribble(db)
    wal = db.with_name("station.db-wal")
    assert wal.exists()
    report = check_and_quarantine(db, now=WHEN)
    conn.close()
    assert report is not None
    names = sorted(p.name for p in report.moved_to)
    assert names[0] == "station.db.corrupt-20261122T030405Z"
    assert "station.db.corrupt-20261122T030405Z-wal" in names
    assert not wal.exists()
    assert report.detected_at == "2026-11-22T03:04:05+00:00"
    assert "station.db" in report.describe()


def test_a_second_quarantine_in_the_same_second_does_not_overwrite(tmp_path: Path) -> None:
    db = tmp_path / "station.db"
    for _ in range(2):
        db.write_bytes(os.urandom(8192))
        assert check_and_quarantine(db, now=WHEN) is not None
    moved = sorted(p.name for p in tmp_path.iterdir() if "corrupt" in p.name)
    assert moved == ["station.db.corrupt-20261122T030405Z", "station.db.corrupt-20261122T030405Z.1"]
    assert len(quarantine_reports(db)) == 2


async def test_a_sound_store_is_left_alone(tmp_path: Path) -> None:
    db = await _make_store(tmp_path, cases=20)
    assert check_and_quarantine(db) is None
    assert check_and_quarantine(tmp_path / "absent.db") is None
    assert quarantine_reports(db) == []
    assert db.exists()


def test_an_unreadable_file_is_an_error_not_corruption(tmp_path: Path) -> None:
    db = tmp_path / "station.db"
    db.mkdir()  # not a file at all: cannot be opened, must not be "quarantined"
    with pytest.raises(StoreError):
        check_and_quarantine(db)
    assert db.is_dir()


async def test_quick_check_also_catches_damaged_pages(tmp_path: Path) -> None:
    db = await _make_store(tmp_path)
    _scribble(db)
    with pytest.raises(StoreCorruptError):
        await Store.open(db, blob_dir=tmp_path / "blobs", quick_check=True)
    assert not db.exists()
