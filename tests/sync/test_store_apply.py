"""Idempotent apply of remote events, per-origin high-water marks and gap detection."""

from __future__ import annotations

import random
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.events import Event, EventType
from sync.ids import uuid7
from sync.store import Store

BASE_MS = 1_790_000_000_000


def remote(origin: str, seq: int, case: str = "ST009-20261122-0001") -> Event:
    # Deterministic ids: the same (origin, seq) is the same event, as a resend would be.
    rand = random.Random(f"{origin}/{seq}").randbytes(10)
    return Event(id=uuid7(BASE_MS + seq, rand), case=case, origin=origin, seq=seq,
                 hlc=(BASE_MS + seq) << 16, type=EventType.NOTE_ADDED,
                 body={"text": f"{origin} #{seq}"})


async def open_store(tmp: Path) -> Store:
    return await Store.open(tmp / "hub.db", blob_dir=tmp / "blobs", wall_ms=lambda: BASE_MS,
                            hub_origins=("HUB01",))


async def test_same_package_twice_changes_nothing(tmp_path: Path) -> None:
    async with await open_store(tmp_path) as store:
        events = [remote("ST009", s) for s in (1, 2, 3)]
        first = await store.apply_remote(events, package_id=b"p" * 16, sender="ST009")
        assert (first.new, first.duplicate, first.gaps) == (3, 0, {})
        assert await store.inbox_has(b"p" * 16)
        assert not await store.inbox_has(b"q" * 16)
        again = await store.apply_remote(events, package_id=b"p" * 16, sender="ST009")
        assert (again.new, again.duplicate) == (0, 3)
        assert len(await store.events_for_case(events[0].case)) == 3
        assert await store.high_water() == {"ST009": 3}


async def test_gaps_are_reported_until_filled(tmp_path: Path) -> None:
    async with await open_store(tmp_path) as store:
        got = await store.apply_remote([remote("ST009", s) for s in (1, 2, 5, 6, 9)])
        assert got.new == 5
        assert got.gaps == {"ST009": [(3, 4), (7, 8)]}
        assert await store.gaps() == {"ST009": [(3, 4), (7, 8)]}
        assert await store.high_water() == {"ST009": 2}
        # What the receiver would ask the sender to resend:
        assert [e.seq for e in await store.events_range("ST009", 1, 9)] == [1, 2, 5, 6, 9]
        got = await store.apply_remote([remote("ST009", s) for s in (4, 3)])
        assert got.gaps == {"ST009": [(7, 8)]} and await store.high_water() == {"ST009": 6}
        await store.apply_remote([remote("ST009", 8), remote("ST009", 7), remote("ST009", 7)])
        assert await store.gaps() == {}
        assert await store.high_water() == {"ST009": 9}
        # Below the mark: skipped without even looking the id up.
        late = await store.apply_remote([remote("ST009", 2)])
        assert (late.new, late.duplicate) == (0, 1)


async def test_a_different_event_reusing_a_seq_is_rejected(tmp_path: Path) -> None:
    async with await open_store(tmp_path) as store:
        await store.apply_remote([remote("ST009", 1), remote("ST009", 3)])
        forged = Event(id=uuid7(BASE_MS, b"\x07" * 10), case="ST009-20261122-0001",
                       origin="ST009", seq=3, hlc=BASE_MS << 16, type=EventType.NOTE_ADDED,
                       body={"text": "a second event claiming seq 3"})
        got = await store.apply_remote([forged])
        assert (got.new, got.duplicate, got.rejected) == (0, 0, 1)
        texts = [e.body["text"] for e in await store.events_for_case(forged.case)]
        assert "a second event claiming seq 3" not in texts


async def test_remote_clocks_are_observed_and_far_future_ones_clamped(tmp_path: Path) -> None:
    async with await open_store(tmp_path) as store:
        await store.apply_remote([remote("ST009", 1)])
        assert store.clock.last > remote("ST009", 1).hlc
        far = Event(id=uuid7(BASE_MS, b"\x01" * 10), case="ST009-20261122-0001",
                    origin="ST009", seq=2, hlc=(BASE_MS + 10 * 86_400_000) << 16,
                    type=EventType.NOTE_ADDED, body={"text": "from a board set to next week"})
        await store.apply_remote([far])
        assert store.clock.clamped_count == 1
        assert store.clock.last < far.hlc
        # The event keeps its own timestamp.
        assert (await store.events_range("ST009", 2, 2))[0].hlc == far.hlc


async def test_remote_events_of_our_own_origin_fill_in_below_local_ones(tmp_path: Path) -> None:
    # A restored station gets its old events back from the hub after writing new ones.
    async with await open_store(tmp_path) as store:
        await store.apply_remote([remote("ST009", 2)])
        assert await store.gaps() == {"ST009": [(1, 1)]}
        await store.apply_remote([remote("ST009", 1)])
        assert await store.gaps() == {} and await store.high_water() == {"ST009": 2}


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.fixed_dictionaries({"ST001": st.integers(0, 12), "ST002": st.integers(1, 12)}),
    seed=st.integers(0, 2**32 - 1),
    chunks=st.integers(1, 6),
)
async def test_any_delivery_order_with_duplicates_converges(
    tmp_path_factory: object, sizes: dict[str, int], seed: int, chunks: int
) -> None:
    rng = random.Random(seed)
    events = [remote(o, s) for o, n in sizes.items() for s in range(1, n + 1)]
    held_back = {e.id for e in events if rng.random() < 0.2}
    deliveries = [e for e in events if e.id not in held_back]
    deliveries += rng.sample(deliveries, k=len(deliveries) // 2)  # duplicates
    rng.shuffle(deliveries)
    tmp = Path(str(tmp_path_factory.mktemp("conv")))  # type: ignore[attr-defined]
    async with await open_store(tmp) as store:
        new = 0
        for i in range(chunks):
            part = deliveries[i::chunks]
            new += (await store.apply_remote(part, package_id=bytes([i]) * 16)).new
        delivered = {e.id for e in deliveries}
        assert new == len(delivered)
        # Gaps are exactly the held-back events below each origin's highest delivered seq.
        for origin in sizes:
            got = {e.seq for e in events if e.origin == origin and e.id in delivered}
            top = max(got, default=0)
            missing = sorted(set(range(1, top + 1)) - got)
            gaps = (await store.gaps()).get(origin, [])
            assert [s for a, b in gaps for s in range(a, b + 1)] == missing
            hw = (await store.high_water()).get(origin, 0)
            assert hw == (missing[0] - 1 if missing else top)
        # Delivering everything (again) completes the set and adds each event exactly once.
        final = await store.apply_remote(list(reversed(events)))
        assert final.new == len(events) - len(delivered)
        assert await store.gaps() == {}
        stored = await store.events_for_case(events[0].case) if events else []
        assert sorted(e.id for e in stored) == sorted(e.id for e in events)
