"""Forward-only migrations: a database made at every earlier version opens and keeps its data.

When you append a migration to `sync.store.schema.MIGRATIONS`, this file already covers it
(every earlier version is migrated through it). If it moves data, add a `SAMPLES` entry that
writes rows at the previous version and a `CHECKS` entry that finds them afterwards.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest

from sync.events import EventType
from sync.store import LATEST_VERSION, MIGRATIONS, Store, StoreError
from sync.store.schema import current_version, migrate

SHA = "ab" * 32
CASE = "ST001-20261122-0001"
EVENT_ID = "01a0c450-6c00-7ec8-9d83-04b4dbaa83cc"


def _v1_rows(conn: sqlite3.Connection) -> None:
    body = msgpack.packb({"sha256": SHA, "kind": "scan", "pages": 1, "size": 10,
                          "mime": "image/jpeg"})
    conn.execute("INSERT INTO events (id, case_id, origin, seq, hlc, type, body) "
                 "VALUES (?, ?, 'ST001', 1, ?, 'material_added', ?)",
                 (EVENT_ID, CASE, 1_790_000_000_000 << 16, body))
    conn.execute("INSERT INTO origins VALUES ('ST001', 1, 1)")
    conn.execute("UPDATE clock SET last = ?", ((1_790_000_000_000 << 16) + 5,))
    conn.execute("INSERT INTO inbox VALUES (x'00112233', 'HUB01', 1, 1, 0)")


def _v2_rows(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO outbox (package_id, kind, priority, destination, payload, size, "
                 "case_id, first_queued_ms) VALUES (x'aa', 'batch', 1, 'HUB01', x'01', 1, ?, 7)",
                 (CASE,))


def _v3_rows(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO kv VALUES ('k', x'01')")
    conn.execute("INSERT INTO counters VALUES ('case:ST001:20261122', 7)")


def _v4_rows(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO inbox VALUES (x'44', 'ST001', 2, 0, 0, ?)", ("cd" * 32,))


async def _v1_check(store: Store) -> None:
    events = await store.events_for_case(CASE)
    assert [(e.id, e.type, e.seq) for e in events] == [(EVENT_ID, EventType.MATERIAL_ADDED, 1)]
    assert store.clock.last >= (1_790_000_000_000 << 16) + 5
    assert await store.inbox_has(bytes.fromhex("00112233"))
    assert await store.referenced_blobs() == {SHA}  # the blob stays safe from the sweep


async def _v2_check(store: Store) -> None:
    entry = await store.outbox_get(b"\xaa")
    assert entry is not None and entry.case == CASE and entry.state == "queued"


async def _v3_check(store: Store) -> None:
    assert await store.kv_get("k") == b"\x01"
    assert await store.next_counter("case:ST001:20261122") == 8


async def _v4_check(store: Store) -> None:
    assert "cd" * 32 in await store.inbox_blobs()


async def _v2_check_v5(store: Store) -> None:
    # a row queued before v5 carries no bundle contents: it travels on its own
    entry = await store.outbox_get(b"\xaa")
    assert entry is not None and entry.plain is None and entry.blob_sha256 is None


async def _after_migrating(store: Store) -> None:
    """What every migrated database must do now, whatever version it came from."""
    if await store.outbox_get(b"\xaa") is not None:
        await _v2_check_v5(store)
    before = await store.inbox_blobs()  # inbox rows from before v4 name no blob
    assert before <= {"cd" * 32}
    await store.apply_remote([], package_id=b"new", sender="ST001", blob_sha256="ef" * 32)
    assert await store.inbox_blobs() == before | {"ef" * 32}


SAMPLES: dict[int, Callable[[sqlite3.Connection], None]] = {1: _v1_rows, 2: _v2_rows,
                                                            3: _v3_rows, 4: _v4_rows}
CHECKS = {1: _v1_check, 2: _v2_check, 3: _v3_check, 4: _v4_check}


def _make_at(path: Path, version: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        for v in range(1, version + 1):
            migrate(conn, target=v)
            if v in SAMPLES:
                conn.execute("BEGIN")
                SAMPLES[v](conn)
                conn.execute("COMMIT")
        assert current_version(conn) == version
    finally:
        conn.close()


def _schema(path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    try:
        return sorted(conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL"
        ).fetchall())
    finally:
        conn.close()


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, LATEST_VERSION + 1))


@pytest.mark.parametrize("version", range(LATEST_VERSION))
async def test_database_from_every_earlier_version_migrates(tmp_path: Path, version: int) -> None:
    old = tmp_path / "old.db"
    if version == 0:
        old.touch()  # v0: an empty file (what a crash right after creating it leaves)
    else:
        _make_at(old, version)
    async with await Store.open(old, blob_dir=tmp_path / "blobs") as store:
        for v in range(1, version + 1):
            if v in CHECKS:
                await CHECKS[v](store)
        await _after_migrating(store)
        await store.append_local("ST001", [])  # still writable after migrating
    fresh = tmp_path / "fresh.db"
    async with await Store.open(fresh, blob_dir=tmp_path / "blobs2"):
        pass
    assert _schema(old) == _schema(fresh)
    conn = sqlite3.connect(old)
    try:
        assert current_version(conn) == LATEST_VERSION
    finally:
        conn.close()


async def test_newer_schema_is_refused_not_downgraded(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    _make_at(db, LATEST_VERSION)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE schema_version SET version = ?", (LATEST_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer than this cunlink"):
        await Store.open(db, blob_dir=tmp_path / "blobs")


async def test_two_openers_racing_on_a_new_file_migrate_once(tmp_path: Path) -> None:
    db = tmp_path / "race.db"
    stores = await asyncio.gather(*(Store.open(db, blob_dir=tmp_path / "b") for _ in range(3)))
    for store in stores:
        await store.close()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT count(*) FROM schema_version").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM clock").fetchone() == (1,)
    finally:
        conn.close()
