"""Terminal API: case creations per second through HTTP with durable commit, and the daemon's RSS.

What is measured, in one run on the same disk:

- **API**: `POST /api/v1/cases` against a real `cunlink run` subprocess (real TLS Mosquitto up,
  hub absent, no devices), by 1 and by 16 concurrent clients (keep-alive connections); each
  201 means the case's events and its sealed outbox package were committed (fsync'd).
- **baseline**: `CaseIntake.create_case` called directly in this process on a store of its
  own beside the daemon's, with the same concurrency: the same durable work without HTTP,
  JSON, auth and the daemon's other tasks. The ratio API/baseline is the price of the API.
- **RSS** of the daemon (VmRSS from /proc): idle after start, and with a 10 000-case backlog
  (outbox full, hub absent) after the daemon has polled it and answered `/status`.

    .venv/bin/python bench/api.py            # a few minutes
    .venv/bin/python bench/api.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from gateway import wiring
from gateway.config.station import load_station_config
from gateway.keys import load_enrollment, load_identity
from gateway.runtime import open_station_store
from gateway.testbed.deployment import build
from gateway.testbed.ports import free_port
from sync.intake import CaseIntake

STATION = "ST001"
TOKEN = "bench-terminal-token-0123456789"
APPLICANT = {"id_type": "resident", "id_number": "110101199003071234", "name": "张三丰",
             "sex": "male", "nation": "汉", "address": "北京市东城区某某街道某某社区3号楼"}
FIELDS = {"reason": "低保申请", "members": 3, "income": 1200}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def timed(n: int, workers: int,
                op: Callable[[int], Awaitable[None]]) -> tuple[float, list[float]]:
    """Run op(0..n-1) on `workers` concurrent tasks; (ops per second, latencies)."""
    latencies: list[float] = []
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            started = time.perf_counter()
            await op(i)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return n / (time.perf_counter() - started), latencies


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] * 1000


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="cunlink-bench-api-"))
    county = build(root / "county", stations=(STATION,))
    results: dict[str, Any] = {}
    try:
        port = free_port()
        config = county.write_station_config(STATION, api_port=port, api_token=TOKEN)
        cfg = load_station_config(config, env={})
        daemon = county.station_daemon(STATION)
        daemon.start()
        assert daemon.proc is not None
        base = f"http://127.0.0.1:{port}/api/v1"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        connector = aiohttp.TCPConnector(limit=32)
        async with aiohttp.ClientSession(connector=connector, headers=headers) as http:

            async def up() -> bool:
                try:
                    async with http.get(f"{base}/status") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            deadline = time.monotonic() + 60
            while not await up():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the daemon did not start:\n{daemon.log_text()}")
                await asyncio.sleep(0.2)
            await asyncio.sleep(args.idle_seconds)
            results["rss_idle_kib"] = rss_kib(daemon.proc.pid)

            body = {"service": "MZ-0001", "applicant": APPLICANT, "fields": FIELDS}

            async def via_api(i: int) -> None:
                async with http.post(f"{base}/cases", json=body) as resp:
                    if resp.status != 201:
                        raise RuntimeError(f"create answered {resp.status}: {await resp.text()}")
                    await resp.read()

            # the baseline: the same intake, in-process, on its own store beside the daemon's
            base_cfg = load_station_config(config, env={
                "CUNLINK__STATION__STATE_DIR": str(root / "baseline-state")})
            identity = load_identity(cfg.keys.dir, STATION)
            hub = load_enrollment(cfg.keys.hub_enrollment).peer()
            store = await open_station_store(base_cfg)
            try:
                intake = CaseIntake(store, identity, hub, wiring.suite(cfg.keys.suite), STATION)

                async def direct(i: int) -> None:
                    await intake.create_case("MZ-0001", APPLICANT, FIELDS)

                for workers in (1, 16):
                    await timed(max(20, args.cases // 10), workers, via_api)  # warm up
                    for name, op in (("baseline", direct), ("api", via_api)):
                        rates, lats = [], []
                        for _ in range(args.rounds):
                            rate, latencies = await timed(args.cases, workers, op)
                            rates.append(rate)
                            lats += latencies
                        results[f"{name}_{workers}"] = {
                            "per_s": statistics.median(rates), "p50_ms": pct(lats, 50),
                            "p99_ms": pct(lats, 99)}
            finally:
                await store.close()

            # the backlog: cases written into the daemon's store by this process (the store
            # takes a second writer process), then the daemon polls and answers status
            daemon_store = await open_station_store(cfg)
            try:
                intake = CaseIntake(daemon_store, identity, hub, wiring.suite(cfg.keys.suite),
                                    STATION)
                have = int((await (await http.get(f"{base}/status")).json())["outbox"]["count"])

                async def fill(i: int) -> None:
                    await intake.create_case("MZ-0001", APPLICANT, FIELDS)

                await timed(max(0, args.backlog - have), 16, fill)
                # what the daemon's case counts cost it (one fold of every case), timed here
                started = time.perf_counter()
                folded = len(await daemon_store.list_cases())
                results["fold_s"] = time.perf_counter() - started
                results["folded"] = folded
            finally:
                await daemon_store.close()
            # long enough for the daemon to refold its case counts (at most 60 s old) and to
            # poll the outbox, so the RSS includes both
            await asyncio.sleep(args.settle_seconds)
            async with http.get(f"{base}/status") as resp:
                status = await resp.json()
            results["backlog"] = status["outbox"]["count"]
            results["rss_backlog_kib"] = rss_kib(daemon.proc.pid)
        daemon.terminate()
    finally:
        county.close()
    return results


def report(r: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"\ncase creations with durable commit ({args.cases} per round, median of "
          f"{args.rounds} rounds), {datetime.now(UTC):%Y-%m-%d}:")
    print(f"{'clients':>8} {'API /s':>9} {'p50 ms':>8} {'p99 ms':>8} {'direct /s':>10} "
          f"{'p50 ms':>8} {'p99 ms':>8} {'API/direct':>11}")
    for w in (1, 16):
        a, b = r[f"api_{w}"], r[f"baseline_{w}"]
        print(f"{w:>8} {a['per_s']:>9.0f} {a['p50_ms']:>8.1f} {a['p99_ms']:>8.1f} "
              f"{b['per_s']:>10.0f} {b['p50_ms']:>8.1f} {b['p99_ms']:>8.1f} "
              f"{a['per_s'] / b['per_s']:>10.2f}x")
    print(f"daemon RSS idle: {r['rss_idle_kib'] / 1024:.1f} MiB; with a {r['backlog']}-case "
          f"backlog (hub absent): {r['rss_backlog_kib'] / 1024:.1f} MiB; one fold of all "
          f"{r['folded']} cases (the status' case counts): {r['fold_s']:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds, for a smoke test")
    parser.add_argument("--cases", type=int, default=400, help="creations per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--idle-seconds", type=float, default=8.0)
    parser.add_argument("--settle-seconds", type=float, default=70.0)
    args = parser.parse_args()
    if args.quick:
        args.cases, args.rounds, args.backlog, args.idle_seconds = 40, 1, 300, 2.0
        args.settle_seconds = 6.0
    report(asyncio.run(bench(args)), args)


if __name__ == "__main__":
    main()
