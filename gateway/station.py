"""The station daemon (`cunlink run`): the store and the transfer engine, with signals.

SIGTERM / SIGINT: stop taking new chunks, let the ones in flight land (bounded), say offline,
close the store; the whole shutdown is bounded so systemd never has to SIGKILL a healthy box.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import AsyncExitStack
from pathlib import Path

from gateway import wiring
from gateway.config.station import StationConfig
from gateway.keys import load_enrollment, load_identity
from sync.model import Side
from sync.store import Store
from sync.uplink import StationUplink

log = logging.getLogger("cunlink.station")

SHUTDOWN_BOUND_SECONDS = 20.0
MB = 1024 * 1024


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


async def run_station(cfg: StationConfig) -> None:
    identity = load_identity(cfg.keys.dir, cfg.station.id)
    hub = load_enrollment(cfg.keys.hub_enrollment).peer()
    async with AsyncExitStack() as stack:
        store = await open_station_store(cfg)
        stack.push_async_callback(store.close)
        uplink = StationUplink(
            store=store, identity=identity, hub=hub, station_id=cfg.station.id,
            mqtt=wiring.mqtt_settings(cfg, client_id=cfg.station.id),
            settings=wiring.transfer_settings(cfg),
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, uplink.stop)
        stack.callback(loop.remove_signal_handler, signal.SIGTERM)
        stack.callback(loop.remove_signal_handler, signal.SIGINT)
        log.info("station %s running; state in %s", cfg.station.id, cfg.station.state_dir)
        task = asyncio.create_task(uplink.run(), name="uplink")
        await uplink_stopped(uplink, task)
        log.info("station %s stopped", cfg.station.id)


async def uplink_stopped(uplink: StationUplink, task: asyncio.Task[None]) -> None:
    """Wait for the engine; once a stop was asked for, give it a bounded time to finish."""
    while not task.done():
        await asyncio.wait({task}, timeout=0.5)
        if uplink.stopping and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=SHUTDOWN_BOUND_SECONDS)
            except TimeoutError:
                log.warning("shutdown took longer than %.0f s; cancelling the link",
                            SHUTDOWN_BOUND_SECONDS)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]
