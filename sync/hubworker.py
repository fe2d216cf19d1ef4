"""The county hub's worker: verify, assemble, commit, and only then acknowledge.

Several workers may run side by side as members of one MQTT 5 shared subscription; messages of
one transfer may reach any of them, so everything here is idempotent and order-independent:
partial transfers live on disk (``sync.assembly``), a committed package id is remembered in the
store's inbox, and events are applied by id.

A package is accepted only when it comes from an enrolled station, its signer is the station
whose topic carried it, it is sealed to this hub, and every event inside claims that station as
its origin. Anything else is refused with a log line, a counter and, where the station can act
on it, a ``Reject`` message; the worker keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt

from protocols import wire
from protocols.envelope import EnvelopeError, LocalIdentity, PeerIdentity
from sync.assembly import Assembly, AssemblyError, Partial
from sync.blobfile import open_file
from sync.mqttlink import MqttSettings, make_client
from sync.pacing import Backoff
from sync.packages import PackageContentError, open_event_batch
from sync.store import Store

log = logging.getLogger("cunlink.hub")

STATIONS_FLUSH_SECONDS = 5.0


@dataclass(slots=True)
class StationSeen:
    last_seen_ms: int = 0
    online: bool = False
    packages: int = 0
    bytes_in: int = 0
    backlog: int | None = None
    beacon: dict[str, object] = field(default_factory=dict)
    flushed_packages: int = 0
    flushed_bytes: int = 0


@dataclass(slots=True)
class HubStats:
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    commit_seconds: list[float] = field(default_factory=list)
    downlink_sent: int = 0
    stations: dict[str, StationSeen] = field(default_factory=dict)


class HubWorker:
    def __init__(
        self,
        *,
        store: Store,
        identity: LocalIdentity,
        stations: Callable[[str], PeerIdentity | None],
        incoming: Path,
        mqtt: MqttSettings,
        share_group: str = "cunlink-hub",
        downlink_poll: float = 1.0,
        on_beacon: Callable[[str, bytes], None] | None = None,
    ) -> None:
        self._store = store
        self._identity = identity
        self._stations = stations
        self._assembly = Assembly(incoming)
        self._incoming = incoming
        self._mqtt = mqtt
        self._group = share_group
        self._downlink_poll = downlink_poll
        self._on_beacon = on_beacon
        self._stopping = asyncio.Event()
        self._backoff = Backoff(initial=0.5, maximum=30.0)
        self.stats = HubStats()
        self._resend_to: set[str] = set()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._connection()
                self._backoff.reset()
            except* (aiomqtt.MqttError, OSError, TimeoutError) as group:
                log.warning("hub link down: %s", group.exceptions[0])
            if self._stopping.is_set():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(),
                                       timeout=self._backoff.next_delay(random.random()))

    async def _connection(self) -> None:
        client = make_client(self._mqtt)
        async with client:
            log.info("hub connected to %s:%d", self._mqtt.host, self._mqtt.port)
            for channel in ("u", "s", "h"):
                await client.subscribe(f"$share/{self._group}/cl/+/{channel}", qos=1)
            self._resend_to.update(await self._stations_with_downlink())
            async with asyncio.TaskGroup() as tasks:
                receiver = tasks.create_task(self._receive(client), name="hub-receive")
                downlink = tasks.create_task(self._downlink_loop(client), name="hub-downlink")
                seen = tasks.create_task(self._persist_seen_loop(), name="hub-stations")
                await self._stopping.wait()
                receiver.cancel()
                downlink.cancel()
                seen.cancel()
            await self._persist_seen()

    # -- uplink --------------------------------------------------------------------------------

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            try:
                await self._dispatch(client, str(message.topic), message.payload)
            except Exception:  # one bad message must never stop the hub
                log.exception("unexpected error handling a message on %s", message.topic)
                self.stats.rejected["internal"] += 1

    def _reject_count(self, reason: str, station: str, detail: str) -> None:
        self.stats.rejected[reason] += 1
        log.warning("rejected from %s: %s (%s)", station, reason, detail)

    async def _dispatch(self, client: aiomqtt.Client, topic: str, payload: object) -> None:
        try:
            station, channel = wire.parse_topic(topic)
        except wire.WireError as exc:
            self._reject_count("bad_topic", "?", str(exc))
            return
        if not isinstance(payload, bytes):
            return
        peer = self._stations(station)
        if peer is None:
            self._reject_count("unknown_station", station, "not enrolled at this hub")
            return
        seen = self.stats.stations.setdefault(station, StationSeen())
        seen.last_seen_ms = int(time.time() * 1000)
        if channel == "h":
            seen.beacon = {"bytes": len(payload)}
            if self._on_beacon is not None:
                self._on_beacon(station, payload)
            return
        try:
            msg = wire.decode(payload)
        except wire.WireError as exc:
            self._reject_count("malformed", station, str(exc))
            return
        match msg:
            case wire.State(online=online, extra=extra):
                seen.online = online
                if "backlog" in extra:
                    seen.backlog = extra["backlog"]
                if online:
                    self._resend_to.add(station)
            case wire.Hello(hlc=hlc):
                self._store.clock.observe(hlc)
                seen.online = True
                self._resend_to.add(station)
            case wire.Offer():
                await self._offer(client, station, msg)
            case wire.Chunk():
                seen.bytes_in += len(msg.data)
                await self._chunk(client, station, peer, msg)
            case wire.DownAck(package_id=pid):
                await self._store.outbox_delivered(pid)
            case _:
                self._reject_count("unexpected", station, type(msg).__name__)

    async def _send(self, client: aiomqtt.Client, station: str, msg: wire.Message,
                    qos: int = 0) -> None:
        await client.publish(wire.topic(station, "d"), wire.encode(msg), qos=qos, timeout=30)

    async def _ack(self, client: aiomqtt.Client, station: str, pid: bytes) -> None:
        ack = wire.Ack(package_id=pid, hub_hlc=self._store.clock.now(),
                       committed_ms=int(time.time() * 1000))
        await self._send(client, station, ack, qos=1)

    async def _offer(self, client: aiomqtt.Client, station: str, offer: wire.Offer) -> None:
        if await self._store.inbox_has(offer.package_id):
            await self._ack(client, station, offer.package_id)
            return
        partial = await asyncio.to_thread(self._assembly.get, offer.package_id)
        if partial is not None and partial.complete:
            await self._commit(client, station, partial)
            return
        missing = partial.missing if partial else ((0, offer.size),)
        await self._send(client, station, wire.Need(
            package_id=offer.package_id, ranges=missing, hub_hlc=self._store.clock.now()))

    async def _chunk(self, client: aiomqtt.Client, station: str, peer: PeerIdentity,
                     chunk: wire.Chunk) -> None:
        if await self._store.inbox_has(chunk.package_id):
            await self._ack(client, station, chunk.package_id)
            return
        try:
            partial = await asyncio.to_thread(self._assembly.receive, chunk, sender=station)
        except AssemblyError as exc:
            self._reject_count("assembly", station, str(exc))
            await self._send(client, station, wire.Reject(
                package_id=chunk.package_id, reason=wire.RejectReason.TOO_LARGE,
                detail=str(exc)[: wire.MAX_TEXT]))
            return
        if partial.complete:
            await self._commit(client, station, partial)
        else:
            await self._send(client, station, wire.Need(
                package_id=chunk.package_id, ranges=partial.missing,
                hub_hlc=self._store.clock.now()))

    async def _commit(self, client: aiomqtt.Client, station: str, partial: Partial) -> None:
        started = time.perf_counter()
        peer = self._stations(station)
        assert peer is not None
        peers = {peer.signing_key_id: peer}
        pid = partial.package_id
        try:
            if partial.kind == wire.PackageKind.BATCH:
                sealed = await asyncio.to_thread(self._assembly.part_path(pid).read_bytes)
                opened, events = open_event_batch(sealed, me=self._identity, peers=peers,
                                                  expected_sender=station)
                if opened.package_id != pid:
                    raise PackageContentError("the sealed package id differs from the transfer's")
                await self._store.apply_remote(events, package_id=pid, sender=station)
            else:
                await self._commit_blob(station, peers, partial)
        except (EnvelopeError, PackageContentError) as exc:
            reason = _reason(exc)
            self._reject_count(reason.name.lower(), station, str(exc))
            await asyncio.to_thread(self._assembly.discard, pid)
            await self._send(client, station, wire.Reject(
                package_id=pid, reason=reason, detail=str(exc)[: wire.MAX_TEXT]), qos=1)
            return
        await asyncio.to_thread(self._assembly.discard, pid)
        self.stats.accepted += 1
        self.stats.commit_seconds.append(time.perf_counter() - started)
        del self.stats.commit_seconds[:-1000]
        self.stats.stations.setdefault(station, StationSeen()).packages += 1
        await self._ack(client, station, pid)

    async def _commit_blob(self, station: str, peers: dict[bytes, PeerIdentity],
                           partial: Partial) -> None:
        src = self._assembly.part_path(partial.package_id)
        with tempfile.TemporaryDirectory(dir=self._incoming) as scratch:
            plain = Path(scratch) / "blob"
            manifest = await asyncio.to_thread(
                open_file, src, plain, me=self._identity, peers=peers,
                expected_sender=station, seen=lambda _pid: False)
            if manifest.package_id != partial.package_id:
                raise PackageContentError("the sealed package id differs from the transfer's")
            ref = await self._store.put_blob_file(plain)
            if ref.sha256 != manifest.digest.hex():
                raise PackageContentError("the opened blob does not match its signed digest")
        await self._store.apply_remote([], package_id=partial.package_id, sender=station)

    # -- what `cunlink hub stations` shows --------------------------------------------------

    async def _persist_seen_loop(self) -> None:
        while True:
            await asyncio.sleep(STATIONS_FLUSH_SECONDS)
            await self._persist_seen()

    async def _persist_seen(self) -> None:
        """Merge this worker's view of each station into the store (several workers share
        the stations: last-seen is the latest, counters add up)."""
        for station, seen in self.stats.stations.items():
            key = f"station:{station}"
            raw = await self._store.kv_get(key)
            stored = json.loads(raw) if raw else {}
            merged = {
                "last_seen_ms": max(int(stored.get("last_seen_ms", 0)), seen.last_seen_ms),
                "online": seen.online if seen.last_seen_ms >= int(stored.get("last_seen_ms", 0))
                else bool(stored.get("online", False)),
                "packages": int(stored.get("packages", 0)) + seen.packages - seen.flushed_packages,
                "bytes_in": int(stored.get("bytes_in", 0)) + seen.bytes_in - seen.flushed_bytes,
                "backlog": seen.backlog if seen.backlog is not None else stored.get("backlog"),
            }
            await self._store.kv_put(key, json.dumps(merged).encode())
            seen.flushed_packages, seen.flushed_bytes = seen.packages, seen.bytes_in

    # -- downlink ------------------------------------------------------------------------------

    async def _stations_with_downlink(self) -> set[str]:
        return {e.destination for e in await self._store.outbox_pending(limit=10_000)}

    async def _downlink_loop(self, client: aiomqtt.Client) -> None:
        sent: dict[bytes, float] = {}
        while True:
            pending = await self._store.outbox_pending(limit=500)
            now = time.monotonic()
            for entry in pending:
                if entry.state != "queued" or entry.payload is None:
                    continue
                due = entry.package_id not in sent or entry.destination in self._resend_to
                if not due:
                    continue
                down = wire.DownPackage(package_id=entry.package_id, sealed=entry.payload,
                                        hub_hlc=self._store.clock.now())
                # QoS 1 to a persistent session: the broker keeps it for an offline station.
                await self._send(client, entry.destination, down, qos=1)
                sent[entry.package_id] = now
                self.stats.downlink_sent += 1
            self._resend_to.clear()
            await asyncio.sleep(self._downlink_poll)


def _reason(exc: Exception) -> wire.RejectReason:
    from protocols import envelope

    table: list[tuple[type[Exception], wire.RejectReason]] = [
        (envelope.BadSignature, wire.RejectReason.BAD_SIGNATURE),
        (envelope.WrongRecipient, wire.RejectReason.WRONG_RECIPIENT),
        (envelope.UnexpectedSender, wire.RejectReason.SENDER_MISMATCH),
        (envelope.UnknownKeyId, wire.RejectReason.SENDER_MISMATCH),
        (envelope.UnsupportedVersion, wire.RejectReason.UNSUPPORTED),
        (envelope.UnsupportedSuite, wire.RejectReason.UNSUPPORTED),
        (PackageContentError, wire.RejectReason.BAD_CONTENT),
    ]
    for kind, reason in table:
        if isinstance(exc, kind):
            return reason
    return wire.RejectReason.MALFORMED
