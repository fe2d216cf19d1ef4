"""CORS and Private-Network-Access: answered only for the configured origins.

A browser page on the LAN (the terminal app) calling the station box is a cross-origin
request, and since Chrome's Private Network Access also a request into a private network:
the preflight carries ``Access-Control-Request-Private-Network: true`` and must be answered
``Access-Control-Allow-Private-Network: true``. For an origin not in `[api] cors_origins` the
preflight gets 403 with no CORS headers at all, and any other request from such an origin is
refused too (403 `origin_not_allowed`): a page the station does not know must not be able to
drive its devices even if it learnt a token. Requests without an Origin header (curl, the
CLI, the tests) are not browser requests and pass on to the token check.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from aiohttp import web

ALLOW_METHODS: Final = "GET, POST, OPTIONS"
ALLOW_HEADERS: Final = "Authorization, Content-Type, Accept-Language"
EXPOSE_HEADERS: Final = "Location, Content-Language"
MAX_AGE: Final = "600"


def is_preflight(request: web.Request) -> bool:
    return (request.method == "OPTIONS" and "Origin" in request.headers
            and "Access-Control-Request-Method" in request.headers)


def origin_allowed(origin: str, allowed: Iterable[str]) -> bool:
    # exact match only: browsers send scheme://host[:port] and the config holds the same form
    return origin in tuple(allowed)


def preflight_response(request: web.Request) -> web.Response:
    """204 with the CORS (and PNA) grants for an allowed origin's preflight."""
    origin = request.headers["Origin"]
    headers = {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": ALLOW_METHODS,
        "Access-Control-Allow-Headers": ALLOW_HEADERS,
        "Access-Control-Max-Age": MAX_AGE,
        "Vary": "Origin, Access-Control-Request-Private-Network",
    }
    if request.headers.get("Access-Control-Request-Private-Network", "").lower() == "true":
        headers["Access-Control-Allow-Private-Network"] = "true"
    return web.Response(status=204, headers=headers)


def decorate(response: web.StreamResponse, origin: str) -> None:
    """The headers an allowed origin's actual (non-preflight) response carries."""
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
    response.headers["Vary"] = "Origin"
