"""A real station runtime (store, intake, keys; devices per test) and the API app in-process.

The runtime is the daemon's own (`gateway.runtime.StationRuntime`) on a SQLite file in the
test's temp dir; the app is served by aiohttp's TestServer on a loopback port, so requests go
through the real middleware pipeline.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.api import create_app
from gateway.config.station import StationConfig, load_station_config
from gateway.keys import init_keys, load_enrollment, load_identity
from gateway.runtime import StationRuntime

STATION = "ST009"
TOKEN = "terminal-token-0123456789abcdef"
ORIGIN = "http://10.0.0.5:8080"
APPLICANT = {"id_type": "resident", "id_number": "110101199003071234", "name": "张三",
             "sex": "male"}


def station_config(tmp: Path, extra: str = "", *, env_port: int | None = None) -> StationConfig:
    """`env_port` sets [api] port (through the environment, as a systemd drop-in would)."""
    now = datetime.now(UTC)
    init_keys("station", STATION, tmp / "keys", force=False, now=now)
    init_keys("hub", "HUB01", tmp / "hubkeys", force=False, now=now)
    enrollment = next((tmp / "hubkeys").glob("*.enrollment.json"))
    path = tmp / "station.toml"
    path.write_text("\n".join([
        "[station]", f'id = "{STATION}"', f'state_dir = "{tmp / "state"}"', "",
        "[keys]", f'dir = "{tmp / "keys"}"', f'hub_enrollment = "{enrollment}"', "",
        "[mqtt]", 'host = "127.0.0.1"', "tls = false", "",
        "[store]", "disk_floor_mb = 0", "",
        "[api]", "max_body_bytes = 4096", f'cors_origins = ["{ORIGIN}"]',
        "[[api.tokens]]", 'name = "desk"', f'token = "{TOKEN}"', "",
        extra,
    ]), encoding="utf-8")
    env = {} if env_port is None else {"CUNLINK__API__PORT": str(env_port)}
    return load_station_config(path, env=env)


def runtime_for(cfg: StationConfig) -> StationRuntime:
    identity = load_identity(cfg.keys.dir, cfg.station.id)
    hub = load_enrollment(cfg.keys.hub_enrollment).peer()
    return StationRuntime(cfg, identity=identity, hub=hub)


@pytest.fixture
def cfg(tmp_path: Path) -> StationConfig:
    return station_config(tmp_path)


@pytest.fixture
async def runtime(cfg: StationConfig) -> AsyncIterator[StationRuntime]:
    async with runtime_for(cfg) as rt:
        yield rt


Observed = list[tuple[str, str, int, float]]
Client = TestClient[web.Request, web.Application]


@pytest.fixture
def observed() -> Observed:
    return []


@pytest.fixture
async def client(runtime: StationRuntime, observed: Observed) -> AsyncIterator[Client]:
    def observer(method: str, route: str, status: int, seconds: float) -> None:
        observed.append((method, route, status, seconds))

    app = create_app(runtime, runtime.cfg.api, observer=observer,
                     language=runtime.cfg.station.language)
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


def headers(**extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}", **extra}

