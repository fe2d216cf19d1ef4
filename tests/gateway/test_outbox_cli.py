"""`cunlink outbox hold|retry ID` and `outbox list --held` on a real store, including while
the daemon's own store connection is open and writing."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli.main import app
from gateway.keys import enrollment_path, init_keys
from sync.events import EventType
from sync.store import EventDraft, OutboxPut, Store, StoreLayout

runner = CliRunner()
EN = {"LANG": "en_US.UTF-8"}
CASE_A = "ST001-20261122-0001"
CASE_B = "ST001-20261122-0002"
# Two packages share the prefix "a1b2": a 4-character prefix is ambiguous, "a1b200" is not.
P1 = bytes.fromhex("a1b2" + "00" * 14)
P2 = bytes.fromhex("a1b2" + "11" * 14)
P3 = bytes.fromhex("c3" * 16)


def _put(pid: bytes, case: str, priority: int = 1) -> OutboxPut:
    return OutboxPut(package_id=pid, kind="batch", priority=priority, destination="HUB01",
                     payload=b"x" * 100, size=100, case=case)


async def _fill(state: Path) -> None:
    layout = StoreLayout.station(state)
    async with await Store.open(layout.db, blob_dir=layout.blobs) as store:
        await store.append_local("ST001", [EventDraft(
            case=CASE_A, type=EventType.NOTE_ADDED, body={"text": "x"})],
            outbox=[_put(P1, CASE_A), _put(P2, CASE_A), _put(P3, CASE_B, 0)])


@pytest.fixture
def station(tmp_path: Path) -> Path:
    now = datetime.now(UTC)
    init_keys("station", "ST001", tmp_path / "keys", force=False, now=now)
    init_keys("hub", "HUB01", tmp_path / "hub-keys", force=False, now=now)
    config = tmp_path / "station.toml"
    config.write_text(f"""
[station]
id = "ST001"
state_dir = "{tmp_path / 'state'}"
[keys]
dir = "{tmp_path / 'keys'}"
hub_enrollment = "{enrollment_path(tmp_path / 'hub-keys', 'HUB01')}"
[mqtt]
host = "127.0.0.1"
tls = false
[store]
disk_floor_mb = 0
""", encoding="utf-8")
    asyncio.run(_fill(tmp_path / "state"))
    return config


def cli(config: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, ["outbox", *args, "--config", str(config)], env=env or EN)
    return result.exit_code, result.stdout, result.stderr


def states(config: Path) -> dict[str, str]:
    code, out, _ = cli(config, "list", "--json")
    assert code == 0
    return {e["package_id"]: e["state"] for e in json.loads(out)["entries"]}


def test_hold_and_retry_one_package_by_a_unique_prefix(station: Path) -> None:
    code, out, err = cli(station, "hold", "A1B200")  # case does not matter in hex
    assert code == 0, err
    assert out.splitlines() == [
        f"held {P1.hex()} (batch, case {CASE_A}, 100 bytes)",
        "A held package is not started until `cunlink outbox retry ID`.",
    ]
    assert states(station) == {P3.hex(): "queued", P1.hex(): "held", P2.hex(): "queued"}
    code, out, _ = cli(station, "hold", P1.hex())
    assert code == 0 and out == f"{P1.hex()} was already held\n"
    code, out, _ = cli(station, "retry", P1.hex()[:8], "--json")
    assert code == 0
    assert json.loads(out) == {"action": "retry", "changed": [P1.hex()], "unchanged": [],
                               "gone": []}
    assert set(states(station).values()) == {"queued"}


def test_a_case_number_names_all_its_packages(station: Path) -> None:
    code, out, _ = cli(station, "hold", CASE_A, "--json")
    assert code == 0
    assert json.loads(out) == {"action": "hold", "changed": [P1.hex(), P2.hex()],
                               "unchanged": [], "gone": []}
    assert states(station) == {P3.hex(): "queued", P1.hex(): "held", P2.hex(): "held"}
    code, out, _ = cli(station, "list", "--held")
    assert code == 0
    assert P1.hex() in out and P2.hex() in out and P3.hex() not in out
    code, out, _ = cli(station, "retry", CASE_A, env={"LANG": "zh_CN.UTF-8"})
    assert code == 0
    assert f"已重新排队 {P1.hex()}（batch，案件 {CASE_A}，100 字节）" in out


def test_unknown_ambiguous_and_malformed_ids_fail_clearly(station: Path) -> None:
    code, _, err = cli(station, "hold", "a1b2")
    assert code == 1
    assert err == (f"error: 2 packages start with a1b2 ({P1.hex()}, {P2.hex()}); give more "
                   "characters\n")
    code, _, err = cli(station, "retry", "ffff")
    assert code == 1 and "no undelivered package has an id starting with ffff" in err
    code, _, err = cli(station, "hold", "ST001-20261122-0009")
    assert code == 1 and "case ST001-20261122-0009 has no undelivered package" in err
    for bad in ("a1b", "hello", "ST001-2026-1"):
        code, _, err = cli(station, "hold", bad)
        assert code == 1 and "is neither a package id" in err, bad
    code, _, err = cli(station, "hold", "zzzz", env={"LANG": "zh_CN.UTF-8"})
    assert err.startswith("错误：'zzzz' 既不是包编号")
    assert set(states(station).values()) == {"queued"}  # nothing changed by any of these


def test_a_rejected_package_shows_why_and_retry_forgets_the_old_reason(station: Path) -> None:
    layout = StoreLayout.station(station.parent / "state")

    async def reject() -> None:  # what the uplink does on the hub's Reject
        async with await Store.open(layout.db, blob_dir=layout.blobs) as store:
            await store.outbox_hold(P3)
            await store.kv_put(f"reject:{P3.hex()}", b"UNKNOWN_STATION: not enrolled")

    asyncio.run(reject())
    code, out, _ = cli(station, "list", "--held")
    assert code == 0
    assert "    rejected by the hub: UNKNOWN_STATION: not enrolled" in out.splitlines()
    rows = json.loads(cli(station, "list", "--held", "--json")[1])["entries"]
    assert [(r["package_id"], r["reason"]) for r in rows] == [
        (P3.hex(), "UNKNOWN_STATION: not enrolled")]
    code, out, _ = cli(station, "retry", P3.hex())
    assert code == 0 and "rejected again unless the cause was fixed" in out
    rows = json.loads(cli(station, "list", "--json")[1])["entries"]
    assert all(r["reason"] is None for r in rows)
    code, out, _ = cli(station, "list", "--held")
    assert out == "no held packages\n"


async def test_hold_is_safe_while_the_daemon_writes_the_store(station: Path) -> None:
    layout = StoreLayout.station(station.parent / "state")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUNLINK")} | EN
    async with await Store.open(layout.db, blob_dir=layout.blobs) as daemon:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "outbox", "hold", CASE_B,
            "--config", str(station), env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        writes = 0
        for i in range(20_000):  # the daemon keeps committing meanwhile (bounded)
            await daemon.append_local("ST001", [EventDraft(
                case=CASE_A, type=EventType.NOTE_ADDED, body={"text": f"{i}"})])
            writes += 1
            if proc.returncode is not None:
                break
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 0, err.decode()
        assert writes > 1
        assert out.decode().startswith(f"held {P3.hex()}")
        # The daemon's own connection sees the change at once (what its uplink reads).
        entry = await daemon.outbox_get(P3)
        assert entry is not None and entry.state == "held"
        assert [e.package_id for e in await daemon.outbox_pending()] == [P1, P2]
