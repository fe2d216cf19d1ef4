"""The store's public API on real SQLite files: events, clock, outbox, blobs, small state."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sync.events import EventType
from sync.hlc import physical_ms
from sync.store import (
    PRIORITY_BLOBS,
    PRIORITY_CONTROL,
    PRIORITY_EVENTS,
    EventDraft,
    OutboxPut,
    Store,
    StoreError,
)

CASE = "ST001-20261122-0001"
APPLICANT = {"id_type": "resident_id", "id_number": "110101199003077777", "name": "张三",
             "sex": "男"}


class WallClock:
    """A settable wall clock (ms)."""

    def __init__(self, now: int = 1_790_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def created(case: str = CASE) -> EventDraft:
    return EventDraft(case=case, type=EventType.CASE_CREATED,
                      body={"service": "SVC1", "applicant": APPLICANT, "fields": {"a": "1"}})


def note(text: str, case: str = CASE) -> EventDraft:
    return EventDraft(case=case, type=EventType.NOTE_ADDED, body={"text": text})


def batch(pid: bytes, priority: int = PRIORITY_EVENTS, dest: str = "HUB01",
          case: str | None = CASE) -> OutboxPut:
    payload = b"sealed:" + pid
    return OutboxPut(package_id=pid, kind="batch", priority=priority, destination=dest,
                     payload=payload, size=len(payload), case=case)


async def open_store(tmp: Path, wall: WallClock | None = None, **kw: object) -> Store:
    return await Store.open(tmp / "s.db", blob_dir=tmp / "blobs", wall_ms=wall or WallClock(),
                            **kw)  # type: ignore[arg-type]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(tmp_path)
    yield s
    await s.close()


async def test_append_assigns_contiguous_seqs_and_rising_hlcs(store: Store) -> None:
    first = await store.append_local("ST001", [created(), note("a")])
    second = await store.append_local("ST001", [note("b")])
    events = first + second
    assert [e.seq for e in events] == [1, 2, 3]
    assert [e.hlc for e in events] == sorted({e.hlc for e in events})
    assert len({e.id for e in events}) == 3
    assert await store.events_for_case(CASE) == events
    assert await store.high_water() == {"ST001": 3}
    assert await store.gaps() == {}


async def test_append_is_durable_before_it_returns(store: Store, tmp_path: Path) -> None:
    await store.append_local("ST001", [created()], outbox=[batch(b"p" * 16)])
    # A separate connection (as another process would) sees the commit.
    conn = sqlite3.connect(tmp_path / "s.db")
    try:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM outbox").fetchone() == (1,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()


async def test_invalid_draft_is_refused_and_nothing_is_stored(store: Store) -> None:
    bad = EventDraft(case=CASE, type=EventType.NOTE_ADDED, body={"txt": "typo"})
    with pytest.raises(ValueError, match="missing text"):
        await store.append_local("ST001", [created(), bad], outbox=[batch(b"q" * 16)])
    assert await store.events_for_case(CASE) == []
    assert await store.outbox_pending() == []
    assert await store.high_water() == {}


async def test_seal_runs_with_assigned_events_and_its_failure_stores_nothing(
    store: Store,
) -> None:
    seen = []

    def seal(events: list) -> list[OutboxPut]:  # type: ignore[type-arg]
        seen.extend(events)
        return [batch(b"s" * 16)]

    events = await store.append_local_sealed("ST001", [created()], seal)
    assert seen == events and events[0].seq == 1

    def broken(events: list) -> list[OutboxPut]:  # type: ignore[type-arg]
        raise RuntimeError("sealing failed")

    with pytest.raises(RuntimeError, match="sealing failed"):
        await store.append_local_sealed("ST001", [note("lost")], broken)
    assert len(await store.events_for_case(CASE)) == 1
    assert [e.package_id for e in await store.outbox_pending()] == [b"s" * 16]
    # The failed call did not burn a sequence number.
    assert (await store.append_local("ST001", [note("next")]))[0].seq == 2


async def test_duplicate_package_id_is_refused(store: Store) -> None:
    await store.append_local("ST001", [created()], outbox=[batch(b"d" * 16)])
    with pytest.raises(StoreError, match="already holds package"):
        await store.append_local("ST001", [note("x")], outbox=[batch(b"d" * 16)])
    assert len(await store.events_for_case(CASE)) == 1


async def test_clock_survives_restart_even_if_wall_clock_goes_back(tmp_path: Path) -> None:
    wall = WallClock()
    s = await open_store(tmp_path, wall)
    before = await s.append_local("ST001", [created()])
    await s.close()
    wall.now -= 86_400_000  # the board rebooted without an RTC battery: a day in the past
    s = await open_store(tmp_path, wall)
    after = await s.append_local("ST001", [note("after reboot")])
    assert after[0].hlc > before[0].hlc
    assert await s.clock_now() > after[0].hlc
    await s.close()


async def test_hub_clock_from_ack_is_absorbed_and_persisted(tmp_path: Path) -> None:
    wall = WallClock()
    s = await open_store(tmp_path, wall)
    await s.append_local("ST001", [created()], outbox=[batch(b"a" * 16)])
    hub_hlc = (wall.now + 3_600_000) << 16  # the county is an hour ahead of this board
    assert await s.outbox_delivered(b"a" * 16, hub_hlc=hub_hlc)
    await s.close()
    s = await open_store(tmp_path, wall)
    assert s.clock.last >= hub_hlc
    assert s.clock.hub_offset_ms == 3_600_000
    assert physical_ms(await s.clock_now()) >= wall.now + 3_600_000
    await s.close()


async def test_outbox_orders_by_priority_then_fifo(store: Store) -> None:
    await store.append_local("ST001", [created()], outbox=[
        batch(b"1" * 16, PRIORITY_BLOBS), batch(b"2" * 16, PRIORITY_EVENTS),
    ])
    await store.append_local("ST001", [note("n")], outbox=[
        batch(b"3" * 16, PRIORITY_EVENTS), batch(b"4" * 16, PRIORITY_CONTROL),
        batch(b"5" * 16, PRIORITY_EVENTS, dest="HUB02"),
    ])
    order = [e.package_id[:1] for e in await store.outbox_pending()]
    assert order == [b"4", b"2", b"3", b"5", b"1"]
    assert [e.package_id[:1] for e in await store.outbox_pending("HUB02")] == [b"5"]
    assert len(await store.outbox_pending(limit=2)) == 2


async def test_outbox_progress_attempts_hold_retry_delivered(store: Store) -> None:
    pid = b"x" * 16
    await store.append_local("ST001", [created()], outbox=[batch(pid)])
    assert await store.outbox_attempt(pid)
    assert await store.outbox_progress(pid, 5)
    entry = await store.outbox_get(pid)
    assert entry is not None
    assert (entry.attempts, entry.bytes_acked, entry.state) == (1, 5, "queued")
    assert entry.last_attempt_ms is not None and entry.case == CASE
    assert await store.outbox_hold(pid)
    assert await store.outbox_pending() == []  # held entries wait for a person
    stats = await store.outbox_stats()
    assert (stats.count, stats.held) == (1, 1)
    assert await store.outbox_retry(pid)
    assert [e.package_id for e in await store.outbox_pending()] == [pid]
    assert await store.outbox_delivered(pid)
    assert await store.outbox_get(pid) is None
    assert not await store.outbox_delivered(pid)  # a repeated ack changes nothing
    assert not await store.outbox_hold(b"unknown")


async def test_outbox_stats_report_depth_bytes_and_age(tmp_path: Path) -> None:
    wall = WallClock()
    s = await open_store(tmp_path, wall)
    assert (await s.outbox_stats()).oldest_age_ms is None
    await s.append_local("ST001", [created()], outbox=[batch(b"1" * 16)])
    wall.now += 5_000
    await s.append_local("ST001", [note("n")], outbox=[batch(b"2" * 16, PRIORITY_BLOBS)])
    await s.outbox_progress(b"1" * 16, 3)
    wall.now += 1_000
    stats = await s.outbox_stats()
    assert stats.count_by_priority == {PRIORITY_EVENTS: 1, PRIORITY_BLOBS: 1}
    assert stats.bytes_pending == 2 * (7 + 16) - 3
    assert stats.oldest_age_ms == 6_000
    await s.close()


async def test_delivered_removes_the_sealed_file_but_only_inside_sealed_dir(
    store: Store, tmp_path: Path
) -> None:
    inside = store.sealed_dir / "p1.blob"
    inside.write_bytes(b"container")
    outside = tmp_path / "elsewhere.bin"
    outside.write_bytes(b"not ours")
    await store.append_local("ST001", [created()], outbox=[
        OutboxPut(package_id=b"f" * 16, kind="blob", priority=PRIORITY_BLOBS,
                  destination="HUB01", path=inside, size=9),
        OutboxPut(package_id=b"g" * 16, kind="blob", priority=PRIORITY_BLOBS,
                  destination="HUB01", path=outside, size=8),
    ])
    await store.outbox_delivered(b"f" * 16)
    await store.outbox_delivered(b"g" * 16)
    assert not inside.exists()
    assert outside.read_bytes() == b"not ours"


async def test_blobs_are_content_addressed_and_fsynced_whole(
    store: Store, tmp_path: Path
) -> None:
    src = tmp_path / "scan.jpg"
    data = os.urandom(200_000)
    src.write_bytes(data)
    ref = await store.put_blob_file(src)
    again = await store.put_blob_file(src)
    assert ref == again
    assert ref.size == len(data) and ref.path == store.blob_path(ref.sha256)
    assert ref.path.read_bytes() == data
    assert [p.name for p in store.blob_dir.iterdir()] == [ref.sha256]
    with pytest.raises(StoreError, match="not a blob name"):
        store.blob_path("../../etc/passwd")
    with pytest.raises(StoreError, match="cannot read material"):
        await store.put_blob_file(tmp_path / "missing.jpg")


async def test_cleanup_removes_only_old_unreferenced_files(store: Store, tmp_path: Path) -> None:
    used, unused = tmp_path / "used.jpg", tmp_path / "unused.jpg"
    used.write_bytes(b"used material")
    unused.write_bytes(b"never referenced")
    used_ref = await store.put_blob_file(used)
    unused_ref = await store.put_blob_file(unused)
    await store.append_local("ST001", [created(), EventDraft(
        case=CASE, type=EventType.MATERIAL_ADDED,
        body={"sha256": used_ref.sha256, "kind": "scan", "pages": 1, "size": used_ref.size,
              "mime": "image/jpeg"},
    )], outbox=[OutboxPut(package_id=b"k" * 16, kind="blob", priority=PRIORITY_BLOBS,
                          destination="HUB01", path=store.sealed_dir / "kept.blob", size=1)])
    (store.sealed_dir / "kept.blob").write_bytes(b"k")
    (store.sealed_dir / "stray.blob").write_bytes(b"s")  # sealed, never committed
    (store.blob_dir / ".tmp-0123").write_bytes(b"half")  # a crash mid-copy
    # Young files are left alone: another process may be about to commit them.
    assert await store.cleanup_orphans() == 0
    old = time.time() - 7200
    for path in [*store.blob_dir.iterdir(), *store.sealed_dir.iterdir()]:
        os.utime(path, (old, old))
    assert await store.cleanup_orphans(grace_s=3600) == 3
    assert used_ref.path.exists() and not unused_ref.path.exists()
    assert sorted(p.name for p in store.sealed_dir.iterdir()) == ["kept.blob"]
    assert not (store.blob_dir / ".tmp-0123").exists()


async def test_kv_counters_and_transfer_in_survive_reopen(tmp_path: Path) -> None:
    s = await open_store(tmp_path)
    await s.kv_put("uplink:budget", b"\x01\x02")
    await s.kv_put("uplink:other", b"x")
    await s.kv_delete("uplink:other")
    assert [await s.next_counter("case:ST001:20261122") for _ in range(3)] == [1, 2, 3]
    await s.transfer_in_put(b"t" * 16, sender="ST001", kind="blob", size=100,
                            received=b"\xff\x00", path=tmp_path / "part")
    await s.close()
    s = await open_store(tmp_path)
    assert await s.kv_get("uplink:budget") == b"\x01\x02"
    assert await s.kv_get("uplink:other") is None
    assert await s.kv_keys("uplink:") == ["uplink:budget"]
    assert await s.next_counter("case:ST001:20261122") == 4
    got = await s.transfer_in_get(b"t" * 16)
    assert got is not None and got.received == b"\xff\x00" and got.path == tmp_path / "part"
    assert [t.package_id for t in await s.transfer_in_list()] == [b"t" * 16]
    await s.transfer_in_delete(b"t" * 16)
    assert await s.transfer_in_get(b"t" * 16) is None
    await s.close()


async def test_list_cases_folds_each_case(store: Store) -> None:
    other = "ST001-20261122-0002"
    await store.append_local("ST001", [created(), created(other)])
    await store.append_local("ST001", [EventDraft(
        case=other, type=EventType.STATUS_CHANGED, body={"to": "submitted"})])
    cases = {c.case: c for c in await store.list_cases()}
    assert cases[CASE].status == "draft" and cases[other].status == "submitted"
    assert cases[CASE].service == "SVC1" and cases[CASE].conflicts == 0
    assert [c.case for c in await store.list_cases("submitted")] == [other]
    assert await store.case_ids() == [CASE, other]


async def test_closed_store_refuses_writes(tmp_path: Path) -> None:
    s = await open_store(tmp_path)
    await s.close()
    with pytest.raises(StoreError, match="closed"):
        await s.append_local("ST001", [created()])


async def test_two_stores_on_one_file_interleave_safely(tmp_path: Path) -> None:
    # The daemon and `cunlink cases submit` in another process: separate writers, one file.
    a = await open_store(tmp_path)
    b = await open_store(tmp_path)
    for i in range(5):
        await a.append_local("ST001", [note(f"a{i}", case=f"A-{i}")])
        await b.append_local("ST001", [note(f"b{i}", case=f"B-{i}")])
    events = []
    for case in await a.case_ids():
        events += await a.events_for_case(case)
    assert sorted(e.seq for e in events) == list(range(1, 11))
    # Each writer picks up the other's persisted clock: timestamps keep rising in write order.
    by_seq = sorted(events, key=lambda e: e.seq)
    assert [e.hlc for e in by_seq] == sorted({e.hlc for e in by_seq})
    await a.close()
    await b.close()
