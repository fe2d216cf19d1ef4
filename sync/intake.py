"""Station-side case intake: new cases and later steps, stored, sealed and queued at once.

A case is *accepted* when `create_case` returns: its events, the sealed event batch (outbox,
priority 1) and a sealed container per material (outbox, priority 2) were committed in one
transaction, after the material files themselves were stored (fsync + rename) and sealed. A
crash at any earlier point leaves nothing a reader can see except unreferenced files, which
`Store.cleanup_orphans` removes later, and at worst one skipped case number.

Materials are refused below the store's disk floor (DiskFloorError, before anything is written);
events for existing cases (`add_events`, `submit`) are always accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from protocols.envelope import LocalIdentity, PeerIdentity, Suite, seal_batch
from sync.blobfile import seal_file
from sync.events import Event, EventType, validate_body
from sync.ids import case_number, check_station_id, uuid7
from sync.store import (
    PRIORITY_BLOBS,
    PRIORITY_EVENTS,
    EventDraft,
    OutboxPut,
    Store,
)
from sync.store.store import real_wall_ms
from sync.workflow import Status

#: Most materials one call may add (each becomes a blob package).
MAX_MATERIALS_PER_CALL = 64


class IntakeError(ValueError):
    """A case could not be taken as asked (unknown case, unreadable or empty material file)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _SealedMaterial:
    body: dict[str, Any]  # the material_added body
    package_id: bytes
    path: Path  # the sealed container in the store's sealed_dir
    sealed_size: int


def _local_day(wall_ms: int) -> date:
    # Case numbers follow the station's calendar day (the receipt shows it to the citizen).
    return datetime.fromtimestamp(wall_ms / 1000).date()


class CaseIntake:
    """Creates and extends this station's cases in `store`, sealed for `hub`."""

    def __init__(
        self,
        store: Store,
        identity: LocalIdentity,
        hub: PeerIdentity,
        suite: Suite,
        station_id: str,
        *,
        wall_ms: Callable[[], int] | None = None,
    ) -> None:
        check_station_id(station_id)
        if identity.id != station_id:
            raise IntakeError(
                f"the signing identity is {identity.id!r} but the station is {station_id!r}: "
                "load the keys of this station ([keys] dir and [station] id must agree)"
            )
        self._store = store
        self._identity = identity
        self._hub = hub
        self._suite = suite
        self._station = station_id
        self._wall_ms = wall_ms or real_wall_ms

    # -- public ------------------------------------------------------------------------------

    async def create_case(
        self,
        service: str,
        applicant: Mapping[str, Any],
        fields: Mapping[str, Any],
        materials: Sequence[Path] = (),
        *,
        submit: bool = False,
    ) -> str:
        """Accept a new case; returns its case number once it is durable, sealed and queued.

        `submit=True` also hands it to the county (status submitted) in the same package.
        """
        body = {"service": service, "applicant": dict(applicant), "fields": dict(fields)}
        # Check the form before touching the disk: a typo must not cost a case number or files.
        validate_body(EventType.CASE_CREATED, body, where="new case")
        sealed = await self._seal_materials(materials, answers=None)
        try:
            day = _local_day(self._wall_ms())
            counter = await self._store.next_counter(f"case:{self._station}:{day:%Y%m%d}")
            case = case_number(self._station, day, counter)
            drafts = [EventDraft(case=case, type=EventType.CASE_CREATED, body=body)]
            drafts += [EventDraft(case=case, type=EventType.MATERIAL_ADDED, body=m.body)
                       for m in sealed]
            if submit:
                drafts.append(EventDraft(case=case, type=EventType.STATUS_CHANGED,
                                         body={"to": Status.SUBMITTED.value}))
            await self._append(case, drafts, sealed)
        except BaseException:
            await asyncio.to_thread(_discard, sealed)
            raise
        return case

    async def add_events(self, case: str, drafts: Sequence[EventDraft]) -> list[Event]:
        """Append later events (fields, notes, status) to an existing case, sealed as one batch.

        Accepted below the disk floor: finishing open cases is what frees space."""
        await self._require_case(case)
        for draft in drafts:
            if draft.case != case:
                raise IntakeError(f"a draft for case {draft.case!r} was passed for case {case!r}")
        return await self._append(case, list(drafts), [])

    async def add_materials(
        self, case: str, materials: Sequence[Path], *, answers: str | None = None
    ) -> list[Event]:
        """Add material files to an existing case (e.g. answering supplement request `answers`).
        Refused below the disk floor."""
        await self._require_case(case)
        sealed = await self._seal_materials(materials, answers=answers)
        try:
            drafts = [EventDraft(case=case, type=EventType.MATERIAL_ADDED, body=m.body)
                      for m in sealed]
            return await self._append(case, drafts, sealed)
        except BaseException:
            await asyncio.to_thread(_discard, sealed)
            raise

    async def submit(self, case: str) -> list[Event]:
        """Hand a draft case to the county (status submitted)."""
        return await self.add_events(case, [EventDraft(
            case=case, type=EventType.STATUS_CHANGED, body={"to": Status.SUBMITTED.value},
        )])

    # -- internals ---------------------------------------------------------------------------

    async def _require_case(self, case: str) -> None:
        if not await self._store.events_for_case(case):
            raise IntakeError(
                f"no case {case!r} in this station's store; check the number on the receipt "
                "(`cunlink cases list`)"
            )

    def _package_id(self) -> bytes:
        # Time-ordered ids keep the outbox's unique index append-only (fewer pages per commit).
        return uuid.UUID(uuid7(self._wall_ms(), os.urandom(10))).bytes

    async def _seal_materials(
        self, paths: Sequence[Path], *, answers: str | None
    ) -> list[_SealedMaterial]:
        paths = [Path(p) for p in paths]
        if len(paths) > MAX_MATERIALS_PER_CALL:
            raise IntakeError(
                f"{len(paths)} materials in one call, at most {MAX_MATERIALS_PER_CALL}: add the "
                "rest with further calls"
            )
        sizes = []
        for path in paths:
            try:
                size = path.stat().st_size
            except OSError as exc:
                raise IntakeError(f"cannot read material {path}: {exc.strerror}") from exc
            if size == 0:
                raise IntakeError(f"material {path} is empty; scan it again")
            sizes.append(size)
        if paths:
            # The blob and its sealed container each take about the file's size.
            self._store.check_disk_floor(2 * sum(sizes), what=f"{len(paths)} new material(s)")
        sealed: list[_SealedMaterial] = []
        try:
            for path in paths:
                sealed.append(await self._seal_one(path, answers))
        except BaseException:
            await asyncio.to_thread(_discard, sealed)
            raise
        return sealed

    async def _seal_one(self, path: Path, answers: str | None) -> _SealedMaterial:
        ref = await self._store.put_blob_file(path)
        package_id = self._package_id()
        dst = self._store.sealed_dir / f"{package_id.hex()}.blob"
        info = await asyncio.to_thread(
            seal_file, ref.path, dst, sender=self._identity, recipient=self._hub,
            package_id=package_id, created_ms=self._wall_ms(), suite=self._suite,
        )
        body: dict[str, Any] = {
            "sha256": ref.sha256, "kind": "scan", "pages": 1, "size": ref.size,
            "mime": mimetypes.guess_type(path.name)[0] or "application/octet-stream",
        }
        if answers is not None:
            body["answers"] = answers
        return _SealedMaterial(
            body=body, package_id=package_id, path=dst, sealed_size=info.sealed_size
        )

    async def _append(
        self, case: str, drafts: list[EventDraft], sealed: list[_SealedMaterial]
    ) -> list[Event]:
        batch_id = self._package_id()
        created = self._wall_ms()
        hub = self._hub

        def seal(events: list[Event], encoded: bytes) -> list[OutboxPut]:
            # Runs on the store's writer, after ids/seqs/hlcs are assigned, before the commit;
            # `encoded` is encode_events(events), spliced from the bodies packed for the rows.
            package = seal_batch(
                encoded, sender=self._identity, recipient=hub,
                package_id=batch_id, created_ms=created, suite=self._suite,
            )
            puts = [OutboxPut(package_id=batch_id, kind="batch", priority=PRIORITY_EVENTS,
                              destination=hub.id, payload=package, size=len(package),
                              case=case, plain=encoded)]
            # plain / blob_sha256: what lets the uplink carry several small packages in one
            # sealed bundle at send time (docs/protocol.md section 7)
            puts += [OutboxPut(package_id=m.package_id, kind="blob", priority=PRIORITY_BLOBS,
                               destination=hub.id, path=m.path, size=m.sealed_size, case=case,
                               blob_sha256=m.body["sha256"])
                     for m in sealed]
            return puts

        return await self._store.append_local_encoded(self._station, drafts, seal)


def _discard(sealed: Sequence[_SealedMaterial]) -> None:
    """Remove sealed containers of a call that failed (the blobs may be shared: left to the
    orphan sweep)."""
    for m in sealed:
        with contextlib.suppress(OSError):
            m.path.unlink()
