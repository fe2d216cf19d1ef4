"""What every handler reaches through its request: the runtime and the API settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from gateway.config.station import ApiSettings
from gateway.runtime import StationRuntime

#: `(method, route, status, seconds)` after every request: the metrics hook.
Observer = Callable[[str, str, int, float], None]


@dataclass(slots=True, kw_only=True)
class ApiContext:
    runtime: StationRuntime
    #: Replaced on SIGHUP (tokens, CORS origins) by StationRuntime.apply_config; handlers read
    #: it per request, so a reload takes effect at the next request.
    settings: ApiSettings
    #: False on the Unix socket: its file permissions (0660) are the authentication.
    require_token: bool
    observer: Observer | None = None


CONTEXT: Final = web.AppKey("cunlink_api", ApiContext)


def context(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]


def runtime(request: web.Request) -> StationRuntime:
    return request.app[CONTEXT].runtime
