"""The immutable event: the only thing a case is made of.

A case is a set of events; its state is a pure fold of that set in `(hlc, origin, id)` order
(see `sync.model`). Events are created once, never changed, and identified by a UUIDv7 string,
so applying the same event twice is harmless.

This module also holds the event's wire form (msgpack, one-letter keys: the batch payload that
crosses 2G) and the body schemas. An event is validated when it is constructed, so a malformed
one cannot exist: whatever `decode_events` returns is safe to fold. Whether an event *makes
sense* where it lands in a case (a withdrawal after approval, say) is not a format question; the
fold keeps such events and reports them as conflicts.

Every error the pure case model raises is a `CaseModelError`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

import msgpack

from sync.workflow import Status


class CaseModelError(ValueError):
    """Base of every error raised by the pure case model (events, ids, clock, fold)."""


class EventFormatError(CaseModelError):
    """An event, a body or an encoded batch is malformed. The message names the field."""


class EventType(StrEnum):
    """Every kind of event a case can hold. Values are stable wire names."""

    CASE_CREATED = "case_created"
    FIELD_SET = "field_set"
    MATERIAL_ADDED = "material_added"
    MATERIAL_SUPERSEDED = "material_superseded"
    SUPPLEMENT_REQUESTED = "supplement_requested"
    STATUS_CHANGED = "status_changed"
    NOTE_ADDED = "note_added"


# -- bounds: everything that crosses the link has a stated limit ---------------------------------

#: Largest encoded batch `decode_events` accepts (checked before unpacking).
MAX_BATCH_BYTES: Final = 4 * 1024 * 1024
#: Most events in one batch.
MAX_BATCH_EVENTS: Final = 10_000
#: Longest free text (notes, reasons, what a supplement request asks for), in characters.
MAX_TEXT_CHARS: Final = 4000
#: Longest name (field names, material kinds, mime types, request ids), in characters.
MAX_NAME_CHARS: Final = 64
#: Most form fields in `case_created`, and most keys in an applicant's identity.
MAX_FIELDS: Final = 256
MAX_APPLICANT_KEYS: Final = 32
#: Integers are signed 64-bit so that SQLite INTEGER and msgpack both hold them exactly.
INT64_MAX: Final = (1 << 63) - 1
INT64_MIN: Final = -(1 << 63)
#: A packed HLC is a non-negative signed 64-bit integer (see `sync.hlc`).
MAX_HLC: Final = INT64_MAX

_UUID7_RE: Final = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
)
# Case and origin ids go into MQTT topics and file names: no '/', '+', '#', spaces.
_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_SHA256_RE: Final = re.compile(r"[0-9a-f]{64}")


def is_event_id(value: object) -> bool:
    """True for a canonical lower-case UUIDv7 string (RFC 9562: version 7, variant 10)."""
    return isinstance(value, str) and _UUID7_RE.fullmatch(value) is not None


def is_sha256(value: object) -> bool:
    """True for a lower-case hex SHA-256 digest."""
    return isinstance(value, str) and _SHA256_RE.fullmatch(value) is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One immutable fact about one case.

    id:     UUIDv7, canonical lower-case string; unique across all origins.
    case:   the case id (e.g. ``"ST001-20261122-0007"``).
    origin: the station id or hub id that created the event.
    seq:    1-based, contiguous per origin: the receiver drops duplicates by high-water mark
            and reports gaps (something still on its way).
    hlc:    packed hybrid logical clock: ``(physical_ms << 16) | logical`` (see `sync.hlc`).
    type:   what happened.
    body:   msgpack-able mapping whose keys depend on `type` (see `docs/case-model.md`).

    Construction validates every field and the body; it raises `EventFormatError`.
    """

    id: str
    case: str
    origin: str
    seq: int
    hlc: int
    type: EventType
    body: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not is_event_id(self.id):
            raise EventFormatError(
                f"event id {self.id!r:.60} is not a lower-case UUIDv7 string; make ids with "
                "sync.ids.uuid7()"
            )
        where = f"event {self.id}"
        _check_id(self.case, f"{where}: case")
        _check_id(self.origin, f"{where}: origin")
        _check_int(self.seq, f"{where}: seq", 1, INT64_MAX)
        _check_int(self.hlc, f"{where}: hlc", 0, MAX_HLC)
        if not isinstance(self.type, EventType):
            raise EventFormatError(
                f"{where}: type {self.type!r} is not an EventType; use EventType(...)"
            )
        if not isinstance(self.body, dict):
            raise EventFormatError(f"{where}: body must be a dict, got {_kind(self.body)}")
        validate_body(self.type, self.body, where=where)

    def __hash__(self) -> int:
        # The generated hash would hash the body dict and fail. Equal events share an id, so
        # hashing the id alone is consistent with equality, and sets of events work.
        return hash(self.id)

    def sort_key(self) -> tuple[int, str, str]:
        """The fold order: `(hlc, origin, id)`; total, and the same on every replica."""
        return (self.hlc, self.origin, self.id)


# -- body schemas -------------------------------------------------------------------------------


def validate_body(type: EventType, body: Mapping[str, Any], *, where: str = "body") -> None:
    """Check `body` against the schema for `type`; raise `EventFormatError` naming the field.

    Unknown keys are refused (except in an applicant's identity, whose keys vary by document):
    a typo would otherwise be carried silently forever in an immutable event.
    """
    if not isinstance(body, Mapping):
        raise EventFormatError(f"{where}: body must be a mapping, got {_kind(body)}")
    match type:
        case EventType.CASE_CREATED:
            _keys(body, where, required={"service", "applicant", "fields"})
            _check_name(body["service"], f"{where}: service")
            _check_applicant(body["applicant"], f"{where}: applicant")
            fields = body["fields"]
            if not isinstance(fields, Mapping):
                raise EventFormatError(f"{where}: fields must be a mapping, got {_kind(fields)}")
            if len(fields) > MAX_FIELDS:
                raise EventFormatError(f"{where}: {len(fields)} fields, at most {MAX_FIELDS}")
            for name, value in fields.items():
                _check_name(name, f"{where}: field name")
                _check_scalar(value, f"{where}: fields[{name!r}]", allow_none=False)
        case EventType.FIELD_SET:
            _keys(body, where, required={"name", "value"})
            _check_name(body["name"], f"{where}: name")
            # None clears the field: last writer wins for removals too.
            _check_scalar(body["value"], f"{where}: value", allow_none=True)
        case EventType.MATERIAL_ADDED:
            _keys(
                body,
                where,
                required={"sha256", "kind", "pages", "size", "mime"},
                optional={"answers"},
            )
            _check_sha256(body["sha256"], f"{where}: sha256")
            _check_name(body["kind"], f"{where}: kind")
            _check_int(body["pages"], f"{where}: pages", 1, 100_000)
            _check_int(body["size"], f"{where}: size", 1, INT64_MAX)
            _check_name(body["mime"], f"{where}: mime")
            if "answers" in body:
                _check_name(body["answers"], f"{where}: answers")
        case EventType.MATERIAL_SUPERSEDED:
            _keys(body, where, required={"sha256"}, optional={"by", "reason"})
            _check_sha256(body["sha256"], f"{where}: sha256")
            if "by" in body:
                _check_sha256(body["by"], f"{where}: by")
                if body["by"] == body["sha256"]:
                    raise EventFormatError(f"{where}: a material cannot supersede itself (by)")
            if "reason" in body:
                _check_text(body["reason"], f"{where}: reason")
        case EventType.SUPPLEMENT_REQUESTED:
            _keys(body, where, required={"request", "what"})
            _check_name(body["request"], f"{where}: request")
            _check_text(body["what"], f"{where}: what")
        case EventType.STATUS_CHANGED:
            _keys(body, where, required={"to"}, optional={"reason"})
            to = body["to"]
            if not isinstance(to, str) or to not in Status._value2member_map_:
                raise EventFormatError(
                    f"{where}: to={to!r:.40} is not a status; expected one of "
                    + ", ".join(s.value for s in Status)
                )
            if "reason" in body:
                _check_text(body["reason"], f"{where}: reason")
        case EventType.NOTE_ADDED:
            _keys(body, where, required={"text"})
            _check_text(body["text"], f"{where}: text")
        case _:  # pragma: no cover - EventType is closed; a new member must get a schema here
            raise EventFormatError(f"{where}: no body schema for event type {type!r}")


_APPLICANT_REQUIRED: Final = frozenset({"id_type", "id_number", "name", "sex"})


def _check_applicant(applicant: object, where: str) -> None:
    if not isinstance(applicant, Mapping):
        raise EventFormatError(f"{where} must be a mapping, got {_kind(applicant)}")
    missing = _APPLICANT_REQUIRED - applicant.keys()
    if missing:
        raise EventFormatError(f"{where}: missing {', '.join(sorted(missing))}")
    if len(applicant) > MAX_APPLICANT_KEYS:
        raise EventFormatError(f"{where}: {len(applicant)} keys, at most {MAX_APPLICANT_KEYS}")
    for key, value in applicant.items():
        _check_name(key, f"{where}: key")
        if key in _APPLICANT_REQUIRED:
            _check_text(value, f"{where}: {key}")
        else:
            _check_scalar(value, f"{where}: {key}", allow_none=False)


def _keys(
    body: Mapping[str, Any],
    where: str,
    *,
    required: AbstractSet[str],
    optional: AbstractSet[str] = frozenset(),
) -> None:
    # Name every problem at once: a missing key next to an unknown one is usually a typo.
    problems = []
    missing = required - body.keys()
    if missing:
        problems.append(f"missing {', '.join(sorted(missing))}")
    unknown = body.keys() - required - optional
    if unknown:
        problems.append(
            f"unknown key(s) {', '.join(sorted(map(repr, unknown)))} "
            f"(allowed: {', '.join(sorted(required | optional))})"
        )
    if problems:
        raise EventFormatError(f"{where}: {'; '.join(problems)}")


def _kind(value: object) -> str:
    return type(value).__name__


def _check_int(value: object, where: str, lo: int, hi: int) -> None:
    # bool is an int subclass, but True is never a meaningful sequence number or page count.
    if not isinstance(value, int) or isinstance(value, bool):
        raise EventFormatError(f"{where} must be an integer, got {_kind(value)}")
    if not lo <= value <= hi:
        raise EventFormatError(f"{where}={value} is out of range [{lo}, {hi}]")


def _check_str(value: object, where: str, *, max_chars: int, empty_ok: bool = False) -> None:
    if not isinstance(value, str) or not (value or empty_ok):
        wanted = "a string" if empty_ok else "a non-empty string"
        # Never echo the value: bodies carry personal data, and errors end up in logs.
        raise EventFormatError(f"{where} must be {wanted}, got {_kind(value)}")
    if len(value) > max_chars:
        raise EventFormatError(f"{where} has {len(value)} characters, at most {max_chars}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        # Lone surrogates: a valid Python str that no UTF-8 peer could decode.
        raise EventFormatError(f"{where} is not valid Unicode text ({exc.reason})") from exc


def _check_text(value: object, where: str) -> None:
    _check_str(value, where, max_chars=MAX_TEXT_CHARS)


def _check_name(value: object, where: str) -> None:
    _check_str(value, where, max_chars=MAX_NAME_CHARS)


def _check_scalar(value: object, where: str, *, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, str):
        _check_str(value, where, max_chars=MAX_TEXT_CHARS, empty_ok=True)
    elif isinstance(value, int) and not isinstance(value, bool):
        _check_int(value, where, INT64_MIN, INT64_MAX)
    else:
        allowed = "a string, an integer or None" if allow_none else "a string or an integer"
        raise EventFormatError(f"{where} must be {allowed}, got {_kind(value)}")


def _check_sha256(value: object, where: str) -> None:
    if not is_sha256(value):
        raise EventFormatError(f"{where} must be a lower-case hex SHA-256 (64 characters)")


def _check_id(value: object, where: str) -> None:
    if not isinstance(value, str) or _ID_RE.fullmatch(value) is None:
        raise EventFormatError(
            f"{where} {value!r:.80} is not an id: 1-64 characters of A-Z a-z 0-9 _ . : -, "
            "starting with a letter or digit"
        )


# -- wire form ----------------------------------------------------------------------------------

# Type codes on the wire: small integers instead of names (a dozen bytes per event on 2G).
# Append only; never renumber.
TYPE_CODE: Final = {
    EventType.CASE_CREATED: 1,
    EventType.FIELD_SET: 2,
    EventType.MATERIAL_ADDED: 3,
    EventType.MATERIAL_SUPERSEDED: 4,
    EventType.SUPPLEMENT_REQUESTED: 5,
    EventType.STATUS_CHANGED: 6,
    EventType.NOTE_ADDED: 7,
}
_CODE_TYPE: Final = {code: t for t, code in TYPE_CODE.items()}
_WIRE_KEYS: Final = frozenset("icoshtb")

# msgpack limits applied while unpacking, so a hostile length prefix cannot make us allocate.
_MAX_STR_BYTES: Final = 4 * MAX_TEXT_CHARS  # UTF-8 needs at most 4 bytes per character
_MAX_MAP_LEN: Final = max(MAX_FIELDS, MAX_APPLICANT_KEYS, len(_WIRE_KEYS))


def event_to_wire(e: Event) -> dict[str, Any]:
    """The compact msgpack-ready map for one event: id as 16 raw bytes, type as a small code."""
    return {
        "i": uuid.UUID(e.id).bytes,
        "c": e.case,
        "o": e.origin,
        "s": e.seq,
        "h": e.hlc,
        "t": TYPE_CODE[e.type],
        "b": e.body,
    }


def event_from_wire(d: object) -> Event:
    """Build and validate an event from its wire map; raise `EventFormatError` if malformed."""
    if not isinstance(d, dict):
        raise EventFormatError(f"wire event must be a map, got {_kind(d)}")
    if d.keys() != _WIRE_KEYS:
        raise EventFormatError(
            f"wire event keys are {sorted(map(str, d.keys()))}, expected {sorted(_WIRE_KEYS)}"
        )
    raw_id = d["i"]
    if not isinstance(raw_id, bytes) or len(raw_id) != 16:
        raise EventFormatError("wire event: i (id) must be 16 bytes")
    code = d["t"]
    if not isinstance(code, int) or isinstance(code, bool) or code not in _CODE_TYPE:
        raise EventFormatError(
            f"wire event {uuid.UUID(bytes=raw_id)}: unknown type code {code!r}; the sender "
            "may be newer than this build"
        )
    body = d["b"]
    if not isinstance(body, dict):
        raise EventFormatError(f"wire event {uuid.UUID(bytes=raw_id)}: b (body) must be a map")
    return Event(
        id=str(uuid.UUID(bytes=raw_id)),
        case=d["c"],
        origin=d["o"],
        seq=d["s"],
        hlc=d["h"],
        type=_CODE_TYPE[code],
        body=body,
    )


def encode_events(events: Sequence[Event]) -> bytes:
    """Encode a batch of events (the payload of an event package).

    Refuses batches `decode_events` would refuse with its default limits, so that whatever is
    queued can also be received: split larger batches.
    """
    if len(events) > MAX_BATCH_EVENTS:
        raise EventFormatError(
            f"batch of {len(events)} events exceeds {MAX_BATCH_EVENTS}; split it"
        )
    try:
        data: bytes = msgpack.packb([event_to_wire(e) for e in events], use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        # Only reachable if a body dict was mutated after validation.
        raise EventFormatError(f"cannot encode batch: {exc}") from exc
    if len(data) > MAX_BATCH_BYTES:
        raise EventFormatError(
            f"encoded batch is {len(data)} bytes, over {MAX_BATCH_BYTES}; split it"
        )
    return data


def _refuse_ext(code: int, data: bytes) -> object:
    raise EventFormatError(f"msgpack extension type {code} is not allowed in an event batch")


def decode_events(
    data: bytes, *, max_events: int = MAX_BATCH_EVENTS, max_bytes: int = MAX_BATCH_BYTES
) -> list[Event]:
    """Decode and validate a batch; raise `EventFormatError` (and nothing else) on bad input.

    The size is checked before anything is unpacked, and msgpack's own length limits stop a
    forged length prefix from allocating more than the batch could hold.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise EventFormatError(f"event batch must be bytes, got {_kind(data)}")
    if len(data) > max_bytes:
        raise EventFormatError(
            f"event batch is {len(data)} bytes, over the limit of {max_bytes}; the sender must "
            "split it"
        )
    try:
        items = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            ext_hook=_refuse_ext,
            max_str_len=_MAX_STR_BYTES,
            max_bin_len=16,
            max_array_len=max_events,
            max_map_len=_MAX_MAP_LEN,
            max_ext_len=0,
        )
    except EventFormatError:
        raise
    # msgpack documents that unpacking may raise exceptions outside its own family and that
    # catching Exception is the way to catch them all; at this boundary every one means
    # "malformed input".
    except Exception as exc:
        raise EventFormatError(f"event batch is not valid msgpack: {exc}") from exc
    if not isinstance(items, list):
        raise EventFormatError(f"event batch must be an array, got {_kind(items)}")
    if len(items) > max_events:
        raise EventFormatError(f"event batch holds {len(items)} events, over {max_events}")
    events = []
    for index, item in enumerate(items):
        try:
            events.append(event_from_wire(item))
        except EventFormatError as exc:
            raise EventFormatError(f"event batch item {index}: {exc}") from exc
    return events
