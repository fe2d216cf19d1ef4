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


def _trusted(**fields: Any) -> Event:
    """An Event built without running its validation again.

    Used only for fields the caller has just checked: the body by `validate_body`, the case
    and origin by a fully validated event of the same call, and id, seq and hlc made by the
    store itself. Validation is most of the cost of building an event (~10 µs), and it would
    otherwise run twice on the single writer thread, where it sits between commits.
    """
    event = object.__new__(Event)
    for name, value in fields.items():
        object.__setattr__(event, name, value)
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


def append_local(
    conn: sqlite3.Connection,
    clock: Clock,
    origin: str,
    drafts: Sequence[EventDraft],
    now_ms: int,
) -> list[Event]:
    """Give drafts ids, the next seqs of `origin` and fresh hlc timestamps; insert them.

    Every draft is validated: the first of each case by building a full Event (id, case,
    origin, seq, hlc and body), the others by checking their body (the rest is the same).
    """
    row = conn.execute(
        "SELECT high_water, max_seq FROM origins WHERE origin = ?", (origin,)
    ).fetchone()
    high_water, max_seq = (0, 0) if row is None else (int(row[0]), int(row[1]))
    rand = os.urandom(10 * len(drafts))
    checked: set[str] = set()
    events: list[Event] = []
    rows: list[tuple[Any, ...]] = []
    for n, draft in enumerate(drafts):
        fields: dict[str, Any] = {
            "id": uuid7(now_ms, rand[10 * n:10 * n + 10]), "case": draft.case,
            "origin": origin, "seq": max_seq + n + 1, "hlc": clock.now(),
            "type": draft.type, "body": draft.body,
        }
        if draft.case in checked:
            validate_body(draft.type, draft.body, where=f"event {fields['id']}")
            event = _trusted(**fields)
        else:
            event = Event(**fields)
            checked.add(draft.case)
        events.append(event)
        rows.append((event.id, event.case, origin, event.seq, event.hlc, event.type.value,
                     pack_body(draft.body)))
    insert_rows(conn, rows)
    top = max_seq + len(drafts)
    # Our own numbering is contiguous, so the mark moves with it unless remote copies of our
    # own events (a restored station) left a gap below, which apply_remote will close.
    new_high = top if high_water == max_seq else high_water
    conn.execute(
        "INSERT INTO origins (origin, high_water, max_seq) VALUES (?, ?, ?) "
        "ON CONFLICT (origin) DO UPDATE SET high_water = excluded.high_water, "
        "max_seq = excluded.max_seq",
        (origin, new_high, top),
    )
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
