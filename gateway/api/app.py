"""The terminal API's aiohttp application: routes under /api/v1 and the middleware pipeline."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from gateway.api import card, cases, events, materials, receipt, status
from gateway.api.context import CONTEXT, ApiContext, Observer
from gateway.api.errors import LANGUAGE_KEY
from gateway.api.middleware import PIPELINE
from gateway.config.station import ApiSettings
from gateway.runtime import StationRuntime

PREFIX: Final = "/api/v1"
# Case numbers are ids of the case model: no '/', at most 64 characters.
CASE: Final = "{id:[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}}"

#: (method, path, handler, route name or None): the whole API. docs/openapi.yaml lists the
#: same routes; a test holds the two together.
ROUTES: Final = (
    ("POST", "/cases", cases.create_case, "cases"),
    ("GET", "/cases", cases.list_cases, None),
    ("GET", f"/cases/{CASE}", cases.get_case, "case"),
    ("POST", f"/cases/{CASE}/idcard", card.verify_card, None),
    ("POST", f"/cases/{CASE}/materials", materials.add_material, None),
    ("POST", f"/cases/{CASE}/submit", cases.submit_case, None),
    ("POST", f"/cases/{CASE}/receipt", receipt.print_receipt, None),
    ("GET", "/status", status.get_status, None),
    ("GET", "/devices", status.list_devices, None),
    ("GET", "/events", events.events, None),
)


def create_app(
    runtime: StationRuntime,
    settings: ApiSettings,
    *,
    require_token: bool = True,
    observer: Observer | None = None,
    language: str = "zh-CN",
) -> web.Application:
    """The API app. `require_token=False` only for the Unix socket (file permissions guard it).
    `observer(method, route, status, seconds)` is called after every request (metrics)."""
    app = web.Application(middlewares=PIPELINE, client_max_size=settings.max_body_bytes)
    ctx = ApiContext(runtime=runtime, settings=settings, require_token=require_token,
                     observer=observer)
    runtime.api_contexts.append(ctx)
    app[CONTEXT] = ctx
    app[LANGUAGE_KEY] = language
    for method, path, handler, name in ROUTES:
        app.router.add_route(method, PREFIX + path, handler, name=name)
    return app
