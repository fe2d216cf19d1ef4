"""One writer connection with group commit.

Callers submit small synchronous write functions; a single asyncio task collects whatever is
queued (up to `max_batch`, waiting at most `window_ms` for more when writers are known to be
busy), runs them on one owner thread inside ONE `BEGIN IMMEDIATE` transaction, commits (with
`synchronous=FULL` that is one WAL fsync for the whole batch), and only then resolves each
caller's future. So N concurrent writers pay for one fsync, not N, and nobody is told "done"
before their data is on disk.

Each write runs under its own SAVEPOINT: a write that raises is rolled back alone and fails only
its own caller. If the COMMIT itself fails, every caller in that batch is failed.

Writes of one kind (local appends) may also name a *group* function: consecutive jobs with the
same group function run as one call (`group(conn, items)`, one savepoint, a few multi-row
statements for the whole batch instead of a handful per job). If that call raises, its savepoint
is rolled back and each of those jobs runs again on its own, as above, so a bad write still fails
only its own caller.

Cancelling a caller does not un-write: once its function is in a batch it commits with the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from sync.store.errors import StoreError

T = TypeVar("T")
WriteFn = Callable[[sqlite3.Connection], T]
Hook = Callable[[sqlite3.Connection], None]
#: Runs many jobs' items in one call; returns one value per item, in order.
GroupFn = Callable[[sqlite3.Connection, list[Any]], list[Any]]


@dataclass(slots=True)
class WriterStats:
    """Counters for tests, benchmarks and metrics (mutable on purpose: updated in place)."""

    transactions: int = 0
    writes: int = 0
    failed_writes: int = 0
    failed_commits: int = 0
    largest_batch: int = 0
    grouped_writes: int = 0  # writes that ran inside a group call
    group_fallbacks: int = 0  # group calls that raised and were re-run job by job


@dataclass(slots=True)
class _Job:
    fn: WriteFn[Any]  # the job on its own (also the fallback when its group call fails)
    future: asyncio.Future[Any]
    group: GroupFn | None = None
    item: Any = None


_STOP = object()


def translate(exc: BaseException, where: str) -> BaseException:
    """SQLite errors become StoreError at this boundary; everything else passes unchanged."""
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", type(exc).__name__)
        hint = ""
        if name.startswith("SQLITE_BUSY"):
            hint = "; another process holds the write lock: retry, or look for a stuck writer"
        elif name.startswith("SQLITE_FULL"):
            hint = "; the disk is full: free space on the state directory's filesystem"
        err = StoreError(f"{where}: SQLite {name}: {exc}{hint}")
        err.__cause__ = exc
        return err
    return exc


class GroupCommitWriter:
    """Owns `conn` (autocommit mode) and the one thread that touches it."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        where: str,
        max_batch: int = 256,
        window_ms: float = 2.0,
        queue_bound: int = 4096,
        on_begin: Hook | None = None,
        before_commit: Hook | None = None,
    ) -> None:
        if max_batch < 1 or window_ms < 0 or queue_bound < max_batch:
            raise ValueError(
                f"group commit needs max_batch >= 1 (got {max_batch}), window_ms >= 0 "
                f"(got {window_ms}) and queue_bound >= max_batch (got {queue_bound})"
            )
        self._conn = conn
        self._where = where
        self._max_batch = max_batch
        self._window_s = window_ms / 1000.0
        # Bounded: a flood of writers waits here (backpressure) instead of growing memory.
        self._queue: asyncio.Queue[_Job | object] = asyncio.Queue(maxsize=queue_bound)
        self._on_begin = on_begin
        self._before_commit = before_commit
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cunlink-writer")
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.stats = WriterStats()

    async def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the writer's thread outside any batch (opening, migrations, closing)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="store-group-commit")

    async def submit(
        self, fn: WriteFn[T], *, group: GroupFn | None = None, item: Any = None
    ) -> T:
        """Run `fn(conn)` in the next group transaction; returns once that commit is durable.

        With `group`, the job may instead run as `group(conn, [..., item, ...])[i]` together
        with neighbouring jobs of the same group function; `fn` must do the same as that."""
        if self._closed or self._task is None:
            raise StoreError(f"{self._where}: the store is closed; open it again to write")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(fn=fn, future=future, group=group, item=item))
        if self._task.done():  # closed while this caller waited for room in the queue
            self._fail_leftovers()
        return await future

    async def close(self) -> None:
        """Finish everything already submitted, then stop the task and the thread."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            await self._queue.put(_STOP)
            await self._task
        self._fail_leftovers()
        await self.call(self._conn.close)
        self._executor.shutdown(wait=True)

    async def _collect(self, first: _Job, expected: int) -> tuple[list[_Job], bool]:
        """Gather a batch; `expected` is how many writers the previous batch had."""
        batch = [first]
        stop = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._window_s
        # Let writers that were just woken by the previous commit enqueue their next write.
        await asyncio.sleep(0)
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                # Wait only when recent batches show concurrent writers; a lone writer should
                # not pay the window on every commit.
                remaining = deadline - loop.time()
                if len(batch) >= expected or remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if item is _STOP:
                stop = True
                break
            batch.append(cast(_Job, item))
        return batch, stop

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        expected = 1
        pending: list[_Job] = []
        try:
            while True:
                item = await self._queue.get()
                if item is _STOP:
                    return
                pending, stop = await self._collect(cast(_Job, item), expected)
                expected = len(pending)
                outcomes = await loop.run_in_executor(self._executor, self._run_batch, pending)
                for job, (ok, value) in zip(pending, outcomes, strict=True):
                    if job.future.done():
                        continue  # the caller was cancelled; its write committed anyway
                    if ok:
                        job.future.set_result(value)
                    else:
                        job.future.set_exception(cast(BaseException, value))
                pending = []
                if stop:
                    return
        finally:
            # Only reached with work in hand if this task itself is cancelled or broken: make
            # sure no caller waits forever.
            self._fail_leftovers(pending)

    def _fail_leftovers(self, in_flight: list[_Job] | None = None) -> None:
        for job in in_flight or ():
            if not job.future.done():
                job.future.set_exception(StoreError(
                    f"{self._where}: the store writer was stopped during this write's commit; "
                    "it may or may not be stored: read it back before retrying"
                ))
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not _STOP and not cast(_Job, item).future.done():
                cast(_Job, item).future.set_exception(
                    StoreError(f"{self._where}: the store was closed before this write ran")
                )

    def _run_one(self, conn: sqlite3.Connection, job: _Job) -> tuple[bool, object]:
        """One job under its own savepoint (the transaction is shared with other jobs)."""
        conn.execute("SAVEPOINT job")
        try:
            value = job.fn(conn)
        except Exception as exc:
            self.stats.failed_writes += 1
            conn.execute("ROLLBACK TO job")
            conn.execute("RELEASE job")
            return False, translate(exc, self._where)
        conn.execute("RELEASE job")
        return True, value

    def _run_group(self, conn: sqlite3.Connection, jobs: list[_Job]) -> list[tuple[bool, object]]:
        """Jobs sharing a group function in one call; job by job if that call raises."""
        group = jobs[0].group
        assert group is not None
        conn.execute("SAVEPOINT grp")
        try:
            values = group(conn, [job.item for job in jobs])
            if len(values) != len(jobs):
                raise RuntimeError(f"group write returned {len(values)} values for {len(jobs)}")
        except Exception:
            # Someone's write is bad; find out whose by running each alone.
            conn.execute("ROLLBACK TO grp")
            conn.execute("RELEASE grp")
            self.stats.group_fallbacks += 1
            return [self._run_one(conn, job) for job in jobs]
        conn.execute("RELEASE grp")
        self.stats.grouped_writes += len(jobs)
        return [(True, value) for value in values]

    def _run_batch(self, jobs: list[_Job]) -> list[tuple[bool, object]]:
        """On the writer thread: one transaction, one savepoint per job or group, one commit."""
        conn = self._conn
        outcomes: list[tuple[bool, object]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            if self._on_begin is not None:
                self._on_begin(conn)
            if len(jobs) == 1:
                # A lone write needs no savepoint: if it fails, the whole transaction is its own.
                try:
                    value = jobs[0].fn(conn)
                except Exception as exc:
                    self.stats.failed_writes += 1
                    # Nothing else to commit: any timestamps it took were never used.
                    conn.execute("ROLLBACK")
                    return [(False, translate(exc, self._where))]
                outcomes.append((True, value))
            else:
                start = 0
                while start < len(jobs):
                    group = jobs[start].group
                    end = start + 1
                    while group is not None and end < len(jobs) and jobs[end].group == group:
                        end += 1
                    if end - start > 1:
                        outcomes += self._run_group(conn, jobs[start:end])
                    else:
                        outcomes.append(self._run_one(conn, jobs[start]))
                    start = end
            if self._before_commit is not None:
                self._before_commit(conn)
            conn.execute("COMMIT")
        except Exception as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            self.stats.failed_commits += 1
            err = translate(exc, f"{self._where} (group commit of {len(jobs)} writes)")
            return [(False, err)] * len(jobs)
        self.stats.transactions += 1
        self.stats.writes += len(jobs)
        self.stats.largest_batch = max(self.stats.largest_batch, len(jobs))
        return outcomes
