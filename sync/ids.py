"""Identifiers: UUIDv7 event ids and human-readable case numbers.

Pure: the caller supplies the time and the randomness (``uuid7(now_ms, os.urandom(10))``), so
tests are deterministic and this module reads no clock.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Final

from sync.events import CaseModelError, is_event_id


class IdError(CaseModelError):
    """An identifier could not be made or parsed; the message says which input was wrong."""


_MAX_MS: Final = (1 << 48) - 1
_VERSION: Final = 0x7
_VARIANT: Final = 0b10

# Station ids become MQTT topic levels and case-number prefixes: letters, digits, underscore.
_STATION_RE: Final = re.compile(r"[A-Za-z0-9_]{1,32}")
_CASE_NUMBER_RE: Final = re.compile(r"([A-Za-z0-9_]{1,32})-(\d{8})-(\d{4,})")


def uuid7(now_ms: int, rand: bytes) -> str:
    """An RFC 9562 UUIDv7 as a canonical lower-case string.

    Layout: 48 bits of Unix milliseconds, version 7, 12 random bits, variant 10, 62 random
    bits. The 74 random bits are the first 74 bits of `rand` (10 bytes; the last 6 bits are
    unused), so ids sort by creation millisecond and are unique within one.
    """
    if isinstance(now_ms, bool) or not isinstance(now_ms, int) or not 0 <= now_ms <= _MAX_MS:
        raise IdError(f"uuid7: now_ms={now_ms!r} must be an integer in [0, 2**48)")
    if not isinstance(rand, bytes) or len(rand) != 10:
        raise IdError("uuid7: rand must be exactly 10 bytes; pass os.urandom(10)")
    r = int.from_bytes(rand, "big") >> 6  # 74 bits
    rand_a = r >> 62
    rand_b = r & ((1 << 62) - 1)
    value = (now_ms << 80) | (_VERSION << 76) | (rand_a << 64) | (_VARIANT << 62) | rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid7_ms(event_id: str) -> int:
    """The Unix millisecond an id was made in (its first 48 bits)."""
    if not is_event_id(event_id):
        raise IdError(f"{event_id!r} is not a lower-case UUIDv7 string")
    return int(event_id[:8] + event_id[9:13], 16)


def check_station_id(station: str) -> str:
    """Return `station` if it is a valid station id (1-32 of A-Z a-z 0-9 _), else raise."""
    if not isinstance(station, str) or _STATION_RE.fullmatch(station) is None:
        raise IdError(
            f"station id {station!r} must be 1-32 characters of A-Z a-z 0-9 _ "
            "(it becomes an MQTT topic level and a case-number prefix)"
        )
    return station


def case_number(station: str, day: date, counter: int) -> str:
    """The case number printed on the receipt: ``"ST001-20261122-0007"``.

    `counter` is the station's 1-based count of cases that day; it is zero-padded to four
    digits and simply grows wider past 9999, so numbers stay unique.
    """
    check_station_id(station)
    if not isinstance(day, date):
        raise IdError(f"case_number: day must be a datetime.date, got {type(day).__name__}")
    if isinstance(counter, bool) or not isinstance(counter, int) or counter < 1:
        raise IdError(f"case_number: counter={counter!r} must be an integer >= 1")
    # Explicit widths: strftime("%Y") does not pad years before 1000 on every libc.
    return f"{station}-{day.year:04d}{day.month:02d}{day.day:02d}-{counter:04d}"


def parse_case_number(number: str) -> tuple[str, date, int]:
    """Split a case number into (station, day, counter); raise `IdError` if it is not one."""
    m = _CASE_NUMBER_RE.fullmatch(number) if isinstance(number, str) else None
    if m is None:
        raise IdError(f"{number!r} is not a case number like 'ST001-20261122-0007'")
    station, ymd, counter = m.groups()
    try:
        day = date(int(ymd[:4]), int(ymd[4:6]), int(ymd[6:]))
    except ValueError as exc:
        raise IdError(f"case number {number!r} has an impossible date {ymd}") from exc
    if int(counter) < 1:
        raise IdError(f"case number {number!r} has counter 0; counters start at 1")
    return station, day, int(counter)
