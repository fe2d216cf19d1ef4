"""The outbox: sealed packages that still have to reach the other side.

An entry leaves the outbox only when the other side's application ack arrives
(`Store.outbox_delivered`): never by age, size or disk pressure. Order: priority class
(0 control, 1 case events, 2 material blobs), then first in, first out.

Synchronous SQL helpers for the writer thread plus the row types; `Store` wraps them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sync.store.errors import StoreError

PRIORITY_CONTROL = 0
PRIORITY_EVENTS = 1
PRIORITY_BLOBS = 2

Kind = Literal["batch", "blob"]
State = Literal["queued", "held"]
MAX_INLINE_PAYLOAD = 1 << 20  # a sealed event batch bigger than 1 MiB belongs in a file


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxPut:
    """A sealed package to queue: inline `payload` (small batches) XOR a container `path`."""

    package_id: bytes
    kind: Kind
    priority: int
    destination: str
    payload: bytes | None = None
    path: Path | None = None
    size: int
    case: str | None = None
    #: What a bundle needs to carry this package's content (docs/protocol.md section 7): a
    #: batch's event payload, or the SHA-256 (hex) of a blob package's material in the blob
    #: store. None: the package travels only on its own.
    plain: bytes | None = None
    blob_sha256: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= len(self.package_id) <= 64:
            raise ValueError(
                f"OutboxPut.package_id must be 1..64 bytes, got {len(self.package_id)}"
            )
        if self.kind not in ("batch", "blob"):
            raise ValueError(f"OutboxPut.kind must be 'batch' or 'blob', got {self.kind!r}")
        if not 0 <= self.priority <= 9:
            raise ValueError(f"OutboxPut.priority must be 0..9, got {self.priority}")
        if not self.destination:
            raise ValueError("OutboxPut.destination must name the receiving peer")
        if (self.payload is None) == (self.path is None):
            raise ValueError("OutboxPut needs exactly one of payload (inline) or path (file)")
        if self.payload is not None:
            if len(self.payload) > MAX_INLINE_PAYLOAD:
                raise ValueError(
                    f"OutboxPut.payload is {len(self.payload)} bytes, over the inline bound of "
                    f"{MAX_INLINE_PAYLOAD}: write the sealed package to a file and pass path"
                )
            if self.size != len(self.payload):
                raise ValueError(
                    f"OutboxPut.size ({self.size}) must equal len(payload) ({len(self.payload)})"
                )
        if self.size < 0:
            raise ValueError(f"OutboxPut.size must be >= 0, got {self.size}")
        if self.plain is not None and self.kind != "batch":
            raise ValueError("OutboxPut.plain is the event payload of a batch package")
        if self.blob_sha256 is not None and (
                self.kind != "blob" or len(self.blob_sha256) != 64):
            raise ValueError("OutboxPut.blob_sha256 is the 64-hex-digit SHA-256 of a blob "
                             "package's material")


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxEntry:
    """A queued package and its delivery progress."""

    package_id: bytes
    kind: Kind
    priority: int
    destination: str
    payload: bytes | None
    path: Path | None
    size: int
    case: str | None
    state: State
    attempts: int
    bytes_acked: int
    first_queued_ms: int
    last_attempt_ms: int | None
    plain: bytes | None = None  # see OutboxPut
    blob_sha256: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxStats:
    """Depth and age of what is undelivered (feeds the health beacon and the CLI)."""

    count_by_priority: dict[int, int]
    bytes_pending: int
    oldest_age_ms: int | None
    held: int = 0

    @property
    def count(self) -> int:
        return sum(self.count_by_priority.values())


COLUMNS = (
    "package_id, kind, priority, destination, payload, path, size, case_id, state, attempts, "
    "bytes_acked, first_queued_ms, last_attempt_ms, plain, blob_sha256"
)


def row_to_entry(row: Sequence[Any]) -> OutboxEntry:
    return OutboxEntry(
        package_id=bytes(row[0]), kind=row[1], priority=row[2], destination=row[3],
        payload=None if row[4] is None else bytes(row[4]),
        path=None if row[5] is None else Path(row[5]),
        size=row[6], case=row[7], state=row[8], attempts=row[9], bytes_acked=row[10],
        first_queued_ms=row[11], last_attempt_ms=row[12],
        plain=None if row[13] is None else bytes(row[13]), blob_sha256=row[14],
    )


_INSERT = (
    "INSERT INTO outbox (package_id, kind, priority, destination, payload, path, size, "
    "case_id, first_queued_ms, plain, blob_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def put(conn: sqlite3.Connection, puts: Sequence[OutboxPut], now_ms: int) -> None:
    """Queue `puts` (one executemany for all of them: a group commit passes many)."""
    try:
        conn.executemany(_INSERT, [
            (p.package_id, p.kind, p.priority, p.destination, p.payload,
             None if p.path is None else str(p.path), p.size, p.case, now_ms, p.plain,
             p.blob_sha256)
            for p in puts
        ])
    except sqlite3.IntegrityError as exc:
        named = ", ".join(p.package_id.hex() for p in puts[:8]) + (" ..." if len(puts) > 8 else "")
        raise StoreError(
            f"outbox already holds package {named} (or one is given twice); package ids must "
            "be unique (make them with uuid7 bytes or os.urandom(16))"
        ) from exc


def progress(conn: sqlite3.Connection, package_id: bytes, bytes_acked: int) -> bool:
    if bytes_acked < 0:
        raise ValueError(f"bytes_acked must be >= 0, got {bytes_acked}")
    cur = conn.execute(
        "UPDATE outbox SET bytes_acked = min(?, size) WHERE package_id = ?",
        (bytes_acked, package_id),
    )
    return cur.rowcount > 0


def attempt(conn: sqlite3.Connection, package_id: bytes, now_ms: int) -> bool:
    cur = conn.execute(
        "UPDATE outbox SET attempts = attempts + 1, last_attempt_ms = ? WHERE package_id = ?",
        (now_ms, package_id),
    )
    return cur.rowcount > 0


def set_state(conn: sqlite3.Connection, package_id: bytes, state: State) -> bool:
    cur = conn.execute("UPDATE outbox SET state = ? WHERE package_id = ?", (state, package_id))
    return cur.rowcount > 0


def delete(conn: sqlite3.Connection, package_id: bytes) -> tuple[bool, Path | None]:
    """Remove an entry; returns (found, its container file to unlink after the commit)."""
    row = conn.execute("SELECT path FROM outbox WHERE package_id = ?", (package_id,)).fetchone()
    if row is None:
        return False, None
    conn.execute("DELETE FROM outbox WHERE package_id = ?", (package_id,))
    return True, None if row[0] is None else Path(row[0])
