"""Materials: a page from the document camera, or an uploaded JPEG, PNG or PDF.

Three ways in, one result (a material in the case, committed and queued for the county):

- ``{"source": "camera"}`` (JSON): one still from the camera, normalised per `[devices.camera]`;
- ``multipart/form-data`` with a ``file`` part (and optionally an ``answers`` part);
- the raw bytes with ``Content-Type: image/jpeg | image/png | application/pdf``
  (``?answers=REQUEST`` to answer a supplement request).

Images are normalised like camera pages (`devices.normalise`: size, greyscale, quality), so an
uploaded phone photo costs the 2G link no more than a scan; PDFs are kept as they are, after a
look at their signature. Every body is bounded by `[api] max_body_bytes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

from devices.health import DeviceError
from devices.normalise import NormaliseError, normalise
from gateway.api import bodies
from gateway.api.cases import case_or_404, transition_error
from gateway.api.context import runtime
from gateway.api.errors import ApiError, invalid
from gateway.api.views import case_view
from gateway.runtime import DeviceUnavailable, StationRuntime
from sync.intake import IntakeError
from sync.store import DiskFloorError
from sync.workflow import CLOSED

MEDIA = {"image/jpeg": ".jpg", "image/png": ".png", "application/pdf": ".pdf"}
SIGNATURES = {"image/jpeg": b"\xff\xd8\xff", "image/png": b"\x89PNG\r\n\x1a\n",
              "application/pdf": b"%PDF-"}
EXPECTED = "application/json ({\"source\": \"camera\"}), multipart/form-data, " + ", ".join(MEDIA)


def sniff(data: bytes, declared: str) -> str:
    """The media type `data` really is (declared or not); raises invalid_material."""
    for media, signature in SIGNATURES.items():
        if data.startswith(signature):
            if declared in MEDIA and declared != media:
                raise ApiError("invalid_material",
                               detail=f"declared {declared} but the bytes are {media}")
            return media
    raise ApiError("invalid_material", detail="not a JPEG, PNG or PDF file")


async def _store(rt: StationRuntime, case: str, data: bytes, suffix: str,
                 answers: str | None) -> str:
    """Write `data` to a private temporary file, add it to the case, return its sha256."""
    incoming = rt.cfg.station.state_dir / "incoming"
    path = incoming / f"{uuid.uuid4().hex}{suffix}"

    def write() -> None:
        incoming.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)

    await asyncio.to_thread(write)
    try:
        events = await rt.intake.add_materials(case, [Path(path)], answers=answers)
    except DiskFloorError as exc:
        raise ApiError("disk_full") from exc
    except IntakeError as exc:
        raise ApiError("invalid_material", detail=str(exc)) from exc
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
    rt.committed()
    return str(events[-1].body["sha256"])


async def _normalised(rt: StationRuntime, data: bytes) -> tuple[bytes, dict[str, Any]]:
    try:
        page = await asyncio.to_thread(normalise, data, rt.policy)
    except NormaliseError as exc:
        raise ApiError("invalid_material", detail=str(exc)) from exc
    return page.jpeg, {"width": page.width, "height": page.height, "bytes_in": page.bytes_in,
                       "bytes": page.bytes_out}


async def _upload(request: web.Request) -> tuple[bytes, str, str | None]:
    """(data, declared media type, answers) from a multipart or raw upload."""
    if request.content_type == "multipart/form-data":
        form = await request.post()  # bounded by client_max_size
        part = form.get("file")
        if not isinstance(part, web.FileField):
            raise ApiError("missing_field", field="file", details={"field": "file"})
        answers = form.get("answers")
        if answers is not None and not isinstance(answers, str):
            raise ApiError("bad_request", detail="answers must be a plain form field")
        data = await asyncio.to_thread(part.file.read)
        return data, part.content_type, answers
    if request.content_type in MEDIA:
        return await request.read(), request.content_type, request.query.get("answers")
    raise ApiError("unsupported_media_type", type=request.content_type or "(none)",
                   expected=EXPECTED)


async def add_material(request: web.Request) -> web.Response:
    rt = runtime(request)
    case = request.match_info["id"]
    state = await case_or_404(request, case)
    if state.status in CLOSED:
        raise transition_error(state, "add_material")
    info: dict[str, Any]
    if request.content_type == "application/json":
        body = await bodies.read_json(request)
        bodies.only(body, ("source", "answers"))
        if bodies.require(body, "source") != "camera":
            raise invalid("source", "source")
        answers = bodies.name(body["answers"], "answers") if "answers" in body else None
        try:
            capture = await rt.capture()
        except DeviceUnavailable as exc:
            raise ApiError(exc.code, device="camera", detail=exc.detail) from exc
        except DeviceError as exc:
            raise ApiError("device_failed", device="camera", detail=str(exc)) from exc
        page = capture.page
        data, suffix, source = page.jpeg, ".jpg", "camera"
        info = {"width": page.width, "height": page.height, "bytes_in": page.bytes_in,
                "bytes": page.bytes_out, "seconds": round(capture.still.seconds, 3)}
    else:
        raw, declared, answers = await _upload(request)
        if answers is not None:
            answers = bodies.name(answers, "answers")
        if not raw:
            raise ApiError("invalid_material", detail="the upload is empty")
        media = sniff(raw, declared)
        source = "upload"
        if media == "application/pdf":
            data, suffix, info = raw, ".pdf", {"bytes": len(raw)}
        else:
            (data, info), suffix = await _normalised(rt, raw), ".jpg"
    digest = hashlib.sha256(data).hexdigest()
    if answers is None and any(m.sha256 == digest for m in state.current_materials):
        # Materials are a set keyed by content: the same page again (the camera saw the sheet
        # already captured) adds nothing. Say so, so the operator turns the page.
        return web.json_response(
            {"case": case, "duplicate": True,
             "material": {"sha256": digest, "source": source, **info},
             "state": case_view(state)}, status=200)
    sha256 = await _store(rt, case, data, suffix, answers)
    if source == "camera":
        rt.bus.publish("capture_done", {"case": case, "sha256": sha256, **info})
    state = await case_or_404(request, case)
    return web.json_response(
        {"case": case, "duplicate": False,
         "material": {"sha256": sha256, "source": source, **info},
         "state": case_view(state)}, status=201)
