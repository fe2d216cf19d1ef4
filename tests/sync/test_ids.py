"""UUIDv7 event ids and case numbers."""

from __future__ import annotations

import re
import uuid
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync.events import CaseModelError, is_event_id
from sync.ids import IdError, case_number, check_station_id, parse_case_number, uuid7, uuid7_ms

MS = st.integers(min_value=0, max_value=(1 << 48) - 1)
RAND = st.binary(min_size=10, max_size=10)
CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


@given(MS, RAND)
def test_uuid7_is_canonical_rfc9562_version_7(now_ms: int, rand: bytes) -> None:
    s = uuid7(now_ms, rand)
    assert CANONICAL.fullmatch(s)
    u = uuid.UUID(s)
    assert str(u) == s
    assert u.version == 7
    assert u.variant == uuid.RFC_4122
    assert uuid7_ms(s) == now_ms
    assert is_event_id(s)


@given(MS, MS, RAND, RAND)
def test_uuid7_sorts_by_millisecond(a: int, b: int, ra: bytes, rb: bytes) -> None:
    if a != b:
        assert (uuid7(a, ra) < uuid7(b, rb)) == (a < b)


def test_uuid7_places_time_and_random_bits() -> None:
    assert uuid7(0, bytes(10)) == "00000000-0000-7000-8000-000000000000"
    assert uuid7(0, b"\xff" * 10) == "00000000-0000-7fff-bfff-ffffffffffff"
    ms = 1_795_305_600_000  # 2026-11-22T00:00:00Z: the first 48 bits, big-endian
    assert uuid7(ms, bytes(10)).replace("-", "")[:12] == f"{ms:012x}"


@given(RAND, RAND)
def test_uuid7_differs_when_randomness_differs(ra: bytes, rb: bytes) -> None:
    # Only the top 74 bits of the 80 are used.
    same = int.from_bytes(ra, "big") >> 6 == int.from_bytes(rb, "big") >> 6
    assert (uuid7(5, ra) == uuid7(5, rb)) == same


@pytest.mark.parametrize(
    ("now_ms", "rand", "match"),
    [
        (-1, bytes(10), "now_ms"),
        (1 << 48, bytes(10), "now_ms"),
        (True, bytes(10), "now_ms"),
        (0, bytes(9), "10 bytes"),
        (0, bytes(11), "10 bytes"),
        (0, "0123456789", "10 bytes"),
    ],
)
def test_uuid7_rejects_bad_input(now_ms: int, rand: bytes, match: str) -> None:
    with pytest.raises(IdError, match=match):
        uuid7(now_ms, rand)


def test_uuid7_ms_rejects_non_v7() -> None:
    with pytest.raises(IdError, match="UUIDv7"):
        uuid7_ms(str(uuid.UUID(int=0, version=4)))


def test_case_number_format() -> None:
    assert case_number("ST001", date(2026, 11, 22), 7) == "ST001-20261122-0007"
    assert case_number("ST001", date(2026, 1, 2), 12345) == "ST001-20260102-12345"
    assert case_number("ST001", date(999, 1, 2), 1) == "ST001-09990102-0001"


@given(
    st.from_regex(r"[A-Za-z0-9_]{1,32}", fullmatch=True),
    st.dates(),
    st.integers(min_value=1, max_value=10**6),
)
def test_case_number_round_trips(station: str, day: date, counter: int) -> None:
    assert parse_case_number(case_number(station, day, counter)) == (station, day, counter)


@pytest.mark.parametrize(
    ("station", "counter", "match"),
    [
        ("ST-1", 1, "station id"),
        ("", 1, "station id"),
        ("S" * 33, 1, "station id"),
        ("cl/ST1", 1, "station id"),
        ("ST001", 0, "counter"),
        ("ST001", True, "counter"),
    ],
)
def test_case_number_rejects_bad_input(station: str, counter: int, match: str) -> None:
    with pytest.raises(IdError, match=match):
        case_number(station, date(2026, 11, 22), counter)


@pytest.mark.parametrize(
    "text",
    ["ST001-20261122-007", "ST001-20261322-0007", "ST001-20261122-0000", "ST001_20261122_0007"],
)
def test_parse_case_number_rejects(text: str) -> None:
    with pytest.raises(IdError):
        parse_case_number(text)


def test_id_errors_belong_to_the_model_family() -> None:
    assert issubclass(IdError, CaseModelError)
    assert check_station_id("ST001") == "ST001"
