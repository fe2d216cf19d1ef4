"""Group commit: concurrent writes share transactions, and nobody hears "done" before commit."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from sync.events import EventType
from sync.store import EventDraft, Store, StoreError

WRITERS = 40


def note(case: str) -> EventDraft:
    return EventDraft(case=case, type=EventType.NOTE_ADDED, body={"text": case})


async def test_concurrent_writers_are_coalesced_and_see_their_commit(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    async with await Store.open(db, blob_dir=tmp_path / "b", window_ms=20.0) as store:
        observer = sqlite3.connect(db)  # another connection: sees only what is committed
        seen_committed: list[bool] = []

        async def write(i: int) -> None:
            case = f"C-{i}"
            await store.append_local("ST001", [note(case)])
            row = observer.execute("SELECT count(*) FROM events WHERE case_id = ?", (case,))
            seen_committed.append(row.fetchone() == (1,))

        await asyncio.gather(*(write(i) for i in range(WRITERS)))
        observer.close()
        stats = store.writer_stats
        assert seen_committed == [True] * WRITERS
        assert stats.writes == WRITERS
        assert stats.transactions < WRITERS // 4, stats  # coalesced, not one commit each
        assert stats.largest_batch > 1


async def test_batch_size_is_bounded(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db", blob_dir=tmp_path / "b",
                                max_batch=8, window_ms=50.0) as store:
        await asyncio.gather(*(store.append_local("ST001", [note(f"C-{i}")])
                               for i in range(WRITERS)))
        assert store.writer_stats.largest_batch <= 8
        assert store.writer_stats.transactions >= WRITERS // 8


async def test_a_lone_writer_does_not_wait_for_the_window(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db", blob_dir=tmp_path / "b",
                                window_ms=500.0) as store:
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(5):
            await store.append_local("ST001", [note(f"C-{i}")])
        # Five sequential writes; waiting for the window each time would take 2.5 s.
        assert loop.time() - started < 2.0
        assert store.writer_stats.transactions == 5


async def test_a_failing_write_fails_only_its_caller(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db", blob_dir=tmp_path / "b",
                                window_ms=50.0) as store:

        def boom(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO kv (key, value) VALUES ('half', x'00')")
            raise RuntimeError("this write fails half-way")

        results = await asyncio.gather(
            *(store.append_local("ST001", [note(f"C-{i}")]) for i in range(10)),
            store.write(boom),
            *(store.append_local("ST001", [note(f"D-{i}")]) for i in range(10)),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        assert len(failures) == 1 and "half-way" in str(failures[0])
        assert len(await store.case_ids()) == 20
        assert await store.kv_get("half") is None  # its partial work was rolled back
        assert store.writer_stats.transactions < 21
        assert await store.gaps() == {}
        assert await store.high_water() == {"ST001": 20}


async def test_a_failed_commit_fails_every_caller_in_the_batch(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db", blob_dir=tmp_path / "b",
                                window_ms=50.0) as store:

        def setup(conn: sqlite3.Connection) -> None:
            # A deferred foreign key is checked at COMMIT: the commit itself will fail.
            conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
            conn.execute("CREATE TABLE child (p INTEGER REFERENCES parent (id) "
                         "DEFERRABLE INITIALLY DEFERRED)")

        await store.write(setup)

        def orphan(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO child (p) VALUES (42)")

        results = await asyncio.gather(
            *(store.append_local("ST001", [note(f"C-{i}")]) for i in range(5)),
            store.write(orphan),
            return_exceptions=True,
        )
        assert all(isinstance(r, StoreError) for r in results), results
        assert "FOREIGN KEY" in str(results[0]) or "constraint" in str(results[0]).lower()
        assert await store.case_ids() == []
        assert store.writer_stats.failed_commits == 1
        # The writer carries on afterwards.
        await store.append_local("ST001", [note("after")])
        assert await store.case_ids() == ["after"]


async def test_close_finishes_queued_writes(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s.db", blob_dir=tmp_path / "b")
    pending = [asyncio.create_task(store.append_local("ST001", [note(f"C-{i}")]))
               for i in range(10)]
    await asyncio.sleep(0)
    await store.close()
    await asyncio.gather(*pending)
    async with await Store.open(tmp_path / "s.db", blob_dir=tmp_path / "b") as again:
        assert len(await again.case_ids()) == 10


async def test_bad_group_commit_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_batch"):
        await Store.open(tmp_path / "s.db", blob_dir=tmp_path / "b", max_batch=0)
