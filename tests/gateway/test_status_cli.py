"""`cunlink status` against a real aiohttp server on a Unix socket serving a snapshot of the
contract's shape, and against a stopped daemon with a real store beside it."""

from __future__ import annotations

import asyncio
import copy
import json
import shutil
import socket
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from aiohttp import web
from typer.testing import CliRunner

from gateway.cli.main import app
from gateway.keys import enrollment_path, init_keys
from sync.events import EventType
from sync.store import EventDraft, OutboxPut, Store, StoreLayout

runner = CliRunner()
EN = {"LANG": "en_US.UTF-8"}
ZH = {"LANG": "zh_CN.UTF-8"}

SNAPSHOT: dict[str, Any] = {
    "station": "ST001", "software": "cunlink 0.1.0", "started_at": "2026-11-22T08:00:00Z",
    "uptime_seconds": 7384.5,
    "link": {"up": True, "since": "2026-11-22T09:00:00Z", "connects": 3, "disconnects": 2,
             "stalls": 1, "bytes_up": 123456, "bytes_down": 4500, "chunks_sent": 10,
             "chunks_resent": 1, "bytes_resent": 4096, "delivered": 5, "rejected": 0,
             "rtt_seconds": 0.8, "hub_offset_ms": -120, "last_error": ""},
    "outbox": {"count": 4, "bytes_pending": 900000, "oldest_age_seconds": 30.0,
               "by_class": {"control": 0, "events": 1, "materials": 3}, "held": 1},
    "devices": [  # DeviceHealth.as_dict() (devices/health.py)
        {"name": "idcard", "kind": "idcard", "state": "ok", "last_error": "",
         "last_error_at": None, "last_success_at": 1795000000.0, "successes": 40,
         "failures": 0, "consecutive_failures": 0, "reconnects": 0, "detail": {}},
        {"name": "printer", "kind": "printer", "state": "degraded", "last_error": "paper low",
         "last_error_at": 1795000100.0, "last_success_at": 1795000000.0, "successes": 3,
         "failures": 1, "consecutive_failures": 1, "reconnects": 0, "detail": {}},
    ],
    "disk": {"free_bytes": 1_500_000_000, "floor_bytes": 209715200},
    "cases": {"by_status": {"draft": 1, "submitted": 3}, "conflicts": 0},
    "recent_errors": [{"at": "2026-11-22T09:59:00Z", "where": "uplink",
                       "message": "connection reset by peer"}],
    "api": {"requests": 12},
}


class FakeDaemon:
    """An aiohttp app on `<state>/cunlink.sock`, in its own thread and event loop, answering
    GET /api/v1/status with `handler` (the CLI under test runs its own asyncio.run)."""

    def __init__(self, sock: Path, handler: Callable[[web.Request], Awaitable[web.Response]]):
        self.sock = sock
        self.handler = handler
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None
        self.requests: list[str] = []

    async def _start(self) -> None:
        async def handle(request: web.Request) -> web.Response:
            self.requests.append(f"{request.method} {request.path}")
            return await self.handler(request)

        application = web.Application()
        application.router.add_get("/api/v1/status", handle)
        self.runner = web.AppRunner(application)
        await self.runner.setup()
        await web.UnixSite(self.runner, str(self.sock)).start()

    def __enter__(self) -> FakeDaemon:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def snapshot_handler(snapshot: dict[str, Any]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(_: web.Request) -> web.Response:
        return web.json_response(snapshot)

    return handler


@pytest.fixture
def station() -> Iterator[Path]:
    """A station configuration whose state directory has a short path (socket limit 108)."""
    root = Path(tempfile.mkdtemp(prefix="cls-", dir="/tmp"))
    now = datetime.now(UTC)
    init_keys("station", "ST001", root / "keys", force=False, now=now)
    init_keys("hub", "HUB01", root / "hub-keys", force=False, now=now)
    config = root / "station.toml"
    config.write_text(f"""
[station]
id = "ST001"
state_dir = "{root / 'state'}"
language = "zh-CN"
[keys]
dir = "{root / 'keys'}"
hub_enrollment = "{enrollment_path(root / 'hub-keys', 'HUB01')}"
[mqtt]
host = "127.0.0.1"
tls = false
[store]
disk_floor_mb = 0
""", encoding="utf-8")
    (root / "state").mkdir()
    yield config
    shutil.rmtree(root, ignore_errors=True)


def sock_of(config: Path) -> Path:
    return config.parent / "state" / "cunlink.sock"


def test_status_of_a_running_daemon_in_english_and_chinese(station: Path) -> None:
    with FakeDaemon(sock_of(station), snapshot_handler(SNAPSHOT)) as daemon:
        en = runner.invoke(app, ["status", "--config", str(station)], env=EN)
        zh = runner.invoke(app, ["status", "--config", str(station)], env=ZH)
    assert daemon.requests == ["GET /api/v1/status"] * 2
    assert en.exit_code == 0, en.output
    assert en.stdout.splitlines() == [
        "Station ST001 - cunlink 0.1.0, running for 2h 03m (since 2026-11-22T08:00:00Z)",
        "Link:     UP since 2026-11-22T09:00:00Z; round trip 800 ms; hub clock offset -0.1 s",
        "          connects 3, disconnects 2, stalls 1; sent 120.6 KiB, received 4.4 KiB",
        "          chunks 10 (1 re-sent, 4.0 KiB); delivered 5, rejected 0",
        "Backlog:  4 packages (control 0, events 1, materials 3), 878.9 KiB to send, oldest 30s;"
        " held 1",
        "          held packages wait for a person: `cunlink outbox list --held`, then "
        "`cunlink outbox retry ID`",
        "Devices:  idcard     ok",
        "          printer    degraded paper low",
        "Disk:     1.4 GiB free (floor 200.0 MiB)",
        "Cases:    draft 1, submitted 3; conflicts 0",
        "Recent errors (newest last):",
        "          2026-11-22T09:59:00Z uplink: connection reset by peer",
    ]
    assert zh.exit_code == 0, zh.output
    assert zh.stdout.splitlines()[:2] == [
        "站点 ST001 - cunlink 0.1.0，已运行 2小时03分（自 2026-11-22T08:00:00Z）",
        "链路：    已连接，自 2026-11-22T09:00:00Z；往返时间 800 ms；与县级中心时钟偏差 -0.1 s",
    ]
    assert "设备：    idcard     正常" in zh.stdout
    assert "printer    降级     paper low" in zh.stdout


def test_json_is_the_daemons_snapshot_whatever_the_language(station: Path) -> None:
    with FakeDaemon(sock_of(station), snapshot_handler(SNAPSHOT)):
        out = [runner.invoke(app, ["status", "--config", str(station), "--json"], env=env)
               for env in (EN, ZH)]
    assert out[0].exit_code == 0 and out[0].stdout == out[1].stdout
    assert json.loads(out[0].stdout) == {"running": True, "socket": str(sock_of(station)),
                                         "status": SNAPSHOT}


def test_a_link_that_is_down_and_a_sparse_snapshot(station: Path) -> None:
    """Parts the daemon leaves out are shown as unknown instead of crashing the CLI."""
    snap = copy.deepcopy(SNAPSHOT)
    snap["link"] = {"up": False, "last_error": "TLS handshake timed out"}
    for key in ("devices", "disk", "cases", "recent_errors"):
        del snap[key]
    with FakeDaemon(sock_of(station), snapshot_handler(snap)):
        result = runner.invoke(app, ["status", "--config", str(station)], env=EN)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1] == "Link:     DOWN (reconnecting by itself)"
    assert "          connects -, disconnects -, stalls -; sent 0 B, received 0 B" in lines
    assert "          last error: TLS handshake timed out" in lines
    assert "Devices:  none enabled" in lines and "Errors:   none recently" in lines


async def _fill_store(state: Path) -> dict[str, bytes]:
    """Three undelivered packages (two event batches, one material), one of them held."""
    layout = StoreLayout.station(state)
    case = "ST001-20261122-0001"
    ids = {"batch1": bytes.fromhex("a1" * 16), "batch2": bytes.fromhex("b2" * 16),
           "blob": bytes.fromhex("c3" * 16)}
    (state / "sealed").mkdir(parents=True, exist_ok=True)
    container = state / "sealed" / "c3.pkg"
    container.write_bytes(b"\x00" * 50_000)
    async with await Store.open(layout.db, blob_dir=layout.blobs) as store:
        await store.append_local("ST001", [EventDraft(
            case=case, type=EventType.NOTE_ADDED, body={"text": "x"})], outbox=[
            OutboxPut(package_id=ids["batch1"], kind="batch", priority=1, destination="HUB01",
                      payload=b"p" * 700, size=700, case=case),
            OutboxPut(package_id=ids["batch2"], kind="batch", priority=1, destination="HUB01",
                      payload=b"q" * 300, size=300, case=case),
            OutboxPut(package_id=ids["blob"], kind="blob", priority=2, destination="HUB01",
                      path=container, size=50_000, case=case),
        ])
        await store.outbox_progress(ids["blob"], 10_000)
        await store.outbox_hold(ids["batch2"])
    return ids


def test_a_stopped_daemon_is_reported_with_the_backlog_from_the_store(station: Path) -> None:
    state = station.parent / "state"
    asyncio.run(_fill_store(state))
    before = sorted(p.name for p in state.iterdir())
    result = runner.invoke(app, ["status", "--config", str(station)], env=EN)
    assert result.exit_code == 3
    assert result.stderr.splitlines() == [
        f"The station daemon is not running: nothing answers on {sock_of(station)} "
        "(no socket file).",
        "Start it with `systemctl start cunlink`; see why it stopped with "
        "`journalctl -u cunlink -n 50`.",
    ]
    lines = result.stdout.splitlines()
    assert lines[0] == f"From the store {state / 'station.db'} (read-only):"
    assert lines[1].startswith(
        "Backlog:  3 packages (control 0, events 2, materials 1), 40.0 KiB to send, oldest ")
    assert lines[1].endswith("; held 1")
    as_json = runner.invoke(app, ["status", "--config", str(station), "--json"], env=ZH)
    assert as_json.exit_code == 3
    got = json.loads(as_json.stdout)
    assert got["running"] is False and got["reason"] == "no_socket"
    assert got["store_error"] is None
    outbox = got["outbox"]
    assert outbox.pop("oldest_age_seconds") >= 0
    assert outbox == {"count": 3, "bytes_pending": 700 + 300 + 40_000,
                      "by_class": {"control": 0, "events": 2, "materials": 1}, "held": 1}
    # Read-only for real: nothing was created beside the database.
    assert sorted(p.name for p in state.iterdir()) == before


def test_a_stale_socket_and_no_store(station: Path) -> None:
    """A socket file left by a daemon that died: connection refused, exit 3."""
    sock = sock_of(station)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(sock))  # bound, never listening, closed: the file stays behind
    assert sock.is_socket()
    result = runner.invoke(app, ["status", "--config", str(station)], env=ZH)
    assert result.exit_code == 3, result.output
    assert result.stderr.startswith("站点服务未运行：")
    assert "无法读取待发送数据：no store at" in result.stdout


def test_a_daemon_that_answers_badly_exits_1(station: Path) -> None:
    async def broken(_: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    with FakeDaemon(sock_of(station), broken):
        result = runner.invoke(app, ["status", "--config", str(station), "--json"], env=EN)
    assert result.exit_code == 1
    got = json.loads(result.stdout)
    assert got["reason"] == "bad_answer" and got["error"] == "HTTP 500: boom"


def test_a_daemon_that_does_not_answer_in_time(station: Path) -> None:
    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response(SNAPSHOT)

    with FakeDaemon(sock_of(station), slow):
        result = runner.invoke(app, ["status", "--config", str(station), "--timeout", "0.5"],
                               env=EN)
    assert result.exit_code == 1
    assert "did not answer" in result.stderr and "no answer within 0.5 s" in result.stderr


def test_missing_configuration_is_one_clear_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["status", "--config", str(tmp_path / "none.toml")], env=ZH)
    assert result.exit_code == 1
    assert result.stderr == (f"错误：找不到配置文件 {tmp_path / 'none.toml'}；请用 `cunlink init "
                             f"--config {tmp_path / 'none.toml'}` 创建，或用 --config 指定路径\n")
    bad = runner.invoke(app, ["status", "--config", str(tmp_path / "none.toml"),
                              "--lang", "fr"])
    assert bad.exit_code == 2 and "--lang: expected zh-CN or en" in bad.stderr
