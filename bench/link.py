"""cunlink against a Mosquitto bridge over the same simulated 2G link (issue #4's benchmark).

    .venv/bin/python bench/link.py [--quick] [--seed 1] [--keep DIR] [--no-unbundled]

For each workload (20 cases of ~450 KB, then 200 cases of ~4 KB; `--quick`: 1 and 20) and each
system, one run over `LinkProfile.gprs_2g()` with the same seed, hence the same sequence of
up-periods, cuts and silent stalls counted from the system's first connection:

(a) cunlink: Mosquitto (TLS, ACL), `cunlink hub run` and `cunlink run` as real subprocesses; the
    station's broker connection crosses the link simulator. The cases are a backlog: accepted
    into the station's store the way `cunlink cases submit` does it (`CaseIntake.create_case`)
    before the station daemon starts; the clock starts at its first connection through the link
    and stops when its outbox is empty (every package acknowledged after the hub's commit);
    "delivered" means the hub lists the case with the material's SHA-256. Re-sends are counted
    at both ends, each from the daemon's own counters as it logs them when it stops:
    - at the hub ("hub totals", `HubStats.duplicate_chunks/_bytes`): chunks that reached the
      hub holding bytes it already had (overlapping the package's received ranges, or any chunk
      of an already committed package), and those bytes. This is what crossed the link twice,
      what a metered link bills twice; the target "<= 1 chunk re-sent per cut" is checked on it.
      One hub worker runs, so the count is exact (with several it would be a lower bound);
    - at the station ("link totals", `LinkStats.chunks_resent/bytes_resent`): chunks handed to
      the socket a second time. Many of those sat in the station's socket buffer or the
      simulated modem queue at the cut and never crossed the link; they cost time, not radio.
    Bytes lost in chunks cut mid-way are not reported: the link simulator sees TLS records, so
    telling the tail of a cut chunk from handshakes and TLS/MQTT framing would take a model of
    the framing, i.e. a guess. They are inside "non-payload bytes per failure".
(b) the bridge: bench/bridge_baseline.py (a station Mosquitto bridged to the county broker,
    cleansession false, QoS 1, persistence on), each material as one QoS 1 message handed to the
    station's Mosquitto in a burst once the bridge is connected; the clock starts at the first.
    It gets as long as cunlink needed for the same workload plus 10 s (within the workload's
    limit).

(c) cunlink with `bundle_small_packages = false` (every sealed package on its own, as before
    bundles existed), on the small-case workload only (bundles change nothing for 450 KB scans):
    what send-time bundling buys, measured in the same run. `--no-unbundled` skips it.

Goodput = payload bytes delivered / (link rate x seconds the link was up), read two ways:
- materials only: the scans' bytes. The bridge carries nothing else, so this is the like-for-
  like comparison; for cunlink it counts each case's form and event log as overhead.
- whole case: the scans plus each delivered case's events as the station stores them (the
  encoded event batch: the form with the applicant, the material records, the submission; about
  450 bytes a case here). That is the case the county receives, and what the issue's target
  ("goodput >= 0.8") is checked on; both figures are printed and recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python bench/link.py` from a clone

from bench.bridge_baseline import run_bridge_baseline
from gateway.testbed.deployment import Daemon, Deployment, build, wait_for
from gateway.testbed.linksim import LinkProfile, LinkSimulator

STATION = "ST001"
APPLICANT = {"id_type": "resident", "id_number": "11010519491231002X", "name": "测试甲",
             "sex": "female"}
# The transfer settings of the scaled demo (gateway/demo.py): the link is ~12x faster than a
# real 2G link, so the time-based settings are ~12x shorter than the shipped defaults.
TRANSFER: dict[str, object] = {
    "chunk_min_bytes": 4096, "chunk_max_bytes": 32768, "chunk_target_seconds": 0.5,
    "window": 3, "stall_timeout_seconds": 5, "backoff_initial_seconds": 0.2,
    "backoff_max_seconds": 2.0, "outbox_poll_seconds": 0.2,
}
_TOTALS = re.compile(r"link totals: (\{.*\})")
_HUB_TOTALS = re.compile(r"hub totals: (\{.*\})")


@dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    name: str
    cases: int
    size: int  # material bytes per case
    time_limit: float  # seconds for cunlink; the bridge gets cunlink's time + 10 s within it


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """One system on one workload."""

    delivered: int
    lost: int
    duplicated: int
    seconds: float  # first case handed over -> all delivered, or the time limit
    finished: bool
    link_up_seconds: float
    payload_bytes: int  # material bytes delivered
    case_bytes: int = 0  # material bytes + the encoded events of the delivered cases
    link_bytes_up: int  # station -> hub bytes that crossed the link in that time
    failures: int  # cuts + stalls in that time
    # cunlink only, from the daemons' own counters:
    chunks_resent: int | None = None  # station: chunks handed to the socket a second time
    bytes_resent: int | None = None
    hub_dup_chunks: int | None = None  # hub: chunks that reached it with bytes it already held
    hub_dup_bytes: int | None = None  # ... and those bytes: what crossed the link twice

    def goodput(self, rate: float) -> float:
        """Materials only."""
        return self.payload_bytes / (rate * self.link_up_seconds) if self.link_up_seconds else 0.0

    def case_goodput(self, rate: float) -> float:
        """Whole cases: materials and the events that make up each case."""
        return self.case_bytes / (rate * self.link_up_seconds) if self.link_up_seconds else 0.0

    def busy(self, rate: float) -> float:
        """Share of the link's up-time spent carrying station -> hub bytes of any kind; the
        rest it stood idle (handshakes' round trips, waits for answers)."""
        return self.link_bytes_up / (rate * self.link_up_seconds) if self.link_up_seconds else 0.0

    def overhead_per_failure(self) -> float | None:
        """Link bytes that were not delivered payload (protocol, handshakes, re-sends) per
        failure: the only re-send figure measurable the same way for both systems."""
        if not self.failures:
            return None
        return (self.link_bytes_up - self.payload_bytes) / self.failures


# -- cunlink ---------------------------------------------------------------------------------------


async def run_cunlink(workload: Workload, payloads: Sequence[bytes], profile: LinkProfile, *,
                      seed: int, root: Path, bundle: bool = True) -> Outcome:
    transfer = {**TRANSFER, "bundle_small_packages": bundle}
    county = await asyncio.to_thread(build, root, stations=(STATION,), transfer=transfer)
    try:
        async with LinkSimulator("127.0.0.1", county.broker.port, profile, seed=seed) as link:
            county.write_station_config(STATION, port=link.port, transfer=transfer)
            hub, station = county.hub_daemon(), county.station_daemon(STATION)
            hub.start()
            up = await asyncio.to_thread(
                wait_for, lambda: "hub connected" in hub.log_text(), timeout=60)
            if not up:
                raise RuntimeError(f"the hub did not connect:\n{hub.log_text()[-3000:]}")
            outcome = await _cunlink_measure(county, station, link, workload, payloads, root)
            await asyncio.to_thread(hub.terminate)
        hub_totals = _logged_totals(hub, _HUB_TOTALS, "hub totals")
        return dataclasses.replace(outcome,
                                   hub_dup_chunks=int(hub_totals.get("duplicate_chunks", 0)),
                                   hub_dup_bytes=int(hub_totals.get("duplicate_bytes", 0)))
    finally:
        await asyncio.to_thread(county.close)


async def _cunlink_measure(county: Deployment, station: Daemon, link: LinkSimulator,
                           workload: Workload, payloads: Sequence[bytes], root: Path) -> Outcome:
    from gateway.cli.cases_cmd import open_store
    from gateway.config import load_station_config
    from gateway.keys import load_enrollment, load_identity
    from gateway.wiring import suite
    from sync.events import encode_events
    from sync.intake import CaseIntake

    cfg = load_station_config(county.station_configs[STATION])
    files = root / "materials"
    files.mkdir(exist_ok=True)
    paths = []
    for index, payload in enumerate(payloads):  # written before the clock starts
        path = files / f"scan{index:04d}.jpg"
        path.write_bytes(payload)
        paths.append(path)
    expected: dict[str, str] = {}
    case_sizes: dict[str, int] = {}  # case -> its scan + its encoded events
    store = await open_store(cfg)
    try:
        intake = CaseIntake(store, load_identity(cfg.keys.dir, STATION),
                            load_enrollment(cfg.keys.hub_enrollment).peer(),
                            suite(cfg.keys.suite), STATION)
        for path, payload in zip(paths, payloads, strict=True):
            case = await intake.create_case("MZ-0001", APPLICANT, {}, [path], submit=True)
            expected[case] = hashlib.sha256(payload).hexdigest()
            events = encode_events(await store.events_for_case(case))
            case_sizes[case] = len(payload) + len(events)
        # The clock starts at the station's first connection through the link (so it includes
        # one TCP + TLS + MQTT handshake, which the bridge's figure does not).
        station.start()
        deadline = time.monotonic() + 60
        while link.stats.connections == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if link.stats.connections == 0:
            raise RuntimeError(f"the station never connected:\n{station.log_text()[-3000:]}")
        start, before = time.monotonic(), link.stats
        deadline = start + workload.time_limit
        finished = False
        while time.monotonic() < deadline:
            if (await store.outbox_stats()).count == 0:
                finished = True
                break
            await asyncio.sleep(0.1)
        seconds, after = time.monotonic() - start, link.stats
    finally:
        await store.close()
    await asyncio.to_thread(station.terminate)
    totals = _logged_totals(station, _TOTALS, "link totals")
    rows = await asyncio.to_thread(_hub_cases, county)
    delivered, duplicated = _count_delivered(rows, expected)
    arrived = {str(row["case"]) for row in rows  # with its scan, as the hub verified it
               if any(m["sha256"] == expected.get(str(row["case"])) and m["received"]
                      for m in row["materials"])}
    return Outcome(
        delivered=delivered, lost=len(expected) - delivered, duplicated=duplicated,
        seconds=seconds, finished=finished,
        link_up_seconds=after.link_up_seconds - before.link_up_seconds,
        payload_bytes=delivered * workload.size,
        case_bytes=sum(size for case, size in case_sizes.items() if case in arrived),
        link_bytes_up=after.bytes_up - before.bytes_up,
        failures=after.cuts + after.stalls - before.cuts - before.stalls,
        chunks_resent=int(totals.get("chunks_resent", 0)),
        bytes_resent=int(totals.get("bytes_resent", 0)),
    )


def _logged_totals(daemon: Daemon, pattern: re.Pattern[str], what: str) -> dict[str, Any]:
    """The counters a daemon logs as one JSON line when it stops ("link totals", "hub totals")."""
    found = pattern.findall(daemon.log_text())
    if not found:
        raise RuntimeError(f"no '{what}' line logged on stopping:\n" + daemon.log_text()[-3000:])
    totals: dict[str, Any] = json.loads(found[-1])
    return totals


def _hub_cases(county: Deployment) -> list[dict[str, Any]]:
    out = county.cli("hub", "cases", "--config", str(county.hub_config), "--json", timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"`cunlink hub cases` failed: {out.stderr}")
    rows: list[dict[str, Any]] = json.loads(out.stdout)
    return rows


def _count_delivered(rows: Sequence[dict[str, Any]],
                     expected: dict[str, str]) -> tuple[int, int]:
    """(cases the hub holds with the right material, extra copies of cases or materials)."""
    seen: dict[str, int] = {}
    delivered = duplicated = 0
    for row in rows:
        case = str(row["case"])
        seen[case] = seen.get(case, 0) + 1
        sha = expected.get(case)
        matching = [m for m in row["materials"] if m["sha256"] == sha and m["received"]]
        duplicated += max(0, len(matching) - 1)
        if matching and seen[case] == 1:
            delivered += 1
    duplicated += sum(n - 1 for n in seen.values())
    return delivered, duplicated


# -- the bridge ------------------------------------------------------------------------------------


async def run_bridge(payloads: Sequence[bytes], profile: LinkProfile, *, seed: int,
                     time_limit: float, root: Path) -> Outcome:
    await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)
    result = await run_bridge_baseline(payloads, profile, seed=seed, time_limit=time_limit,
                                       workdir=root)
    return Outcome(
        delivered=result.delivered, lost=result.lost, duplicated=result.duplicated,
        seconds=result.seconds, finished=result.lost == 0,
        link_up_seconds=result.link_up_seconds, payload_bytes=result.payload_bytes,
        case_bytes=result.payload_bytes,  # the bridge carries the scans and nothing else
        link_bytes_up=result.bytes_sent_over_link, failures=result.cuts + result.stalls,
    )


_NO_BRIDGE = Outcome(delivered=0, lost=0, duplicated=0, seconds=0.0, finished=False,
                     link_up_seconds=0.0, payload_bytes=0, link_bytes_up=0, failures=0)


# -- the report ------------------------------------------------------------------------------------


def _fmt(value: float | int | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def _ratio(a: float | int | None, b: float | int | None) -> str:
    if a is None or b is None:
        return "—"
    if b == 0:
        return "—" if a == 0 else "∞"
    return f"{a / b:.2f}"


def table(workload: Workload, cl: Outcome, br: Outcome, rate: float,
          unbundled: Outcome | None = None) -> list[str]:
    """The side-by-side figures: cunlink, the bridge, their ratio, and (when measured) cunlink
    without bundles."""
    def per(value: int | None, o: Outcome) -> float | None:
        return None if value is None or not o.failures else value / o.failures

    def time_text(o: Outcome) -> str:
        return f"{o.seconds:.1f}" + ("" if o.finished else " (limit)")

    def figures(o: Outcome) -> list[str]:
        return [
            _fmt(o.delivered), _fmt(o.lost), _fmt(o.duplicated), time_text(o),
            _fmt(o.link_up_seconds, 1), _fmt(o.failures), _fmt(o.payload_bytes / 1000, 0),
            _fmt(o.case_bytes / 1000, 0), _fmt(o.link_bytes_up / 1000, 0),
            f"{o.busy(rate):.2f}", f"{o.goodput(rate):.2f}", f"{o.case_goodput(rate):.2f}",
            _fmt(o.overhead_per_failure()), _fmt(per(o.hub_dup_chunks, o), 2),
            _fmt(per(o.hub_dup_bytes, o)), _fmt(per(o.chunks_resent, o), 2),
            _fmt(per(o.bytes_resent, o)),
        ]

    def ratios() -> list[str]:
        return [
            _ratio(cl.delivered, br.delivered), _ratio(cl.lost, br.lost),
            _ratio(cl.duplicated, br.duplicated),
            _ratio(cl.seconds, br.seconds) if cl.finished and br.finished else "—",
            _ratio(cl.link_up_seconds, br.link_up_seconds), _ratio(cl.failures, br.failures),
            _ratio(cl.payload_bytes, br.payload_bytes), _ratio(cl.case_bytes, br.case_bytes),
            _ratio(cl.link_bytes_up, br.link_bytes_up), _ratio(cl.busy(rate), br.busy(rate)),
            _ratio(cl.goodput(rate), br.goodput(rate)),
            _ratio(cl.case_goodput(rate), br.case_goodput(rate)),
            _ratio(cl.overhead_per_failure(), br.overhead_per_failure()),
            "—", "—", "—", "—",
        ]

    labels = [
        "delivered", "lost", "duplicated", "time to deliver all, s", "link up, s",
        "cuts + stalls", "payload delivered, KB (scans)",
        "whole cases delivered, KB (scans + events)", "bytes up the link, KB",
        "link busy (bytes up / capacity)", "goodput, scans only (of link capacity)",
        "goodput, whole cases (of link capacity)", "non-payload bytes per failure",
        "hub: chunks received twice per failure", "hub: bytes received twice per failure",
        "station: chunks re-queued per failure", "station: bytes re-queued per failure",
    ]
    columns = [figures(cl), figures(br), ratios()]
    heads = ["cunlink", "bridge", "cunlink/bridge"]
    if unbundled is not None:
        columns.append(figures(unbundled))
        heads.append("no bundles")
    for column in columns[1:2]:  # the bridge has no hub or station counters
        column[13:] = ["—"] * 4
    width = max(len(label) for label in labels)
    out = [f"{workload.name}: {workload.cases} cases x {workload.size:,} B of material",
           f"  {'':{width}}" + "".join(f"  {h:>14}" for h in heads)]
    out += [f"  {label:{width}}" + "".join(f"  {c[i]:>14}" for c in columns)
            for i, label in enumerate(labels)]
    return out


def verdict(cl: Outcome, rate: float) -> list[str]:
    chunks = (None if cl.hub_dup_chunks is None or not cl.failures
              else cl.hub_dup_chunks / cl.failures)
    checks = [
        ("everything delivered exactly once", cl.lost == 0 and cl.duplicated == 0),
        (f"goodput >= 0.8 on whole cases (measured {cl.case_goodput(rate):.2f})",
         cl.case_goodput(rate) >= 0.8),
        ("<= 1 chunk re-sent per failure, counted at the hub: chunks that crossed the link "
         f"twice (measured {_fmt(chunks, 2)})", chunks is None or chunks <= 1.0),
    ]
    lines = [f"  cunlink target: {'met   ' if ok else 'MISSED'} {text}" for text, ok in checks]
    lines.append(f"  (goodput on scans only, events counted as overhead: {cl.goodput(rate):.2f})")
    return lines


async def main_async(args: argparse.Namespace) -> int:
    profile = LinkProfile.gprs_2g()
    rate = profile.up_rate or 1.0
    if args.quick:
        workloads = [Workload(name="large", cases=1, size=450_000, time_limit=30),
                     Workload(name="small", cases=20, size=4_000, time_limit=30)]
    else:
        workloads = [Workload(name="large", cases=20, size=450_000, time_limit=300),
                     Workload(name="small", cases=200, size=4_000, time_limit=120)]
    if args.only:
        workloads = [w for w in workloads if w.name == args.only]
    if args.cases:
        workloads = [Workload(name=w.name, cases=args.cases, size=w.size,
                              time_limit=w.time_limit) for w in workloads]
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="cunlink-bench-"))
    started = time.monotonic()
    print(f"bench/link.py: cunlink vs a Mosquitto bridge over LinkProfile.gprs_2g() "
          f"({rate:,.0f} B/s up, {profile.latency * 1000:.0f} ms one way, a failure every "
          f"~{profile.cut_every} s +-{profile.cut_jitter:.0%}, {profile.stall_share:.0%} of them "
          f"silent {profile.stall_for} s stalls), seed {args.seed}; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    all_met = True
    try:
        for workload in workloads:
            rng = random.Random(f"{args.seed}-{workload.name}")
            payloads = [rng.randbytes(workload.size) for _ in range(workload.cases)]
            cl = await run_cunlink(workload, payloads, profile, seed=args.seed,
                                   root=base / f"{workload.name}-cunlink")
            unbundled = None
            if workload.size < 64_000 and not args.no_unbundled:
                unbundled = await run_cunlink(workload, payloads, profile, seed=args.seed,
                                              root=base / f"{workload.name}-unbundled",
                                              bundle=False)
            limit = min(workload.time_limit, cl.seconds + 10.0)
            br = _NO_BRIDGE if args.cunlink_only else await run_bridge(
                payloads, profile, seed=args.seed, time_limit=limit,
                root=base / f"{workload.name}-bridge")
            print("\n".join(["", *table(workload, cl, br, rate, unbundled),
                             *verdict(cl, rate)]), flush=True)
            all_met &= (cl.lost == 0 and cl.duplicated == 0
                        and cl.case_goodput(rate) >= 0.8)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(f"\nwhole run {time.monotonic() - started:.0f} s; load average now "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if all_met else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of under a minute")
    parser.add_argument("--seed", type=int, default=1, help="link failure schedule and payloads")
    parser.add_argument("--keep", metavar="DIR", help="keep logs and stores under DIR")
    parser.add_argument("--only", choices=("large", "small"), help="run one workload")
    parser.add_argument("--cases", type=int, help="number of cases instead of the default")
    parser.add_argument("--cunlink-only", action="store_true",
                        help="skip the bridge (when tuning cunlink)")
    parser.add_argument("--no-unbundled", action="store_true",
                        help="skip the small-case run of cunlink without bundles")
    raise SystemExit(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
