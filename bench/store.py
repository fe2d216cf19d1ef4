"""Durable case intake: cunlink's store (group commit) against persist-queue's SQLiteAckQueue.

One case is 10 events (created, fields, three materials, a note, submitted), about 2 KB as an
encoded batch. cunlink acknowledges a case only after the transaction holding its events and
its outbox row (the same encoded batch) is committed with `synchronous=FULL`. The baseline does
one `SQLiteAckQueue.put` of exactly those bytes per case: one commit each, also at SQLite's
default `synchronous=FULL` (checked and printed below), which is equal durability.

Both run with 1 and with 16 concurrent writers (asyncio tasks for cunlink, threads for the
queue, which is synchronous) in the same run, on the same disk, in alternating rounds; the
median round is reported. Usage:

    .venv/bin/python bench/store.py            # about a minute
    .venv/bin/python bench/store.py --quick    # a few seconds, for a smoke test
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from persistqueue import SQLiteAckQueue

from sync.events import Event, EventType, encode_events
from sync.ids import uuid7
from sync.store import EventDraft, OutboxPut, Store
from sync.store.store import real_wall_ms

STATION = "ST001"
HUB = "HUB01"
TARGET_RATIO = 5.0


def case_drafts(n: int) -> list[EventDraft]:
    """The ten events of one realistic case (bodies vary per case so nothing is cached)."""
    case = f"{STATION}-20261122-{n:06d}"
    applicant = {
        "id_type": "resident_id", "id_number": f"11010119900307{n % 10000:04d}",
        "name": "张三丰", "sex": "男", "nation": "汉", "birth": "19900307",
        "address": "北京市东城区某某街道某某社区某某号院3号楼2单元501室",
        "issuer": "北京市公安局东城分局", "valid": "20200101-20400101",
    }
    fields = {f"field_{i}": f"value {i} for case {n} " + "某" * 12 for i in range(10)}
    drafts = [
        EventDraft(case=case, type=EventType.CASE_CREATED,
                   body={"service": "SVC-001-0042", "applicant": applicant, "fields": fields}),
        EventDraft(case=case, type=EventType.FIELD_SET,
                   body={"name": "phone", "value": f"1380000{n % 10000:04d}"}),
        EventDraft(case=case, type=EventType.FIELD_SET,
                   body={"name": "household", "value": "4 persons, 2 working age, 1 student"}),
    ]
    for page in range(3):
        sha = hashlib.sha256(f"{n}/{page}".encode()).hexdigest()
        drafts.append(EventDraft(case=case, type=EventType.MATERIAL_ADDED, body={
            "sha256": sha, "kind": "scan", "pages": 1, "size": 180_000 + page, "mime": "image/jpeg",
        }))
    drafts.append(EventDraft(case=case, type=EventType.NOTE_ADDED,
                             body={"text": "applicant brought originals; copies scanned at 300dpi"}))  # noqa: E501
    drafts.append(EventDraft(case=case, type=EventType.FIELD_SET,
                             body={"name": "bank_account", "value": "6222 0200 0000 0000 000"}))
    drafts.append(EventDraft(case=case, type=EventType.NOTE_ADDED,
                             body={"text": "receipt printed and handed over"}))
    drafts.append(EventDraft(case=case, type=EventType.STATUS_CHANGED, body={"to": "submitted"}))
    return drafts


def outbox_for(events: list[Event]) -> list[OutboxPut]:
    payload = encode_events(events)
    # Time-ordered package ids (as the intake makes them) keep the outbox index append-only.
    package_id = uuid.UUID(uuid7(real_wall_ms(), os.urandom(10))).bytes
    return [OutboxPut(package_id=package_id, kind="batch", priority=1, destination=HUB,
                      payload=payload, size=len(payload), case=events[0].case)]


def sample_payloads(count: int) -> list[bytes]:
    """The encoded batches the baseline puts: the same bytes cunlink queues."""
    payloads = []
    for n in range(count):
        events = [
            Event(id=f"01890000-0000-7000-8000-{n:06d}{i:06d}", case=d.case, origin=STATION,
                  seq=n * 10 + i + 1, hlc=(1_790_000_000_000 << 16) + i, type=d.type, body=d.body)
            for i, d in enumerate(case_drafts(n))
        ]
        payloads.append(encode_events(events))
    return payloads


async def run_cunlink(directory: Path, cases: int, writers: int) -> tuple[float, Any]:
    store = await Store.open(directory / "bench.db", blob_dir=directory / "blobs")
    drafts = [case_drafts(n) for n in range(cases)]

    async def writer(index: int) -> None:
        for n in range(index, cases, writers):
            await store.append_local_sealed(STATION, drafts[n], outbox_for)

    started = time.perf_counter()
    await asyncio.gather(*(writer(i) for i in range(writers)))
    elapsed = time.perf_counter() - started
    stats = store.writer_stats
    async with store:
        held = len(await store.case_ids())
    if held != cases:
        raise SystemExit(f"cunlink stored {held} cases, expected {cases}")
    return elapsed, stats


def run_baseline(directory: Path, payloads: list[bytes], writers: int) -> tuple[float, int]:
    queue = SQLiteAckQueue(str(directory / "pq"), multithreading=True, auto_commit=True)
    sync_mode = int(queue._putter.execute("PRAGMA synchronous").fetchone()[0])
    journal = str(queue._putter.execute("PRAGMA journal_mode").fetchone()[0])
    if sync_mode != 2 or journal.lower() != "wal":
        raise SystemExit(f"baseline is not WAL+FULL (synchronous={sync_mode}, {journal})")

    def put_range(index: int) -> None:
        for n in range(index, len(payloads), writers):
            queue.put(payloads[n])

    threads = [threading.Thread(target=put_range, args=(i,)) for i in range(writers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    count = queue.qsize()
    queue.close()
    if count != len(payloads):
        raise SystemExit(f"baseline holds {count} items, expected {len(payloads)}")
    return elapsed, sync_mode


def timed_rounds(rounds: int, fn: Callable[[Path], float]) -> list[float]:
    out = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory(prefix="cunlink-bench-") as tmp:
            out.append(fn(Path(tmp)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1500, help="cases per round (16 writers)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    args = parser.parse_args()
    cases16 = 160 if args.quick else args.cases
    cases1 = max(50, cases16 // 3)
    rounds = 1 if args.quick else args.rounds
    payloads = sample_payloads(cases16)
    size = statistics.mean(len(p) for p in payloads)
    print(f"one case = 10 events, {size:.0f} bytes encoded; {rounds} round(s); "
          f"fsync'd commits on {tempfile.gettempdir()}")
    print("baseline: persist-queue SQLiteAckQueue, journal_mode=WAL, synchronous=FULL (2)")
    results: dict[tuple[str, int], list[float]] = {}
    batches: dict[int, float] = {}
    for writers, cases in ((1, cases1), (16, cases16)):
        for _ in range(rounds):
            # Alternate the two so drift in the shared disk's speed hits both alike.
            with tempfile.TemporaryDirectory(prefix="cunlink-bench-") as tmp:
                elapsed, stats = asyncio.run(run_cunlink(Path(tmp), cases, writers))
            results.setdefault(("cunlink", writers), []).append(cases / elapsed)
            batches[writers] = stats.writes / max(1, stats.transactions)
            with tempfile.TemporaryDirectory(prefix="cunlink-bench-") as tmp:
                base_elapsed, _ = run_baseline(Path(tmp), payloads[:cases], writers)
            results.setdefault(("baseline", writers), []).append(cases / base_elapsed)
    print(f"{'writers':>7} {'cunlink cases/s':>16} {'events/s':>9} {'cases/commit':>12} "
          f"{'SQLiteAckQueue puts/s':>22} {'ratio':>6}")
    ratios = {}
    for writers in (1, 16):
        ours = statistics.median(results[("cunlink", writers)])
        base = statistics.median(results[("baseline", writers)])
        ratios[writers] = ours / base
        print(f"{writers:>7} {ours:>16.0f} {ours * 10:>9.0f} {batches[writers]:>12.1f} "
              f"{base:>22.0f} {ours / base:>5.1f}x")
    best_base = max(statistics.median(results[("baseline", w)]) for w in (1, 16))
    ours16 = statistics.median(results[("cunlink", 16)])
    print(f"16 writers vs the baseline's best configuration: {ours16 / best_base:.1f}x")
    verdict = "met" if ratios[16] >= TARGET_RATIO else "NOT met"
    print(f"target >= {TARGET_RATIO:.0f}x at 16 writers: {verdict} ({ratios[16]:.1f}x)")


if __name__ == "__main__":
    main()
