"""The station's transfer engine: outbox -> chunks over MQTT 5 -> the hub's commit ack.

One connection at a time. After a reconnect, bytes never sent go at once, and each package
with chunks that were in flight at the cut is offered again: the hub answers with the byte
ranges it still needs (its received ranges survive its own restarts), so a cut costs at most
the chunks in flight and nothing is re-sent blindly. Chunks go at QoS 0: the
application protocol, not the broker, decides what is missing, and paho would otherwise
re-send whole windows after a reconnect. An outbox entry leaves the outbox only when the hub's
``Ack`` arrives, which the hub sends after its database commit.

Scheduling: strict priority (control < events < blobs), FIFO within a class, by choosing the
next piece among the active transfers in that order. At most ``window`` chunks' worth of
bytes (``window`` x the current chunk size) are unconfirmed: counted in bytes, so that many small
packages can be on their way at once, while a cut still costs at most that much.
Stalls are found by lack of progress: bytes outstanding and nothing heard from the hub for
``stall_timeout`` seconds forces a reconnect, with exponential backoff and full jitter. The
backoff starts again from its first step once the hub confirms bytes sent on the current
connection: a link that carries data again is not a failing one.

Small packages waiting side by side are carried together in one sealed bundle made at send
time (``sync.bundling``, docs/protocol.md section 7); the hub's Ack for the bundle is the Ack
of each member, and if the hub refuses a bundle its members go again one by one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from protocols import wire
from protocols.envelope import EnvelopeError, LocalIdentity, PeerIdentity, Suite
from sync import bundling, mqttlink
from sync.mqttlink import MqttSettings, force_close, make_client
from sync.pacing import Backoff, ChunkSizer, DailyBudget
from sync.packages import PackageContentError, open_event_batch
from sync.store import OutboxEntry, Store

log = logging.getLogger("cunlink.uplink")

BLOB_PRIORITY = 2
_FINISHED_KEPT = 4096  # ids of finished packages remembered (16 B each)
#: Seconds a finished (acked / rejected) package is not taken up again: long enough for an
#: outbox read that started before the ack to be over, short enough that `cunlink outbox retry`
#: of a package the hub rejected takes effect at once while the daemon runs.
_FINISHED_GRACE = 10.0
_BEACON_SOURCE_TIMEOUT = 10.0  # seconds a beacon source may take before that beacon is skipped
_BUNDLES_KEPT = 1024  # bundles whose members are remembered for a late Ack (ids only)
_SOLO_KEPT = 4096  # packages that must travel on their own (their bundle was refused)


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferSettings:
    chunk_min: int = 4096
    chunk_max: int = 65536
    chunk_target_seconds: float = 4.0
    window: int = 3
    stall_timeout: float = 45.0
    backoff_initial: float = 1.0
    backoff_max: float = 300.0
    daily_budget: int = 0
    outbox_poll: float = 1.0
    max_active: int = 32  # packages in progress at once (many small ones share the window)
    shutdown_grace: float = 10.0
    bundle: bool = True  # carry small waiting packages together in sealed bundles


@dataclass(slots=True)
class LinkStats:
    """Counters the daemon exports as metrics and the beacon carries."""

    link_up: bool = False
    connects: int = 0
    disconnects: int = 0
    stalls: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    chunks_sent: int = 0
    chunks_resent: int = 0
    sent_before_connack: int = 0  # messages sent right behind CONNECT (after a reconnect)
    bytes_resent: int = 0
    delivered: int = 0
    rejected: int = 0
    downlink_applied: int = 0
    downlink_invalid: int = 0
    beacons_sent: int = 0
    rtt_seconds: float | None = None
    hub_offset_ms: int | None = None
    last_error: str = ""
    up_since: float | None = None


@dataclass(slots=True)
class _Transfer:
    entry: OutboxEntry
    missing: wire.Ranges | None  # None until the hub has answered an offer
    inflight: dict[tuple[int, int], float] = field(default_factory=dict)
    ever_sent: wire.Ranges = ()
    last_heard: float = 0.0
    # Sent but never confirmed when the connection broke: they may or may not have landed, so
    # they wait for the hub's answer to an offer instead of being sent again blindly.
    held: wire.Ranges = ()
    offer_due: bool = False
    # A bundle (made here at send time, held in memory): the queued packages it carries.
    members: tuple[OutboxEntry, ...] = ()

    @property
    def wire_kind(self) -> wire.PackageKind:
        if self.members:
            return wire.PackageKind.BUNDLE
        return wire.PackageKind.BLOB if self.entry.kind == "blob" else wire.PackageKind.BATCH

    @property
    def fresh(self) -> bool:
        """Nothing of it sent yet, and it would go whole as one chunk."""
        return (self.missing == ((0, self.entry.size),) and not self.ever_sent
                and not self.inflight and not self.held and not self.offer_due)

    def unsure(self) -> None:
        """The connection these chunks went out on is gone: hold them until the hub says."""
        for start, end in self.inflight:
            self.held = wire.add_range(self.held, start, end)
        self.inflight.clear()
        if self.missing == ():  # an offer was never answered: make a fresh one
            self.missing = None
        elif self.held:
            self.offer_due = True

    @property
    def pid(self) -> bytes:
        return self.entry.package_id


class _Stalled(Exception):
    pass


class StationUplink:
    def __init__(
        self,
        *,
        store: Store,
        identity: LocalIdentity,
        hub: PeerIdentity,
        station_id: str,
        mqtt: MqttSettings,
        settings: TransferSettings,
        software: str = "cunlink",
        rng: Callable[[], float] = random.random,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        beacon: Callable[[], Awaitable[bytes]] | None = None,
        beacon_interval: float = 300.0,
        suite: Suite = Suite.X25519_SHA256_AES256GCM,
    ) -> None:
        if beacon is not None and beacon_interval <= 0:
            raise ValueError(f"beacon_interval={beacon_interval}: must be > 0 seconds")
        self._store = store
        self._identity = identity
        self._hub = hub
        self._station = station_id
        self._mqtt = mqtt
        self._settings = settings
        self._software = software
        self._suite = suite
        self._rng = rng
        self._on_event = on_event or (lambda _kind, _data: None)
        self._beacon = beacon
        self._beacon_interval = beacon_interval
        self.stats = LinkStats()
        self._sizer = ChunkSizer(
            minimum=settings.chunk_min,
            maximum=settings.chunk_max,
            target_seconds=settings.chunk_target_seconds,
        )
        self._budget = DailyBudget(limit=settings.daily_budget)
        self._backoff = Backoff(initial=settings.backoff_initial, maximum=settings.backoff_max)
        self._active: dict[bytes, _Transfer] = {}
        # Packages acked or rejected lately: an outbox read that started before the ack may
        # still list one, and taking it up again would send a package whose file is gone.
        self._finished: dict[bytes, float] = {}  # package id -> when it finished (monotonic)
        self._bundles: dict[bytes, tuple[bytes, ...]] = {}  # bundle id -> member package ids
        self._in_bundle: dict[bytes, bytes] = {}  # member package id -> its bundle in _active
        self._solo: dict[bytes, None] = {}  # members of a refused bundle: sent one by one
        self._bundle_overhead = bundling.seal_overhead(station_id, hub.id)
        self._connected_at = 0.0  # monotonic time the current connection came up
        self._beacon_changed = asyncio.Event()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._last_heard = 0.0
        self._client: aiomqtt.Client | None = None
        self._up = wire.topic(station_id, "u")
        self._down = wire.topic(station_id, "d")
        self._state = wire.topic(station_id, "s")
        self._health = wire.topic(station_id, "h")

    # -- public ------------------------------------------------------------------------------

    def wake(self) -> None:
        """New work in the outbox (the daemon also polls, for other processes' writes)."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def update_settings(self, settings: TransferSettings) -> None:
        """New transfer limits (SIGHUP): they apply from the next chunk; what is in flight and
        what the hub already holds are kept, and today's budget keeps what it has spent."""
        self._settings = settings
        self._sizer.minimum, self._sizer.maximum = settings.chunk_min, settings.chunk_max
        self._sizer.target_seconds = settings.chunk_target_seconds
        self._budget.limit = settings.daily_budget
        self._backoff.initial, self._backoff.maximum = (settings.backoff_initial,
                                                        settings.backoff_max)
        self._wake.set()

    def set_beacon_interval(self, seconds: float) -> None:
        """A new health-beacon interval (SIGHUP): a beacon goes now, then at the new pace."""
        self._beacon_interval = seconds
        self._beacon_changed.set()

    async def run(self) -> None:
        """Connect, transfer, reconnect; returns after ``stop()`` once the link is closed."""
        try:
            await self._run()
        finally:  # also when cancelled by a shutdown bound: the counters die with us
            log.info("link totals: %s",
                     json.dumps(dataclasses.asdict(self.stats), sort_keys=True))

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._connection()
                self._backoff.reset()
            except* (aiomqtt.MqttError, OSError, _Stalled, TimeoutError) as group:
                self.stats.last_error = str(group.exceptions[0])[:200]
                log.warning("link down: %s", self.stats.last_error)
            finally:
                if self.stats.link_up and not self._stopping.is_set() and self.stats.up_since:
                    self._sizer.connection_ended(time.monotonic() - self.stats.up_since)
                if self.stats.link_up:
                    self.stats.disconnects += 1
                    self._on_event("link_down", {"error": self.stats.last_error})
                self.stats.link_up = False
                self.stats.up_since = None
                self._client = None
            if self._stopping.is_set():
                break
            delay = self._backoff.next_delay(self._rng())
            log.info("reconnecting in %.1f s", delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)

    # -- one connection ----------------------------------------------------------------------

    async def _connection(self) -> None:
        offline = wire.encode(wire.State(online=False, software=self._software))
        client = make_client(self._mqtt, will_topic=self._state, will_payload=offline)
        self._client = client
        # Resume: what was never sent goes at once; what was in flight waits for the hub's
        # answer to an offer (see _Transfer.unsure), so a cut costs no blind re-sends.
        for pid, transfer in list(self._active.items()):
            ids = [m.package_id for m in transfer.members] or [pid]
            for member in ids:
                entry = await self._store.outbox_get(member)
                if entry is None or entry.state != "queued":  # `outbox hold`, or gone
                    self._drop(pid)
                    break
        for transfer in self._active.values():
            transfer.unsure()
        self._connected_at = time.monotonic()
        self._sizer.link_reset()
        early = asyncio.create_task(self._early_flight(client), name="uplink-early")
        try:
            async with client:
                sent_early = await early
                await self._connected(client, offline, sent_early)
        finally:
            early.cancel()
            await asyncio.gather(early, return_exceptions=True)

    async def _early_flight(self, client: mqttlink.Client) -> int:
        """Send what the window allows right behind CONNECT, a round trip before CONNACK;
        returns how many messages went. Only on a session the broker should still hold (an
        earlier connection of this process subscribed): the hub's answers need our
        subscription, and SUBSCRIBE itself can only go after CONNACK."""
        if not self.stats.connects:
            return 0
        await client.connect_sent.wait()
        sent = 0
        while not self._stopping.is_set() and await self._send_next(client):
            sent += 1
            self.stats.sent_before_connack += 1
        return sent

    async def _connected(self, client: mqttlink.Client, offline: bytes, sent_early: int) -> None:
        self.stats.connects += 1
        self.stats.link_up = True
        self.stats.up_since = time.monotonic()
        self._last_heard = time.monotonic()
        self._on_event("link_up", {})
        log.info("connected to %s:%d%s", self._mqtt.host, self._mqtt.port,
                 f" ({sent_early} messages sent before the broker answered)" if sent_early
                 else "")
        if sent_early and client.session_present is False:
            # The broker forgot our session (offline longer than its expiry): answers to what
            # went early were dropped for want of a subscription. Ask again after SUBSCRIBE.
            for transfer in self._active.values():
                transfer.unsure()
        try:
            async with asyncio.TaskGroup() as tasks:
                # Not awaited before sending: each QoS 1 round trip costs a fifth of a
                # second or more on 2G. MQTT keeps the order, so once the SUBSCRIBE is
                # written (aiomqtt writes it before its first await, hence the yield) the
                # broker has the subscription before the first offer it could answer.
                tasks.create_task(client.subscribe(self._down, qos=1),
                                  name="uplink-subscribe")
                await asyncio.sleep(0)
                tasks.create_task(self._announce(client), name="uplink-announce")
                receiver = tasks.create_task(self._receive(client), name="uplink-receive")
                tasks.create_task(self._watchdog(client), name="uplink-watchdog")
                if self._beacon is not None:
                    tasks.create_task(self._beacons(client, self._beacon),
                                      name="uplink-beacon")
                await self._send_loop(client)
                receiver.cancel()
                await client.publish(self._state, offline, qos=1, retain=True, timeout=5)
                raise _Stopped
        except* _Stopped:
            pass

    async def _announce(self, client: aiomqtt.Client) -> None:
        """Online state (retained) and hello, both QoS 1, their acks awaited side by side."""
        backlog = await self._store.outbox_stats()
        online = wire.State(online=True, hlc=self._store.clock.now(), software=self._software,
                            extra={"backlog": backlog.count,
                                   "backlog_bytes": backlog.bytes_pending})
        await asyncio.gather(
            client.publish(self._state, wire.encode(online), qos=1, retain=True),
            client.publish(self._up, wire.encode(wire.Hello(hlc=online.hlc)), qos=1),
        )

    async def _offer(self, client: aiomqtt.Client, transfer: _Transfer) -> None:
        entry = transfer.entry
        offer = wire.Offer(package_id=entry.package_id, kind=transfer.wire_kind, size=entry.size,
                           priority=entry.priority)
        transfer.last_heard = time.monotonic()
        await self._publish(client, wire.encode(offer))

    async def _publish(self, client: aiomqtt.Client, payload: bytes, qos: int = 0) -> None:
        await client.publish(self._up, payload, qos=qos, timeout=self._settings.stall_timeout)
        self.stats.bytes_up += len(payload)

    # -- sending -------------------------------------------------------------------------------

    async def _send_next(self, client: aiomqtt.Client) -> bool:
        """Send the next message the window allows; False when there is none for now."""
        await self._refill()
        if self._settings.bundle:
            await self._coalesce()
        piece = self._next_piece()
        if piece is None:
            return False
        transfer, start, end = piece
        if start == end:  # an offer: a fresh large package, or chunks of unknown fate
            if transfer.missing is None:
                transfer.missing = ()
            transfer.offer_due = False
            await self._offer(client, transfer)
            return True
        try:
            data = await self._read(transfer.entry, start, end)
        except (FileNotFoundError, PermissionError) as exc:
            # the sealed file is gone or not ours: no reconnect can fix that (other OSErrors,
            # e.g. too many open files, go to the reconnect path and are tried again)
            await self._hold_unreadable(transfer, exc)
            return True
        chunk = wire.Chunk(package_id=transfer.pid, kind=transfer.wire_kind,
                           size=transfer.entry.size, offset=start, data=data)
        resent = wire.covered(_intersect(transfer.ever_sent, start, end))
        transfer.inflight[(start, end)] = time.monotonic()
        transfer.ever_sent = wire.add_range(transfer.ever_sent, start, end)
        await self._publish(client, wire.encode(chunk))
        self.stats.chunks_sent += 1
        if resent:
            self.stats.chunks_resent += 1
            self.stats.bytes_resent += resent
        if transfer.entry.priority >= BLOB_PRIORITY:
            self._budget.spend(_utc_day(), end - start)
        return True

    async def _send_loop(self, client: aiomqtt.Client) -> None:
        while not self._stopping.is_set():
            if await self._send_next(client):
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._settings.outbox_poll)
        # Stopping: let the chunks in flight land (bounded) so their bytes are not wasted.
        deadline = time.monotonic() + self._settings.shutdown_grace
        while self._inflight_count() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def _refill(self) -> None:
        if len(self._active) >= self._settings.max_active:
            return
        # Members of bundles on their way are still queued: read past them.
        pending = await self._store.outbox_pending(
            destination=None, limit=self._settings.max_active * 2 + len(self._in_bundle))
        for entry in pending:
            if len(self._active) >= self._settings.max_active:
                break
            finished = self._finished.get(entry.package_id)
            if (entry.package_id in self._active or entry.package_id in self._in_bundle
                    or entry.state != "queued"
                    or (finished is not None and time.monotonic() - finished < _FINISHED_GRACE)):
                continue
            self._active[entry.package_id] = _Transfer(
                entry=entry, missing=_initial_missing(entry, self._sizer.size),
                last_heard=time.monotonic())

    async def _coalesce(self) -> None:
        """If the next package to go is small and fresh, and others like it wait behind it,
        replace them by one bundle carrying them all (one chunk at most: a cut still costs at
        most what is in flight)."""
        run: list[OutboxEntry] = []
        for transfer in sorted(self._active.values(),
                               key=lambda t: (t.entry.priority, t.entry.first_queued_ms)):
            if transfer.missing is None or transfer.offer_due:
                break  # an offer goes next
            if not self._wanted(transfer):
                continue  # all of it in flight, or waiting for the hub's answer
            if transfer.members or not transfer.fresh or transfer.pid in self._solo:
                break
            run.append(transfer.entry)
        members = bundling.plan(run, cap=self._sizer.size, overhead=self._bundle_overhead)
        if not members:
            return
        created = int(time.time() * 1000)
        pid = bundling.new_package_id(created)
        try:
            sealed = await asyncio.to_thread(
                bundling.build, members, blob_path=self._store.blob_path,
                sender=self._identity, recipient=self._hub, suite=self._suite,
                package_id=pid, created_ms=created)
        except OSError as exc:
            # a scan's plaintext is missing or damaged: its sealed container still carries it
            for entry in members:
                if entry.kind == "blob":
                    self._add_solo(entry.package_id)
            log.warning("could not bundle %d packages (%s); the scans among them go on their "
                        "own", len(members), exc)
            return
        for entry in members:  # the connection may have changed while sealing
            current = self._active.get(entry.package_id)
            if current is None or not current.fresh:
                return
        for entry in members:
            del self._active[entry.package_id]
            self._in_bundle[entry.package_id] = pid
        self._bundles[pid] = tuple(m.package_id for m in members)
        while len(self._bundles) > _BUNDLES_KEPT:
            del self._bundles[next(iter(self._bundles))]
        entry = OutboxEntry(
            package_id=pid, kind="batch", priority=members[0].priority,
            destination=self._hub.id, payload=sealed, path=None, size=len(sealed), case=None,
            state="queued", attempts=0, bytes_acked=0,
            first_queued_ms=min(m.first_queued_ms for m in members), last_attempt_ms=None)
        self._active[pid] = _Transfer(entry=entry, missing=((0, len(sealed)),),
                                      last_heard=time.monotonic(), members=tuple(members))
        log.debug("bundle %s: %d packages, %d bytes sealed", pid.hex(), len(members), len(sealed))

    def _wanted(self, transfer: _Transfer) -> wire.Ranges:
        wanted = transfer.missing or ()
        for start, end in (*transfer.inflight, *transfer.held):
            wanted = _subtract(wanted, start, end)
        return wanted

    def _drop(self, pid: bytes) -> None:
        """Stop working on a transfer; a bundle's members are taken up again on their own
        refill (a bundle is only an in-memory way of carrying them)."""
        transfer = self._active.pop(pid, None)
        if transfer is not None:
            for member in transfer.members:
                self._in_bundle.pop(member.package_id, None)

    def _add_solo(self, pid: bytes) -> None:
        self._solo[pid] = None
        while len(self._solo) > _SOLO_KEPT:
            del self._solo[next(iter(self._solo))]

    def _progress(self, sent_at: float) -> None:
        """The hub confirmed bytes sent at ``sent_at``: if on this connection, the link works."""
        if sent_at >= self._connected_at:
            self._backoff.reset()

    def _next_piece(self) -> tuple[_Transfer, int, int] | None:
        in_flight = self._inflight_bytes()
        allowed = self._settings.window * self._sizer.size
        if in_flight >= allowed:
            return None
        order = sorted(self._active.values(),
                       key=lambda t: (t.entry.priority, t.entry.first_queued_ms))
        for transfer in order:
            if transfer.missing is None or transfer.offer_due:
                return transfer, 0, 0
            wanted = self._wanted(transfer)
            if not wanted:
                continue
            start, stop = wanted[0]
            end = min(stop, start + self._sizer.size)
            if in_flight and in_flight + (end - start) > allowed:
                return None  # keep the order: the next piece waits for room, nothing overtakes
            is_blob = transfer.entry.priority >= BLOB_PRIORITY
            if is_blob and not self._budget.allows(_utc_day(), end - start):
                continue  # held for tomorrow; events behind it still go
            return transfer, start, end
        return None

    def _finish(self, pid: bytes) -> None:
        self._finished.pop(pid, None)
        self._finished[pid] = time.monotonic()
        while len(self._finished) > _FINISHED_KEPT:
            del self._finished[next(iter(self._finished))]

    def _inflight_count(self) -> int:
        return sum(len(t.inflight) for t in self._active.values())

    def _inflight_bytes(self) -> int:
        return sum(end - start for t in self._active.values() for start, end in t.inflight)

    async def _hold_unreadable(self, transfer: _Transfer, exc: OSError) -> None:
        pid = transfer.pid
        self._active.pop(pid, None)
        self._finish(pid)
        if await self._store.outbox_hold(pid):
            await self._store.kv_put(f"reject:{pid.hex()}", f"UNREADABLE: {exc}".encode())
            self.stats.last_error = f"outbox file unreadable: {exc}"[:200]
            log.error("package %s cannot be read (%s); held for a person to look at "
                      "(`cunlink outbox`)", pid.hex(), exc)

    async def _read(self, entry: OutboxEntry, start: int, end: int) -> bytes:
        if entry.payload is not None:
            return entry.payload[start:end]
        if entry.path is None:
            raise RuntimeError(f"outbox entry {entry.package_id.hex()} has neither bytes nor file")
        path = entry.path

        def read() -> bytes:
            with path.open("rb") as handle:
                handle.seek(start)
                return handle.read(end - start)

        return await asyncio.to_thread(read)

    # -- receiving -----------------------------------------------------------------------------

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            if not isinstance(payload, bytes):
                continue
            self._last_heard = time.monotonic()
            self.stats.bytes_down += len(payload)
            # No backoff reset here: with a persistent session the broker delivers queued acks
            # right after CONNACK, so a connection that dies at once would look healthy. The
            # watchdog resets it once a connection has lasted stall_timeout.
            try:
                msg = wire.decode(payload)
            except wire.WireError as exc:
                log.warning("ignored a malformed downlink message: %s", exc)
                continue
            await self._handle(client, msg)

    async def _handle(self, client: aiomqtt.Client, msg: wire.Message) -> None:
        now = time.monotonic()
        match msg:
            case wire.Need(package_id=pid, ranges=ranges, hub_hlc=hub_hlc):
                transfer = self._active.get(pid)
                self._store.clock.absorb_hub(hub_hlc)
                if transfer is None:
                    return
                transfer.missing = ranges
                transfer.held = ()  # the hub's answer is the truth about those too
                transfer.last_heard = now
                for span, sent_at in list(transfer.inflight.items()):
                    if not _intersect(ranges, *span):  # the hub holds it now
                        del transfer.inflight[span]
                        self._sizer.confirmed(now, span[1] - span[0])
                        self.stats.rtt_seconds = now - sent_at
                        self._progress(sent_at)
                self._wake.set()
            case wire.Ack(package_id=pid, hub_hlc=hub_hlc, committed_ms=committed):
                self._finish(pid)
                transfer = self._active.get(pid)
                self._drop(pid)
                if transfer is not None:
                    for span, sent_at in transfer.inflight.items():
                        self._sizer.confirmed(now, span[1] - span[0])
                        self._progress(sent_at)
                # a bundle's Ack is the Ack of every package it carried
                delivered = self._bundles.pop(pid, None) or (pid,)
                for member in delivered:
                    if member != pid:
                        self._finish(member)
                        self._drop(member)  # taken up on its own meanwhile
                        self._solo.pop(member, None)
                await self._store.outbox_delivered_many(delivered, hub_hlc=hub_hlc)
                self.stats.delivered += len(delivered)
                self.stats.hub_offset_ms = committed - int(time.time() * 1000)
                for member in delivered:
                    self._on_event("delivered", {"package": member.hex()})
                self._wake.set()
            case wire.Reject(package_id=pid, reason=reason, detail=detail) if (
                    pid in self._bundles):
                # Refused as a whole: send the members one by one, so that only a package
                # that is itself at fault is held (with the hub's reason) for a person.
                self._finish(pid)
                self._drop(pid)
                members = self._bundles.pop(pid)
                for member in members:
                    self._add_solo(member)
                log.warning("hub refused bundle %s (%s %s); its %d packages go one by one",
                            pid.hex(), reason.name, detail, len(members))
                self._wake.set()
            case wire.Reject(package_id=pid, reason=reason, detail=detail):
                self._finish(pid)
                self._drop(pid)
                await self._store.outbox_hold(pid)
                await self._store.kv_put(f"reject:{pid.hex()}",
                                         f"{reason.name}: {detail}".encode())
                self.stats.rejected += 1
                log.error("hub rejected package %s: %s %s; held for a person to look at",
                          pid.hex(), reason.name, detail)
                self._wake.set()
            case wire.DownPackage():
                await self._downlink(client, msg)
            case _:
                log.warning("ignored an unexpected %s on the downlink", type(msg).__name__)

    async def _downlink(self, client: aiomqtt.Client, msg: wire.DownPackage) -> None:
        self._store.clock.absorb_hub(msg.hub_hlc)
        if not await self._store.inbox_has(msg.package_id):
            try:
                _, events = open_event_batch(
                    msg.sealed, me=self._identity,
                    peers={self._hub.signing_key_id: self._hub}, expected_sender=self._hub.id)
            except (EnvelopeError, PackageContentError) as exc:
                self.stats.downlink_invalid += 1
                log.error("refused downlink package %s: %s", msg.package_id.hex(), exc)
                return
            await self._store.apply_remote(events, package_id=msg.package_id,
                                           sender=self._hub.id)
            self.stats.downlink_applied += 1
            for event in events:
                self._on_event(event.type.value, {"case": event.case, **event.body})
        await self._publish(client, wire.encode(wire.DownAck(package_id=msg.package_id)), qos=1)

    async def _beacons(self, client: aiomqtt.Client,
                       beacon: Callable[[], Awaitable[bytes]]) -> None:
        """Health beacon on ``cl/{station}/h``: right after connecting, then every interval.

        QoS 0: a lost beacon is replaced by the next one, and it must never hold back cases.
        A failing beacon source is logged and skipped; only a failed publish (the link itself)
        ends the connection, as any other publish would.
        """
        while True:
            try:
                # Bounded: a status source that hangs must not silence every later beacon.
                payload = await asyncio.wait_for(beacon(), timeout=_BEACON_SOURCE_TIMEOUT)
            except Exception as exc:  # the status source is not the link: never let it break it
                log.warning("health beacon skipped: %s: %s", type(exc).__name__, exc)
            else:
                await client.publish(self._health, payload, qos=0,
                                     timeout=self._settings.stall_timeout)
                self.stats.bytes_up += len(payload)
                self.stats.beacons_sent += 1
            self._beacon_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._beacon_changed.wait(),
                                       timeout=self._beacon_interval)

    async def _watchdog(self, client: aiomqtt.Client) -> None:
        period = max(0.2, min(5.0, self._settings.stall_timeout / 4))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            waiting = self._inflight_count() > 0 or any(
                t.missing == () or t.held for t in self._active.values())
            if waiting and now - self._last_heard > self._settings.stall_timeout:
                self.stats.stalls += 1
                force_close(client)
                raise _Stalled(f"no progress from the hub for {self._settings.stall_timeout:.0f} s")
            up_since = self.stats.up_since
            if up_since is not None and now - up_since > self._settings.stall_timeout:
                self._backoff.reset()  # a connection that lasted: the link works again
            for transfer in self._active.values():  # a lost offer or need: ask again
                if now - transfer.last_heard > self._settings.stall_timeout and (
                        transfer.missing == () or transfer.inflight or transfer.held):
                    transfer.unsure()
                    transfer.last_heard = now
                    self._wake.set()


class _Stopped(Exception):
    pass


def _initial_missing(entry: OutboxEntry, chunk: int) -> wire.Ranges | None:
    """Small packages go optimistically as one chunk, without an offer round trip; larger ones
    are offered first so that only what the hub lacks is sent."""
    return ((0, entry.size),) if entry.size <= chunk else None


def _utc_day() -> int:
    return int(time.time() // 86_400)


def _intersect(ranges: wire.Ranges, start: int, end: int) -> wire.Ranges:
    return tuple((max(a, start), min(b, end)) for a, b in ranges if a < end and start < b)


def _subtract(ranges: wire.Ranges, start: int, end: int) -> wire.Ranges:
    out: list[tuple[int, int]] = []
    for a, b in ranges:
        if b <= start or end <= a:
            out.append((a, b))
            continue
        if a < start:
            out.append((a, start))
        if end < b:
            out.append((end, b))
    return tuple(out)
