"""Events: validation on construction, body schemas, the msgpack batch and its limits."""

from __future__ import annotations

import uuid
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.events import (
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_HLC,
    MAX_TEXT_CHARS,
    CaseModelError,
    Event,
    EventFormatError,
    EventType,
    decode_events,
    encode_events,
    event_from_wire,
    event_to_wire,
    validate_body,
)
from sync.ids import uuid7
from sync.workflow import Status

CASE = "ST001-20261122-0007"
SHA_A = "a" * 64
SHA_B = "b" * 64
APPLICANT = {
    "id_type": "resident_id",
    "id_number": "110101199003071234",
    "name": "张三",
    "sex": "男",
}

VALID_BODIES: dict[EventType, dict[str, Any]] = {
    EventType.CASE_CREATED: {
        "service": "MZ-0031",
        "applicant": {**APPLICANT, "nation": "汉", "address": "某村 1 号", "photo_pages": 1},
        "fields": {"household_size": 4, "reason": "低保申请"},
    },
    EventType.FIELD_SET: {"name": "household_size", "value": 5},
    EventType.MATERIAL_ADDED: {
        "sha256": SHA_A,
        "kind": "hukou",
        "pages": 2,
        "size": 123_456,
        "mime": "image/jpeg",
        "answers": "r1",
    },
    EventType.MATERIAL_SUPERSEDED: {"sha256": SHA_A, "by": SHA_B, "reason": "blurred"},
    EventType.SUPPLEMENT_REQUESTED: {"request": "r1", "what": "户口本首页"},
    EventType.STATUS_CHANGED: {"to": "submitted", "reason": "applicant signed"},
    EventType.NOTE_ADDED: {"text": "申请人电话已核实\n第二行"},
}


def make(type: EventType = EventType.NOTE_ADDED, body: Any = None, **over: Any) -> Event:
    fields: dict[str, Any] = {
        "id": uuid7(1_795_305_600_000, bytes(10)),
        "case": CASE,
        "origin": "ST001",
        "seq": 1,
        "hlc": 1 << 16,
        "type": type,
        "body": VALID_BODIES[type] if body is None else body,
    }
    fields.update(over)
    return Event(**fields)


def test_every_event_type_has_a_valid_example() -> None:
    assert set(VALID_BODIES) == set(EventType)
    for t, body in VALID_BODIES.items():
        assert make(t, body).body == body


# -- envelope validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"id": "not-a-uuid"}, "UUIDv7"),
        ({"id": str(uuid.UUID(int=1, version=4))}, "UUIDv7"),
        ({"id": uuid7(0, b"\xff" * 10).upper()}, "UUIDv7"),
        ({"case": ""}, "case"),
        ({"case": "ST001/x"}, "case"),
        ({"origin": "a b"}, "origin"),
        ({"origin": "x" * 65}, "origin"),
        ({"seq": 0}, "seq"),
        ({"seq": True}, "seq"),
        ({"hlc": -1}, "hlc"),
        ({"hlc": MAX_HLC + 1}, "hlc"),
        ({"type": "note_added"}, "EventType"),
        ({"body": [("text", "x")]}, "dict"),
    ],
)
def test_event_construction_rejects(over: dict[str, Any], match: str) -> None:
    with pytest.raises(EventFormatError, match=match):
        make(**over)


@pytest.mark.parametrize(
    ("type", "body", "match"),
    [
        (EventType.CASE_CREATED, {"service": "S", "fields": {}}, "missing applicant"),
        (
            EventType.CASE_CREATED,
            {"service": "S", "applicant": {"name": "x"}, "fields": {}},
            "applicant: missing id_number, id_type, sex",
        ),
        (
            EventType.CASE_CREATED,
            {"service": "S", "applicant": {**APPLICANT, "extra": [1]}, "fields": {}},
            "applicant: extra must be a string or an integer",
        ),
        (
            EventType.CASE_CREATED,
            {"service": "S", "applicant": APPLICANT, "fields": {"n": 1.5}},
            r"fields\['n'\] must be a string or an integer",
        ),
        (
            EventType.CASE_CREATED,
            {"service": "S", "applicant": APPLICANT, "fields": {"n": None}},
            r"fields\['n'\]",
        ),
        (
            EventType.CASE_CREATED,
            {"service": "S", "applicant": APPLICANT, "fields": {"n": 1 << 63}},
            r"fields\['n'\]=.* out of range",
        ),
        (EventType.FIELD_SET, {"name": "x", "value": True}, "value"),
        (EventType.FIELD_SET, {"name": "", "value": 1}, "name must be a non-empty string"),
        (EventType.FIELD_SET, {"name": "x", "value": 1, "by": 2}, "unknown key"),
        (
            EventType.MATERIAL_ADDED,
            {**VALID_BODIES[EventType.MATERIAL_ADDED], "sha256": "A" * 64},
            "sha256 must be a lower-case hex SHA-256",
        ),
        (
            EventType.MATERIAL_ADDED,
            {**VALID_BODIES[EventType.MATERIAL_ADDED], "pages": 0},
            r"pages=0 is out of range",
        ),
        (
            EventType.MATERIAL_ADDED,
            {**VALID_BODIES[EventType.MATERIAL_ADDED], "size": "12"},
            "size must be an integer",
        ),
        (EventType.MATERIAL_SUPERSEDED, {"sha256": SHA_A, "by": SHA_A}, "supersede itself"),
        (EventType.MATERIAL_SUPERSEDED, {"by": SHA_A}, "missing sha256"),
        (EventType.SUPPLEMENT_REQUESTED, {"request": "r1", "what": ""}, "what"),
        (EventType.STATUS_CHANGED, {"to": "closed"}, "to='closed' is not a status"),
        (EventType.STATUS_CHANGED, {"to": 3}, "is not a status"),
        (EventType.NOTE_ADDED, {"text": "x" * (MAX_TEXT_CHARS + 1)}, "at most 4000"),
        (EventType.NOTE_ADDED, {"text": "\ud800"}, "not valid Unicode"),
        (EventType.NOTE_ADDED, {}, "missing text"),
    ],
)
def test_body_validation_names_the_field(type: EventType, body: Any, match: str) -> None:
    with pytest.raises(EventFormatError, match=match):
        validate_body(type, body)
    with pytest.raises(EventFormatError, match=match):
        make(type, body)


def test_body_errors_do_not_echo_personal_data() -> None:
    applicant = {**APPLICANT, "name": 123_456_789}  # a number where the name should be
    with pytest.raises(EventFormatError) as info:
        validate_body(
            EventType.CASE_CREATED, {"service": "S", "applicant": applicant, "fields": {}}
        )
    assert "123456789" not in str(info.value)
    assert "applicant: name" in str(info.value)


def test_field_set_value_none_is_a_valid_clear() -> None:
    validate_body(EventType.FIELD_SET, {"name": "x", "value": None})


def test_status_values_accepted_are_exactly_the_statuses() -> None:
    for s in Status:
        validate_body(EventType.STATUS_CHANGED, {"to": s.value})


def test_format_errors_are_value_errors_of_the_model_family() -> None:
    assert issubclass(EventFormatError, CaseModelError)
    assert issubclass(CaseModelError, ValueError)


# -- wire form ----------------------------------------------------------------------------------

TEXT = st.text(min_size=1, max_size=30)
SCALAR = st.one_of(st.text(max_size=30), st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1))
NAME = st.text(min_size=1, max_size=20)
SHA = st.binary(min_size=32, max_size=32).map(bytes.hex)

BODIES: dict[EventType, st.SearchStrategy[dict[str, Any]]] = {
    EventType.CASE_CREATED: st.fixed_dictionaries(
        {
            "service": NAME,
            "applicant": st.fixed_dictionaries(
                {"id_type": TEXT, "id_number": TEXT, "name": TEXT, "sex": TEXT},
                optional={"nation": TEXT, "address": TEXT},
            ),
            "fields": st.dictionaries(NAME, SCALAR, max_size=5),
        }
    ),
    EventType.FIELD_SET: st.fixed_dictionaries({"name": NAME, "value": st.none() | SCALAR}),
    EventType.MATERIAL_ADDED: st.fixed_dictionaries(
        {
            "sha256": SHA,
            "kind": NAME,
            "pages": st.integers(1, 500),
            "size": st.integers(1, 1 << 40),
            "mime": NAME,
        },
        optional={"answers": NAME},
    ),
    EventType.MATERIAL_SUPERSEDED: st.fixed_dictionaries(
        {"sha256": SHA}, optional={"reason": TEXT}
    ),
    EventType.SUPPLEMENT_REQUESTED: st.fixed_dictionaries({"request": NAME, "what": TEXT}),
    EventType.STATUS_CHANGED: st.fixed_dictionaries(
        {"to": st.sampled_from([s.value for s in Status])}, optional={"reason": TEXT}
    ),
    EventType.NOTE_ADDED: st.fixed_dictionaries({"text": TEXT}),
}


@st.composite
def events(draw: st.DrawFn) -> Event:
    t = draw(st.sampled_from(list(EventType)))
    return Event(
        id=uuid7(draw(st.integers(0, (1 << 48) - 1)), draw(st.binary(min_size=10, max_size=10))),
        case=draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}", fullmatch=True)),
        origin=draw(st.sampled_from(["ST001", "HUB01", "st_2"])),
        seq=draw(st.integers(1, (1 << 63) - 1)),
        hlc=draw(st.integers(0, MAX_HLC)),
        type=t,
        body=draw(BODIES[t]),
    )


@given(st.lists(events(), max_size=20))
def test_batch_round_trip(batch: list[Event]) -> None:
    assert decode_events(encode_events(batch)) == batch


@given(events())
def test_wire_map_round_trip_is_compact(e: Event) -> None:
    wire = event_to_wire(e)
    assert set(wire) == set("icoshtb")
    assert isinstance(wire["i"], bytes) and len(wire["i"]) == 16
    assert isinstance(wire["t"], int)
    assert event_from_wire(wire) == e


def test_type_codes_are_stable() -> None:
    # Wire compatibility: these numbers must never change.
    codes = {t: event_to_wire(make(t))["t"] for t in EventType}
    assert codes == {
        EventType.CASE_CREATED: 1,
        EventType.FIELD_SET: 2,
        EventType.MATERIAL_ADDED: 3,
        EventType.MATERIAL_SUPERSEDED: 4,
        EventType.SUPPLEMENT_REQUESTED: 5,
        EventType.STATUS_CHANGED: 6,
        EventType.NOTE_ADDED: 7,
    }


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_garbage_raises_only_event_format_error(data: bytes) -> None:
    try:
        got = decode_events(data)
    except EventFormatError:
        return
    assert all(isinstance(e, Event) for e in got)


@settings(max_examples=150)
@given(st.lists(events(), min_size=1, max_size=3), st.data())
def test_corrupted_batches_raise_only_event_format_error(
    batch: list[Event], data: st.DataObject
) -> None:
    raw = bytearray(encode_events(batch))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        got = decode_events(bytes(raw[:cut]))
    except EventFormatError:
        return
    assert all(isinstance(e, Event) for e in got)


def _wire(**over: Any) -> dict[str, Any]:
    return {**event_to_wire(make()), **over}


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (msgpack.packb({"a": 1}), "must be an array"),
        (msgpack.packb([1]), "item 0: wire event must be a map"),
        (msgpack.packb([_wire(x=1)]), "keys are"),
        (msgpack.packb([{k: v for k, v in _wire().items() if k != "b"}]), "keys are"),
        (msgpack.packb([_wire(i=b"short")]), "16 bytes"),
        (msgpack.packb([_wire(t=99)]), "unknown type code 99"),
        (msgpack.packb([_wire(t=True)]), "unknown type code"),
        (msgpack.packb([_wire(b=[1])]), "body.* must be a map"),
        (msgpack.packb([_wire(s=0)]), "seq"),
        (msgpack.packb([_wire(b={b"text": "x"})]), "missing text"),
        (msgpack.packb([_wire(b={"text": msgpack.ExtType(5, b"x")})]), "max_ext_len"),
        (msgpack.packb([msgpack.ExtType(1, b"")]), "extension type 1"),
        (b"\xd6\xff\x00\x00\x00\x00", "not valid msgpack"),  # timestamp ext: refused by length
        (msgpack.packb([{1: 2}]), "not valid msgpack"),  # non-string map key
        (msgpack.packb([_wire()]) + b"\x00", "not valid msgpack"),  # trailing bytes
        (b"\xdd\xff\xff\xff\xff", "not valid msgpack"),  # forged 4-billion-item array header
        (b"\xdb\xff\xff\xff\xff", "not valid msgpack"),  # forged 4 GiB string header
        (b"\x91" * 5000, "not valid msgpack"),  # nested deeper than msgpack's stack
        (b"", "not valid msgpack"),
    ],
)
def test_decode_rejects(payload: bytes, match: str) -> None:
    with pytest.raises(EventFormatError, match=match):
        decode_events(payload)


def test_decode_checks_size_before_unpacking() -> None:
    data = encode_events([make()])
    with pytest.raises(EventFormatError, match="bytes, over the limit"):
        decode_events(data, max_bytes=len(data) - 1)
    assert decode_events(data, max_bytes=len(data)) == [make()]
    with pytest.raises(EventFormatError, match="over the limit"):
        decode_events(b"\x90" + b"\x00" * MAX_BATCH_BYTES)


def test_decode_limits_the_number_of_events() -> None:
    batch = [make(id=uuid7(n, bytes(10)), seq=n + 1) for n in range(5)]
    data = encode_events(batch)
    assert decode_events(data, max_events=5) == batch
    with pytest.raises(EventFormatError):
        decode_events(data, max_events=4)


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(EventFormatError, match="must be bytes"):
        decode_events("[]")  # type: ignore[arg-type]


def test_encode_refuses_what_decode_would_refuse() -> None:
    e = make()
    with pytest.raises(EventFormatError, match="split it"):
        encode_events([e] * (MAX_BATCH_EVENTS + 1))
    assert len(decode_events(encode_events([e] * MAX_BATCH_EVENTS))) == MAX_BATCH_EVENTS


def test_encode_reports_a_body_mutated_after_validation() -> None:
    e = make()
    e.body["text"] = object()  # bypasses validation: the dict itself is mutable
    with pytest.raises(EventFormatError, match="cannot encode"):
        encode_events([e])
