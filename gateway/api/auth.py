"""Bearer tokens, one per terminal (`[[api.tokens]]`).

Every configured token is compared in constant time (`hmac.compare_digest`, all of them, no
early exit), so the answer's timing tells nothing about how much of a guess was right. The
terminal's *name* goes into the request and the logs, never the token.

Browsers cannot set headers on a WebSocket, so `/api/v1/events` also takes the token as a
subprotocol: ``Sec-WebSocket-Protocol: cunlink.v1, bearer.<token>`` (the server answers
``cunlink.v1``). Not as a query parameter: URLs end up in proxy and access logs.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Final

from aiohttp import web

from gateway.config.station import ApiToken

WS_PROTOCOL: Final = "cunlink.v1"
WS_BEARER_PREFIX: Final = "bearer."
TERMINAL: Final = web.RequestKey("terminal", str)


def offered_tokens(request: web.Request) -> list[str]:
    """Tokens the request carries: the Authorization header's, and WebSocket subprotocols'."""
    found = []
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        found.append(value.strip())
    for item in request.headers.get("Sec-WebSocket-Protocol", "").split(","):
        item = item.strip()
        if item.startswith(WS_BEARER_PREFIX) and len(item) > len(WS_BEARER_PREFIX):
            found.append(item[len(WS_BEARER_PREFIX):])
    return found[:2]  # header and subprotocol at most: bounds the work per request


def terminal_for(offered: Iterable[str], tokens: Iterable[ApiToken]) -> str | None:
    """The name of the terminal whose token was offered, or None."""
    match: str | None = None
    for given in offered:
        given_b = given.encode("utf-8", "surrogateescape")
        for entry in tokens:
            # no early exit: every token is compared whatever the outcome
            if hmac.compare_digest(given_b, entry.token.encode("utf-8")) and match is None:
                match = entry.name
    return match
