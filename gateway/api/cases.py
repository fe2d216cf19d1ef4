"""Case routes: create, list, get (merged state), submit.

A create is answered 201 only once `CaseIntake.create_case` has returned, i.e. after the
case's events and its sealed outbox package are committed (fsync'd) in the store.
"""

from __future__ import annotations

from aiohttp import web

from gateway.api import bodies
from gateway.api.card import applicant_from_card, card_wait, read_card
from gateway.api.context import runtime
from gateway.api.errors import ACTIONS, ApiError, invalid
from gateway.api.views import case_view, summary_view
from sync.events import EventFormatError
from sync.intake import IntakeError
from sync.model import CaseState
from sync.workflow import Side, Status, refusal

CASE_KEYS = ("service", "fields", "applicant", "card_timeout_seconds", "submit")
MAX_LIST = 1000


async def case_or_404(request: web.Request, case: str) -> CaseState:
    state = await runtime(request).store.case_state(case)
    if state is None:
        raise ApiError("case_not_found", case=case[:80])
    return state


def transition_error(state: CaseState, action: str) -> ApiError:
    zh, en = ACTIONS[action]
    return ApiError("invalid_transition", status=state.status.value, action_zh=zh, action_en=en,
                    details={"status": state.status.value})


async def create_case(request: web.Request) -> web.Response:
    body = await bodies.read_json(request)
    bodies.only(body, CASE_KEYS)
    service = bodies.name(bodies.require(body, "service"), "service")
    fields = bodies.form_fields(body.get("fields", {}))
    submit = bodies.boolean(body.get("submit", False), "submit")
    source = bodies.require(body, "applicant")
    if source == "idcard":
        seconds = card_wait(body, "card_timeout_seconds")
        applicant = applicant_from_card(await read_card(request, seconds))
    elif isinstance(source, dict):
        if "card_timeout_seconds" in body:
            raise ApiError("unknown_field", field="card_timeout_seconds",
                           allowed="service, fields, applicant, submit",
                           details={"field": "card_timeout_seconds"})
        applicant = bodies.applicant(source)
    else:
        raise invalid("applicant", "applicant")
    rt = runtime(request)
    try:
        case = await rt.intake.create_case(service, applicant, fields, submit=submit)
    except EventFormatError as exc:  # a bound this layer missed: still the caller's fault
        raise ApiError("bad_request", detail=str(exc)) from exc
    rt.committed()
    state = await case_or_404(request, case)
    location = str(request.app.router["case"].url_for(id=case))
    return web.json_response(case_view(state), status=201, headers={"Location": location})


async def list_cases(request: web.Request) -> web.Response:
    status = request.query.get("status")
    if status is not None and status not in Status._value2member_map_:
        raise invalid("status", "status", allowed=", ".join(s.value for s in Status))
    limit = MAX_LIST
    if "limit" in request.query:
        try:
            limit = int(request.query["limit"])
        except ValueError:
            limit = -1
        if not 1 <= limit <= MAX_LIST:
            raise invalid("limit", "range", lo=1, hi=MAX_LIST)
    summaries = await runtime(request).bulk.list_cases(status)
    # newest first: case numbers sort by station, day and counter
    summaries.sort(key=lambda s: s.case, reverse=True)
    return web.json_response({"cases": [summary_view(s) for s in summaries[:limit]],
                              "total": len(summaries)})


async def get_case(request: web.Request) -> web.Response:
    return web.json_response(case_view(await case_or_404(request, request.match_info["id"])))


async def submit_case(request: web.Request) -> web.Response:
    case = request.match_info["id"]
    body = await bodies.read_json(request, optional=True)
    bodies.only(body, ())
    state = await case_or_404(request, case)
    if refusal(Side.STATION, state.status, Status.SUBMITTED) is not None:
        raise transition_error(state, "submit")
    rt = runtime(request)
    try:
        await rt.intake.submit(case)
    except IntakeError as exc:
        raise ApiError("case_not_found", case=case[:80]) from exc
    rt.committed()
    return web.json_response(case_view(await case_or_404(request, case)))
