"""What a county officer does to a case at the hub, turned into sealed downlink packages.

Each action is one hub event, checked against the case's merged state first (an officer gets a
clear refusal instead of a conflict surfacing later), committed together with the sealed
package for the case's station in one transaction. The hub worker delivers it; stations that
are offline get it from their broker session or on their next hello.
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from collections.abc import Callable

from protocols.envelope import LocalIdentity, PeerIdentity, Suite, seal_batch
from sync.events import Event, EventType, encode_events
from sync.model import Side, Status, fold
from sync.store import EventDraft, OutboxPut, Store
from sync.workflow import refusal, transition_allowed


class HubActionError(Exception):
    """The action does not fit the case as the hub knows it."""


class HubActions:
    def __init__(self, *, store: Store, identity: LocalIdentity,
                 stations: Callable[[str], PeerIdentity | None],
                 suite: Suite = Suite.X25519_SHA256_AES256GCM) -> None:
        self._store = store
        self._identity = identity
        self._stations = stations
        self._suite = suite

    async def _case(self, case: str) -> tuple[str, list[Event]]:
        events = await self._store.events_for_case(case)
        created = [e for e in events if e.type is EventType.CASE_CREATED]
        if not created:
            raise HubActionError(f"case {case} is not known at this hub (cunlink hub cases)")
        return created[0].origin, events

    def _state(self, events: list[Event]) -> Status:
        hub = self._identity.id
        return fold(events, hub_origins=lambda origin: Side.HUB if origin == hub
                    else Side.STATION).status

    async def set_status(self, case: str, status: Status, reason: str = "") -> Event:
        station, events = await self._case(case)
        current = self._state(events)
        if (why := refusal(Side.HUB, current, status)) is not None:
            # the table's reason names the statuses allowed next (e.g. received -> in_review)
            raise HubActionError(f"case {case}: {why}")
        body: dict[str, object] = {"to": status.value}
        if reason:
            body["reason"] = reason
        return await self._emit(station, case, EventType.STATUS_CHANGED, body)

    async def request_material(self, case: str, what: str) -> Event:
        station, events = await self._case(case)
        current = self._state(events)
        if current is not Status.NEEDS_SUPPLEMENT and not transition_allowed(
                Side.HUB, current, Status.NEEDS_SUPPLEMENT):
            raise HubActionError(
                f"case {case} is {current.value}; supplements can be requested only while it "
                "is in review")
        request = f"R-{secrets.token_hex(4)}"
        event = await self._emit(station, case, EventType.SUPPLEMENT_REQUESTED,
                                 {"request": request, "what": what})
        if current is not Status.NEEDS_SUPPLEMENT:
            await self._emit(station, case, EventType.STATUS_CHANGED,
                             {"to": Status.NEEDS_SUPPLEMENT.value, "reason": what})
        return event

    async def _emit(self, station: str, case: str, kind: EventType,
                    body: dict[str, object]) -> Event:
        peer = self._stations(station)
        if peer is None:
            raise HubActionError(f"station {station} is not enrolled (cunlink hub enroll FILE)")

        def seal(assigned: list[Event]) -> list[OutboxPut]:
            package_id = uuid.UUID(bytes=os.urandom(16)).bytes
            sealed = seal_batch(encode_events(assigned), sender=self._identity, recipient=peer,
                                package_id=package_id, created_ms=int(time.time() * 1000),
                                suite=self._suite)
            return [OutboxPut(package_id=package_id, kind="batch", priority=1,
                              destination=station, payload=sealed, path=None,
                              size=len(sealed), case=case)]

        drafts = [EventDraft(case=case, type=kind, body=body)]
        events = await self._store.append_local_sealed(self._identity.id, drafts, seal)
        return events[0]
