"""Station status (the shared snapshot) and the devices' health."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.api.context import runtime

DEVICES = ("idcard", "printer", "camera")


async def get_status(request: web.Request) -> web.Response:
    return web.json_response(await runtime(request).status())


async def list_devices(request: web.Request) -> web.Response:
    rt = runtime(request)
    out: list[dict[str, Any]] = []
    for name in DEVICES:
        enabled = bool(getattr(rt.cfg.devices, name).enabled)
        health = rt.device_health(name) if enabled else None
        entry: dict[str, Any] = {"name": name, "enabled": enabled}
        if health is not None:
            entry |= health
        if name == "idcard" and enabled:
            entry["card_present"] = rt.card.card is not None
        if name == "printer" and rt.printer is not None:
            p = rt.printer.health()
            entry["printer"] = {"state": p.state.value, "queue_depth": p.queue_depth,
                                "jobs_printed": p.jobs_printed, "address": p.address}
        out.append(entry)
    return web.json_response({"devices": out})
