"""Smoke test of bench/link.py: both systems on a tiny workload over the scaled 2G link.

Real parts as in the benchmark (Mosquitto with TLS, hub and station daemons, the bridge); only
the workload is small, so that this stays well under half a minute.
"""

from __future__ import annotations

import random
from pathlib import Path

from bench.link import Workload, run_bridge, run_cunlink, table, verdict
from gateway.testbed.linksim import LinkProfile


async def test_both_systems_deliver_a_small_workload_and_the_table_says_so(
    tmp_path: Path,
) -> None:
    profile = LinkProfile.gprs_2g()
    workload = Workload(name="smoke", cases=3, size=4_000, time_limit=20)
    rng = random.Random(5)
    payloads = [rng.randbytes(workload.size) for _ in range(workload.cases)]

    cunlink = await run_cunlink(workload, payloads, profile, seed=5, root=tmp_path / "cl")
    assert (cunlink.delivered, cunlink.lost, cunlink.duplicated) == (3, 0, 0)
    assert cunlink.finished and 0 < cunlink.seconds < workload.time_limit
    assert cunlink.payload_bytes == 3 * 4_000
    # each case also carries its events (form, material record, submission): a few hundred B
    assert 3 * 4_000 + 3 * 200 < cunlink.case_bytes < 3 * 4_000 + 3 * 2_000
    # Everything crossed the link: the payload plus the sealing and protocol overhead.
    assert cunlink.link_bytes_up > cunlink.payload_bytes
    assert cunlink.chunks_resent is not None and cunlink.bytes_resent is not None
    # ... and the hub's count of what crossed the link twice, from its "hub totals" line.
    assert cunlink.hub_dup_chunks is not None and cunlink.hub_dup_bytes is not None

    bridge = await run_bridge(payloads, profile, seed=5, time_limit=15, root=tmp_path / "br")
    assert bridge.delivered + bridge.lost == 3 and bridge.chunks_resent is None
    assert bridge.hub_dup_chunks is None

    lines = table(workload, cunlink, bridge, profile.up_rate or 1.0)
    text = "\n".join(lines + verdict(cunlink, profile.up_rate or 1.0))
    assert lines[0].startswith("smoke: 3 cases x 4,000 B")
    assert any(line.split()[:2] == ["delivered", "3"] for line in lines[2:]), text
    assert "everything delivered exactly once" in text and "goodput" in text
    assert "goodput, whole cases" in text and "goodput on scans only" in text
    assert "hub: chunks received twice per failure" in text and "counted at the hub" in text
