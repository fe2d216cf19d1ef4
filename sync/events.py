"""The immutable event: the only thing a case is made of.

A case is a set of events; its state is a pure fold of that set in `(hlc, origin, id)` order
(see `sync.model`). Events are created once, never changed, and identified by a UUIDv7 string,
so applying the same event twice is harmless.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    """Every kind of event a case can hold. Values are stable wire names."""

    CASE_CREATED = "case_created"
    FIELD_SET = "field_set"
    MATERIAL_ADDED = "material_added"
    MATERIAL_SUPERSEDED = "material_superseded"
    SUPPLEMENT_REQUESTED = "supplement_requested"
    STATUS_CHANGED = "status_changed"
    NOTE_ADDED = "note_added"


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One immutable fact about one case.

    id:     UUIDv7, canonical lower-case string; unique across all origins.
    case:   the case id (e.g. ``"ST001-20261122-0007"``).
    origin: the station id or hub id that created the event.
    seq:    1-based, contiguous per origin: the receiver drops duplicates by high-water mark
            and reports gaps (something still on its way).
    hlc:    packed hybrid logical clock: ``(physical_ms << 16) | logical`` (see `sync.hlc`).
    type:   what happened.
    body:   msgpack-able mapping whose keys depend on `type` (see `docs/case-model.md`).
    """

    id: str
    case: str
    origin: str
    seq: int
    hlc: int
    type: EventType
    body: dict[str, Any] = field(default_factory=dict)

    def sort_key(self) -> tuple[int, str, str]:
        """The fold order: `(hlc, origin, id)`; total, and the same on every replica."""
        return (self.hlc, self.origin, self.id)
