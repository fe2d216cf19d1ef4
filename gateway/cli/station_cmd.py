"""Top-level station commands: `cunlink run`, `cunlink demo`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from gateway.cli.common import fail, load_station


def register(app: typer.Typer) -> None:
    """Mount the top-level commands on the root app."""
    app.command("run")(run)
    app.command("demo")(demo)


def run(config: Annotated[Path, typer.Option("--config", "-c", help="station.toml")]) -> None:
    """Run the station daemon: durable outbox -> the county hub, and the hub's answers back."""
    from gateway import logs
    from gateway.api import ApiStartError
    from gateway.keys import KeyFileError
    from gateway.lifecycle import LifecycleError
    from gateway.station import run_station
    from sync.store import StoreError

    cfg = load_station(config)
    logs.setup(cfg.log.level)
    try:
        asyncio.run(run_station(cfg, config_path=config.resolve()))
    except (KeyFileError, ApiStartError, StoreError, LifecycleError) as exc:
        fail(str(exc))


def demo(
    cases: Annotated[int, typer.Option(help="how many cases to send")] = 5,
    keep: Annotated[bool, typer.Option(help="keep the temporary directory")] = False,
) -> None:
    """Run the whole chain on this machine: broker, hub, and a station on a bad 2G link."""
    from gateway.demo import run_demo

    raise typer.Exit(asyncio.run(run_demo(cases=cases, keep=keep)))
