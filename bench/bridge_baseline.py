"""The baseline for bench/link.py: what a county would set up instead of cunlink.

A Mosquitto on the station box, bridged to the county's broker (`cleansession false`, QoS 1,
persistence on), with the bridge's TCP connection crossing the simulated link; an application
publishes each payload at QoS 1 to the local broker and the hub subscribes on the county broker.
Both brokers run the shipped cunlink template (TLS + client certificates + ACL at the county, so
the bridge pays the same TLS handshakes cunlink pays), raised to accept whole cases as single
messages, which is how such a setup sends them.

The bridge is tuned in good faith for a flaky link: reconnect after 1-5 s (default 5-30 s),
keepalive 10 s (default 60), no state notifications or unsubscribes on each reconnect.

    python bench/bridge_baseline.py [--cases 50] [--size 4000] [--time-limit 60] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import random
import struct
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway import pki
from gateway.testbed.broker import BrokerTls, MosquittoBroker, client_tls_context
from gateway.testbed.linksim import LinkProfile, LinkSimulator

STATION = "ST001"
HUB = "hub"
_ID = struct.Struct(">I")  # each message = 4-byte payload index + the payload


@dataclass(frozen=True, slots=True, kw_only=True)
class BaselineResult:
    delivered: int  # payloads that reached the hub intact (counted once)
    lost: int  # payloads that had not arrived when the run ended
    duplicated: int  # extra copies the hub received
    seconds: float  # from the first publish until all arrived, or the time limit
    link_up_seconds: float  # the part of that time the link carried bytes
    payload_bytes: int  # bytes of the delivered payloads
    bytes_sent_over_link: int  # station -> hub bytes the link carried (TLS, MQTT, re-sends)
    cuts: int
    stalls: int


def bridge_config(link_port: int, cert: pki.ClientCert) -> list[str]:
    return [
        "connection cunlink-baseline",
        f"address 127.0.0.1:{link_port}",
        f"remote_clientid {STATION}",
        "cleansession false",
        f"topic cl/{STATION}/u out 1",
        f"bridge_cafile {cert.ca}",
        f"bridge_certfile {cert.cert}",
        f"bridge_keyfile {cert.key}",
        "notifications false",
        "bridge_attempt_unsubscribe false",
        "keepalive_interval 10",
        "restart_timeout 1 5",
    ]


async def run_bridge_baseline(
    payloads: Sequence[bytes], profile: LinkProfile, *, seed: int, time_limit: float,
    workdir: Path | None = None,
) -> BaselineResult:
    """Push `payloads` through a Mosquitto bridge over the simulated link; count what arrives."""
    with tempfile.TemporaryDirectory(prefix="cunlink-bridge-") as tmp:
        root = workdir or Path(tmp)
        pki.init_pki(root / "pki", county="bench", hub_id=HUB)
        station_cert = pki.issue_client(root / "pki", STATION)
        # Whole cases go as single messages here: let both brokers accept them.
        packet_limit = max(262_144, max((len(p) for p in payloads), default=0) + 4096)
        hub_broker = MosquittoBroker(
            root / "hub-broker", tls=BrokerTls.from_pki(root / "pki"),
            max_packet_size=packet_limit,
        )
        link = LinkSimulator("127.0.0.1", hub_broker.port, profile, seed=seed)
        async with hub_broker, link:
            station_broker = MosquittoBroker(
                root / "station-broker", max_packet_size=packet_limit,
                extra_config=bridge_config(link.port, station_cert),
            )
            async with station_broker:
                return await _measure(payloads, hub_broker, station_broker, link, time_limit, root)


async def _measure(
    payloads: Sequence[bytes], hub_broker: MosquittoBroker, station_broker: MosquittoBroker,
    link: LinkSimulator, time_limit: float, root: Path,
) -> BaselineResult:
    digests = [hashlib.sha256(p).digest() for p in payloads]
    seen: set[int] = set()
    copies = 0
    all_in = asyncio.Event()
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    hub = aiomqtt.Client(
        "127.0.0.1", hub_broker.port, identifier=HUB, protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=False, properties=props, timeout=30,
        tls_context=client_tls_context(pki.client_cert(root / "pki", HUB)),
    )

    async def count() -> None:
        nonlocal copies
        async for msg in hub.messages:
            body = msg.payload
            if not isinstance(body, bytes) or len(body) < _ID.size:
                continue
            (index,) = _ID.unpack_from(body)
            if index < len(payloads) and hashlib.sha256(body[_ID.size:]).digest() == digests[index]:
                copies += 1
                seen.add(index)
                if len(seen) == len(payloads):
                    all_in.set()

    async with hub:
        await hub.subscribe(f"cl/{STATION}/u", qos=1)
        counter = asyncio.create_task(count())
        station = aiomqtt.Client(
            "127.0.0.1", station_broker.port, identifier="app", protocol=aiomqtt.ProtocolVersion.V5,
            timeout=30,
        )
        async with station:
            # Measured from the hand-over of the first payload: the bridge's first connection
            # (made at broker start) is not counted, its reconnections are.
            start, before = time.monotonic(), link.stats
            for index, payload in enumerate(payloads):
                await station.publish(f"cl/{STATION}/u", _ID.pack(index) + payload, qos=1)
            left = max(0.0, time_limit - (time.monotonic() - start))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_in.wait(), left)
            seconds = time.monotonic() - start
        after = link.stats
        counter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await counter
    return BaselineResult(
        delivered=len(seen), lost=len(payloads) - len(seen), duplicated=copies - len(seen),
        seconds=seconds, link_up_seconds=after.link_up_seconds - before.link_up_seconds,
        payload_bytes=sum(len(payloads[i]) for i in seen),
        bytes_sent_over_link=after.bytes_up - before.bytes_up,
        cuts=after.cuts - before.cuts, stalls=after.stalls - before.stalls,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=50)
    parser.add_argument("--size", type=int, default=4000, help="bytes per case")
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    payloads = [rng.randbytes(args.size) for _ in range(args.cases)]
    profile = LinkProfile.gprs_2g()
    result = asyncio.run(
        run_bridge_baseline(payloads, profile, seed=args.seed, time_limit=args.time_limit)
    )
    rate = profile.up_rate or 1.0
    up = result.link_up_seconds
    goodput = result.payload_bytes / (rate * up) if up else 0.0
    failures = result.cuts + result.stalls
    print(f"Mosquitto bridge, {args.cases} x {args.size} B over gprs_2g(), seed {args.seed}")
    print(f"  delivered {result.delivered}, lost {result.lost}, duplicated {result.duplicated}")
    print(f"  time {result.seconds:.1f} s (link up {result.link_up_seconds:.1f} s), "
          f"{result.cuts} cuts + {result.stalls} stalls")
    print(f"  goodput {goodput:.2f} of link capacity; {result.bytes_sent_over_link} B sent for "
          f"{result.payload_bytes} B of payload"
          + (f"; {(result.bytes_sent_over_link - result.payload_bytes) / failures:.0f} B "
             "overhead+re-sent per failure" if failures else ""))


if __name__ == "__main__":
    main()
