"""The process `test_store_crash.py` kills: writes cases through the store's public API forever.

    python tests/sync/crash_writer.py STATE_DIR RUN_TAG [WRITERS]

Prints `ready` once the store is open, then one line per case *after* `append_local_sealed`
returned (the case is acknowledged as durable), flushing each line at once so that whatever the
test reads was acknowledged before the SIGKILL landed. Every third case also carries a material
blob. Case contents are a pure function of the case id (`expected_case`), so the test can check
that every acknowledged case is present and intact.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from sync.events import Event, EventType, encode_events
from sync.ids import uuid7
from sync.store import EventDraft, OutboxPut, Store

STATION = "ST001"
HUB = "HUB01"
MAX_CASES_PER_WRITER = 100_000  # a bound: the test kills us long before


def blob_content(case: str) -> bytes | None:
    """Every third case has a material (varying size, up to ~48 KiB)."""
    n = int(case.rsplit("-", 1)[1])
    if n % 3:
        return None
    return hashlib.sha256(case.encode()).digest() * (64 + 64 * (n % 24))


def expected_case(case: str) -> list[tuple[EventType, dict[str, Any]]]:
    """The (type, body) of each event of `case`, in the order they were drafted."""
    events: list[tuple[EventType, dict[str, Any]]] = [(EventType.CASE_CREATED, {
        "service": "SVC-CRASH",
        "applicant": {"id_type": "resident_id", "id_number": "11010119900307" + case[-4:],
                      "name": "测试" + case, "sex": "女"},
        "fields": {"case_echo": case, "note": "x" * (len(case) * 7)},
    })]
    for i in range(3):
        events.append((EventType.FIELD_SET, {"name": f"f{i}", "value": f"{case}/{i}"}))
    blob = blob_content(case)
    if blob is not None:
        events.append((EventType.MATERIAL_ADDED, {
            "sha256": hashlib.sha256(blob).hexdigest(), "kind": "scan", "pages": 1,
            "size": len(blob), "mime": "image/jpeg",
        }))
    events.append((EventType.NOTE_ADDED, {"text": f"end of {case}"}))
    return events


def seal_for(case: str) -> Any:
    def seal(events: list[Event]) -> list[OutboxPut]:
        payload = encode_events(events)
        pid = uuid.UUID(uuid7(1_790_000_000_000, os.urandom(10))).bytes
        return [OutboxPut(package_id=pid, kind="batch", priority=1, destination=HUB,
                          payload=payload, size=len(payload), case=case)]

    return seal


async def writer(store: Store, tag: str, index: int, scratch: Path) -> None:
    for n in range(MAX_CASES_PER_WRITER):
        case = f"{tag}-{index}-{n}"
        blob = blob_content(case)
        if blob is not None:
            src = scratch / f"{case}.jpg"
            src.write_bytes(blob)
            await store.put_blob_file(src)
            src.unlink()
        drafts = [EventDraft(case=case, type=t, body=b) for t, b in expected_case(case)]
        await store.append_local_sealed(STATION, drafts, seal_for(case))
        sys.stdout.write(case + "\n")
        sys.stdout.flush()


async def main() -> None:
    state = Path(sys.argv[1])
    tag = sys.argv[2]
    writers = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    scratch = state / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    store = await Store.open(state / "station.db", blob_dir=state / "blobs", window_ms=1.0)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.gather(*(writer(store, tag, i, scratch) for i in range(writers)))


if __name__ == "__main__":
    asyncio.run(main())
