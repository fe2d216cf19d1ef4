"""WebSocket /api/v1/events: the station's events pushed to a terminal as JSON messages.

Each message is ``{"type": ..., "data": {...}, "at": "...Z"}``; types: hello (first),
card_inserted (masked card), card_removed, card_error, capture_done, case_status_changed,
supplement_requested, delivered, link_up, link_down, and lagged (``{"dropped": n}``: this
terminal was too slow and lost that many messages; reload what it shows). A slow terminal only
ever delays itself: the bus drops from its own bounded queue.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import WSMsgType, web

from gateway.api.auth import WS_PROTOCOL
from gateway.api.context import runtime
from gateway.api.errors import ApiError
from gateway.bus import BusFull, Subscription, iso_utc

HEARTBEAT_SECONDS = 30.0
SEND_TIMEOUT = 10.0


async def events(request: web.Request) -> web.WebSocketResponse:
    rt = runtime(request)
    try:
        subscription = rt.bus.subscribe()
    except BusFull as exc:
        raise ApiError("too_many_subscribers") from exc
    with subscription:
        ws = web.WebSocketResponse(protocols=(WS_PROTOCOL,), heartbeat=HEARTBEAT_SECONDS,
                                   max_msg_size=4096)
        await ws.prepare(request)
        await ws.send_json({"type": "hello", "data": {"station": rt.station},
                            "at": iso_utc(rt.started_at)})
        sender = asyncio.create_task(_send(ws, subscription), name="api-ws-send")
        try:
            # The terminal sends nothing we need; reading is how a close is noticed.
            async for msg in ws:
                if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
    return ws


async def _send(ws: web.WebSocketResponse, subscription: Subscription) -> None:
    while not ws.closed:
        message = await subscription.get()
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                await ws.send_json(message)
        except (ConnectionError, TimeoutError):
            await ws.close()
            return
