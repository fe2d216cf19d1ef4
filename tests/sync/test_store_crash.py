"""Crash safety with real processes: SIGKILL a writer at random moments, restart, count.

`crash_writer.py` writes cases through the store's public API and prints each case id only
after the store acknowledged it. After every kill the test opens the store (which runs the
integrity check and recovers the WAL) and checks that every acknowledged case is present and
intact, that no case is half-written, that the local sequence has no gaps, and that
`PRAGMA integrity_check` says ok.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sync.events import encode_events
from sync.store import Store
from tests.sync.crash_writer import STATION, blob_content, expected_case

WRITER = Path(__file__).with_name("crash_writer.py")
REPO = Path(__file__).resolve().parents[2]
KILLS = 50
TIME_BOUND_S = 75.0  # the loop stops here even if the machine is slow; then it fails below
READY_TIMEOUT_S = 15.0


def _spawn(state: Path, tag: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(WRITER), str(state), tag, "4"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def _wait_ready(proc: subprocess.Popen[bytes]) -> bool:
    assert proc.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line == b"ready\n":
            return True
        if not line:
            return False
    return False


def _acked(output: bytes) -> list[str]:
    # Only whole lines count: each was written and flushed after its case was acknowledged.
    lines = output.split(b"\n")[:-1]
    return [line.decode() for line in lines if line and line != b"ready"]


async def _check(state: Path, acked: set[str], fresh: list[str]) -> int:
    """Everything acknowledged is present and whole; returns how many cases the store holds."""
    async with await Store.open(state / "station.db", blob_dir=state / "blobs") as store:
        conn = sqlite3.connect(state / "station.db")
        try:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            counts = dict(conn.execute("SELECT case_id, count(*) FROM events GROUP BY case_id"))
        finally:
            conn.close()
        missing = acked - counts.keys()
        assert not missing, f"acknowledged cases lost after SIGKILL: {sorted(missing)[:5]}"
        for case, n in counts.items():
            assert n == len(expected_case(case)), f"case {case} is half-written ({n} events)"
        assert await store.gaps() == {}
        assert (await store.high_water()).get(STATION, 0) == sum(counts.values())
        outbox = {e.case: e for e in await store.outbox_all(limit=1_000_000)}
        assert outbox.keys() == counts.keys(), "every case held has exactly its outbox entry"
        for case in fresh:  # the newly acknowledged ones in full detail
            events = sorted(await store.events_for_case(case), key=lambda e: e.seq)
            assert [(e.type, e.body) for e in events] == expected_case(case)
            assert outbox[case].payload == encode_events(events)
            blob = blob_content(case)
            if blob is not None:
                assert store.blob_path(hashlib.sha256(blob).hexdigest()).read_bytes() == blob
    return len(counts)


@pytest.mark.slow
async def test_sigkill_loses_no_acknowledged_case(tmp_path: Path) -> None:
    rng = random.Random(20261122)
    state = tmp_path / "state"
    acked: set[str] = set()
    kills = 0
    early_kills = 0
    started = time.monotonic()
    held = 0
    while kills < KILLS and time.monotonic() - started < TIME_BOUND_S:
        proc = _spawn(state, f"R{kills}")
        if rng.random() < 0.15:
            # Now and then kill during start-up: integrity check, migrations, WAL recovery.
            await asyncio.sleep(rng.uniform(0.0, 0.4))
            early_kills += 1
        else:
            assert _wait_ready(proc), proc.stderr.read().decode() if proc.stderr else ""
            await asyncio.sleep(rng.uniform(0.01, 0.25))
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
        kills += 1
        fresh = _acked(out)
        acked.update(fresh)
        held = await _check(state, acked, fresh)
    elapsed = time.monotonic() - started
    # Kills mid-copy leave temporary blob files, and kills between storing a blob and
    # committing its case leave unreferenced ones: the sweep removes those and nothing else.
    async with await Store.open(state / "station.db", blob_dir=state / "blobs") as store:
        await store.cleanup_orphans(grace_s=0)
        left = {p.name for p in store.blob_dir.iterdir()}
        assert left == await store.referenced_blobs()
        for case in acked:
            blob = blob_content(case)
            if blob is not None:
                assert hashlib.sha256(blob).hexdigest() in left
    assert kills >= KILLS, f"only {kills} kills in {elapsed:.0f} s (machine too slow?)"
    assert len(acked) > 100, f"too few acknowledged cases ({len(acked)}) to mean anything"
    assert held >= len(acked)
    print(f"{kills} SIGKILLs ({early_kills} during start-up) in {elapsed:.1f} s; "
          f"{len(acked)} acknowledged cases, {held} held, none lost")
