"""Serve the API on TCP (`[api] listen`/`port`, token required) and on the Unix socket
`<state_dir>/cunlink.sock` (mode 0660, no token: `cunlink status` uses it)."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from gateway.api.app import create_app
from gateway.api.context import Observer
from gateway.runtime import StationRuntime

log = logging.getLogger("cunlink.api")

SOCKET_NAME = "cunlink.sock"
SOCKET_MODE = 0o660
#: Seconds open connections (a WebSocket, an upload) get to finish at shutdown.
SHUTDOWN_SECONDS = 3.0


class ApiStartError(RuntimeError):
    """The API could not listen (port taken, socket held by another daemon)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Listening:
    host: str
    port: int | None  # None: not served on TCP (the port was taken)
    socket_path: Path | None


def socket_path(state_dir: Path) -> Path:
    return state_dir / SOCKET_NAME


def _clear_stale_socket(path: Path) -> None:
    """Remove a socket file left by a crash; refuse if a live daemon still answers on it."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ApiStartError(f"{path} exists and is not a socket; move it away")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()
            return
    raise ApiStartError(f"another station daemon is serving {path}; stop it first")


async def _start_tcp(runtime: StationRuntime, observer: Observer | None,
                     runners: list[web.AppRunner]) -> int | None:
    """Serve on [api] listen:port. A port that cannot be bound is logged, not fatal: the
    uplink must go on carrying accepted cases, and `cunlink status` (Unix socket) shows it."""
    cfg = runtime.cfg
    tcp = web.AppRunner(create_app(runtime, cfg.api, observer=observer,
                                   language=cfg.station.language),
                        access_log=None, shutdown_timeout=SHUTDOWN_SECONDS)
    await tcp.setup()
    runners.append(tcp)
    try:
        await web.TCPSite(tcp, cfg.api.listen, cfg.api.port).start()
    except OSError as exc:
        log.error("the terminal API cannot listen on %s:%d: %s; change [api] listen/port or "
                  "stop what uses it, then restart", cfg.api.listen, cfg.api.port,
                  exc.strerror or exc)
        return None
    return cfg.api.port


@contextlib.asynccontextmanager
async def serve(
    runtime: StationRuntime,
    *,
    observer: Observer | None = None,
    unix_socket: bool = True,
) -> AsyncIterator[Listening]:
    cfg = runtime.cfg
    language = cfg.station.language
    runners: list[web.AppRunner] = []
    created: Path | None = None
    try:
        # Served even with no token yet: every request is refused (401) until one is added,
        # and a reload (SIGHUP) that adds one takes effect without a restart.
        port = await _start_tcp(runtime, observer, runners)
        if not cfg.api.tokens:
            log.warning("no [[api.tokens]] configured: the terminal API on %s:%d refuses every "
                        "request; add a token per terminal, then `systemctl reload cunlink`",
                        cfg.api.listen, cfg.api.port)
        path = None
        if unix_socket:
            path = socket_path(cfg.station.state_dir)
            _clear_stale_socket(path)
            local = web.AppRunner(
                create_app(runtime, cfg.api, require_token=False, observer=observer,
                           language=language),
                access_log=None, shutdown_timeout=SHUTDOWN_SECONDS)
            await local.setup()
            runners.append(local)
            await web.UnixSite(local, str(path)).start()
            created = path
            # the state directory (0750 under systemd) already keeps others out; this makes
            # the socket usable by the cunlink group only, whatever the umask
            os.chmod(path, SOCKET_MODE)
        if port is not None:
            log.info("terminal API on http://%s:%d/api/v1", cfg.api.listen, port)
        if path is not None:
            log.info("local API (no token) on %s", path)
        yield Listening(host=cfg.api.listen, port=port, socket_path=path)
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
        if created is not None:
            with contextlib.suppress(OSError):
                created.unlink()
