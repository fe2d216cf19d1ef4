"""The county hub daemon (`cunlink hub run`) and the hub's offline operations."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from gateway import wiring
from gateway.config.hub import HubConfig
from gateway.keys import load_identity
from gateway.lifecycle import ServiceLifecycle
from gateway.registry import StationRegistry
from gateway.reload import apply_log_level, hub_reloader
from sync.hubworker import HubWorker
from sync.store import Store, StoreError

log = logging.getLogger("cunlink.hubd")


def registry(cfg: HubConfig) -> StationRegistry:
    return StationRegistry(cfg.hub.state_dir / "stations")


async def open_hub_store(cfg: HubConfig) -> Store:
    state = cfg.hub.state_dir
    state.mkdir(parents=True, exist_ok=True)
    if cfg.store.backend != "sqlite":  # reserved in the file format for a later version
        raise StoreError(
            'store backend "postgresql" is not available in this version of cunlink; set '
            '[store] backend = "sqlite" (one file under [hub] state_dir, shared by every hub '
            "worker on the machine)")
    return await Store.open(state / "hub.db", blob_dir=state / "blobs",
                            clock_max_ahead_ms=cfg.store.clock_max_ahead_seconds * 1000,
                            hub_origins=frozenset({cfg.hub.id}))


async def run_hub(cfg: HubConfig, *, worker: str | None = None,
                  metrics_port: int | None = None, config_path: Path | None = None) -> None:
    """Run one hub worker until SIGTERM/SIGINT (systemd: READY=1, watchdog while the worker
    runs, SIGHUP re-reads ``config_path`` and applies the log level).

    ``metrics_port`` overrides ``[metrics] port`` (0 = no endpoint): several workers on one
    machine each need a port of their own (or set CUNLINK__METRICS__PORT per worker).
    """
    # Imported here: the hub's other commands (cases, stations, enroll) need no HTTP server.
    from gateway import hub_metrics

    identity = load_identity(cfg.keys.dir, cfg.hub.id)
    stations = registry(cfg)
    name = worker or f"w{os.getpid()}"
    port = cfg.metrics.port if metrics_port is None else metrics_port
    store = await open_hub_store(cfg)
    metrics: hub_metrics.MetricsServer | None = None
    try:
        hub = HubWorker(
            store=store, identity=identity, stations=stations.lookup,
            incoming=cfg.hub.state_dir / "incoming",
            mqtt=wiring.mqtt_settings(cfg, client_id=f"{cfg.hub.id}-{name}"),
            share_group=cfg.mqtt.share_group,
        )
        if port:
            try:
                metrics = await hub_metrics.serve(
                    hub.stats, store=store, enrolled=stations.stations, hub=cfg.hub.id,
                    worker=name, listen=cfg.metrics.listen, port=port)
            except OSError as exc:
                log.error("cannot serve metrics on %s:%d: %s. Another hub worker on this machine "
                          "may hold the port: give each worker its own (`cunlink hub run "
                          "--metrics-port N`, or CUNLINK__METRICS__PORT=N), or set [metrics] "
                          "port = 0 to turn the endpoint off", cfg.metrics.listen, port,
                          exc.strerror or exc)
                raise SystemExit(2) from None
            log.info("metrics on http://%s:%d/metrics", cfg.metrics.listen, metrics.port)
        sweeper = asyncio.create_task(store.sweep_orphans_forever(), name="orphans")
        run = asyncio.create_task(hub.run(), name="hub")
        reloader = hub_reloader(config_path, cfg) if config_path is not None else None

        async def on_reload() -> str:
            if reloader is None:
                return "no configuration file to reload"
            result = reloader.reload()
            if result.plan is not None and result.plan.touches("log.level"):
                apply_log_level(result.config.log.level)
            return result.summary()

        try:
            async with ServiceLifecycle("hub", on_stop=hub.stop, on_reload=on_reload,
                                        health=lambda: not run.done()) as life:
                life.ready(f"hub {cfg.hub.id} worker {name} running")
                log.info("hub %s worker %s running; state in %s", cfg.hub.id, name,
                         cfg.hub.state_dir)
                await run
            log.info("hub %s worker %s stopped", cfg.hub.id, name)
        finally:
            for task in (run, sweeper):
                task.cancel()
            await asyncio.gather(run, sweeper, return_exceptions=True)
    finally:
        if metrics is not None:
            await metrics.stop()
        await store.close()


def hub_state_dir(cfg: HubConfig) -> Path:
    return cfg.hub.state_dir
