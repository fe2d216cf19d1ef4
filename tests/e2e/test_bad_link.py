"""Cases cross a link that is cut every few seconds, with silent stalls, while the hub, the
station and the broker are each killed with SIGKILL mid-transfer and restarted."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.testbed.deployment import Deployment, build
from gateway.testbed.linksim import LinkProfile, LinkSimulator
from tests.e2e.test_replication import all_arrived, hub_cases, submit

TRANSFER = {"chunk_min_bytes": 4096, "chunk_max_bytes": 16384, "chunk_target_seconds": 0.5,
            "stall_timeout_seconds": 5, "backoff_initial_seconds": 0.2,
            "backoff_max_seconds": 1.0, "outbox_poll_seconds": 0.2}


@pytest.fixture
async def county(tmp_path: Path) -> AsyncIterator[Deployment]:
    deployment = await asyncio.to_thread(build, tmp_path / "county", stations=("ST001",),
                                         transfer=TRANSFER)
    try:
        yield deployment
    finally:
        await asyncio.to_thread(deployment.close)


async def wait_arrived(county: Deployment, expected: dict[str, str], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await asyncio.to_thread(all_arrived, county, expected):
            return True
        await asyncio.sleep(1)
    return False


async def test_exactly_once_through_cuts_stalls_and_kills(county: Deployment,
                                                          tmp_path: Path) -> None:
    profile = LinkProfile(up_rate=60_000, down_rate=60_000, latency=0.05, cut_every=3.0,
                          cut_jitter=0.3, stall_share=0.34, stall_for=1.5, down_for=0.2)
    async with LinkSimulator("127.0.0.1", county.broker.port, profile, seed=11) as link:
        county.write_station_config("ST001", port=link.port, transfer=TRANSFER)
        hub = county.hub_daemon()
        hub.start()
        station = county.station_daemon("ST001")
        station.start()
        expected = await asyncio.to_thread(submit, county, tmp_path, 4, 120_000)

        await asyncio.sleep(3)
        hub.kill()  # mid-transfer: received chunks are on disk, commits in the store
        await asyncio.sleep(1)
        hub.start()
        await asyncio.sleep(3)
        station.kill()  # the outbox is durable; the in-memory transfer state is not needed
        await asyncio.sleep(0.5)
        station.start()
        await asyncio.sleep(3)
        await county.broker.arestart(hard=True)  # SIGKILL, then the same port and data

        arrived = await wait_arrived(county, expected, within=150)
        logs = station.log_text()[-4000:] + hub.log_text()[-4000:]
        assert arrived, logs
        rows = await asyncio.to_thread(hub_cases, county)
        cases = [str(r["case"]) for r in rows]
        assert sorted(cases) == sorted(expected)  # nothing lost, nothing twice
        for row in rows:  # each material exactly once, with the submitted hash
            materials = row["materials"]
            assert isinstance(materials, list) and len(materials) == 1
            assert materials[0]["sha256"] == expected[str(row["case"])]
        stats = link.stats
        assert stats.cuts + stats.stalls >= 3, stats  # the link really was bad

        def drained() -> bool:
            out = county.cli("outbox", "stats", "--config",
                             str(county.station_configs["ST001"]), "--json")
            return out.returncode == 0 and json.loads(out.stdout)["count"] == 0

        deadline = time.monotonic() + 60
        while not await asyncio.to_thread(drained):
            assert time.monotonic() < deadline, station.log_text()[-3000:]
            await asyncio.sleep(1)
