"""`Store`: the station's (and the hub's) durable state in one SQLite file plus blob files.

Writes go through one writer connection with group commit (`sync.store.writer`); reads use a
separate aiosqlite connection, which WAL lets run alongside the writer. Every write method
returns only after its transaction is on disk (`synchronous=FULL`). Writers take the database
lock with `BEGIN IMMEDIATE`, so a second process (the CLI's `cases submit` while the daemon
runs) is safe: it waits its turn (busy timeout) instead of failing half-way.

The hybrid logical clock is persisted in the same transaction as whatever used it, so a
timestamp is never handed out that a crash could make the clock hand out again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import aiosqlite

from sync.events import Event
from sync.hlc import DEFAULT_MAX_AHEAD_MS, HybridLogicalClock
from sync.model import HubOrigins
from sync.store import blobs, eventlog, outbox
from sync.store.blobs import BlobRef
from sync.store.errors import StoreCorruptError, StoreError
from sync.store.eventlog import ApplyResult, EventDraft
from sync.store.integrity import check_and_quarantine
from sync.store.outbox import OutboxPut
from sync.store.reads import Reads
from sync.store.schema import migrate
from sync.store.writer import GroupCommitWriter, WriterStats

log = logging.getLogger(__name__)
T = TypeVar("T")
SealFn = Callable[[list[Event]], Sequence[OutboxPut]]
#: Like SealFn, also given the events' wire batch (the bytes of `encode_events(events)`).
EncodedSealFn = Callable[[list[Event], bytes], Sequence[OutboxPut]]

#: How long a writer waits for another process's write lock before giving up.
DEFAULT_BUSY_TIMEOUT_S = 10.0
#: A blob or sealed file nobody references is removed only after this long (another process
#: may have written it and not yet committed the case that names it).
DEFAULT_ORPHAN_GRACE_S = 24 * 3600.0
#: The shortest grace a daemon's periodic sweep accepts.
MIN_SWEEP_GRACE_S = 3600.0


def _log_refused(rejected: Sequence[Event]) -> None:
    for event in rejected:
        log.warning(
            "refused event %s from %s: seq %d of that origin is already another event",
            event.id, event.origin, event.seq,
        )


def real_wall_ms() -> int:
    return time.time_ns() // 1_000_000


class LockedClock(HybridLogicalClock):
    """The HLC, safe to share between the writer thread and the event loop.

    The store ticks it on its writer thread (inside each transaction) while the transfer layer
    calls `now()` / `absorb_hub()` from the event loop; a read-modify-write of `last` from two
    threads must not interleave, or two callers could be handed the same timestamp.
    """

    __slots__ = ("_lock",)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._lock = threading.Lock()

    def now(self) -> int:
        with self._lock:
            return super().now()

    def now_block(self, count: int) -> int:
        """The first of `count` consecutive fresh timestamps (all handed out at once: a
        case's events take one tick each, `first`, `first + 1`, ...)."""
        if count < 1:
            raise ValueError(f"now_block needs count >= 1, got {count}")
        with self._lock:
            first = super().now()
            if count > 1:
                # +1 is the HLC tick, so these are exactly what count calls to now() in the
                # same millisecond would return; _advance refuses to pass the maximum.
                self._advance(first + count - 1)
            return first

    def observe(self, remote: int) -> int:
        with self._lock:
            return super().observe(remote)

    def absorb_hub(self, hub_hlc: int) -> None:
        with self._lock:
            super().absorb_hub(hub_hlc)


@dataclass(frozen=True, slots=True)
class RemotePackage:
    """One package for `Store.apply_remote_packages`: its events (none for a blob package)
    and, for a blob package, the SHA-256 of its content, already stored with put_blob_file."""

    package_id: bytes
    events: Sequence[Event] = ()
    blob_sha256: str | None = None


@dataclass(frozen=True, slots=True)
class _AppendJob:
    prepared: eventlog.PreparedAppend
    seal: EncodedSealFn


class Store(Reads):
    """Open with `await Store.open(...)`; always close it (`async with await Store.open(...)`
    or `await store.close()`): the reader's aiosqlite thread is not a daemon thread, so an
    unclosed store keeps the interpreter from exiting."""

    def __init__(
        self,
        *,
        path: Path,
        blob_dir: Path,
        sealed_dir: Path,
        conn: sqlite3.Connection,
        reader: aiosqlite.Connection,
        clock: LockedClock,
        wall_ms: Callable[[], int],
        disk_floor_bytes: int,
        max_batch: int,
        window_ms: float,
        hub_origins: HubOrigins,
    ) -> None:
        super().__init__(reader=reader, wall_ms=wall_ms, hub_origins=hub_origins)
        self.path = path
        self.blob_dir = blob_dir
        self.sealed_dir = sealed_dir
        self.clock = clock
        self.disk_floor_bytes = disk_floor_bytes
        self._wall_ms = wall_ms
        self._writer = GroupCommitWriter(
            conn, where=str(path), max_batch=max_batch, window_ms=window_ms,
            on_begin=self._load_clock, before_commit=self._save_clock,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        blob_dir: Path,
        sealed_dir: Path | None = None,
        disk_floor_bytes: int = 0,
        wall_ms: Callable[[], int] = real_wall_ms,
        clock_max_ahead_ms: int | None = DEFAULT_MAX_AHEAD_MS,
        max_batch: int = 256,
        window_ms: float = 2.0,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
        hub_origins: HubOrigins = frozenset(),
        quick_check: bool = False,
    ) -> Store:
        """Check integrity, migrate, and open. Raises StoreCorruptError (after moving a damaged
        file aside), or StoreError. `sealed_dir` (default: `sealed` beside `blob_dir`) holds
        outbox container files; `hub_origins` tells the fold in `list_cases` / `case_state` which
        origins are the hub (a set of ids, or a function origin -> Side). `quick_check` runs
        SQLite's quick_check instead of the full integrity_check (for a large hub database)."""
        if max_batch < 1 or window_ms < 0 or disk_floor_bytes < 0:
            raise ValueError(
                f"Store.open needs max_batch >= 1 (got {max_batch}), window_ms >= 0 (got "
                f"{window_ms}) and disk_floor_bytes >= 0 (got {disk_floor_bytes})"
            )
        path = Path(path)
        sealed = Path(sealed_dir) if sealed_dir is not None else Path(blob_dir).parent / "sealed"
        for directory in (path.parent, Path(blob_dir), sealed):
            directory.mkdir(parents=True, exist_ok=True)
        report = await asyncio.to_thread(check_and_quarantine, path, quick=quick_check)
        if report is not None:
            raise StoreCorruptError(
                f"the store {path} is damaged and was moved aside: {report.describe()}. A new, "
                "empty store is created at the next start; `cunlink cases list` shows this "
                "report until its marker file is removed",
                report=report,
            )
        try:
            conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_s
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store {path}: {exc}") from exc
        try:
            last, offset = await asyncio.to_thread(_prepare, conn, path, busy_timeout_s)
            reader = await aiosqlite.connect(path, timeout=busy_timeout_s)
        except BaseException:
            conn.close()
            raise
        try:
            await reader.execute("PRAGMA query_only = ON")
            clock = LockedClock(
                wall_ms=wall_ms, last=last, max_ahead_ms=clock_max_ahead_ms,
                hub_offset_ms=offset,
            )
            store = cls(
                path=path, blob_dir=Path(blob_dir), sealed_dir=sealed, conn=conn,
                reader=reader, clock=clock, wall_ms=wall_ms, disk_floor_bytes=disk_floor_bytes,
                max_batch=max_batch, window_ms=window_ms, hub_origins=hub_origins,
            )
        except BaseException:
            await reader.close()
            conn.close()
            raise
        store._writer.start()
        return store

    async def close(self) -> None:
        """Finish queued writes, then close both connections (the WAL is checkpointed)."""
        try:
            await self._writer.close()
        finally:
            await self._reader.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def writer_stats(self) -> WriterStats:
        return self._writer.stats

    # -- clock -------------------------------------------------------------------------------

    def _load_clock(self, conn: sqlite3.Connection) -> None:
        # Another process (the CLI) may have moved the persisted clock on since we last looked.
        row = conn.execute("SELECT last FROM clock WHERE id = 1").fetchone()
        if row is not None and int(row[0]) > self.clock.last:
            self.clock.observe(int(row[0]))

    def _save_clock(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "UPDATE clock SET last = max(last, ?), hub_offset_ms = ? WHERE id = 1",
            (self.clock.last, self.clock.hub_offset_ms),
        )

    async def clock_now(self) -> int:
        """A fresh timestamp, persisted before it is returned."""
        return await self._writer.submit(lambda conn: self.clock.now())

    # -- events ------------------------------------------------------------------------------

    def _append_group(
        self, conn: sqlite3.Connection, jobs: list[_AppendJob]
    ) -> list[list[Event]]:
        """Every local append of one group commit: one origins read, one multi-row insert of
        all events, one outbox insert (the writer re-runs them one by one if this raises)."""
        done = eventlog.append_prepared(conn, self.clock, [job.prepared for job in jobs])
        puts: list[OutboxPut] = []
        for job, appended in zip(jobs, done, strict=True):
            puts += job.seal(appended.events, appended.encoded)
        if puts:
            outbox.put(conn, puts, self._wall_ms())
        return [appended.events for appended in done]

    async def _append(self, job: _AppendJob) -> list[Event]:
        return await self._writer.submit(
            lambda conn: self._append_group(conn, [job])[0], group=self._append_group, item=job
        )

    def _prepare(self, origin: str, drafts: Sequence[EventDraft]) -> eventlog.PreparedAppend:
        # Validation, ids and body encoding need no transaction: done here, in the caller's
        # task, they overlap the writer thread's commit instead of queueing behind it.
        return eventlog.prepare_local(origin, drafts, self._wall_ms())

    async def append_local(
        self, origin: str, drafts: Sequence[EventDraft], *, outbox: Sequence[OutboxPut] = ()
    ) -> list[Event]:
        """Store new local events (and outbox rows) in one transaction; returns once durable.
        An invalid draft raises EventFormatError (a ValueError) and nothing is stored."""
        puts = list(outbox)
        return await self._append(_AppendJob(self._prepare(origin, drafts), lambda e, b: puts))

    async def append_local_sealed(
        self, origin: str, drafts: Sequence[EventDraft], seal: SealFn
    ) -> list[Event]:
        """Like append_local, but the outbox rows are made by `seal(events)` on the writer
        thread, after ids, seqs and hlcs are assigned and before the commit. If `seal` raises,
        nothing of this call is stored and the exception reaches the caller. `seal` may be
        called more than once (again with new seqs and hlcs when another write in the same
        group commit failed): it must only compute, not record anything elsewhere."""
        return await self._append(_AppendJob(self._prepare(origin, drafts),
                                             lambda events, _: seal(events)))

    async def append_local_encoded(
        self, origin: str, drafts: Sequence[EventDraft], seal: EncodedSealFn
    ) -> list[Event]:
        """Like append_local_sealed, but `seal(events, encoded)` also gets the events' wire
        batch, already made from the bodies packed for the rows (no second encoding)."""
        return await self._append(_AppendJob(self._prepare(origin, drafts), seal))

    async def apply_remote(
        self,
        events: Sequence[Event],
        *,
        package_id: bytes | None = None,
        sender: str | None = None,
        blob_sha256: str | None = None,
    ) -> ApplyResult:
        """Store what is new among `events` (idempotent, any order), record the package.
        For a committed blob package pass its content's `blob_sha256` (stored with `put_blob_
        file` first): the inbox row then keeps that blob from the orphan sweep until, and
        after, the events naming it arrive."""
        events = list(events)
        if blob_sha256 is not None:
            blobs.blob_path(self.blob_dir, blob_sha256)  # a StoreError if not a SHA-256
        result, rejected = await self._writer.submit(partial(
            eventlog.apply_remote, clock=self.clock, events=events, package_id=package_id,
            sender=sender, now_ms=self._wall_ms(), blob_sha256=blob_sha256,
        ))
        _log_refused(rejected)
        return result

    async def apply_remote_packages(
        self, packages: Sequence[RemotePackage], *, sender: str
    ) -> list[ApplyResult]:
        """`apply_remote` for several packages in one transaction (the members of a bundle and
        the bundle itself): all are recorded, or none. Packages already in the inbox are
        skipped (their result says so: nothing new)."""
        items = list(packages)
        for item in items:
            if item.blob_sha256 is not None:
                blobs.blob_path(self.blob_dir, item.blob_sha256)  # a StoreError if not a SHA-256
        now = self._wall_ms()

        def write(conn: sqlite3.Connection) -> list[tuple[ApplyResult, list[Event]]]:
            out: list[tuple[ApplyResult, list[Event]]] = []
            for item in items:
                held = conn.execute("SELECT 1 FROM inbox WHERE package_id = ?",
                                    (item.package_id,)).fetchone()
                if held is not None:
                    out.append((eventlog.ApplyResult(new=0, duplicate=len(item.events),
                                                     gaps={}), []))
                    continue
                out.append(eventlog.apply_remote(
                    conn, self.clock, item.events, package_id=item.package_id, sender=sender,
                    now_ms=now, blob_sha256=item.blob_sha256))
            return out

        done = await self._writer.submit(write)
        for _, rejected in done:
            _log_refused(rejected)
        return [result for result, _ in done]

    # -- outbox ------------------------------------------------------------------------------

    async def outbox_progress(self, package_id: bytes, bytes_acked: int) -> bool:
        return await self._writer.submit(
            lambda conn: outbox.progress(conn, package_id, bytes_acked)
        )

    async def outbox_attempt(self, package_id: bytes) -> bool:
        now = self._wall_ms()
        return await self._writer.submit(lambda conn: outbox.attempt(conn, package_id, now))

    async def outbox_hold(self, package_id: bytes) -> bool:
        return await self._writer.submit(lambda c: outbox.set_state(c, package_id, "held"))

    async def outbox_retry(self, package_id: bytes) -> bool:
        return await self._writer.submit(lambda c: outbox.set_state(c, package_id, "queued"))

    async def outbox_delivered(self, package_id: bytes, *, hub_hlc: int | None = None) -> bool:
        """The other side acknowledged its commit: drop the entry and its sealed file, and
        take in the hub's clock. Idempotent (a repeated ack is a no-op; returns False)."""
        return await self.outbox_delivered_many([package_id], hub_hlc=hub_hlc) == 1

    async def outbox_delivered_many(
        self, package_ids: Sequence[bytes], *, hub_hlc: int | None = None
    ) -> int:
        """`outbox_delivered` for several packages (the members of a bundle the hub
        acknowledged) in one transaction; returns how many were still queued."""
        ids = list(package_ids)

        def write(conn: sqlite3.Connection) -> tuple[int, list[Path]]:
            if hub_hlc is not None:
                self.clock.absorb_hub(hub_hlc)
            found, paths = 0, []
            for package_id in ids:
                held, path = outbox.delete(conn, package_id)
                found += held
                if path is not None:
                    paths.append(path)
            return found, paths

        found, paths = await self._writer.submit(write)
        def unlink_all() -> None:
            for path in paths:
                self._unlink_sealed(path)

        if paths:
            await asyncio.to_thread(unlink_all)
        return found

    def _unlink_sealed(self, path: Path) -> None:
        # Only files the store owns: a caller's path elsewhere (say, a blob) is never deleted.
        if path.resolve().parent != self.sealed_dir.resolve():
            log.warning("delivered package's file %s is outside %s; left in place",
                        path, self.sealed_dir)
            return
        # A crash after the commit may have got here first; cleanup_orphans covers the rest.
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    # -- blobs -------------------------------------------------------------------------------

    def blob_path(self, sha256: str) -> Path:
        return blobs.blob_path(self.blob_dir, sha256)

    def check_disk_floor(self, needed_bytes: int, *, what: str = "new material") -> None:
        """Raise DiskFloorError if `needed_bytes` more would breach the configured floor."""
        blobs.check_floor(
            self.blob_dir, floor_bytes=self.disk_floor_bytes, needed_bytes=needed_bytes,
            what=what,
        )

    async def put_blob_file(self, src: Path) -> BlobRef:
        """Copy `src` into the blob store under its SHA-256; refused below the disk floor."""
        src = Path(src)
        try:
            size = src.stat().st_size
        except OSError as exc:
            raise StoreError(f"cannot read material {src}: {exc}") from exc
        self.check_disk_floor(size, what=f"material {src.name} ({size} bytes)")
        return await asyncio.to_thread(blobs.write_blob, self.blob_dir, src)

    async def adopt_blob_file(self, src: Path, sha256: str) -> BlobRef:
        """Move a file already on this filesystem (a received, opened blob) into the blob store
        under `sha256`, after checking that its content has that hash. No floor check: the
        bytes are on disk already."""
        return await asyncio.to_thread(blobs.adopt_blob, self.blob_dir, Path(src), sha256)

    async def cleanup_orphans(self, *, grace_s: float = DEFAULT_ORPHAN_GRACE_S) -> int:
        """Remove files nothing refers to and untouched for `grace_s`; returns how many.

        Kept: in the blob directory, every blob named by a material event (material_added or
        material_superseded, any origin), by a committed blob package (inbox), or by an outbox
        or transfer_in path; in the sealed directory, every file an outbox or transfer_in row
        names. Everything else there (leftover `.tmp-*` files included) goes once it has not
        been modified for `grace_s`: the grace covers a file another process (the CLI) has
        written but not yet committed a reference to, and a blob stored again refreshes its
        time (`write_blob`). Safe to run while the daemon writes."""
        if grace_s < 0:
            raise ValueError(f"cleanup_orphans needs grace_s >= 0, got {grace_s}")
        named = await self.referenced_blobs() | await self.inbox_blobs()
        paths = await self.referencing_paths()
        # Kept by name whatever directory the row spells: after the state directory was moved
        # (and symlinked back) the stored paths differ from ours but still name live files.
        # Names are content hashes and package ids, so a name never means two different files.
        referenced = {p.name for p in paths}
        named |= referenced
        sealed = referenced
        removed = await asyncio.to_thread(
            blobs.remove_orphans, self.blob_dir, keep=named, grace_s=grace_s,
            blob_names_only=True,
        )
        removed += await asyncio.to_thread(
            blobs.remove_orphans, self.sealed_dir, keep=sealed, grace_s=grace_s,
            blob_names_only=False,
        )
        return removed

    async def sweep_orphans_forever(
        self, *, interval_s: float = 3600.0, grace_s: float = DEFAULT_ORPHAN_GRACE_S
    ) -> None:
        """Run `cleanup_orphans` every `interval_s` until cancelled (a daemon's background
        task). A failed sweep is logged and retried at the next interval; it never stops the
        daemon."""
        if interval_s <= 0 or grace_s < MIN_SWEEP_GRACE_S:
            raise ValueError(
                f"sweep_orphans_forever needs interval_s > 0 (got {interval_s}) and grace_s >= "
                f"{MIN_SWEEP_GRACE_S:.0f} (got {grace_s}): a shorter grace could remove a "
                "material between its storing and the commit of its case"
            )
        while True:
            try:
                removed = await self.cleanup_orphans(grace_s=grace_s)
            except (StoreError, OSError) as exc:
                log.warning("orphan sweep of %s failed: %s; retrying in %.0f s",
                            self.blob_dir, exc, interval_s)
            else:
                if removed:
                    log.info("orphan sweep removed %d unreferenced file(s) under %s and %s",
                             removed, self.blob_dir, self.sealed_dir)
            await asyncio.sleep(interval_s)

    # -- small durable state for the transfer layer -------------------------------------------

    async def kv_put(self, key: str, value: bytes) -> None:
        await self._writer.submit(lambda conn: conn.execute(
            "INSERT INTO kv (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, bytes(value))
        ) and None)

    async def kv_delete(self, key: str) -> None:
        await self._writer.submit(
            lambda conn: conn.execute("DELETE FROM kv WHERE key = ?", (key,)) and None
        )

    async def next_counter(self, name: str) -> int:
        """Increment and return a named durable counter (1 on first use)."""

        def write(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "INSERT INTO counters (name, value) VALUES (?, 1) ON CONFLICT (name) "
                "DO UPDATE SET value = value + 1 RETURNING value", (name,)
            ).fetchone()
            return int(row[0])

        return await self._writer.submit(write)

    async def transfer_in_put(
        self,
        package_id: bytes,
        *,
        sender: str,
        kind: str,
        size: int,
        received: bytes,
        path: Path | None,
    ) -> None:
        """Record (or replace) what has arrived of an incoming package so far."""
        now = self._wall_ms()
        await self._writer.submit(lambda conn: conn.execute(
            "INSERT OR REPLACE INTO transfer_in (package_id, sender, kind, size, received, "
            "path, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (package_id, sender, kind, size, bytes(received),
             None if path is None else str(path), now),
        ) and None)

    async def transfer_in_delete(self, package_id: bytes) -> None:
        await self._writer.submit(lambda conn: conn.execute(
            "DELETE FROM transfer_in WHERE package_id = ?", (package_id,)
        ) and None)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Escape hatch for a layer's own tables: run `fn(conn)` in the next group commit."""
        return await self._writer.submit(fn)


def _enable_wal(conn: sqlite3.Connection, busy_timeout_s: float) -> str:
    """Switch a (new) database to WAL. SQLite answers "locked" at once, without its busy
    handler, when another opener holds the file at that moment; retry for the busy timeout."""
    deadline = time.monotonic() + busy_timeout_s
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _prepare(conn: sqlite3.Connection, path: Path, busy_timeout_s: float) -> tuple[int, int]:
    """Pragmas and migrations on a fresh writer connection; returns the persisted clock."""
    try:
        mode = _enable_wal(conn, busy_timeout_s)
        if mode != "wal":
            raise StoreError(
                f"{path}: SQLite refused WAL mode (got {mode!r}); put the state directory on a "
                "local filesystem that supports shared memory (not NFS)"
            )
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn, where=str(path))
        row: Any = conn.execute("SELECT last, hub_offset_ms FROM clock WHERE id = 1").fetchone()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot prepare the store {path}: {exc}") from exc
    return int(row[0]), int(row[1])
