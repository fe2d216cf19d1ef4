"""Serving on TCP and the Unix socket: modes, stale sockets, a taken port, no tokens."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import aiohttp
import pytest

from gateway.api import ApiStartError, serve
from gateway.testbed.ports import free_port
from tests.gateway.api.conftest import TOKEN, runtime_for, station_config


async def test_tcp_with_token_and_unix_without(tmp_path: Path) -> None:
    port = free_port()
    cfg = station_config(tmp_path, env_port=port)
    async with runtime_for(cfg) as rt, serve(rt) as where:
        assert where.port == port and where.socket_path is not None
        assert stat.S_IMODE(where.socket_path.stat().st_mode) == 0o660
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/api/v1/status") as resp:
                assert resp.status == 401
            async with http.get(f"http://127.0.0.1:{port}/api/v1/status",
                                headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                assert resp.status == 200
        local = aiohttp.UnixConnector(path=str(where.socket_path))
        async with aiohttp.ClientSession(connector=local) as http, \
                http.get("http://x/api/v1/devices") as resp:
            assert resp.status == 200
    assert not where.socket_path.exists()


async def test_a_taken_port_leaves_the_unix_socket_serving(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = station_config(tmp_path, env_port=port)
        async with runtime_for(cfg) as rt, serve(rt) as where:
            assert where.port is None and where.socket_path is not None
            errors = (await rt.status())["recent_errors"]
            assert any(f"127.0.0.1:{port}" in e["message"] for e in errors)


async def test_stale_socket_is_replaced_but_a_live_one_is_not(tmp_path: Path) -> None:
    cfg = station_config(tmp_path, env_port=free_port())
    sock_path = cfg.station.state_dir / "cunlink.sock"
    sock_path.parent.mkdir(parents=True, exist_ok=True)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock_path))
    stale.close()  # the file stays, nobody answers: a crashed daemon's leftover
    async with runtime_for(cfg) as rt, serve(rt) as where:
        assert where.socket_path == sock_path
        with pytest.raises(ApiStartError, match="another station daemon"):
            async with serve(rt, observer=None):
                pass
        assert sock_path.exists()  # the second attempt did not remove the live one
