"""The ID card as a case's applicant, and the card step of the operator's flow.

The case model fixes the applicant when the case is created (`case_created` carries it, and
nothing changes it later), so a card is read *into a new case* by creating the case with
``"applicant": "idcard"``. `POST /cases/{id}/idcard` then checks that the card on the reader is
the applicant's (same document number) and records that check as a note.

The card's text and photo never reach a log line; errors name the card step, not the card.
"""

from __future__ import annotations

import base64
from typing import Any

from aiohttp import web

from gateway.api import bodies
from gateway.api.context import runtime
from gateway.api.errors import ApiError
from gateway.runtime import DeviceUnavailable, card_view
from protocols.idcard import ReadResult, describe
from protocols.idcard.idnumber import masked_id
from sync.events import EventType
from sync.intake import IntakeError
from sync.store import EventDraft

DEFAULT_CARD_WAIT = 30.0
MAX_CARD_WAIT = 120.0
VERIFIED_NOTE = "ID card checked with the station's reader: the holder is the applicant"


def applicant_from_card(card: ReadResult) -> dict[str, str | int]:
    """The applicant identity of a case created from `card` (unmasked: it is the case)."""
    text = describe(card.text, reveal=True)
    applicant: dict[str, str | int] = {
        "id_type": text.pop("card_type"), "id_number": text.pop("number"),
        "name": text.pop("name"), "sex": text.pop("sex"),
    }
    applicant.update({k: v for k, v in text.items() if v})
    applicant["photo_sha256"] = card.photo_sha256
    # 1024 bytes of WLT -> 1368 characters: within the model's 4000-character bound
    applicant["photo_wlt"] = base64.b64encode(card.photo_wlt).decode("ascii")
    return applicant


def card_wait(body: dict[str, Any], field: str) -> float:
    if field not in body:
        return DEFAULT_CARD_WAIT
    return bodies.number(body[field], field, 0.1, MAX_CARD_WAIT)


async def read_card(request: web.Request, seconds: float) -> ReadResult:
    """The card on the reader (or the next one placed within `seconds`), as API errors."""
    try:
        return await runtime(request).wait_card(seconds)
    except TimeoutError as exc:
        raise ApiError("card_timeout", seconds=f"{seconds:g}") from exc
    except DeviceUnavailable as exc:
        raise ApiError(exc.code, device="idcard", detail=exc.detail) from exc


async def verify_card(request: web.Request) -> web.Response:
    """POST /api/v1/cases/{id}/idcard: the card on the reader is this case's applicant's."""
    case = request.match_info["id"]
    body = await bodies.read_json(request, optional=True)
    bodies.only(body, ("timeout_seconds",))
    seconds = card_wait(body, "timeout_seconds")
    rt = runtime(request)
    state = await rt.store.case_state(case)
    if state is None:
        raise ApiError("case_not_found", case=case[:80])
    card = await read_card(request, seconds)
    number = describe(card.text, reveal=True)["number"]
    if number != state.applicant.get("id_number"):
        raise ApiError("card_mismatch", details={"card": masked_id(number)})
    try:
        await rt.intake.add_events(case, [EventDraft(case=case, type=EventType.NOTE_ADDED,
                                                     body={"text": VERIFIED_NOTE})])
    except IntakeError as exc:
        raise ApiError("case_not_found", case=case[:80]) from exc
    rt.committed()
    return web.json_response({"case": case, "verified": True,
                              "card": card_view(card, reveal=False)})
