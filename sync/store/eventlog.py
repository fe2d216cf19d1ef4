"""The event log in SQL: local appends, idempotent remote applies, high-water marks and gaps.

Plain synchronous functions over a `sqlite3.Connection`, called on the writer thread inside a
group-commit transaction (writes) or on a reader connection (reads). No asyncio here.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import msgpack

from sync.events import (
    INT64_MAX,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    TYPE_CODE,  # the wire's type codes (append-only table)
    Event,
    EventFormatError,
    EventType,
    validate_body,
)
from sync.ids import uuid7
from sync.store.errors import StoreError


class Clock(Protocol):
    """What the log needs from `sync.hlc.HybridLogicalClock`."""

    def now(self) -> int: ...
    def now_block(self, count: int) -> int: ...
    def observe(self, remote: int) -> int: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class EventDraft:
    """A local event before the store gives it an id, a seq and an hlc."""

    case: str
    type: EventType
    body: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.case:
            raise ValueError("EventDraft.case must name a case (got an empty string)")
        if not isinstance(self.type, EventType):
            raise ValueError(f"EventDraft.type must be an EventType, got {self.type!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplyResult:
    """What one `apply_remote` did.

    new: events stored now; duplicate: already held (same id, or at/below the origin's
    high-water mark); rejected: an (origin, seq) already taken by a *different* event id (a
    misbehaving sender: kept out, counted, logged). gaps: for each origin touched, the missing
    seq ranges `(first, last)` inclusive between its high-water mark and the highest seq seen.
    """

    new: int
    duplicate: int
    gaps: dict[str, list[tuple[int, int]]]
    rejected: int = 0


def pack_body(body: dict[str, Any]) -> bytes:
    try:
        return msgpack.packb(body, use_bin_type=True)  # type: ignore[no-any-return]
    except (TypeError, ValueError) as exc:
        raise StoreError(
            f"event body is not msgpack-serialisable ({exc}); bodies hold only str, int, float, "
            "bool, None, bytes, lists and str-keyed maps"
        ) from exc


def row_to_event(row: Sequence[Any]) -> Event:
    """(id, case_id, origin, seq, hlc, type, body) -> Event."""
    body = msgpack.unpackb(row[6], raw=False)
    return Event(
        id=row[0], case=row[1], origin=row[2], seq=row[3], hlc=row[4],
        type=EventType(row[5]), body=body,
    )


EVENT_COLUMNS = "id, case_id, origin, seq, hlc, type, body"
_INSERT = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"


_new_event = object.__new__
_set = object.__setattr__


def _trusted(
    id: str, case: str, origin: str, seq: int, hlc: int, type: EventType, body: dict[str, Any]
) -> Event:
    """An Event built without running its validation again.

    Used only for fields that were checked before: the body by `validate_body`, the case and
    origin by a fully validated event of the same call, and id, seq and hlc made by the store
    itself. Validation is most of the cost of building an event (~6 µs), and it would otherwise
    run twice, once of them on the single writer thread, where it sits between commits.
    """
    event = _new_event(Event)
    _set(event, "id", id)
    _set(event, "case", case)
    _set(event, "origin", origin)
    _set(event, "seq", seq)
    _set(event, "hlc", hlc)
    _set(event, "type", type)
    _set(event, "body", body)
    return event


_MAX_ROWS_PER_INSERT = 256  # 7 columns each: far below SQLite's 32766 bound parameters


@functools.cache
def _insert_rows_sql(count: int) -> str:
    return f"INSERT INTO events ({EVENT_COLUMNS}) VALUES " + ", ".join(
        ["(?, ?, ?, ?, ?, ?, ?)"] * count
    )


def insert_rows(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert event rows with multi-row statements (fewer round trips than executemany)."""
    for start in range(0, len(rows), _MAX_ROWS_PER_INSERT):
        chunk = rows[start:start + _MAX_ROWS_PER_INSERT]
        conn.execute(_insert_rows_sql(len(chunk)), [v for row in chunk for v in row])


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedAppend:
    """Local drafts validated, encoded and given ids *before* they reach the writer.

    Everything here is independent of the transaction, so the caller's task does it on the
    event loop while the writer thread is busy committing (SQLite releases the GIL there).
    Only seq and hlc, which must come from the transaction, are left for the writer.
    The bodies are packed once: the same bytes go into the event rows and, spliced, into the
    wire batch, so a body mutated after validation can never reach the disk or the link.
    """

    origin: str
    drafts: tuple[EventDraft, ...]
    ids: tuple[str, ...]
    raw_ids: tuple[bytes, ...]
    packed: tuple[bytes, ...]


_RAND_B_MASK: Final = (1 << 62) - 1


def _ids(now_ms: int, count: int) -> tuple[tuple[str, ...], tuple[bytes, ...]]:
    """`count` UUIDv7 ids for one call, as strings and as 16 raw bytes.

    The first comes from `sync.ids.uuid7` (74 random bits); the others add 1, 2, ... to its
    62-bit random tail, RFC 9562 section 6.2's "monotonic random" method: still version 7,
    variant 10, unique and in creation order, for one urandom call and no re-validation per id.
    """
    first = uuid7(now_ms, os.urandom(10))
    value = int(first.replace("-", ""), 16)
    if (value & _RAND_B_MASK) > _RAND_B_MASK - count:  # no room to count up: draw each
        drawn = tuple(uuid7(now_ms, os.urandom(10)) for _ in range(count))
        return drawn, tuple(bytes.fromhex(i.replace("-", "")) for i in drawn)
    strs: list[str] = []
    raws: list[bytes] = []
    for n in range(count):
        h = f"{value + n:032x}"
        strs.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
        raws.append((value + n).to_bytes(16, "big"))
    return tuple(strs), tuple(raws)


def prepare_local(origin: str, drafts: Sequence[EventDraft], now_ms: int) -> PreparedAppend:
    """Validate and encode local drafts; raises EventFormatError (a ValueError) or StoreError.

    The first draft of each case is validated as a complete Event (its real id, placeholder
    seq 1 and hlc 0, which the store then replaces with values it makes in range): that checks
    the case and origin ids once; later drafts of the case only need their bodies checked.
    """
    drafts = tuple(drafts)
    ids, raw_ids = _ids(now_ms, len(drafts))
    checked: set[str] = set()
    packed = []
    for event_id, draft in zip(ids, drafts, strict=True):
        if draft.case in checked:
            validate_body(draft.type, draft.body, where=f"event {event_id}")
        else:
            Event(id=event_id, case=draft.case, origin=origin, seq=1, hlc=0, type=draft.type,
                  body=draft.body)
            checked.add(draft.case)
        packed.append(pack_body(draft.body))
    return PreparedAppend(origin=origin, drafts=drafts, ids=ids, raw_ids=raw_ids,
                          packed=tuple(packed))


@dataclass(frozen=True, slots=True)
class Appended:
    """What `append_prepared` made of one PreparedAppend: its events and their wire batch
    (byte for byte what `sync.events.encode_events(events)` returns)."""

    events: list[Event]
    encoded: bytes


# -- the wire batch, spliced from the packed bodies ----------------------------------------------
# A msgpack map is its header followed by its key/value encodings, and an array its header and
# its items, so packing each body once and concatenating gives exactly the bytes
# `encode_events` produces (tests/sync/test_store_append.py checks that for every event type).
_packb = functools.partial(msgpack.packb, use_bin_type=True)
_KEY_I = b"\x87" + _packb("i") + b"\xc4\x10"  # fixmap of 7, "i", bin 8 of 16 bytes
_KEY_C, _KEY_O, _KEY_S, _KEY_H, _KEY_T, _KEY_B = (_packb(k) for k in "coshtb")
_TYPE_BYTES: Final = {t: _packb(code) for t, code in TYPE_CODE.items()}


def _uint(value: int) -> bytes:
    """msgpack's (shortest) encoding of a non-negative int, as `packb` makes it."""
    if value < 0x80:
        return _FIXINT[value]
    if value < 0x100:
        return b"\xcc" + value.to_bytes(1, "big")
    if value < 0x10000:
        return b"\xcd" + value.to_bytes(2, "big")
    if value < 0x100000000:
        return b"\xce" + value.to_bytes(4, "big")
    return b"\xcf" + value.to_bytes(8, "big")


_FIXINT: Final = tuple(bytes([v]) for v in range(0x80))


@functools.lru_cache(maxsize=64)
def _array_header(count: int) -> bytes:
    return bytes(msgpack.Packer().pack_array_header(count))


def _wire(events: Sequence[Event], raw_ids: Sequence[bytes], packed: Sequence[bytes]) -> bytes:
    if len(events) > MAX_BATCH_EVENTS:
        raise EventFormatError(
            f"batch of {len(events)} events exceeds {MAX_BATCH_EVENTS}; split it"
        )
    parts = [_array_header(len(events))]
    names: dict[str, bytes] = {}
    for event, raw_id, body in zip(events, raw_ids, packed, strict=True):
        case = names.get(event.case) or names.setdefault(event.case, _packb(event.case))
        origin = names.get(event.origin) or names.setdefault(event.origin, _packb(event.origin))
        parts += (_KEY_I, raw_id, _KEY_C, case, _KEY_O, origin, _KEY_S, _uint(event.seq),
                  _KEY_H, _uint(event.hlc), _KEY_T, _TYPE_BYTES[event.type], _KEY_B, body)
    data = b"".join(parts)
    if len(data) > MAX_BATCH_BYTES:
        raise EventFormatError(
            f"encoded batch is {len(data)} bytes, over {MAX_BATCH_BYTES}; split it"
        )
    return data


def append_prepared(
    conn: sqlite3.Connection, clock: Clock, items: Sequence[PreparedAppend]
) -> list[Appended]:
    """Give prepared drafts the next seqs of their origin and fresh hlc timestamps; insert
    every row with as few statements as possible. One call serves a whole group commit."""
    marks: dict[str, tuple[int, int, int]] = {}  # origin -> (high_water, max_seq, next seq)
    out: list[Appended] = []
    rows: list[tuple[Any, ...]] = []
    for item in items:
        origin = item.origin
        if origin not in marks:
            row = conn.execute(
                "SELECT high_water, max_seq FROM origins WHERE origin = ?", (origin,)
            ).fetchone()
            hw, top = (0, 0) if row is None else (int(row[0]), int(row[1]))
            marks[origin] = (hw, top, top)
        hw, top, last = marks[origin]
        count = len(item.drafts)
        hlc = clock.now_block(count) if count else 0
        events = []
        for n, draft in enumerate(item.drafts):
            seq = last + n + 1
            if seq > INT64_MAX:
                raise StoreError(f"origin {origin} has used every sequence number")
            event = _trusted(item.ids[n], draft.case, origin, seq, hlc + n, draft.type,
                             draft.body)
            events.append(event)
            # An EventType is a str (StrEnum): sqlite3 binds it as its value.
            rows.append((event.id, draft.case, origin, seq, hlc + n, draft.type,
                         item.packed[n]))
        marks[origin] = (hw, top, last + count)
        out.append(Appended(events, _wire(events, item.raw_ids, item.packed)))
    insert_rows(conn, rows)
    for origin, (high_water, max_seq, top) in marks.items():
        if top == max_seq:
            continue
        # Our own numbering is contiguous, so the mark moves with it unless remote copies of
        # our own events (a restored station) left a gap below, which apply_remote will close.
        new_high = top if high_water == max_seq else high_water
        conn.execute(
            "INSERT INTO origins (origin, high_water, max_seq) VALUES (?, ?, ?) "
            "ON CONFLICT (origin) DO UPDATE SET high_water = excluded.high_water, "
            "max_seq = excluded.max_seq",
            (origin, new_high, top),
        )
    return out


def append_local(
    conn: sqlite3.Connection,
    clock: Clock,
    origin: str,
    drafts: Sequence[EventDraft],
    now_ms: int,
) -> list[Event]:
    """Validate drafts, give them ids, the next seqs of `origin` and fresh hlcs; insert them."""
    return append_prepared(conn, clock, [prepare_local(origin, drafts, now_ms)])[0].events


def _advance(conn: sqlite3.Connection, origin: str, high_water: int) -> tuple[int, int]:
    """Move the contiguous high-water mark over any seqs now present; returns (hw, max)."""
    seqs = [r[0] for r in conn.execute(
        "SELECT seq FROM events WHERE origin = ? AND seq > ? ORDER BY seq", (origin, high_water)
    )]
    for seq in seqs:
        if seq != high_water + 1:
            break
        high_water = seq
    return high_water, max(seqs[-1] if seqs else 0, high_water)


def apply_remote(
    conn: sqlite3.Connection,
    clock: Clock,
    events: Sequence[Event],
    *,
    package_id: bytes | None,
    sender: str | None,
    now_ms: int,
    blob_sha256: str | None = None,
) -> tuple[ApplyResult, list[Event]]:
    """Insert what is new, skip what is held, observe every hlc; returns (result, rejected)."""
    marks: dict[str, int] = {}
    new: list[Event] = []
    duplicate = 0
    rejected: list[Event] = []
    for event in sorted(events, key=lambda e: (e.origin, e.seq)):
        clock.observe(event.hlc)
        if event.origin not in marks:
            row = conn.execute(
                "SELECT high_water FROM origins WHERE origin = ?", (event.origin,)
            ).fetchone()
            marks[event.origin] = 0 if row is None else int(row[0])
        if event.seq <= marks[event.origin]:
            duplicate += 1
            continue
        held = conn.execute(
            "SELECT id FROM events WHERE id = ? OR (origin = ? AND seq = ?)",
            (event.id, event.origin, event.seq),
        ).fetchall()
        if any(r[0] == event.id for r in held):
            duplicate += 1
        elif held:
            rejected.append(event)
        else:
            conn.execute(_INSERT, (event.id, event.case, event.origin, event.seq, event.hlc,
                                   event.type.value, pack_body(event.body)))
            new.append(event)
    for origin, mark in marks.items():
        high_water, top = _advance(conn, origin, mark)
        conn.execute(
            "INSERT INTO origins (origin, high_water, max_seq) VALUES (?, ?, ?) "
            "ON CONFLICT (origin) DO UPDATE SET high_water = excluded.high_water, "
            "max_seq = max(max_seq, excluded.max_seq)",
            (origin, high_water, top),
        )
    if package_id is not None:
        conn.execute(
            "INSERT OR IGNORE INTO inbox (package_id, sender, received_ms, new_events, "
            "dup_events, blob_sha256) VALUES (?, ?, ?, ?, ?, ?)",
            (package_id, sender, now_ms, len(new), duplicate, blob_sha256),
        )
    result = ApplyResult(
        new=len(new), duplicate=duplicate, rejected=len(rejected),
        gaps={o: g for o in marks if (g := gaps_for(conn, o))},
    )
    return result, rejected


def gaps_from(high_water: int, seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Missing ranges above `high_water` given the ascending seqs present above it."""
    previous = high_water
    missing: list[tuple[int, int]] = []
    for seq in seqs:
        if seq > previous + 1:
            missing.append((previous + 1, seq - 1))
        previous = seq
    return missing


def gaps_for(conn: sqlite3.Connection, origin: str) -> list[tuple[int, int]]:
    """Missing seq ranges of `origin` above its high-water mark, (first, last) inclusive."""
    row = conn.execute(
        "SELECT high_water FROM origins WHERE origin = ?", (origin,)
    ).fetchone()
    if row is None:
        return []
    seqs = conn.execute(GAP_SEQS, (origin, int(row[0])))
    return gaps_from(int(row[0]), (r[0] for r in seqs))


GAP_SEQS = "SELECT seq FROM events WHERE origin = ? AND seq > ? ORDER BY seq"
