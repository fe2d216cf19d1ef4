"""The store's read side: queries on a separate aiosqlite connection.

In WAL mode readers never block the writer nor wait for it; each query sees the last committed
state. Kept apart from `sync.store.store` (which owns the writer) so each module has one job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
import msgpack

from sync.events import Event
from sync.model import CaseState, HubOrigins, fold
from sync.store import eventlog, outbox
from sync.store.outbox import OutboxEntry, OutboxStats

#: Most events `events_range` returns in one call (callers page with first_seq).
MAX_RANGE_EVENTS = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseSummary:
    """One line of `list_cases`: the merged state, summarised."""

    case: str
    status: str
    service: str | None
    updated_hlc: int
    conflicts: int
    materials: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferIn:
    """What the hub has received of one incoming package (survives restarts)."""

    package_id: bytes
    sender: str
    kind: str
    size: int
    received: bytes
    path: Path | None
    updated_ms: int


def _events(rows: Iterable[Any]) -> list[Event]:
    return [eventlog.row_to_event(r) for r in rows]


class Reads:
    """Read methods of `Store` (mixed in); all async, none waits for the writer."""

    def __init__(
        self,
        *,
        reader: aiosqlite.Connection,
        wall_ms: Callable[[], int],
        hub_origins: HubOrigins,
    ) -> None:
        self._reader = reader
        self._read_wall_ms = wall_ms
        self.hub_origins = hub_origins

    async def _all(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        return list(await self._reader.execute_fetchall(sql, params))

    async def _one(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        rows = await self._all(sql, params)
        return rows[0] if rows else None

    # -- events ------------------------------------------------------------------------------

    async def events_for_case(self, case: str) -> list[Event]:
        """All events of `case` in fold order (hlc, origin, id); [] if unknown."""
        return _events(await self._all(
            f"SELECT {eventlog.EVENT_COLUMNS} FROM events WHERE case_id = ? "
            "ORDER BY hlc, origin, id", (case,)
        ))

    async def events_range(
        self, origin: str, first_seq: int, last_seq: int, *, limit: int = MAX_RANGE_EVENTS
    ) -> list[Event]:
        """Events of `origin` with first_seq <= seq <= last_seq, by seq (to fill a gap)."""
        return _events(await self._all(
            f"SELECT {eventlog.EVENT_COLUMNS} FROM events WHERE origin = ? AND seq BETWEEN ? "
            "AND ? ORDER BY seq LIMIT ?",
            (origin, first_seq, last_seq, min(limit, MAX_RANGE_EVENTS)),
        ))

    async def case_ids(self) -> list[str]:
        return [r[0] for r in await self._all(
            "SELECT DISTINCT case_id FROM events ORDER BY case_id"
        )]

    async def case_state(self, case: str) -> CaseState | None:
        """The merged state of one case (None if the store holds none of its events)."""
        events = await self.events_for_case(case)
        return fold(events, hub_origins=self.hub_origins) if events else None

    async def list_cases(self, status: str | None = None) -> list[CaseSummary]:
        """Every case's merged state (folded now), optionally only those in `status`."""
        by_case: dict[str, list[Event]] = {}
        # One call, not a cursor iterated across awaits: an open cursor keeps its read
        # transaction, so every other read on this connection would see the old snapshot
        # meanwhile (a case just committed would read back as missing).
        for row in await self._all(f"SELECT {eventlog.EVENT_COLUMNS} FROM events ORDER BY case_id"):
            event = eventlog.row_to_event(row)
            by_case.setdefault(event.case, []).append(event)
        summaries = []
        for case, events in by_case.items():
            state = fold(events, hub_origins=self.hub_origins)
            if status is not None and state.status.value != status:
                continue
            summaries.append(CaseSummary(
                case=case, status=state.status.value, service=state.service,
                updated_hlc=state.last_hlc, conflicts=len(state.conflicts),
                materials=len(state.current_materials),
            ))
        return summaries

    async def high_water(self) -> dict[str, int]:
        """Per origin: every seq at or below this is held."""
        return {r[0]: int(r[1]) for r in await self._all(
            "SELECT origin, high_water FROM origins ORDER BY origin"
        )}

    async def gaps(self) -> dict[str, list[tuple[int, int]]]:
        """Per origin with holes: the missing seq ranges (first, last), inclusive."""
        found: dict[str, list[tuple[int, int]]] = {}
        for origin, high_water in await self._all(
            "SELECT origin, high_water FROM origins WHERE max_seq > high_water ORDER BY origin"
        ):
            seqs = [r[0] for r in await self._all(eventlog.GAP_SEQS, (origin, high_water))]
            if missing := eventlog.gaps_from(int(high_water), seqs):
                found[origin] = missing
        return found

    async def inbox_has(self, package_id: bytes) -> bool:
        return await self._one(
            "SELECT 1 FROM inbox WHERE package_id = ?", (package_id,)
        ) is not None

    async def referenced_blobs(self) -> set[str]:
        """Every blob hash a material event names (material_added's sha256, material_
        superseded's sha256 and by): a full scan, for the rare orphan sweep, not hot paths."""
        named: set[str] = set()
        # fetched in one call for the same reason as in list_cases
        for (body,) in await self._all(
            "SELECT body FROM events WHERE type IN ('material_added', 'material_superseded')"
        ):
            decoded = msgpack.unpackb(body, raw=False)
            for key in ("sha256", "by"):
                if isinstance(sha := decoded.get(key), str):
                    named.add(sha)
        return named

    async def inbox_blobs(self) -> set[str]:
        """Blob hashes of committed blob packages (`apply_remote(..., blob_sha256=...)`)."""
        return {r[0] for r in await self._all(
            "SELECT blob_sha256 FROM inbox WHERE blob_sha256 IS NOT NULL"
        )}

    async def referencing_paths(self) -> list[Path]:
        """Files outbox and transfer_in rows name (sealed containers, partial transfers)."""
        return [Path(r[0]) for r in await self._all(
            "SELECT path FROM outbox WHERE path IS NOT NULL "
            "UNION SELECT path FROM transfer_in WHERE path IS NOT NULL"
        )]

    # -- outbox ------------------------------------------------------------------------------

    async def outbox_pending(
        self, destination: str | None = None, limit: int = 100
    ) -> list[OutboxEntry]:
        """Queued (not held) entries: priority class first, then first in, first out."""
        where = "state = 'queued'"
        params: tuple[str, ...] = ()
        if destination is not None:
            where, params = "state = 'queued' AND destination = ?", (destination,)
        return [outbox.row_to_entry(r) for r in await self._all(
            f"SELECT {outbox.COLUMNS} FROM outbox WHERE {where} ORDER BY priority, seq LIMIT ?",
            (*params, max(0, limit)),
        )]

    async def outbox_all(self, limit: int = 1000) -> list[OutboxEntry]:
        """Every undelivered entry, held ones included, in sending order."""
        return [outbox.row_to_entry(r) for r in await self._all(
            f"SELECT {outbox.COLUMNS} FROM outbox ORDER BY priority, seq LIMIT ?", (limit,)
        )]

    async def outbox_get(self, package_id: bytes) -> OutboxEntry | None:
        row = await self._one(
            f"SELECT {outbox.COLUMNS} FROM outbox WHERE package_id = ?", (package_id,)
        )
        return None if row is None else outbox.row_to_entry(row)

    async def outbox_paths(self) -> list[Path]:
        return [Path(r[0]) for r in await self._all(
            "SELECT path FROM outbox WHERE path IS NOT NULL"
        )]

    async def outbox_stats(self) -> OutboxStats:
        counts = {int(p): int(n) for p, n in await self._all(
            "SELECT priority, count(*) FROM outbox GROUP BY priority"
        )}
        row = await self._one(
            "SELECT coalesce(sum(size - bytes_acked), 0), min(first_queued_ms), "
            "coalesce(sum(state = 'held'), 0) FROM outbox"
        )
        oldest = None if row[1] is None else max(0, self._read_wall_ms() - int(row[1]))
        return OutboxStats(
            count_by_priority=counts, bytes_pending=int(row[0]), oldest_age_ms=oldest,
            held=int(row[2]),
        )

    # -- small state -------------------------------------------------------------------------

    async def kv_get(self, key: str) -> bytes | None:
        row = await self._one("SELECT value FROM kv WHERE key = ?", (key,))
        return None if row is None else bytes(row[0])

    async def kv_keys(self, prefix: str = "") -> list[str]:
        return [r[0] for r in await self._all(
            "SELECT key FROM kv WHERE substr(key, 1, ?) = ? ORDER BY key", (len(prefix), prefix)
        )]

    async def transfer_in_get(self, package_id: bytes) -> TransferIn | None:
        rows = await self._transfer_in("WHERE package_id = ?", (package_id,))
        return rows[0] if rows else None

    async def transfer_in_list(self) -> list[TransferIn]:
        return await self._transfer_in("ORDER BY updated_ms", ())

    async def _transfer_in(self, tail: str, params: tuple[Any, ...]) -> list[TransferIn]:
        return [
            TransferIn(
                package_id=bytes(r[0]), sender=r[1], kind=r[2], size=r[3],
                received=bytes(r[4]), path=None if r[5] is None else Path(r[5]),
                updated_ms=r[6],
            )
            for r in await self._all(
                "SELECT package_id, sender, kind, size, received, path, updated_ms "
                f"FROM transfer_in {tail}", params
            )
        ]
