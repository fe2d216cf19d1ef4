"""The receipt (受理回执): case number as text and as a QR code, printed on the receipt printer.

The job goes to the printer driver's queue; the answer waits up to ``wait_seconds`` (default
15) for the printer to confirm it: 200 ``printed: true`` then, else 202 ``printed: false`` with
the printer's state (paper out, cover open …): the driver keeps the job and prints it when the
printer recovers, so the operator fixes the printer rather than printing again.

The daemon does not know whether the printer is real or the emulator; the emulator writes each
receipt as a PNG (and a .txt with the QR payload) into its own `--out` folder, where the demo
and the tests find it by the case number.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from aiohttp import web

from devices.printer import PrinterError, PrinterQueueFull
from gateway.api import bodies
from gateway.api.cases import case_or_404
from gateway.api.context import runtime
from gateway.api.errors import ApiError
from gateway.i18n import STATUS_ZH
from gateway.runtime import DeviceUnavailable
from protocols.escpos import Align, EscposError, QrErrorLevel, Receipt
from protocols.idcard.idnumber import masked_id
from sync.model import CaseState

DEFAULT_WAIT = 15.0


def masked_name(name: str) -> str:
    return name[:1] + "*" * max(1, len(name) - 1) if name else ""


def receipt_bytes(state: CaseState, *, station: str, width: int, encoding: str) -> bytes:
    """The ESC/POS bytes of a case's receipt. Personal data masked, as on any paper slip."""
    receipt = Receipt(width, encoding, replacement="?")
    receipt.text("受理回执", bold=True, width=2, height=2, align=Align.CENTER)
    receipt.text("村级便民服务站", align=Align.CENTER)
    receipt.separator()
    receipt.key_value("办件编号：", state.case, bold=True)
    receipt.key_value("事项：", state.service or "")
    receipt.key_value("申请人：", masked_name(str(state.applicant.get("name", ""))))
    receipt.key_value("证件号：", masked_id(str(state.applicant.get("id_number", ""))))
    receipt.key_value("状态：", STATUS_ZH.get(state.status.value, state.status.value))
    receipt.key_value("材料：", f"{len(state.current_materials)} 份")
    receipt.key_value("站点：", station)
    receipt.key_value("打印时间：", datetime.now().strftime("%Y-%m-%d %H:%M"))
    receipt.separator()
    receipt.qr(state.case, module_size=6, level=QrErrorLevel.M, align=Align.CENTER)
    receipt.text(state.case, align=Align.CENTER)
    receipt.text("凭此回执查询办理进度", align=Align.CENTER)
    return receipt.cut(feed=4).to_bytes()


async def print_receipt(request: web.Request) -> web.Response:
    rt = runtime(request)
    case = request.match_info["id"]
    body = await bodies.read_json(request, optional=True)
    bodies.only(body, ("wait_seconds",))
    wait = bodies.number(body.get("wait_seconds", DEFAULT_WAIT), "wait_seconds", 0, 120)
    state = await case_or_404(request, case)
    try:
        rt.require("printer")
    except DeviceUnavailable as exc:
        raise ApiError(exc.code, device="printer", detail=exc.detail) from exc
    printer = rt.printer
    assert printer is not None  # require() passed: the printer is enabled
    p = rt.cfg.devices.printer
    try:
        data = receipt_bytes(state, station=rt.station, width=p.width_chars, encoding=p.encoding)
        job = printer.submit(data, label=f"receipt {case}")
    except PrinterQueueFull as exc:
        raise ApiError("printer_busy") from exc
    except (PrinterError, EscposError) as exc:
        raise ApiError("device_failed", device="printer", detail=str(exc)) from exc
    out: dict[str, Any] = {"case": case, "job": job.id, "bytes": len(data)}
    try:
        async with asyncio.timeout(wait):
            result = await job
    except TimeoutError:
        health = printer.health()
        return web.json_response(out | {"printed": False, "printer_state": health.state.value,
                                        "message": health.last_error}, status=202)
    except PrinterError as exc:
        raise ApiError("device_failed", device="printer", detail=str(exc)) from exc
    return web.json_response(out | {"printed": True, "attempts": result.attempts,
                                    "printed_at": result.printed_at})
