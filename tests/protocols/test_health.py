"""The health beacon: vectors from docs/observability.md, round trips, the status mapping,
and every kind of bad input the hub may receive on ``cl/+/h``."""

from __future__ import annotations

import ast
import contextlib
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import protocols.health
from protocols.health import (
    MAX_BEACON_BYTES,
    MAX_DEVICE_NAME,
    MAX_DEVICES,
    MAX_SOFTWARE,
    MAX_STATE,
    STATE_CODES,
    Beacon,
    BeaconError,
    beacon_from_status,
    decode_beacon,
    encode_beacon,
)
from sync.workflow import FINAL, Status

TYPICAL = Beacon(
    at_ms=1795000000000,
    software="cunlink 0.1.0",
    uptime_s=86400,
    link_up=True,
    connects=3,
    stalls=1,
    bytes_up=1_234_567,
    bytes_down=45_678,
    chunks_resent=2,
    rtt_ms=850,
    hub_offset_ms=-120,
    outbox_items=4,
    outbox_bytes=900_000,
    outbox_oldest_s=30,
    outbox_held=0,
    disk_free_mb=10240,
    devices={"reader": "ok", "printer": "degraded", "camera": "down"},
    cases_open=4,
    conflicts=0,
    errors=1,
)
EMPTY = Beacon(
    at_ms=0,
    software="",
    uptime_s=0,
    link_up=False,
    connects=0,
    stalls=0,
    bytes_up=0,
    bytes_down=0,
    chunks_resent=0,
    rtt_ms=None,
    hub_offset_ms=None,
    outbox_items=0,
    outbox_bytes=0,
    outbox_oldest_s=None,
    outbox_held=0,
    disk_free_mb=0,
    devices={"x": "wedged"},
    cases_open=0,
    conflicts=0,
    errors=0,
)

# The same vectors are printed in docs/observability.md ("Health beacon").
VECTORS = [
    (
        TYPICAL,
        "dc001501cf000001a1ee565e00ad63756e6c696e6b20302e312e30ce00015180c30301ce0012d687"
        "cdb26e02cd0352d08804ce000dbba01e00cd280083a663616d65726103a77072696e74657202a672"
        "656164657201040001",
    ),
    # nil for unknown values; an unlisted state travels as text
    (EMPTY, "dc00150100a000c20000000000c0c00000c0000081a178a6776564676564000000"),
]


def _fields(beacon: Beacon) -> list[Any]:
    value: list[Any] = msgpack.unpackb(encode_beacon(beacon))
    return value


@pytest.mark.parametrize(("beacon", "hexbytes"), VECTORS)
def test_vector_encodes_to_exact_bytes(beacon: Beacon, hexbytes: str) -> None:
    assert encode_beacon(beacon).hex() == hexbytes


@pytest.mark.parametrize(("beacon", "hexbytes"), VECTORS)
def test_vector_decodes_to_the_beacon(beacon: Beacon, hexbytes: str) -> None:
    assert decode_beacon(bytes.fromhex(hexbytes)) == beacon


def test_typical_beacon_is_small() -> None:
    # docs/observability.md computes the daily cost from this size; keep them in step.
    assert len(encode_beacon(TYPICAL)) == 89
    chinese = {"身份证读卡器": "ok", "票据打印机": "degraded", "高拍仪": "down"}
    assert len(encode_beacon(Beacon(**{**_kwargs(TYPICAL), "devices": chinese}))) == 112


def test_docs_print_the_vectors() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "observability.md").read_text("utf-8")
    flat = "".join(docs.split())  # the hex is wrapped over several lines in the docs
    for _, hexbytes in VECTORS:
        assert hexbytes in flat


def test_known_states_travel_as_one_byte_codes() -> None:
    assert _fields(TYPICAL)[17] == {"camera": 3, "printer": 2, "reader": 1}
    assert dict(STATE_CODES) == {"starting": 0, "ok": 1, "degraded": 2, "down": 3, "up": 4}


def test_largest_possible_beacon_fits_the_limit() -> None:
    worst = Beacon(
        at_ms=2**63 - 1,
        software="s" * MAX_SOFTWARE,
        uptime_s=2**63 - 1,
        link_up=True,
        connects=2**63 - 1,
        stalls=2**63 - 1,
        bytes_up=2**63 - 1,
        bytes_down=2**63 - 1,
        chunks_resent=2**63 - 1,
        rtt_ms=2**32 - 1,
        hub_offset_ms=-(10 * 365 * 86_400_000),
        outbox_items=2**63 - 1,
        outbox_bytes=2**63 - 1,
        outbox_oldest_s=2**63 - 1,
        outbox_held=2**63 - 1,
        disk_free_mb=2**63 - 1,
        # four UTF-8 bytes per character: the longest names in bytes
        devices={
            f"{i:04d}" + "𝔡" * ((MAX_DEVICE_NAME - 4) // 4): "𝔰" * (MAX_STATE // 4)
            for i in range(MAX_DEVICES)
        },
        cases_open=2**63 - 1,
        conflicts=2**63 - 1,
        errors=2**63 - 1,
    )
    data = encode_beacon(worst)
    assert len(data) == 1039  # docs/observability.md quotes this size
    assert len(data) <= MAX_BEACON_BYTES
    assert decode_beacon(data) == worst


def _utf8(limit: int) -> st.SearchStrategy[str]:
    return st.text(min_size=1, max_size=limit).filter(lambda s: len(s.encode()) <= limit)


_names = _utf8(MAX_DEVICE_NAME)
_states = st.one_of(st.sampled_from(sorted(STATE_CODES)), _utf8(MAX_STATE))
_u63 = st.integers(0, 2**63 - 1)


@st.composite
def beacons(draw: st.DrawFn) -> Beacon:
    return Beacon(
        at_ms=draw(_u63),
        software=draw(st.just("") | _utf8(MAX_SOFTWARE)),
        uptime_s=draw(_u63),
        link_up=draw(st.booleans()),
        connects=draw(_u63),
        stalls=draw(_u63),
        bytes_up=draw(_u63),
        bytes_down=draw(_u63),
        chunks_resent=draw(_u63),
        rtt_ms=draw(st.none() | st.integers(0, 2**32 - 1)),
        hub_offset_ms=draw(st.none() | st.integers(-(10**11), 10**11)),
        outbox_items=draw(_u63),
        outbox_bytes=draw(_u63),
        outbox_oldest_s=draw(st.none() | _u63),
        outbox_held=draw(_u63),
        disk_free_mb=draw(_u63),
        devices=draw(st.dictionaries(_names, _states, max_size=MAX_DEVICES)),
        cases_open=draw(_u63),
        conflicts=draw(_u63),
        errors=draw(_u63),
    )


@settings(max_examples=300, deadline=None)
@given(beacons())
def test_round_trip(beacon: Beacon) -> None:
    data = encode_beacon(beacon)
    assert len(data) <= MAX_BEACON_BYTES
    assert decode_beacon(data) == beacon


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_never_escapes_as_another_error(data: bytes) -> None:
    with contextlib.suppress(BeaconError):
        decode_beacon(data)


# --- rejections -------------------------------------------------------------------------------


def _patched(index: int, value: Any) -> bytes:
    fields = _fields(TYPICAL)
    fields[index] = value
    data: bytes = msgpack.packb(fields)
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a valid msgpack"),
        (b"\xc1", "not a valid msgpack"),  # the one byte msgpack never uses
        (b"hello world", "not a valid msgpack"),  # trailing data after a fixint
        (msgpack.packb({"v": 1}), "must be a msgpack array"),
        (msgpack.packb([]), "must be a msgpack array"),
        (msgpack.packb("text"), "must be a msgpack array"),
        (encode_beacon(TYPICAL)[:-1], "not a valid msgpack"),  # truncated
        (encode_beacon(TYPICAL)[:40], "not a valid msgpack"),
        (_patched(0, 2), "version 2 is not supported"),
        (_patched(0, True), "version True is not supported"),
        (_patched(0, "1"), "version '1' is not supported"),
        (msgpack.packb(_fields(TYPICAL)[:-1]), "has 21 items, got 20"),
        (msgpack.packb([*_fields(TYPICAL), 0]), "has 21 items, got 22"),
        (msgpack.packb([2, *range(40)]), "version 2 is not supported"),  # a longer v2
        (msgpack.packb([*_fields(TYPICAL), *range(50)]), "not a valid msgpack"),
        (_patched(1, -1), "at_ms must be an integer"),
        (_patched(1, 1.5), "at_ms must be an integer"),
        (_patched(1, None), "at_ms must be an integer"),
        (_patched(2, b"cunlink"), "not a valid msgpack"),  # bin is never used
        (_patched(2, 7), "software must be text"),
        (_patched(2, "s" * (MAX_SOFTWARE + 1)), "software must be text"),
        (_patched(3, "86400"), "uptime_s must be an integer"),
        (_patched(4, 1), "link_up must be true or false"),
        (_patched(5, True), "connects must be an integer"),
        (_patched(7, 2**64 - 1), "bytes_up must be an integer"),
        (_patched(10, -5), "rtt_ms must be null or an integer"),
        (_patched(11, 10**13), "hub_offset_ms must be null or an integer"),
        (_patched(14, "old"), "outbox_oldest_s must be null"),
        (_patched(17, ["reader", 1]), "devices must be a map"),
        (_patched(17, {"reader": 9}), "unknown state code 9"),
        (_patched(17, {"reader": 1.0}), "state of device 'reader' must be text"),
        (_patched(17, {"reader": ""}), "state of device 'reader' must be text of 1 to"),
        (_patched(17, {"reader": "x" * (MAX_STATE + 1)}), "must be text of 1 to 16 UTF-8"),
        (_patched(17, {"reader": "状" * 6}), "must be text of 1 to 16 UTF-8"),  # 18 bytes
        (_patched(17, {"": 1}), "device name must be text of 1 to"),
        (_patched(17, {"n" * (MAX_DEVICE_NAME + 1): 1}), "device name must be text"),
        (_patched(17, {1: 1}), "not a valid msgpack"),  # strict map keys
        (_patched(17, {f"d{i}": 1 for i in range(MAX_DEVICES + 1)}), "not a valid msgpack"),
        (_patched(20, None), "errors must be an integer"),
        (b"\x00" * (MAX_BEACON_BYTES + 1), f"more than the {MAX_BEACON_BYTES} allowed"),
    ],
)
def test_rejects(data: bytes, message: str) -> None:
    with pytest.raises(BeaconError, match=message):
        decode_beacon(data)


def test_beacon_error_is_a_value_error() -> None:
    assert issubclass(BeaconError, ValueError)


def test_rejects_non_bytes() -> None:
    with pytest.raises(BeaconError, match="a beacon is bytes, got str"):
        decode_beacon("dc00")  # type: ignore[arg-type]


def test_constructor_validates_like_the_decoder() -> None:
    with pytest.raises(BeaconError, match="devices must map at most 16"):
        Beacon(**{**_kwargs(TYPICAL), "devices": {f"d{i}": "ok" for i in range(17)}})
    with pytest.raises(BeaconError, match="outbox_items must be an integer"):
        Beacon(**{**_kwargs(TYPICAL), "outbox_items": -1})
    with pytest.raises(BeaconError, match="software must be text"):
        Beacon(**{**_kwargs(TYPICAL), "software": "bad \udc80 surrogate"})


def test_beacon_keeps_its_own_copy_of_devices() -> None:
    devices = {"reader": "ok"}
    beacon = Beacon(**{**_kwargs(TYPICAL), "devices": devices})
    devices["reader"] = "down"
    assert beacon.devices == {"reader": "ok"}


def _kwargs(beacon: Beacon) -> dict[str, Any]:
    return {name: getattr(beacon, name) for name in Beacon.__dataclass_fields__}


# --- from the status snapshot -----------------------------------------------------------------


def status_snapshot() -> dict[str, Any]:
    """A realistic snapshot in the agreed shape (docs/observability.md uses its size)."""
    device: dict[str, Any] = {
        "last_error": None,
        "last_error_at": None,
        "last_success_at": 1795000000.0,
        "successes": 40,
        "failures": 0,
        "consecutive_failures": 0,
        "reconnects": 0,
        "detail": {},
    }
    return {
        "station": "ST001",
        "software": "cunlink 0.1.0",
        "started_at": "2026-11-22T08:00:00Z",
        "uptime_seconds": 86400.7,
        "link": {
            "up": True,
            "since": "2026-11-22T09:00:00Z",
            "connects": 3,
            "disconnects": 2,
            "stalls": 1,
            "bytes_up": 1_234_567,
            "bytes_down": 45_678,
            "chunks_sent": 310,
            "chunks_resent": 2,
            "bytes_resent": 8192,
            "delivered": 40,
            "rejected": 0,
            "rtt_seconds": 0.8496,
            "hub_offset_ms": -120,
            "last_error": "",
        },
        "outbox": {
            "count": 4,
            "bytes_pending": 900_000,
            "oldest_age_seconds": 30.4,
            "by_class": {"control": 0, "events": 1, "materials": 3},
            "held": 0,
        },
        "devices": [
            {**device, "name": "reader", "kind": "idcard", "state": "ok", "message": ""},
            {
                **device,
                "name": "printer",
                "kind": "escpos",
                "state": "degraded",
                "message": "paper low",
            },
            {**device, "name": "camera", "kind": "v4l2", "state": "down", "message": "gone"},
        ],
        "disk": {"free_bytes": 10240 * 2**20 + 12345, "floor_bytes": 209715200},
        "cases": {
            "by_status": {
                "draft": 1,
                "submitted": 3,
                "completed": 50,
                "withdrawn": 2,
                "rejected": 1,
            },
            "conflicts": 0,
        },
        "recent_errors": [
            {"at": "2026-11-22T10:00:00Z", "where": "uplink", "message": "connection reset"}
        ],
        "api": {"requests": 12},
    }


def test_beacon_from_a_realistic_status() -> None:
    assert beacon_from_status(status_snapshot(), at_ms=1795000000000) == TYPICAL


def test_beacon_from_status_with_unknowns() -> None:
    status = status_snapshot()
    status["link"].update(rtt_seconds=None, hub_offset_ms=None, up=False)
    status["outbox"]["oldest_age_seconds"] = None
    beacon = beacon_from_status(status, at_ms=1)
    assert (beacon.rtt_ms, beacon.hub_offset_ms, beacon.outbox_oldest_s, beacon.link_up) == (
        None,
        None,
        None,
        False,
    )


def test_beacon_from_status_cuts_what_would_not_fit() -> None:
    status = status_snapshot()
    status["software"] = "v" * 100
    status["devices"] = [
        {"name": f"{i:02d}" + "读卡器" * 20, "kind": "k", "state": "s" * 30} for i in range(20)
    ]
    beacon = beacon_from_status(status, at_ms=1)
    assert len(beacon.software) == MAX_SOFTWARE
    assert len(beacon.devices) == MAX_DEVICES
    # 30 bytes = ten 3-byte characters; the eleventh would cross the 32-byte limit
    assert sorted(beacon.devices)[0] == "00" + ("读卡器" * 4)[:10]
    assert set(beacon.devices.values()) == {"s" * MAX_STATE}
    assert len(encode_beacon(beacon)) <= MAX_BEACON_BYTES


def test_beacon_from_status_names_the_missing_part() -> None:
    status = status_snapshot()
    del status["outbox"]["held"]
    with pytest.raises(BeaconError, match=r"no 'outbox\.held'"):
        beacon_from_status(status, at_ms=1)
    status = status_snapshot()
    status["link"]["bytes_up"] = -3
    with pytest.raises(BeaconError, match=r"'link\.bytes_up' must be a non-negative number"):
        beacon_from_status(status, at_ms=1)


def test_open_cases_agree_with_the_workflow() -> None:
    status = status_snapshot()
    status["cases"]["by_status"] = {s.value: 1 for s in Status}
    beacon = beacon_from_status(status, at_ms=1)
    assert beacon.cases_open == len(Status) - len(FINAL)
    assert {s.value for s in FINAL} == protocols.health._FINAL_CASE_STATUSES


def test_module_is_pure() -> None:
    forbidden = {
        "asyncio",
        "os",
        "time",
        "logging",
        "socket",
        "sqlite3",
        "serial",
        "subprocess",
        "datetime",
        "random",
    }
    tree = ast.parse(Path(protocols.health.__file__).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        names = (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
        for name in names:
            assert name.split(".")[0] not in forbidden, f"protocols/health.py imports {name}"
