"""Durable case intake: cunlink's store (group commit) against persist-queue's SQLiteAckQueue.

One case is 10 events (created, fields, three materials, notes, submitted), about 2.3 KB as an
encoded batch. cunlink acknowledges a case only after the one transaction holding its ten
validated, indexed event rows and its outbox row (the encoded batch, which the store splices
from the bodies it packed for the rows: `Store.append_local_encoded`, as the intake uses it) is
committed with `synchronous=FULL`. The baseline is persist-queue's `SQLiteAckQueue` at its defaults
(`journal_mode=WAL`, SQLite's default `synchronous=FULL`: checked at run time), where every
`put` is one commit: equal durability. It is measured two ways on the same bytes:

- one put per case (the whole encoded batch): the queue's most favourable reading;
- one put per event (each event's encoded bytes): the same number of durable records as
  cunlink writes.

Each runs with 1, 16 and 64 concurrent writers (asyncio tasks for cunlink, threads for the
synchronous queue), interleaved in the same run on the same disk; the median of the rounds is
reported, with the disk's fsync latency (what decides how much group commit can save).

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
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from persistqueue import SQLiteAckQueue

from sync.events import Event, EventType, encode_events
from sync.ids import uuid7
from sync.store import EventDraft, OutboxPut, Store
from sync.store.store import real_wall_ms

STATION = "ST001"
HUB = "HUB01"
TARGET_RATIO = 5.0
T = TypeVar("T")


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


def outbox_for(events: list[Event], payload: bytes) -> list[OutboxPut]:
    """The case's outbox row: its encoded batch (`payload` is `encode_events(events)`, which
    the store hands over already made; intake seals these same bytes)."""
    # Time-ordered package ids (as the intake makes them) keep the outbox index append-only.
    package_id = uuid.UUID(uuid7(real_wall_ms(), os.urandom(10))).bytes
    return [OutboxPut(package_id=package_id, kind="batch", priority=1, destination=HUB,
                      payload=payload, size=len(payload), case=events[0].case)]


def sample_events(count: int) -> list[list[Event]]:
    """Each case's ten events as the store would assign them (for the baseline's bytes)."""
    return [
        [Event(id=f"01890000-0000-7000-8000-{n:06d}{i:06d}", case=d.case, origin=STATION,
               seq=n * 10 + i + 1, hlc=(1_790_000_000_000 << 16) + i, type=d.type,
               body=d.body)
         for i, d in enumerate(case_drafts(n))]
        for n in range(count)
    ]


async def run_cunlink(directory: Path, cases: int, writers: int) -> tuple[float, float, Any]:
    """(seconds, process CPU seconds, writer stats) for `cases` cases from `writers` tasks."""
    store = await Store.open(directory / "bench.db", blob_dir=directory / "blobs")
    drafts = [case_drafts(n) for n in range(cases)]

    async def writer(index: int) -> None:
        for n in range(index, cases, writers):
            await store.append_local_encoded(STATION, drafts[n], outbox_for)

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(writer(i) for i in range(writers)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    stats = store.writer_stats
    async with store:
        held = len(await store.case_ids())
    if held != cases:
        raise SystemExit(f"cunlink stored {held} cases, expected {cases}")
    return elapsed, cpu, stats


def run_baseline(directory: Path, items: list[bytes], writers: int) -> tuple[float, float]:
    """(seconds, process CPU seconds) for `writers` threads to put `items` durably, one put
    (one commit) each."""
    queue = SQLiteAckQueue(str(directory / "pq"), multithreading=True, auto_commit=True)
    sync_mode = int(queue._putter.execute("PRAGMA synchronous").fetchone()[0])
    journal = str(queue._putter.execute("PRAGMA journal_mode").fetchone()[0])
    if sync_mode != 2 or journal.lower() != "wal":
        raise SystemExit(f"baseline is not WAL+FULL (synchronous={sync_mode}, {journal})")

    def put_range(index: int) -> None:
        for n in range(index, len(items), writers):
            queue.put(items[n])

    threads = [threading.Thread(target=put_range, args=(i,)) for i in range(writers)]
    started, cpu = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    count = queue.qsize()
    queue.close()
    if count != len(items):
        raise SystemExit(f"baseline holds {count} items, expected {len(items)}")
    return elapsed, cpu


def fsync_ms(directory: Path, count: int = 100) -> float:
    """Median latency of a 4 KiB write + fsync here: what one durable commit costs at least."""
    times = []
    with open(directory / "probe", "wb") as fh:
        for _ in range(count):
            started = time.perf_counter()
            fh.write(os.urandom(4096))
            fh.flush()
            os.fsync(fh.fileno())
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def in_tmp(fn: Callable[[Path], T]) -> T:
    with tempfile.TemporaryDirectory(prefix="cunlink-bench-") as tmp:
        return fn(Path(tmp))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cases", type=int, default=4000, help="cases per round (16 writers)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    n16 = 160 if args.quick else args.cases
    sizes = {  # (cunlink cases, baseline per-case puts, baseline per-event cases) per round
        1: (max(40, n16 // 5), max(80, n16 // 2), max(20, n16 // 10)),
        16: (n16, n16, max(20, n16 // 5)),
        64: (n16, n16, max(20, n16 // 5)),
    }
    events = sample_events(n16)
    per_case = [encode_events(evs) for evs in events]
    per_event = [[encode_events([e]) for e in evs] for evs in events]
    print(f"one case = 10 events = {statistics.mean(map(len, per_case)):.0f} bytes encoded; "
          f"{rounds} round(s); disk fsync (4 KiB) median "
          f"{in_tmp(fsync_ms):.2f} ms in {tempfile.gettempdir()}")
    print("baseline: persist-queue SQLiteAckQueue, journal_mode=WAL, synchronous=FULL (checked), "
          "one put = one commit")
    rates: dict[tuple[str, int], list[float]] = {}
    cpus: dict[tuple[str, int], list[float]] = {}  # process CPU microseconds per case
    per_commit: dict[int, float] = {}
    for _ in range(rounds):
        for writers, (ours_n, case_n, event_n) in sizes.items():
            # Interleaved, so drift in the shared machine's speed hits all three alike.
            elapsed, cpu, stats = in_tmp(lambda d, w=writers, n=ours_n: asyncio.run(
                run_cunlink(d, n, w)))
            rates.setdefault(("cunlink", writers), []).append(ours_n / elapsed)
            cpus.setdefault(("cunlink", writers), []).append(cpu / ours_n * 1e6)
            per_commit[writers] = stats.writes / max(1, stats.transactions)
            elapsed, cpu = in_tmp(lambda d, w=writers, n=case_n: run_baseline(
                d, per_case[:n], w))
            rates.setdefault(("per case", writers), []).append(case_n / elapsed)
            cpus.setdefault(("per case", writers), []).append(cpu / case_n * 1e6)
            items = [b for evs in per_event[:event_n] for b in evs]
            elapsed, cpu = in_tmp(lambda d, w=writers, i=items: run_baseline(d, i, w))
            rates.setdefault(("per event", writers), []).append(event_n / elapsed)
            cpus.setdefault(("per event", writers), []).append(cpu / event_n * 1e6)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print()
    print("durable cases per second (median of rounds); ratio = cunlink / baseline")
    print(f"{'writers':>7} {'cunlink':>8} {'cases/commit':>12} | {'queue, 1 put/case':>17} "
          f"{'ratio':>6} | {'queue, 1 put/event':>18} {'ratio':>6}")
    for writers in sizes:
        ours = med[("cunlink", writers)]
        a, b = med[("per case", writers)], med[("per event", writers)]
        print(f"{writers:>7} {ours:>8.0f} {per_commit[writers]:>12.1f} | {a:>17.0f} "
              f"{ours / a:>5.1f}x | {b:>18.0f} {ours / b:>5.1f}x")
    cpu = {k: statistics.median(v) for k, v in cpus.items()}
    print("process CPU per durable case, 16 writers (user + system, incl. fsync): "
          f"cunlink {cpu[('cunlink', 16)]:.0f} µs, queue 1 put/case "
          f"{cpu[('per case', 16)]:.0f} µs, queue 1 put/event {cpu[('per event', 16)]:.0f} µs")
    ours16 = med[("cunlink", 16)]
    best_case = max(med[("per case", w)] for w in sizes)
    best_event = max(med[("per event", w)] for w in sizes)
    print(f"16 writers against the queue's best writer count: {ours16 / best_case:.1f}x "
          f"(1 put/case), {ours16 / best_event:.1f}x (1 put/event)")
    for label, base in (("1 put/case", med[("per case", 16)]),
                        ("1 put/event", med[("per event", 16)])):
        verdict = "met" if ours16 / base >= TARGET_RATIO else "NOT met"
        print(f"target >= {TARGET_RATIO:.0f}x at 16 writers vs {label}: {verdict} "
              f"({ours16 / base:.1f}x)")


if __name__ == "__main__":
    main()
