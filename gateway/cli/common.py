"""Helpers shared by the CLI modules: loading configuration and failing with one clear line."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer

from gateway.config import ConfigError, HubConfig, StationConfig, load_hub_config
from gateway.config import load_station_config as _load_station


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def load_station(path: Path) -> StationConfig:
    try:
        return _load_station(path)
    except ConfigError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")


def load_hub(path: Path) -> HubConfig:
    try:
        return load_hub_config(path)
    except ConfigError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
