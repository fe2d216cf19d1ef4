"""The station's running parts, shared by the API, the uplink, metrics and the beacon.

`StationRuntime` is an async context manager that opens the store and the case intake, runs
the enabled devices under one `devices.supervisor.Supervisor` (ID-card reader polling for
cards, printer session, camera watch), keeps an in-process event bus for the terminals'
WebSocket, remembers the last warnings and errors, and answers `status()` with the one
snapshot shape that `/api/v1/status`, `cunlink status`, the metrics and the beacon all read.

The bus never blocks the daemon: every subscriber has a bounded queue; when a slow terminal
falls behind, its oldest messages are dropped and it is told how many (a `lagged` message).
Personal data (the card's text and photo) is held in memory only while the card lies on the
reader, and goes to the bus masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiosqlite

from devices.camera import Camera, Capture
from devices.health import DeviceState
from devices.idcard import (
    CardInserted,
    CardRemoved,
    IdCardReader,
    ReaderError,
)
from devices.printer import Printer
from devices.supervisor import HealthRecorder, Supervisor
from gateway import wiring
from gateway.bus import EventBus, RecentErrors, iso_utc
from gateway.config.station import StationConfig
from protocols.envelope import LocalIdentity, PeerIdentity
from protocols.idcard import ReadResult, describe
from sync.intake import CaseIntake
from sync.model import Side
from sync.store import Store
from sync.store.reads import Reads
from sync.store.store import real_wall_ms
from sync.uplink import LinkStats, StationUplink

log = logging.getLogger("cunlink.runtime")

MB = 1024 * 1024
#: `cases.by_status` folds every case (about a second for 10 000 on a small board), so a fold
#: is reused: at most this old once a local write or a downlink event made it stale …
CASES_STALE_SECONDS = 5.0
#: … and at most this old in any case (another process, the CLI, may have written).
CASES_MAX_AGE_SECONDS = 60.0
#: Seconds between camera probes while idle.
CAMERA_PROBE_SECONDS = 30.0
PRIORITY_CLASSES = {0: "control", 1: "events", 2: "materials"}
DOWNLINK_EVENTS = {"status_changed": "case_status_changed",
                   "supplement_requested": "supplement_requested"}


def software_version() -> str:
    try:
        return f"cunlink {metadata.version('cunlink')}"
    except metadata.PackageNotFoundError:  # running from a source tree without install
        return "cunlink"


def store_path(cfg: StationConfig) -> Path:
    return cfg.station.state_dir / "station.db"


async def open_station_store(cfg: StationConfig) -> Store:
    state = cfg.station.state_dir
    state.mkdir(parents=True, exist_ok=True)
    return await Store.open(
        store_path(cfg), blob_dir=state / "blobs",
        disk_floor_bytes=cfg.store.disk_floor_mb * MB,
        # A station never clamps the hub: after a reboot without an RTC its own wall clock is
        # the one that is wrong, and clamping would order its answers before the requests.
        clock_max_ahead_ms=None,
        max_batch=cfg.store.group_commit_max_batch,
        # everything not made by this station came from the hub (as in `cunlink cases`)
        hub_origins=lambda origin: Side.STATION if origin == cfg.station.id else Side.HUB,
        window_ms=cfg.store.group_commit_window_ms,
    )


async def open_bulk_reader(store: Store) -> aiosqlite.Connection:
    """A second read-only connection for whole-store scans.

    `Reads.list_cases` streams its rows through a cursor across awaits; while that statement is
    open, its connection's read snapshot stays open too, so a query interleaved on the same
    connection (the API reading back a case it has just committed) would see the database as
    it was before the commit. Scans therefore get their own connection, and the store's reader
    keeps read-after-write for the short queries."""
    reader = await aiosqlite.connect(store.path, timeout=10.0)
    try:
        await reader.execute("PRAGMA query_only = ON")
    except BaseException:
        await reader.close()
        raise
    return reader


# -- the card on the reader -------------------------------------------------------------------


@dataclass(slots=True)
class CardSlot:
    """The card lying on the reader now (None when there is none); waiters are woken on
    every change."""

    card: ReadResult | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def set(self, card: ReadResult | None) -> None:
        self.card = card
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()


def card_view(card: ReadResult, *, reveal: bool) -> dict[str, Any]:
    """A card for a terminal: masked unless `reveal`; the photo only by its size (and hash
    when revealed)."""
    out: dict[str, Any] = dict(describe(card.text, reveal=reveal))
    out["photo"] = {"format": "WLT", "bytes": len(card.photo_wlt)}
    if reveal:
        out["photo"]["sha256"] = card.photo_sha256
    return out


class DeviceUnavailable(Exception):
    """A device operation cannot start: `code` is `device_disabled` or `device_unavailable`."""

    def __init__(self, device: str, code: str, detail: str) -> None:
        super().__init__(f"{device}: {detail}")
        self.device = device
        self.code = code
        self.detail = detail


# -- the runtime ------------------------------------------------------------------------------


class StationRuntime:
    """Store, intake, devices, bus and error ring of one running station."""

    def __init__(
        self,
        cfg: StationConfig,
        *,
        identity: LocalIdentity,
        hub: PeerIdentity,
        camera_probe_seconds: float = CAMERA_PROBE_SECONDS,
    ) -> None:
        self.cfg = cfg
        self.station = cfg.station.id
        self._identity = identity
        self._hub = hub
        self._camera_probe = camera_probe_seconds
        self.bus = EventBus()
        self.errors = RecentErrors()
        self.software = software_version()
        self.started_at = time.time()
        self._started_mono = time.monotonic()
        self.api_requests = 0
        self.card = CardSlot()
        self.policy = wiring.camera_policy(cfg)
        self.uplink: StationUplink | None = None
        #: The API apps' contexts (TCP and Unix socket), for SIGHUP's new tokens / origins.
        self.api_contexts: list[Any] = []
        self.on_commit: Callable[[], None] = lambda: None
        self._store: Store | None = None
        self._bulk: Reads | None = None
        self._intake: CaseIntake | None = None
        self._supervisor: Supervisor | None = None
        self.printer: Printer | None = None
        self.camera: Camera | None = None
        self.reader_open = False
        self._cases_cache: tuple[float, dict[str, int], int] | None = None
        self._cases_dirty = False
        self._cases_lock = asyncio.Lock()
        self._stack = contextlib.AsyncExitStack()

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        stack = self._stack
        await stack.__aenter__()
        try:
            logging.getLogger().addHandler(self.errors)
            stack.callback(logging.getLogger().removeHandler, self.errors)
            self._store = await open_station_store(self.cfg)
            stack.push_async_callback(self._store.close)
            bulk_reader = await open_bulk_reader(self._store)
            stack.push_async_callback(bulk_reader.close)
            self._bulk = Reads(reader=bulk_reader, wall_ms=real_wall_ms,
                               hub_origins=self._store.hub_origins)
            self._intake = CaseIntake(self._store, self._identity, self._hub,
                                      wiring.suite(self.cfg.keys.suite), self.station)
            if self.cfg.devices.printer.enabled:
                self.printer = Printer(wiring.printer_config(self.cfg))
            # pushed before the supervisor: closed after the supervisor stopped its session
            # (whichever printer is current then: a reload may have replaced it)
            stack.push_async_callback(self._close_printer)
            self._supervisor = await stack.enter_async_context(Supervisor())
            self._start_devices(self._supervisor)
        except BaseException:
            await stack.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> None:
        # The supervisor leaves first (devices cancelled and closed), then the printer driver
        # fails what is still queued, then the store closes.
        await self._stack.__aexit__(et, ev, tb)

    async def _close_printer(self) -> None:
        printer, self.printer = self.printer, None
        if printer is not None:
            await printer.close()

    async def apply_config(self, new: StationConfig, *, devices: Iterable[str] = ()) -> None:
        """Take a reloaded configuration (SIGHUP): the API's tokens and CORS origins apply at the
        next request; each device named in `devices` is stopped and started again with its new
        settings (or left stopped if now disabled). The store, the keys and the listeners keep
        what they were started with (the reload plan says those need a restart)."""
        self.cfg = new
        self.policy = wiring.camera_policy(new)
        for ctx in self.api_contexts:
            # the body limit is fixed when the aiohttp app is built: keep the running one
            ctx.settings = replace(new.api, max_body_bytes=ctx.settings.max_body_bytes)
        sup = self.supervisor
        for name in devices:
            stopped = await sup.stop(name)
            if name == "printer":
                await self._close_printer()
                if new.devices.printer.enabled:
                    self.printer = Printer(wiring.printer_config(new))
                    sup.start("printer", "printer", self.printer.run_session)
            elif getattr(new.devices, name).enabled:
                sup.start(name, name, self._idcard_task if name == "idcard" else self._camera_task)
            log.info("device %s %s with the reloaded settings", name,
                     "restarted" if stopped else "started")

    def _start_devices(self, sup: Supervisor) -> None:
        d = self.cfg.devices
        if d.idcard.enabled:
            sup.start("idcard", "idcard", self._idcard_task)
        if self.printer is not None:
            sup.start("printer", "printer", self.printer.run_session)
        if d.camera.enabled:
            sup.start("camera", "camera", self._camera_task)

    async def _idcard_task(self, health: HealthRecorder) -> None:
        c = self.cfg.devices.idcard
        async with IdCardReader(str(c.port), wiring.reader_settings(self.cfg)) as reader:
            info = reader.info
            health.success(baud=str(info.baud), sam_id=info.sam_id)
            self.reader_open = True
            try:
                stream = reader.events()
                try:
                    async for event in stream:
                        self._card_event(event, health)
                finally:
                    stream.close()
            finally:
                self.reader_open = False
                if self.card.card is not None:
                    self.card.set(None)

    def _card_event(self, event: CardInserted | CardRemoved | ReaderError,
                    health: HealthRecorder) -> None:
        match event:
            case CardInserted(result=result, read_seconds=seconds):
                health.success()
                self.card.set(result)
                view = card_view(result, reveal=False)
                self.bus.publish("card_inserted", {"card": view,
                                                   "read_seconds": round(seconds, 3)})
            case CardRemoved():
                self.card.set(None)
                self.bus.publish("card_removed", {})
            case ReaderError(message=message):
                health.problem(message)
                self.bus.publish("card_error", {"message": message})

    async def _camera_task(self, health: HealthRecorder) -> None:
        async with Camera(wiring.camera_settings(self.cfg), self.policy) as camera:
            self.camera = camera
            try:
                await camera.watch(health, interval=self._camera_probe)
            finally:
                self.camera = None

    # -- parts -------------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the station runtime is not running: use `async with`")
        return self._store

    @property
    def bulk(self) -> Reads:
        """Reads that scan every case (`list_cases`), on their own connection (see
        `open_bulk_reader`)."""
        if self._bulk is None:
            raise RuntimeError("the station runtime is not running: use `async with`")
        return self._bulk

    @property
    def intake(self) -> CaseIntake:
        if self._intake is None:
            raise RuntimeError("the station runtime is not running: use `async with`")
        return self._intake

    @property
    def supervisor(self) -> Supervisor:
        if self._supervisor is None:
            raise RuntimeError("the station runtime is not running: use `async with`")
        return self._supervisor

    def attach_uplink(self, uplink: StationUplink) -> None:
        self.uplink = uplink
        self.on_commit = uplink.wake

    def committed(self) -> None:
        """Something was written for the hub: wake the uplink, refresh the case counts."""
        self._cases_dirty = True
        self.on_commit()

    # -- uplink callback ---------------------------------------------------------------------

    def on_uplink_event(self, kind: str, data: dict[str, Any]) -> None:
        """`StationUplink(on_event=...)`: link state and the hub's events, onto the bus."""
        if kind in ("link_up", "link_down"):
            self.bus.publish(kind, dict(data))
        elif kind in DOWNLINK_EVENTS:
            self._cases_dirty = True
            self.bus.publish(DOWNLINK_EVENTS[kind], dict(data))
        elif kind == "delivered":
            self.bus.publish("delivered", dict(data))

    # -- devices for the API -------------------------------------------------------------------

    def device_health(self, name: str) -> dict[str, Any] | None:
        for health in self.supervisor.snapshot():
            if health.name == name:
                return health.as_dict()
        return None

    def require(self, name: str) -> None:
        """Raise DeviceUnavailable unless device `name` is enabled and not down."""
        if not getattr(self.cfg.devices, name).enabled:
            raise DeviceUnavailable(name, "device_disabled",
                                    f"[devices.{name}] enabled = false in the configuration")
        health = self.device_health(name)
        if health is not None and health["state"] == DeviceState.DOWN.value:
            raise DeviceUnavailable(name, "device_unavailable",
                                    str(health.get("last_error") or "down"))

    async def wait_card(self, timeout: float) -> ReadResult:  # noqa: ASYNC109
        """The card on the reader, or the next one placed within `timeout` seconds; raises
        TimeoutError, or DeviceUnavailable when the reader is disabled or not open."""
        self.require("idcard")
        async with asyncio.timeout(timeout):
            while True:
                if self.card.card is not None:
                    return self.card.card
                if not self.reader_open:
                    health = self.device_health("idcard") or {}
                    raise DeviceUnavailable(
                        "idcard", "device_unavailable",
                        str(health.get("last_error") or "the reader is not connected"))
                await self.card.changed.wait()

    async def capture(self) -> Capture:
        self.require("camera")
        camera = self.camera
        if camera is None:
            health = self.device_health("camera") or {}
            raise DeviceUnavailable("camera", "device_unavailable",
                                    str(health.get("last_error") or "the camera is not ready"))
        return await camera.capture()

    # -- status -------------------------------------------------------------------------------

    async def _cases(self) -> tuple[dict[str, int], int]:
        async with self._cases_lock:
            now = time.monotonic()
            cached = self._cases_cache
            if cached is not None:
                age = now - cached[0]
                limit = CASES_STALE_SECONDS if self._cases_dirty else CASES_MAX_AGE_SECONDS
                if age < limit:
                    return cached[1], cached[2]
            self._cases_dirty = False
            by_status: dict[str, int] = {}
            conflicts = 0
            for summary in await self.bulk.list_cases():
                by_status[summary.status] = by_status.get(summary.status, 0) + 1
                conflicts += summary.conflicts
            self._cases_cache = (now, by_status, conflicts)
            return by_status, conflicts

    def _link(self) -> dict[str, Any]:
        s = self.uplink.stats if self.uplink is not None else LinkStats()
        since = None
        if s.link_up and s.up_since is not None:
            since = iso_utc(time.time() - (time.monotonic() - s.up_since))
        return {
            "up": s.link_up, "since": since, "connects": s.connects,
            "disconnects": s.disconnects, "stalls": s.stalls, "bytes_up": s.bytes_up,
            "bytes_down": s.bytes_down, "chunks_sent": s.chunks_sent,
            "chunks_resent": s.chunks_resent, "bytes_resent": s.bytes_resent,
            "delivered": s.delivered, "rejected": s.rejected, "rtt_seconds": s.rtt_seconds,
            "hub_offset_ms": s.hub_offset_ms, "last_error": s.last_error,
            "beacons_sent": s.beacons_sent,
        }

    async def status(self) -> dict[str, Any]:
        """The station snapshot (the shape is shared with `cunlink status`, metrics, beacon)."""
        store = self.store
        outbox = await store.outbox_stats()
        by_class = {name: outbox.count_by_priority.get(p, 0)
                    for p, name in PRIORITY_CLASSES.items()}
        by_status, conflicts = await self._cases()
        try:
            free = shutil.disk_usage(self.cfg.station.state_dir).free
        except OSError:
            free = 0
        return {
            "station": self.station,
            "software": self.software,
            "started_at": iso_utc(self.started_at),
            "uptime_seconds": round(time.monotonic() - self._started_mono, 3),
            "link": self._link(),
            "outbox": {
                "count": sum(outbox.count_by_priority.values()),
                "bytes_pending": outbox.bytes_pending,
                "oldest_age_seconds": None if outbox.oldest_age_ms is None
                else outbox.oldest_age_ms / 1000,
                "by_class": by_class,
                "held": outbox.held,
            },
            "devices": [h.as_dict() for h in self.supervisor.snapshot()],
            "disk": {"free_bytes": free, "floor_bytes": store.disk_floor_bytes},
            "cases": {"by_status": by_status, "conflicts": conflicts},
            "recent_errors": self.errors.snapshot(),
            "api": {"requests": self.api_requests},
        }
