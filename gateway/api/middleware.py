"""The request pipeline, outermost first: observe (metrics hook, debug log) -> CORS/PNA ->
JSON errors -> token -> body size. Each is one small function."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.api import cors
from gateway.api.auth import TERMINAL, offered_tokens, terminal_for
from gateway.api.context import context
from gateway.api.errors import ApiError, error_response

log = logging.getLogger("cunlink.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def route_name(request: web.Request) -> str:
    """The route template ("/api/v1/cases/{id}"), never the raw path: metrics stay bounded
    and case numbers stay out of them."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = context(request)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        seconds = time.perf_counter() - started
        ctx.runtime.api_requests += 1
        route = route_name(request)
        log.debug("%s %s %s -> %d in %.3f s", request.get(TERMINAL, "-"), request.method,
                  route, status, seconds)
        if ctx.observer is not None:
            try:
                ctx.observer(request.method, route, status, seconds)
            except Exception:  # the metrics hook must never fail a request
                log.exception("the API request observer failed")


@web.middleware
async def cors_pna(request: web.Request, handler: Handler) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    if origin is None:
        return await handler(request)
    allowed = cors.origin_allowed(origin, context(request).settings.cors_origins)
    if not allowed:
        # no CORS headers at all: the browser shows the page nothing
        return error_response(request, ApiError("origin_not_allowed", origin=origin[:100]))
    if cors.is_preflight(request):
        return cors.preflight_response(request)
    response = await handler(request)
    if not response.prepared:  # a WebSocket has sent its headers already
        cors.decorate(response, origin)
    return response


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as err:
        return error_response(request, err)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(request, _http_error(request, exc))
    except Exception:
        log.exception("API %s %s failed", request.method, route_name(request))
        return error_response(request, ApiError("internal"))


def _http_error(request: web.Request, exc: web.HTTPException) -> ApiError:
    if exc.status == 404:
        return ApiError("not_found", path=request.path[:200])
    if exc.status == 405:
        return ApiError("method_not_allowed", method=request.method, path=request.path[:200])
    if exc.status == 413:
        return ApiError("body_too_large", limit=context(request).settings.max_body_bytes)
    return ApiError("bad_request", detail=exc.reason)


@web.middleware
async def token(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = context(request)
    if not ctx.require_token:
        request[TERMINAL] = "local"
        return await handler(request)
    name = terminal_for(offered_tokens(request), ctx.settings.tokens)
    if name is None:
        log.info("refused %s %s: no valid terminal token", request.method, route_name(request))
        raise ApiError("unauthorized", headers={"WWW-Authenticate": 'Bearer realm="cunlink"'})
    request[TERMINAL] = name
    return await handler(request)


@web.middleware
async def body_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    # Refused before a byte of the body is read; bodies without a length are stopped by the
    # app's client_max_size when read.
    limit = context(request).settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError("body_too_large", limit=limit)
    return await handler(request)


PIPELINE = (observe, cors_pna, json_errors, token, body_limit)
