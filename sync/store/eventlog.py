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
from typing import Any, Protocol

import msgpack

from sync.events import Event, EventType, validate_body
from sync.ids import uuid7
from sync.store.errors import StoreError


class Clock(Protocol):
    """What the log needs from `sync.hlc.HybridLogicalClock`."""

    def now(self) -> int: ...
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


def _index_materials(conn: sqlite3.Connection, events: Iterable[Event]) -> None:
    rows = [
        (e.case, e.body["sha256"], e.id)
        for e in events
        if e.type is EventType.MATERIAL_ADDED and isinstance(e.body.get("sha256"), str)
    ]
    if rows:
        conn.execute(
            "INSERT OR IGNORE INTO materials (case_id, sha256, event_id) VALUES "
            + ", ".join(["(?, ?, ?)"] * len(rows)),
            [v for row in rows for v in row],
        )


def stamp(template: Event, seq: int, hlc: int) -> Event:
    """`template` with the store's seq and hlc.

    The template was built, and so fully validated, before it reached the writer; only seq and
    hlc differ, and they come from the store's own counter and clock. Setting them directly
    keeps the validation (~10 µs per event) out of the single writer thread, where it would
    sit between commits.
    """
    event = object.__new__(Event)
    for name in ("id", "case", "origin", "type", "body"):
        object.__setattr__(event, name, getattr(template, name))
    object.__setattr__(event, "seq", seq)
    object.__setattr__(event, "hlc", hlc)
    return event


_MAX_ROWS_PER_INSERT = 64  # 7 columns each: far below SQLite's bound on bound parameters


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


def templates(
    origin: str, drafts: Sequence[EventDraft], now_ms: int
) -> list[tuple[Event, bytes]]:
    """Validated events (seq and hlc still placeholders) with their packed bodies.

    The first event of each case is built in full (which checks the id, case and origin
    formats as well as the body); the rest of that case only need their bodies checked, which
    is most of the cost of building an Event, done once instead of twice.
    """
    rand = os.urandom(10 * len(drafts))
    out: list[tuple[Event, bytes]] = []
    checked: set[str] = set()
    for n, draft in enumerate(drafts):
        event_id = uuid7(now_ms, rand[10 * n:10 * n + 10])
        if draft.case in checked:
            validate_body(draft.type, draft.body, where=f"event {event_id}")
            template = object.__new__(Event)
            for name, value in (("id", event_id), ("case", draft.case), ("origin", origin),
                                ("type", draft.type), ("body", draft.body)):
                object.__setattr__(template, name, value)
        else:
            template = Event(id=event_id, case=draft.case, origin=origin, seq=1, hlc=0,
                             type=draft.type, body=draft.body)
            checked.add(draft.case)
        out.append((template, pack_body(draft.body)))
    return out


def append_local(
    conn: sqlite3.Connection,
    clock: Clock,
    origin: str,
    prepared: Sequence[tuple[Event, bytes]],
) -> list[Event]:
    """Give prepared events (template, packed body) the next seqs of `origin` and fresh hlc
    timestamps, and insert them."""
    row = conn.execute(
        "SELECT high_water, max_seq FROM origins WHERE origin = ?", (origin,)
    ).fetchone()
    high_water, max_seq = (0, 0) if row is None else (int(row[0]), int(row[1]))
    events: list[Event] = []
    rows: list[tuple[Any, ...]] = []
    for offset, (template, packed) in enumerate(prepared, start=1):
        event = stamp(template, max_seq + offset, clock.now())
        events.append(event)
        rows.append((event.id, event.case, origin, event.seq, event.hlc, event.type.value,
                     packed))
    insert_rows(conn, rows)
    top = max_seq + len(prepared)
    # Our own numbering is contiguous, so the mark moves with it unless remote copies of our
    # own events (a restored station) left a gap below, which apply_remote will close.
    new_high = top if high_water == max_seq else high_water
    conn.execute(
        "INSERT INTO origins (origin, high_water, max_seq) VALUES (?, ?, ?) "
        "ON CONFLICT (origin) DO UPDATE SET high_water = excluded.high_water, "
        "max_seq = excluded.max_seq",
        (origin, new_high, top),
    )
    _index_materials(conn, events)
    return events


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
    _index_materials(conn, new)
    if package_id is not None:
        conn.execute(
            "INSERT OR IGNORE INTO inbox (package_id, sender, received_ms, new_events, "
            "dup_events) VALUES (?, ?, ?, ?, ?)",
            (package_id, sender, now_ms, len(new), duplicate),
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
