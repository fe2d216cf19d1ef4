"""Local appends: prepared off the writer, grouped into one call per commit, encoded once."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from sync.events import Event, EventType, decode_events, encode_events, is_event_id
from sync.ids import uuid7_ms
from sync.store import EventDraft, OutboxPut, Store, StoreError
from sync.store.eventlog import _ids, append_prepared, prepare_local
from sync.store.schema import migrate
from sync.store.store import LockedClock

NOW = 1_790_000_000_000
APPLICANT = {"id_type": "resident_id", "id_number": "110101199003077777", "name": "张三",
             "sex": "男", "address": "某某街道", "age": 36}
SHA = "ab" * 32


def every_type(case: str) -> list[EventDraft]:
    bodies: list[tuple[EventType, dict[str, object]]] = [
        (EventType.CASE_CREATED, {"service": "SVC1", "applicant": APPLICANT,
                                  "fields": {"a": "1", "n": -(1 << 40), "big": 1 << 62}}),
        (EventType.FIELD_SET, {"name": "phone", "value": None}),
        (EventType.MATERIAL_ADDED, {"sha256": SHA, "kind": "scan", "pages": 3,
                                    "size": 200_000, "mime": "image/jpeg", "answers": "R-1"}),
        (EventType.MATERIAL_SUPERSEDED, {"sha256": SHA, "by": "cd" * 32, "reason": "blurred"}),
        (EventType.SUPPLEMENT_REQUESTED, {"request": "R-1", "what": "户口本" * 300}),
        (EventType.STATUS_CHANGED, {"to": "submitted"}),
        (EventType.NOTE_ADDED, {"text": "备注 " * 800}),
    ]
    return [EventDraft(case=case, type=t, body=b) for t, b in bodies]


def test_the_spliced_batch_is_byte_for_byte_encode_events() -> None:
    clock = LockedClock(wall_ms=lambda: NOW, last=(1 << 62))  # 8-byte hlcs
    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrate(conn)
    # seqs crossing every msgpack integer width: 1 byte, uint8, uint16, uint32
    for top in (0, 120, 250, 65_530, (1 << 32) - 3):
        conn.execute("INSERT OR REPLACE INTO origins VALUES ('ST001', ?, ?)", (top, top))
        items = [prepare_local("ST001", every_type("ST001-20261122-0001")
                               + every_type("ST001-20261122-0002"), NOW),
                 prepare_local("HUB01", every_type("ST001-20261122-0003")[:1], NOW)]
        for done in append_prepared(conn, clock, items):
            assert done.encoded == encode_events(done.events)
            assert decode_events(done.encoded) == done.events
    conn.close()


def test_ids_of_one_call_are_valid_distinct_ordered_uuid7() -> None:
    for _ in range(200):
        strs, raws = _ids(NOW, 12)
        assert all(is_event_id(i) and uuid7_ms(i) == NOW for i in strs)
        assert list(strs) == sorted(set(strs))
        assert [bytes.fromhex(i.replace("-", "")) for i in strs] == list(raws)


def test_now_block_hands_out_consecutive_fresh_timestamps() -> None:
    clock = LockedClock(wall_ms=lambda: NOW, last=0)
    first = clock.now_block(10)
    assert first == NOW << 16 and clock.last == first + 9
    assert clock.now() == first + 10
    with pytest.raises(ValueError, match="count >= 1"):
        clock.now_block(0)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "s.db", blob_dir=tmp_path / "blobs",
                         wall_ms=lambda: NOW)
    try:
        yield s
    finally:
        await s.close()


def note(case: str, text: str = "n") -> EventDraft:
    return EventDraft(case=case, type=EventType.NOTE_ADDED, body={"text": text})


def put(pid: bytes, payload: bytes, case: str) -> list[OutboxPut]:
    return [OutboxPut(package_id=pid, kind="batch", priority=1, destination="HUB01",
                      payload=payload, size=len(payload), case=case)]


async def test_concurrent_appends_share_one_call_and_a_bad_one_fails_alone(
    store: Store,
) -> None:
    def seal_for(n: int) -> Callable[[list[Event], bytes], list[OutboxPut]]:
        def seal(events: list[Event], encoded: bytes) -> list[OutboxPut]:
            if n == 7:
                raise RuntimeError("seal 7 broke")
            # 11 reuses the package id of 3: refused by the outbox's unique index.
            pid = bytes([3 if n == 11 else n]) * 16
            return put(pid, encoded, events[0].case)
        return seal

    cases = [f"ST001-20261122-{n:04d}" for n in range(1, 31)]
    results = await asyncio.gather(
        *(store.append_local_encoded("ST001", [note(c), note(c, "second")], seal_for(n))
          for n, c in enumerate(cases)),
        return_exceptions=True,
    )
    failed = {n for n, r in enumerate(results) if isinstance(r, BaseException)}
    assert failed == {7, 11}
    assert isinstance(results[7], RuntimeError)
    assert isinstance(results[11], StoreError) and "already holds package" in str(results[11])
    stats = store.writer_stats
    assert stats.group_fallbacks >= 1 and stats.transactions < len(cases)
    # Everyone else is stored whole, with contiguous seqs and an outbox row of their events.
    seqs = []
    for n, case in enumerate(cases):
        events = await store.events_for_case(case)
        assert len(events) == (0 if n in failed else 2)
        seqs += [e.seq for e in events]
        if n not in failed:
            entry = await store.outbox_get(bytes([n]) * 16)
            assert entry is not None and entry.payload == encode_events(events)
    assert sorted(seqs) == list(range(1, 2 * (len(cases) - 2) + 1))
    assert await store.high_water() == {"ST001": 2 * (len(cases) - 2)}


async def test_grouped_appends_without_failures_take_no_fallback(store: Store) -> None:
    await asyncio.gather(*(store.append_local("ST001", [note(f"C-{n}")]) for n in range(40)))
    stats = store.writer_stats
    assert stats.group_fallbacks == 0 and stats.grouped_writes >= 2
    assert len(await store.case_ids()) == 40


async def test_invalid_drafts_are_refused_before_reaching_the_writer(store: Store) -> None:
    before = store.writer_stats.writes
    with pytest.raises(ValueError, match="missing text"):
        await store.append_local("ST001", [EventDraft(case="C-1", type=EventType.NOTE_ADDED,
                                                      body={"txt": "typo"})])
    with pytest.raises(ValueError, match="origin"):
        await store.append_local("bad origin", [note("C-1")])
    assert store.writer_stats.writes == before
    assert await store.case_ids() == []


async def test_a_body_changed_after_the_call_does_not_change_what_is_stored(
    store: Store,
) -> None:
    body: dict[str, object] = {"text": "as validated"}
    task = asyncio.ensure_future(store.append_local(
        "ST001", [EventDraft(case="C-1", type=EventType.NOTE_ADDED, body=body)]))
    await asyncio.sleep(0)  # prepared (validated and packed) before the first suspension
    body["text"] = 12345
    await task
    stored = await store.events_for_case("C-1")
    assert stored[0].body == {"text": "as validated"}
