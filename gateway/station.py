"""The station daemon (`cunlink run`): runtime (store, intake, devices), transfer engine,
terminal API (TCP + Unix socket), metrics and health beacon, with signals.

systemd: READY=1 once the API listens, watchdog pings while the engine runs, and SIGHUP reloads
what can change live (gateway/reload.py). SIGTERM / SIGINT: stop taking new chunks, let the ones
in flight land (bounded), say offline, then close the API (open connections get a few seconds),
the devices and the store; the whole shutdown is bounded so systemd never has to SIGKILL a
healthy box.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

from gateway import api, wiring
from gateway.config.station import StationConfig
from gateway.keys import load_enrollment, load_identity
from gateway.lifecycle import ServiceLifecycle
from gateway.metrics import SnapshotCache, StationMetrics, refresh_snapshot, start_metrics_server
from gateway.reload import ConfigReloader, apply_log_level, station_reloader
from gateway.runtime import StationRuntime, open_station_store, store_path
from protocols.health import beacon_from_status, encode_beacon
from sync.uplink import StationUplink

__all__ = ["open_station_store", "run_station", "store_path", "uplink_stopped"]

log = logging.getLogger("cunlink.station")

SHUTDOWN_BOUND_SECONDS = 20.0
#: Seconds between status snapshots taken for the metrics endpoint.
METRICS_REFRESH_SECONDS = 5.0


def beacon_source(runtime: StationRuntime) -> Callable[[], Awaitable[bytes]]:
    """The uplink's beacon: the status snapshot, compacted (protocols.health)."""

    async def beacon() -> bytes:
        status = await runtime.status()
        return encode_beacon(beacon_from_status(status, at_ms=time.time_ns() // 1_000_000))

    return beacon


async def run_station(cfg: StationConfig, *, config_path: Path) -> None:
    identity = load_identity(cfg.keys.dir, cfg.station.id)
    hub = load_enrollment(cfg.keys.hub_enrollment).peer()
    async with AsyncExitStack() as stack:
        runtime = await stack.enter_async_context(
            StationRuntime(cfg, identity=identity, hub=hub))
        uplink = StationUplink(
            store=runtime.store, identity=identity, hub=hub, station_id=cfg.station.id,
            mqtt=wiring.mqtt_settings(cfg, client_id=cfg.station.id),
            settings=wiring.transfer_settings(cfg), software=runtime.software,
            on_event=runtime.on_uplink_event, beacon=beacon_source(runtime),
            beacon_interval=float(cfg.metrics.beacon_interval_seconds),
            suite=wiring.suite(cfg.keys.suite),
        )
        runtime.attach_uplink(uplink)
        cache = SnapshotCache()
        metrics = StationMetrics(cache.get, version=runtime.software.removeprefix("cunlink "))
        refresher = asyncio.create_task(
            refresh_snapshot(cache, runtime.status, interval=METRICS_REFRESH_SECONDS),
            name="metrics-snapshot")
        stack.push_async_callback(_cancel, refresher)
        try:
            server = start_metrics_server(metrics, cfg.metrics.listen, cfg.metrics.port)
        except OSError as exc:  # like the API's port: logged, and the cases still flow
            log.error("%s", exc.strerror or exc)
            server = None
        if server is not None:
            stack.push_async_callback(asyncio.to_thread, server.close)
        sweeper = asyncio.create_task(runtime.store.sweep_orphans_forever(), name="orphans")
        stack.push_async_callback(_cancel, sweeper)
        await stack.enter_async_context(api.serve(runtime, observer=metrics.observe_request))
        task: asyncio.Task[None] | None = None
        life = await stack.enter_async_context(ServiceLifecycle(
            "station", on_stop=uplink.stop,
            on_reload=station_reload(runtime, uplink, station_reloader(config_path, cfg)),
            # systemd's watchdog is fed only while the engine runs and the loop turns
            health=lambda: task is not None and not task.done()))
        task = asyncio.create_task(uplink.run(), name="uplink")
        life.ready(f"station {cfg.station.id} running")
        log.info("station %s running; state in %s", cfg.station.id, cfg.station.state_dir)
        await uplink_stopped(uplink, task)
        log.info("station %s stopped", cfg.station.id)


def station_reload(runtime: StationRuntime, uplink: StationUplink,
                   reloader: ConfigReloader[StationConfig]) -> Callable[[], Awaitable[str]]:
    """SIGHUP: re-read the file; apply what can change live, keep transfers going, and say
    (in the log and systemd's STATUS) what needs a restart. A file that does not load changes
    nothing."""

    async def on_reload() -> str:
        result = reloader.reload()
        plan, new = result.plan, result.config
        if plan is None or not plan.changed:
            return result.summary()
        if plan.touches("log.level"):
            apply_log_level(new.log.level)
        if plan.touches("transfer"):
            uplink.update_settings(wiring.transfer_settings(new))
        if plan.touches("metrics.beacon_interval_seconds"):
            uplink.set_beacon_interval(float(new.metrics.beacon_interval_seconds))
        devices = [d for d in ("idcard", "printer", "camera") if plan.touches(f"devices.{d}")]
        await runtime.apply_config(new, devices=devices)
        return result.summary()

    return on_reload


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


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
