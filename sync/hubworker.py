"""The county hub's worker: verify, assemble, commit, and only then acknowledge.

Several workers may run side by side as members of one MQTT 5 shared subscription; messages of
one transfer may reach any of them, so everything here is idempotent and order-independent:
partial transfers live on disk (``sync.assembly``), a committed package id is remembered in the
store's inbox, and events are applied by id.

A package is accepted only when it comes from an enrolled station, its signer is the station
whose topic carried it, it is sealed to this hub, and every event inside claims that station as
its origin. Anything else is refused with a log line, a counter (``HubStats.rejected`` by
reason, exported by ``gateway.hub_metrics``) and, where the station can act on it, a ``Reject``
message; the worker keeps serving. A package id already committed is a replay: acknowledged
again (docs/protocol.md 5.1: the station may have missed the first ack), never applied twice.
"""

from __future__ import annotations

import asyncio
import bisect
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
from protocols.envelope import MAX_BATCH_PACKAGE, EnvelopeError, LocalIdentity, PeerIdentity
from protocols.health import Beacon, BeaconError, decode_beacon
from sync.assembly import Assembly, AssemblyError, NoRoom, Partial
from sync.blobfile import open_file
from sync.mqttlink import MqttSettings, make_client
from sync.pacing import Backoff
from sync.packages import PackageContentError, open_bundle, open_event_batch
from sync.store import RemotePackage, Store

log = logging.getLogger("cunlink.hub")

STATIONS_FLUSH_SECONDS = 5.0
STALE_SWEEP_SECONDS = 3600.0
#: Partial transfers no chunk has reached for this long are dropped (sync.assembly): a bundle
#: lives only in one station process's memory, so after a day its members have travelled again;
#: any other package is offered again by its station, which still holds it, whenever it returns.
STALE_BUNDLE_SECONDS = 86_400.0
STALE_PACKAGE_SECONDS = 30 * 86_400.0
#: kv key prefix of each station's latest health beacon (shared by every worker, so any
#: worker's metrics endpoint shows every station).
BEACON_KEY = "beacon:"

#: Why a message or package was refused: the wire Reject reasons, lower-case, plus what the
#: hub refuses without a package to name (docs/protocol.md 6.2, 6.3).
REJECT_REASONS: tuple[str, ...] = (
    *(r.name.lower() for r in wire.RejectReason),
    "garbage",      # not a wire message: not msgpack, wrong version, wrong field types
    "oversized",    # over MAX_MESSAGE_BYTES, or a transfer claiming more than its kind allows
    "replay",       # an already committed package again: acknowledged again, not applied
    "no_room",      # the hub's disk is full for now: no Reject, the station offers it again
    "wrong_topic",  # not a cunlink topic, or a hub-to-station message on an uplink topic
    "internal",     # a bug on this side (logged with its traceback); never the sender's fault
)

#: Upper bounds (seconds) of the commit latency histogram: a small batch commits in
#: milliseconds, a scanned material of tens of MB takes seconds to open and verify.
COMMIT_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(slots=True)
class LatencyHistogram:
    """A fixed-bucket histogram (Prometheus semantics: a value counts in the first bucket whose
    upper bound is >= it; the last slot is +Inf). Constant memory, however long the hub runs."""

    bounds: tuple[float, ...] = COMMIT_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(COMMIT_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations <= it) for each bound, then (inf, all)."""
        out, running = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


@dataclass(slots=True)
class StationSeen:
    last_seen_ms: int = 0
    online: bool = False
    packages: int = 0
    bytes_in: int = 0
    backlog: int | None = None
    beacon: Beacon | None = None
    beacon_ms: int = 0  # hub wall clock when `beacon` arrived
    flushed_packages: int = 0
    flushed_bytes: int = 0


@dataclass(slots=True)
class HubStats:
    """This worker's counters since it started: the one source `gateway.hub_metrics` reads."""

    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    commit: LatencyHistogram = field(default_factory=LatencyHistogram)
    downlink_sent: int = 0
    beacons: int = 0
    beacons_invalid: Counter[str] = field(default_factory=Counter)
    stations: dict[str, StationSeen] = field(default_factory=dict)
    #: Chunks that reached this worker with bytes it already held: overlapping the package's
    #: received ranges, or any chunk of a package already committed (a replay). What crossed
    #: the link twice, as opposed to what the station handed to its socket twice.
    duplicate_chunks: int = 0
    duplicate_bytes: int = 0  # the overlapping bytes only (a whole chunk for a replay)

    def totals(self) -> dict[str, object]:
        """The plain counters, for the ``hub totals`` line logged when the worker stops."""
        return {
            "accepted": self.accepted, "rejected": dict(sorted(self.rejected.items())),
            "commits": self.commit.count, "commit_seconds": round(self.commit.total, 3),
            "downlink_sent": self.downlink_sent, "beacons": self.beacons,
            "beacons_invalid": sum(self.beacons_invalid.values()),
            "bytes_in": sum(s.bytes_in for s in self.stations.values()),
            "duplicate_chunks": self.duplicate_chunks, "duplicate_bytes": self.duplicate_bytes,
        }


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
        """Connect, serve, reconnect; returns after ``stop()``. Logs one ``hub totals:`` JSON
        line on the way out (also when cancelled), as the station logs its ``link totals``."""
        try:
            await self._run()
        finally:  # the counters die with us
            log.info("hub totals: %s", json.dumps(self.stats.totals(), sort_keys=True))

    async def _run(self) -> None:
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
                stale = tasks.create_task(self._stale_loop(), name="hub-stale")
                await self._stopping.wait()
                receiver.cancel()
                downlink.cancel()
                seen.cancel()
                stale.cancel()
            await self._persist_seen()

    # -- uplink --------------------------------------------------------------------------------

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            try:
                await self._dispatch(client, str(message.topic), message.payload)
            except Exception:  # one bad message must never stop the hub
                log.exception("unexpected error handling a message on %s", message.topic)
                self.stats.rejected["internal"] += 1

    def _reject_count(self, reason: str, station: str, detail: str,
                      level: int = logging.WARNING) -> None:
        self.stats.rejected[reason] += 1
        log.log(level, "rejected from %s: %s (%s)", station, reason, detail[:300])

    async def _dispatch(self, client: aiomqtt.Client, topic: str, payload: object) -> None:
        try:
            station, channel = wire.parse_topic(topic)
        except wire.WireError as exc:
            self._reject_count("wrong_topic", "?", str(exc))
            return
        if not isinstance(payload, bytes):
            return
        peer = self._stations(station)
        if peer is None:
            self._reject_count("unknown_station", station, "not enrolled at this hub; import "
                               "its enrollment file with `cunlink hub enroll`")
            return
        seen = self.stats.stations.setdefault(station, StationSeen())
        seen.last_seen_ms = int(time.time() * 1000)
        if channel != "s":
            # Only the state topic can say offline (the broker's last will); anything else
            # the station sent proves it connected.
            seen.online = True
        if channel == "h":
            await self._beacon(station, seen, payload)
            return
        if len(payload) > wire.MAX_MESSAGE_BYTES:
            # Only a broker configured above the shipped max_packet_size lets this through.
            self._reject_count("oversized", station, f"a {len(payload)}-byte message on "
                               f"{topic}; the limit is {wire.MAX_MESSAGE_BYTES}")
            return
        try:
            msg = wire.decode(payload)
        except wire.WireError as exc:
            self._reject_count("garbage", station, f"on {topic}: {exc}")
            return
        if channel == "s" and not isinstance(msg, wire.State):
            self._reject_count("wrong_topic", station, f"{type(msg).__name__} on {topic}")
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
                if await self._size_ok(client, station, msg):
                    await self._offer(client, station, msg)
            case wire.Chunk():
                seen.bytes_in += len(msg.data)
                if await self._size_ok(client, station, msg):
                    await self._chunk(client, station, msg)
            case wire.DownAck(package_id=pid):
                await self._store.outbox_delivered(pid)
            case _:
                self._reject_count("wrong_topic", station,
                                   f"{type(msg).__name__} is a hub-to-station message")

    async def _beacon(self, station: str, seen: StationSeen, payload: bytes) -> None:
        """Validate a health beacon and keep the latest one in the shared store."""
        try:
            beacon = decode_beacon(payload)
        except BeaconError as exc:
            self.stats.beacons_invalid[station] += 1
            log.warning("invalid health beacon from %s (%d bytes): %s", station, len(payload),
                        str(exc)[:300])
            return
        self.stats.beacons += 1
        seen.beacon, seen.beacon_ms = beacon, seen.last_seen_ms
        record = {"received_ms": seen.beacon_ms, "payload": payload.hex()}
        await self._store.kv_put(BEACON_KEY + station, json.dumps(record).encode())
        if self._on_beacon is not None:
            self._on_beacon(station, payload)

    async def _size_ok(self, client: aiomqtt.Client, station: str,
                       msg: wire.Offer | wire.Chunk) -> bool:
        """A transfer may not announce more than its kind can hold (the wire bounds blobs)."""
        if msg.kind == wire.PackageKind.BLOB or msg.size <= MAX_BATCH_PACKAGE:
            return True
        what = "bundle" if msg.kind == wire.PackageKind.BUNDLE else "batch"
        detail = (f"package {msg.package_id.hex()} announces {msg.size} bytes; a sealed {what} "
                  f"is at most {MAX_BATCH_PACKAGE}")
        self._reject_count("oversized", station, detail)
        await self._send(client, station, wire.Reject(
            package_id=msg.package_id, reason=wire.RejectReason.TOO_LARGE, detail=detail), qos=1)
        return False

    async def _send(self, client: aiomqtt.Client, station: str, msg: wire.Message,
                    qos: int = 0) -> None:
        await client.publish(wire.topic(station, "d"), wire.encode(msg), qos=qos, timeout=30)

    async def _ack(self, client: aiomqtt.Client, station: str, pid: bytes) -> None:
        ack = wire.Ack(package_id=pid, hub_hlc=self._store.clock.now(),
                       committed_ms=int(time.time() * 1000))
        await self._send(client, station, ack, qos=1)

    async def _replayed(self, client: aiomqtt.Client, station: str, pid: bytes) -> bool:
        """True (and acknowledged again) when ``pid`` is already committed."""
        if not await self._store.inbox_has(pid):
            return False
        # Usually the station missed our Ack on a cut link: normal, so logged at info level.
        self._reject_count("replay", station, f"package {pid.hex()} is already committed; "
                           "acknowledged again, not applied twice", level=logging.INFO)
        await self._ack(client, station, pid)
        return True

    async def _offer(self, client: aiomqtt.Client, station: str, offer: wire.Offer) -> None:
        if await self._replayed(client, station, offer.package_id):
            return
        partial = await asyncio.to_thread(self._assembly.get, offer.package_id)
        if partial is not None and partial.complete:
            await self._commit(client, station, partial)
            return
        missing = partial.missing if partial else ((0, offer.size),)
        await self._send(client, station, wire.Need(
            package_id=offer.package_id, ranges=missing, hub_hlc=self._store.clock.now()))

    async def _chunk(self, client: aiomqtt.Client, station: str, chunk: wire.Chunk) -> None:
        if await self._replayed(client, station, chunk.package_id):
            self._count_duplicate(len(chunk.data))
            return
        try:
            partial, overlap = await asyncio.to_thread(self._receive_chunk, chunk, station)
        except NoRoom as exc:
            if not exc.permanent:
                # The county's disk is full for now: a Reject would make every station hold
                # its scans for a person. Say nothing; the station's stall watchdog offers the
                # package again later, and ops see the count and the log.
                self._reject_count("no_room", station, str(exc))
                return
            self._reject_count("too_large", station, str(exc))
            await self._send(client, station, wire.Reject(
                package_id=chunk.package_id, reason=wire.RejectReason.TOO_LARGE,
                detail=str(exc)[: wire.MAX_TEXT]), qos=1)
            return
        except AssemblyError as exc:
            reason = wire.RejectReason.MALFORMED
            self._reject_count(reason.name.lower(), station, str(exc))
            await self._send(client, station, wire.Reject(
                package_id=chunk.package_id, reason=reason,
                detail=str(exc)[: wire.MAX_TEXT]), qos=1)
            return
        self._count_duplicate(overlap)
        if partial.complete:
            await self._commit(client, station, partial)
        else:
            await self._send(client, station, wire.Need(
                package_id=chunk.package_id, ranges=partial.missing,
                hub_hlc=self._store.clock.now()))

    def _receive_chunk(self, chunk: wire.Chunk, station: str) -> tuple[Partial, int]:
        """Store the chunk; also return how many of its bytes were held already. (Blocking.)

        The overlap is taken against what was held just before: another worker of the share
        that stores the same range in between makes both count it as new, so with several
        workers the figure is a lower bound."""
        before = self._assembly.get(chunk.package_id)
        partial = self._assembly.receive(chunk, sender=station)
        if before is None:
            return partial, 0
        end = chunk.offset + len(chunk.data)
        overlap = (wire.covered(before.ranges) + (end - chunk.offset)
                   - wire.covered(wire.add_range(before.ranges, chunk.offset, end)))
        return partial, overlap

    def _count_duplicate(self, nbytes: int) -> None:
        if nbytes > 0:
            self.stats.duplicate_chunks += 1
            self.stats.duplicate_bytes += nbytes

    async def _commit(self, client: aiomqtt.Client, station: str, partial: Partial) -> None:
        started = time.perf_counter()
        peer = self._stations(station)
        assert peer is not None
        peers = {peer.signing_key_id: peer}
        pid = partial.package_id
        with self._assembly.claim(pid) as mine:
            if not mine:
                log.info("package %s from %s is being committed by another worker",
                         pid.hex(), station)
                return
            if await self._store.inbox_has(pid):
                # Another worker committed it while this one re-assembled a late copy.
                await asyncio.to_thread(self._assembly.discard, pid)
                await self._replayed(client, station, pid)
                return
            await self._commit_claimed(client, station, partial, peers, started)

    async def _commit_claimed(self, client: aiomqtt.Client, station: str, partial: Partial,
                              peers: dict[bytes, PeerIdentity], started: float) -> None:
        pid = partial.package_id
        carried = 1  # packages this commit acknowledges (a bundle: its members)
        try:
            if partial.kind == wire.PackageKind.BUNDLE:
                carried = await self._commit_bundle(station, peers, partial)
            elif partial.kind == wire.PackageKind.BATCH:
                sealed = await asyncio.to_thread(self._assembly.part_path(pid).read_bytes)
                opened, events = open_event_batch(sealed, me=self._identity, peers=peers,
                                                  expected_sender=station)
                if opened.package_id != pid:
                    raise PackageContentError("the sealed package id differs from the transfer's")
                await self._store.apply_remote(events, package_id=pid, sender=station)
            else:
                await self._commit_blob(station, peers, partial)
        except FileNotFoundError:
            # Discarded under us (a reject by another worker); the station offers it again.
            log.info("package %s from %s is no longer held here", pid.hex(), station)
            return
        except (EnvelopeError, PackageContentError) as exc:
            reason = _reason(exc)
            self._reject_count(reason.name.lower(), station, f"package {pid.hex()}: {exc}")
            await asyncio.to_thread(self._assembly.discard, pid)
            await self._send(client, station, wire.Reject(
                package_id=pid, reason=reason, detail=str(exc)[: wire.MAX_TEXT]), qos=1)
            return
        await asyncio.to_thread(self._assembly.discard, pid)
        self.stats.accepted += carried
        self.stats.commit.observe(time.perf_counter() - started)
        self.stats.stations.setdefault(station, StationSeen()).packages += carried
        if partial.kind == wire.PackageKind.BUNDLE:
            log.info("committed bundle %s from %s (%d bytes, %d new packages)", pid.hex(),
                     station, partial.size, carried)
        else:
            log.info("committed package %s from %s (%d bytes)", pid.hex(), station,
                     partial.size)
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
        # the inbox row names the blob: the orphan sweep keeps it even though the events that
        # reference it may arrive days later (the station deletes its copy on our ack)
        await self._store.apply_remote([], package_id=partial.package_id, sender=station,
                                       blob_sha256=ref.sha256)

    async def _commit_bundle(self, station: str, peers: dict[bytes, PeerIdentity],
                             partial: Partial) -> int:
        """Open a bundle, check every member, then commit the members not yet committed and
        the bundle itself in one transaction (docs/protocol.md section 7). Returns how many
        members were new; those already committed are replays, skipped."""
        pid = partial.package_id
        sealed = await asyncio.to_thread(self._assembly.part_path(pid).read_bytes)
        opened, members = open_bundle(sealed, me=self._identity, peers=peers,
                                      expected_sender=station)
        if opened.package_id != pid:
            raise PackageContentError("the sealed package id differs from the transfer's")
        packages: list[RemotePackage] = []
        replayed = 0
        with tempfile.TemporaryDirectory(dir=self._incoming) as scratch:
            for index, member in enumerate(members):
                if await self._store.inbox_has(member.package_id):
                    replayed += 1
                    continue
                if member.events is not None:
                    packages.append(RemotePackage(package_id=member.package_id,
                                                  events=member.events))
                    continue
                assert member.blob is not None
                plain = Path(scratch) / f"member-{index}"
                await asyncio.to_thread(plain.write_bytes, member.blob)
                ref = await self._store.put_blob_file(plain)
                # the inbox row names the blob (see _commit_blob)
                packages.append(RemotePackage(package_id=member.package_id,
                                              blob_sha256=ref.sha256))
        if replayed:
            self._reject_count("replay", station, f"{replayed} of the {len(members)} packages "
                               f"in bundle {pid.hex()} were already committed; not applied "
                               "twice", level=logging.INFO)
        packages.append(RemotePackage(package_id=pid))
        await self._store.apply_remote_packages(packages, sender=station)
        return len(packages) - 1

    async def _stale_loop(self) -> None:
        while True:
            await asyncio.to_thread(self.sweep_stale)
            await asyncio.sleep(STALE_SWEEP_SECONDS)

    def sweep_stale(self, now: float | None = None) -> int:
        """Drop partial transfers nothing has reached for long (blocking); returns how many."""
        bundles = self._assembly.discard_stale(
            max_age_s=STALE_BUNDLE_SECONDS, kinds=frozenset({int(wire.PackageKind.BUNDLE)}),
            now=now)
        others = self._assembly.discard_stale(max_age_s=STALE_PACKAGE_SECONDS, now=now)
        for partial in (*bundles, *others):
            log.info("dropped the partial transfer of package %s from %s (%d of %d bytes, "
                     "untouched too long); the station sends it again if it still has it",
                     partial.package_id.hex(), partial.sender, wire.covered(partial.ranges),
                     partial.size)
        return len(bundles) + len(others)

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
        # Signed with a key not enrolled for that station: re-keyed without re-enrolling, or
        # an impostor; either way the fix is at enrollment, as for a station never enrolled.
        (envelope.UnknownKeyId, wire.RejectReason.UNKNOWN_STATION),
        (envelope.UnsupportedVersion, wire.RejectReason.UNSUPPORTED),
        (envelope.UnsupportedSuite, wire.RejectReason.UNSUPPORTED),
        (PackageContentError, wire.RejectReason.BAD_CONTENT),
    ]
    for kind, reason in table:
        if isinstance(exc, kind):
            return reason
    return wire.RejectReason.MALFORMED
