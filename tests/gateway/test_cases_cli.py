"""`cunlink cases ...` and `cunlink outbox ...` as a technician runs them: the real console
script, a real configuration, real keys and a real store."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.keys import enrollment_path, init_keys
from sync.events import EventType
from sync.store import EventDraft, Store, StoreLayout

CUNLINK = Path(sys.executable).with_name("cunlink")
APPLICANT = {"id_type": "resident_id", "id_number": "110101199003077777", "name": "张三丰",
             "sex": "男", "address": "北京市东城区某某街道某某社区"}


LANG_VARS = ("CUNLINK_LANG", "LC_ALL", "LC_MESSAGES", "LANG")


def cli(*args: str, config: Path, lang: str = "en_US.UTF-8") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CUNLINK__") and k not in LANG_VARS} | {"LANG": lang}
    return subprocess.run([str(CUNLINK), *args, "--config", str(config)], env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A station config with keys and a hub enrollment; returns the config path."""
    tmp = tmp_path_factory.mktemp("station")
    now = datetime.now(UTC)
    init_keys("station", "ST001", tmp / "keys", force=False, now=now)
    init_keys("hub", "HUB01", tmp / "hub-keys", force=False, now=now)
    config = tmp / "station.toml"
    config.write_text(f"""
[station]
id = "ST001"
state_dir = "{tmp / 'state'}"

[keys]
dir = "{tmp / 'keys'}"
hub_enrollment = "{enrollment_path(tmp / 'hub-keys', 'HUB01')}"

[mqtt]
host = "127.0.0.1"
tls = false

[store]
disk_floor_mb = 0
""", encoding="utf-8")
    (tmp / "applicant.json").write_text(json.dumps(
        {"applicant": APPLICANT, "fields": {"phone": "13812345678", "purpose": "低保申请"}},
        ensure_ascii=False), encoding="utf-8")
    (tmp / "scan.jpg").write_bytes(os.urandom(40_000))
    return config


def test_empty_station_lists_nothing_and_creates_nothing(tmp_path: Path, station: Path) -> None:
    config = tmp_path / "other.toml"
    config.write_text(station.read_text().replace(
        str(station.parent / "state"), str(tmp_path / "state")), encoding="utf-8")
    listed = cli("cases", "list", "--json", config=config)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["cases"] == []
    assert "no store yet" in listed.stderr
    stats = cli("outbox", "stats", "--json", config=config)
    assert json.loads(stats.stdout)["count"] == 0
    assert not (tmp_path / "state").exists()


def test_submit_list_show_and_outbox(station: Path) -> None:
    tmp = station.parent
    submitted = cli("cases", "submit", "--service", "SVC-DB-01", "--applicant",
                    str(tmp / "applicant.json"), "--material", str(tmp / "scan.jpg"),
                    config=station)
    assert submitted.returncode == 0, submitted.stderr
    case = submitted.stdout.strip()
    assert case.startswith("ST001-") and case.endswith("-0001")

    listed = cli("cases", "list", "--json", config=station)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)["cases"]
    assert [(r["case"], r["status"], r["materials"]) for r in rows] == [(case, "submitted", 1)]
    table = cli("cases", "list", "--status", "submitted", config=station)
    assert case in table.stdout and "1 case(s)" in table.stdout

    shown = cli("cases", "show", case, config=station)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "110101199003077777" not in text and "1101**********7777" in text
    assert "张三丰" not in text and "张**" in text
    assert "13812345678" not in text and "138****5678" in text
    assert "低保申请" in text  # not personal: shown as is
    assert "status draft -> submitted by station" in text
    assert "personal data masked" in text

    revealed = json.loads(cli("cases", "show", case, "--json", "--reveal",
                              config=station).stdout)
    assert revealed["applicant"]["id_number"] == "110101199003077777"
    assert revealed["fields"]["phone"] == "13812345678"
    assert [e["type"] for e in revealed["events"]] == [
        "case_created", "material_added", "status_changed"]
    assert revealed["conflicts"] == [] and revealed["masked"] is False

    entries = json.loads(cli("outbox", "list", "--json", config=station).stdout)["entries"]
    assert [(e["kind"], e["priority"], e["case"], e["state"]) for e in entries] == [
        ("batch", "events", case, "queued"), ("blob", "blobs", case, "queued")]
    human = cli("outbox", "stats", config=station).stdout
    assert "undelivered: 2 (events 1, blobs 1); held: 0" in human
    assert f"bytes to send: {sum(e['size'] for e in entries)}" in human

    missing = cli("cases", "show", "ST001-20000101-0001", config=station)
    assert missing.returncode == 1 and "no case" in missing.stderr


async def test_submit_is_safe_while_the_daemon_holds_the_store(station: Path) -> None:
    tmp = station.parent
    layout = StoreLayout.station(tmp / "state")
    # The daemon's store is open (and writing) while the CLI submits from another process.
    async with await Store.open(layout.db, blob_dir=layout.blobs) as daemon:
        before = set(await daemon.case_ids())
        proc = await asyncio.create_subprocess_exec(
            str(CUNLINK), "cases", "submit", "--service", "SVC-DB-01", "--applicant",
            str(tmp / "applicant.json"), "--config", str(station),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        writes = 0
        for i in range(20_000):  # keep the daemon's writer busy meanwhile (bounded)
            await daemon.append_local("ST001", [EventDraft(
                case="ST001-20000101-0001", type=EventType.NOTE_ADDED, body={"text": f"{i}"})])
            writes += 1
            if proc.returncode is not None:
                break
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 0, err.decode()
        assert writes > 1
        case = out.decode().strip()
        assert set(await daemon.case_ids()) == before | {case, "ST001-20000101-0001"}
        assert (await daemon.gaps()) == {}


def test_quarantined_store_is_reported_by_every_command(tmp_path: Path, station: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "station.db").write_bytes(b"\x00garbage, not SQLite" * 500)
    config = tmp_path / "q.toml"
    config.write_text(station.read_text().replace(str(station.parent / "state"), str(state)),
                      encoding="utf-8")
    first = cli("cases", "list", config=config)
    assert first.returncode == 1
    assert "damaged" in first.stderr and "moved aside" in first.stderr
    moved = [p.name for p in state.iterdir() if ".corrupt-" in p.name]
    assert len(moved) == 1
    # Afterwards every command warns first (the daemon starts on an empty store).
    listed = cli("cases", "list", "--json", config=config)
    assert listed.returncode == 0
    assert "warning:" in listed.stderr and moved[0] in listed.stderr
    assert json.loads(listed.stdout)["quarantine"][0]["moved_to"][0].endswith(moved[0])
