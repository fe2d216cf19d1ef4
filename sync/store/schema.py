"""The store's schema as a forward-only list of migrations.

`schema_version` holds one row: the number of the last migration applied. Each migration runs in
its own `BEGIN IMMEDIATE` transaction together with the version bump, so a crash or a second
process opening the same file at the same moment leaves the database at one version or the next,
never in between.

To change the schema, append a `Migration` to `MIGRATIONS` with the next version number and a
function that takes the open connection (inside the transaction) and changes it; a migration
that moves data reads and writes rows with the same connection. Never edit or reorder a
migration that has shipped: databases in the field have already run it. The test in
`tests/sync/test_store_migrations.py` opens a database created at every earlier version, so a new
migration is covered as soon as it is appended (add sample rows for it there if it moves data).

Every index is one more page written by each commit (the cost that group commit amortises), so
tables carry only the indexes their queries need.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from sync.store.errors import StoreError


@dataclass(frozen=True, slots=True, kw_only=True)
class Migration:
    """One step forward: `apply` runs inside the transaction that records `version`."""

    version: int
    summary: str
    apply: Callable[[sqlite3.Connection], None]


def _run(conn: sqlite3.Connection, *statements: str) -> None:
    # Not executescript(): it commits first, which would split the migration's transaction.
    for statement in statements:
        conn.execute(statement)


def _v1_event_log(conn: sqlite3.Connection) -> None:
    _run(
        conn,
        # body is the msgpack encoding of Event.body; (origin, seq) is unique because each
        # origin numbers its own events 1, 2, 3, ... (see sync.events.Event). A rowid table
        # (not WITHOUT ROWID): bodies of ~1 KB then stay on their leaf page instead of spilling
        # to overflow pages, each of which is one more 4 KiB page written by the commit.
        """CREATE TABLE events (
            id      TEXT NOT NULL UNIQUE,
            case_id TEXT NOT NULL,
            origin  TEXT NOT NULL,
            seq     INTEGER NOT NULL CHECK (seq >= 1),
            hlc     INTEGER NOT NULL CHECK (hlc >= 0),
            type    TEXT NOT NULL,
            body    BLOB NOT NULL,
            UNIQUE (origin, seq)
        )""",
        "CREATE INDEX events_by_case ON events (case_id, hlc)",
        # high_water: every seq <= it is present; max_seq: the highest seen (gaps lie between).
        """CREATE TABLE origins (
            origin     TEXT PRIMARY KEY,
            high_water INTEGER NOT NULL CHECK (high_water >= 0),
            max_seq    INTEGER NOT NULL CHECK (max_seq >= high_water)
        )""",
        # The hybrid logical clock's last value and the hub's offset, written by every commit
        # that handed out a timestamp (see sync.hlc).
        """CREATE TABLE clock (
            id            INTEGER PRIMARY KEY CHECK (id = 1),
            last          INTEGER NOT NULL CHECK (last >= 0),
            hub_offset_ms INTEGER NOT NULL
        )""",
        "INSERT INTO clock (id, last, hub_offset_ms) VALUES (1, 0, 0)",
        """CREATE TABLE inbox (
            package_id  BLOB PRIMARY KEY,
            sender      TEXT,
            received_ms INTEGER NOT NULL,
            new_events  INTEGER NOT NULL,
            dup_events  INTEGER NOT NULL
        )""",
    )


def _v2_outbox(conn: sqlite3.Connection) -> None:
    _run(
        conn,
        # seq (the rowid) gives FIFO order within a priority class; a sealed package is either
        # inline (payload) or a container file (path), never both. No index for the sending
        # order: the outbox holds only what is undelivered.
        """CREATE TABLE outbox (
            seq             INTEGER PRIMARY KEY,
            package_id      BLOB NOT NULL UNIQUE,
            kind            TEXT NOT NULL CHECK (kind IN ('batch', 'blob')),
            priority        INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 9),
            destination     TEXT NOT NULL,
            payload         BLOB,
            path            TEXT,
            size            INTEGER NOT NULL CHECK (size >= 0),
            case_id         TEXT,
            state           TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'held')),
            attempts        INTEGER NOT NULL DEFAULT 0,
            bytes_acked     INTEGER NOT NULL DEFAULT 0 CHECK (bytes_acked >= 0),
            first_queued_ms INTEGER NOT NULL,
            last_attempt_ms INTEGER,
            CHECK ((payload IS NULL) <> (path IS NULL))
        )""",
    )


def _v3_transfer_state(conn: sqlite3.Connection) -> None:
    _run(
        conn,
        "CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
        # What the hub has received of a package so far; `received` is opaque to the store.
        """CREATE TABLE transfer_in (
            package_id BLOB PRIMARY KEY,
            sender     TEXT NOT NULL,
            kind       TEXT NOT NULL,
            size       INTEGER NOT NULL CHECK (size >= 0),
            received   BLOB NOT NULL,
            path       TEXT,
            updated_ms INTEGER NOT NULL
        )""",
        "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    )


def _v4_inbox_blob(conn: sqlite3.Connection) -> None:
    # A committed blob package names its content here: on the hub a blob may be committed
    # (and acknowledged, so the station drops its copy) long before the batch whose
    # material_added event names it arrives, and the orphan sweep must not take it meanwhile.
    _run(conn, "ALTER TABLE inbox ADD COLUMN blob_sha256 TEXT")


def _v5_outbox_contents(conn: sqlite3.Connection) -> None:
    # What a package carries, unsealed, so that several small queued packages can be carried
    # together in one sealed bundle at send time (docs/protocol.md section 7): a batch's event
    # payload (`plain`), or the SHA-256 of a blob package's material (its plaintext is in the
    # blob store). NULL for rows queued before this version: those travel on their own.
    _run(
        conn,
        "ALTER TABLE outbox ADD COLUMN plain BLOB",
        "ALTER TABLE outbox ADD COLUMN blob_sha256 TEXT",
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(version=1, summary="event log, origins, clock, inbox", apply=_v1_event_log),
    Migration(version=2, summary="outbox", apply=_v2_outbox),
    Migration(version=3, summary="kv, transfer_in, counters", apply=_v3_transfer_state),
    Migration(version=4, summary="inbox names committed blobs", apply=_v4_inbox_blob),
    Migration(version=5, summary="outbox keeps what a bundle needs", apply=_v5_outbox_contents),
)
LATEST_VERSION = MIGRATIONS[-1].version


def current_version(conn: sqlite3.Connection) -> int:
    """The schema version of an open database; 0 for an empty file."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if exists is None:
        return 0
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return 0 if row is None else int(row[0])


def migrate(conn: sqlite3.Connection, *, target: int = LATEST_VERSION, where: str = "") -> int:
    """Bring the database up to `target`; returns the version it started from.

    `conn` must be in autocommit mode (`isolation_level=None`). Safe against a concurrent
    opener: each step re-reads the version inside its own immediate transaction.
    """
    if [m.version for m in MIGRATIONS] != list(range(1, len(MIGRATIONS) + 1)):
        raise StoreError("MIGRATIONS must be numbered 1, 2, 3, ... with no gaps (sync/store)")
    started = current_version(conn)
    if started > LATEST_VERSION:
        raise StoreError(
            f"database {where or '(store)'} is at schema version {started}, newer than this "
            f"cunlink understands ({LATEST_VERSION}); upgrade cunlink rather than downgrade it"
        )
    for migration in MIGRATIONS:
        if migration.version > target:
            break
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            version = current_version(conn)
            if version < migration.version:
                migration.apply(conn)
                conn.execute("DELETE FROM schema_version")
                conn.execute(
                    "INSERT INTO schema_version (version) VALUES (?)", (migration.version,)
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return started
