"""The county hub daemon (`cunlink hub run`) and the hub's offline operations."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

from gateway import wiring
from gateway.config.hub import HubConfig
from gateway.keys import load_identity
from gateway.registry import StationRegistry
from sync.hubworker import HubWorker
from sync.store import Store

log = logging.getLogger("cunlink.hubd")


def registry(cfg: HubConfig) -> StationRegistry:
    return StationRegistry(cfg.hub.state_dir / "stations")


async def open_hub_store(cfg: HubConfig) -> Store:
    state = cfg.hub.state_dir
    state.mkdir(parents=True, exist_ok=True)
    if cfg.store.backend != "sqlite":
        raise NotImplementedError(
            "store backend 'postgresql' is not available yet; use backend = \"sqlite\"")
    return await Store.open(state / "hub.db", blob_dir=state / "blobs",
                            clock_max_ahead_ms=cfg.store.clock_max_ahead_seconds * 1000,
                            hub_origins=frozenset({cfg.hub.id}))


async def run_hub(cfg: HubConfig, *, worker: str | None = None) -> None:
    identity = load_identity(cfg.keys.dir, cfg.hub.id)
    stations = registry(cfg)
    name = worker or f"w{os.getpid()}"
    store = await open_hub_store(cfg)
    try:
        hub = HubWorker(
            store=store, identity=identity, stations=stations.lookup,
            incoming=cfg.hub.state_dir / "incoming",
            mqtt=wiring.mqtt_settings(cfg, client_id=f"{cfg.hub.id}-{name}"),
            share_group=cfg.mqtt.share_group,
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, hub.stop)
        log.info("hub %s worker %s running; state in %s", cfg.hub.id, name, cfg.hub.state_dir)
        await hub.run()
    finally:
        await store.close()


def hub_state_dir(cfg: HubConfig) -> Path:
    return cfg.hub.state_dir
