"""Request bodies: read JSON within the size limit, and check fields naming the one at fault.

Bounds mirror the case model's (`sync.events`): names of 1..64 characters, text up to 4000,
integers in signed 64 bits, at most 256 form fields and 32 applicant keys; so a body that
passes here is never refused later by the store with a less helpful message.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from gateway.api.errors import ApiError, invalid
from sync.events import INT64_MAX, INT64_MIN, MAX_APPLICANT_KEYS, MAX_FIELDS

NAME_CHARS = 64
TEXT_CHARS = 4000
APPLICANT_REQUIRED = ("id_type", "id_number", "name", "sex")


async def read_json(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    """The body as a JSON object (an empty body is {} when `optional`)."""
    raw = await request.read()  # bounded by the app's client_max_size (413 beyond)
    if not raw.strip() and optional:
        return {}
    if request.content_type != "application/json":
        raise ApiError("unsupported_media_type", type=request.content_type or "(none)",
                       expected="application/json")
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        detail = str(exc) if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
        raise ApiError("invalid_json", detail=detail) from exc
    if not isinstance(value, dict):
        raise invalid("(body)", "object")
    return value


def only(body: Mapping[str, Any], allowed: Iterable[str], where: str = "") -> None:
    allowed = tuple(allowed)
    for key in body:
        if key not in allowed:
            raise ApiError("unknown_field", field=f"{where}{key}", allowed=", ".join(allowed),
                           details={"field": f"{where}{key}"})


def name(value: object, field: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= NAME_CHARS:
        raise invalid(field, "name")
    return value


def text(value: object, field: str, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise invalid(field, "string" if empty else "nonempty_string")
    if not value and not empty:
        raise invalid(field, "nonempty_string")
    if len(value) > TEXT_CHARS:
        raise invalid(field, "text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates from a \ud800 escape
        raise invalid(field, "string") from exc
    return value


def scalar(value: object, field: str) -> str | int:
    if isinstance(value, str):
        return text(value, field, empty=True)
    if isinstance(value, int) and not isinstance(value, bool):
        if not INT64_MIN <= value <= INT64_MAX:
            raise invalid(field, "range", lo=INT64_MIN, hi=INT64_MAX)
        return value
    raise invalid(field, "scalar")


def number(value: object, field: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(field, "number")
    if not lo <= value <= hi:
        raise invalid(field, "range", lo=lo, hi=hi)
    return float(value)


def boolean(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise invalid(field, "boolean")
    return value


def form_fields(value: object, field: str = "fields") -> dict[str, str | int]:
    if not isinstance(value, dict):
        raise invalid(field, "object")
    if len(value) > MAX_FIELDS:
        raise invalid(field, "too_many", max=MAX_FIELDS)
    return {name(k, f"{field}.{k}"[:80]): scalar(v, f"{field}.{k}") for k, v in value.items()}


def applicant(value: object, field: str = "applicant") -> dict[str, str | int]:
    if not isinstance(value, dict):
        raise invalid(field, "applicant")
    for key in APPLICANT_REQUIRED:
        if key not in value:
            raise ApiError("missing_field", field=f"{field}.{key}",
                           details={"field": f"{field}.{key}"})
    if len(value) > MAX_APPLICANT_KEYS:
        raise invalid(field, "too_many", max=MAX_APPLICANT_KEYS)
    out: dict[str, str | int] = {}
    for key, item in value.items():
        where = f"{field}.{name(key, field)}"
        out[key] = text(item, where) if key in APPLICANT_REQUIRED else scalar(item, where)
    return out


def require(body: Mapping[str, Any], key: str) -> Any:
    if key not in body:
        raise ApiError("missing_field", field=key, details={"field": key})
    return body[key]
