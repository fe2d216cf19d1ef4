"""A case's state: a pure fold of its set of events.

`fold` sorts the events by `Event.sort_key()` (hlc, origin, id), drops exact duplicates, and
applies them one by one. The result depends only on the *set* of events, never on the order or
number of times they arrived, so a station and the hub that hold the same events hold the same
state. The rules (docs/case-model.md has the table and worked examples):

- form fields: last writer wins in fold order; only the station writes them;
- materials: a grow-only set keyed by SHA-256 (adding the same hash twice is harmless);
  superseding is an event of its own, nothing is ever removed;
- status: the table in `sync.workflow`, each transition owned by one side;
- a hub decision (approved, rejected, completed) that takes effect overrules every withdrawal,
  whatever the clocks say: the county acted on a live case, and the citizen is told so;
- an event that does not fit where it lands is kept, changes nothing, and becomes a `Conflict`
  with a reason for the person who resolves it. Nothing is ever dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Final

from sync.events import CaseModelError, Event, EventType
from sync.workflow import (
    CLOSED,
    DECISIONS,
    FINAL,
    INITIAL,
    TRANSITIONS,
    Side,
    Status,
    refusal,
    transition_allowed,
)

__all__ = [
    "EVENT_SIDES",
    "TRANSITIONS",
    "CaseState",
    "Conflict",
    "Material",
    "Note",
    "Side",
    "Status",
    "StatusChange",
    "SupplementRequest",
    "fold",
    "transition_allowed",
]

#: Which sides may make each kind of event (status changes are further limited by the table).
#: Form fields and materials are the applicant's: the station records them. Supplement requests
#: are the county's. Superseding a material is both sides' business (the station replaces a
#: blurred scan; the hub marks one unusable), and anyone may write a note.
EVENT_SIDES: Final = MappingProxyType(
    {
        EventType.CASE_CREATED: frozenset({Side.STATION}),
        EventType.FIELD_SET: frozenset({Side.STATION}),
        EventType.MATERIAL_ADDED: frozenset({Side.STATION}),
        EventType.MATERIAL_SUPERSEDED: frozenset({Side.STATION, Side.HUB}),
        EventType.SUPPLEMENT_REQUESTED: frozenset({Side.HUB}),
        EventType.STATUS_CHANGED: frozenset({Side.STATION, Side.HUB}),
        EventType.NOTE_ADDED: frozenset({Side.STATION, Side.HUB}),
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Conflict:
    """An event that did not fit where it landed: kept, without effect, shown to a person."""

    event_id: str
    reason: str

    def __post_init__(self) -> None:
        if not self.event_id or not self.reason:
            raise CaseModelError("Conflict needs an event_id and a reason")


@dataclass(frozen=True, slots=True, kw_only=True)
class Material:
    """One document in the case, keyed by the SHA-256 of its normalised content.

    added_by:          the `material_added` event that first brought it.
    answers:           the supplement request it was added to answer, if any.
    superseded_by:     the `material_superseded` event that retired it, if any.
    replaced_by:       the hash of the material that replaces it, if the superseder named one.
    superseded_reason: why it was retired, if the superseder said.
    """

    sha256: str
    kind: str
    pages: int
    size: int
    mime: str
    added_by: str
    answers: str | None = None
    superseded_by: str | None = None
    replaced_by: str | None = None
    superseded_reason: str | None = None

    def __post_init__(self) -> None:
        if self.pages < 1 or self.size < 1:
            raise CaseModelError(f"material {self.sha256}: pages and size must be >= 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class SupplementRequest:
    """The hub's request for more material, and the hashes of the materials that answer it."""

    id: str
    what: str
    requested_hlc: int
    requested_by: str
    answered_by: tuple[str, ...] = ()

    @property
    def answered(self) -> bool:
        return bool(self.answered_by)


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusChange:
    """One applied status transition (conflicting ones are in `CaseState.conflicts`)."""

    event_id: str
    origin: str
    side: Side
    hlc: int
    from_status: Status
    to_status: Status
    reason: str | None = None

    def __post_init__(self) -> None:
        if not transition_allowed(self.side, self.from_status, self.to_status):
            raise CaseModelError(
                f"status change {self.event_id}: {self.side} {self.from_status} -> "
                f"{self.to_status} is not in the workflow table"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Note:
    event_id: str
    origin: str
    side: Side
    hlc: int
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseState:
    """The merged state of one case. Equal on every replica that holds the same events."""

    case: str
    created_by: str | None
    service: str | None
    applicant: Mapping[str, object]
    fields: Mapping[str, object]
    status: Status
    status_history: tuple[StatusChange, ...]
    materials: tuple[Material, ...]
    supplements: tuple[SupplementRequest, ...]
    notes: tuple[Note, ...]
    conflicts: tuple[Conflict, ...]
    event_count: int
    last_hlc: int

    def __post_init__(self) -> None:
        if self.event_count < 1:
            raise CaseModelError(f"case {self.case}: a state is folded from at least one event")

    @property
    def current_materials(self) -> tuple[Material, ...]:
        """The materials nobody has superseded."""
        return tuple(m for m in self.materials if m.superseded_by is None)

    @property
    def open_requests(self) -> tuple[SupplementRequest, ...]:
        """Supplement requests no material answers yet."""
        return tuple(r for r in self.supplements if not r.answered)


HubOrigins = Container[str] | Callable[[str], Side]


def fold(events: Iterable[Event], *, hub_origins: HubOrigins) -> CaseState:
    """Fold one case's events into its state; the same set gives the same state everywhere.

    hub_origins: the hub's origin ids (any container, e.g. a frozenset), or a function from
    origin to `Side`. Every other origin is a station.

    Raises `CaseModelError` for caller mistakes (no events, events of several cases), never
    for events that merely do not fit: those become conflicts.
    """
    side_of = _side_function(hub_origins)
    unique, id_conflicts = _dedup(events)
    ordered = sorted(unique, key=Event.sort_key)
    # Precedence of a hub decision over a withdrawal: fold once with every withdrawal held
    # back; if a hub decision takes effect in that fold, the county decided a live case and
    # all withdrawals are overruled. Both folds depend only on the set, so this is as
    # order-independent as the fold itself. Skipped unless both kinds are present.
    overruling: StatusChange | None = None
    if _has_withdrawal_and_decision(ordered, side_of):
        trial = _Fold(ordered[0].case, side_of, hold_withdrawals=True)
        for e in ordered:
            trial.apply(e)
        overruling = next(
            (c for c in trial.history if c.side is Side.HUB and c.to_status in DECISIONS), None
        )
    run = _Fold(ordered[0].case, side_of, overruled_by=overruling)
    for e in ordered:
        run.apply(e)
    return run.freeze(id_conflicts, event_count=len(ordered), last_hlc=ordered[-1].hlc)


def _side_function(hub_origins: HubOrigins) -> Callable[[str], Side]:
    if isinstance(hub_origins, str | bytes):
        # A string is a Container[str] too, with substring semantics: "HUB" in "HUB01".
        raise CaseModelError(
            f"hub_origins={hub_origins!r} is a string; pass a set of hub ids, e.g. {{'HUB01'}}"
        )
    if callable(hub_origins):
        classify = hub_origins

        def side_of(origin: str) -> Side:
            side = classify(origin)
            if not isinstance(side, Side):
                raise CaseModelError(f"hub_origins({origin!r}) returned {side!r}, not a Side")
            return side

        return side_of
    origins = hub_origins
    return lambda origin: Side.HUB if origin in origins else Side.STATION


def _dedup(events: Iterable[Event]) -> tuple[list[Event], list[Conflict]]:
    """One event per id. Two *different* events with one id are a sender's bug: the one that
    sorts first is kept (deterministically), the rest are reported."""
    by_id: dict[str, list[Event]] = {}
    case: str | None = None
    for e in events:
        if not isinstance(e, Event):
            raise CaseModelError(f"fold() takes Event objects, got {type(e).__name__}")
        if case is None:
            case = e.case
        elif e.case != case:
            raise CaseModelError(
                f"fold() got events of two cases, {case!r} and {e.case!r}; fold one case at a time"
            )
        variants = by_id.setdefault(e.id, [])
        if e not in variants:
            variants.append(e)
    if case is None:
        raise CaseModelError("fold() got no events; a case exists only once it has one")
    unique = [variants[0] for variants in by_id.values() if len(variants) == 1]
    conflicts: list[Conflict] = []
    for event_id in sorted(i for i, variants in by_id.items() if len(variants) > 1):
        variants = sorted(by_id[event_id], key=_total_key)
        kept = variants[0]
        unique.append(kept)
        conflicts.append(
            Conflict(
                event_id=event_id,
                reason=f"{len(variants)} different events share this id; kept the "
                f"{kept.type} from {kept.origin} at hlc {kept.hlc}, ignored the others "
                "(the sender reused an id)",
            )
        )
    return unique, conflicts


def _total_key(e: Event) -> tuple[tuple[int, str, str], str]:
    # A total order over events that differ anywhere, for choosing among same-id variants.
    return (e.sort_key(), repr((e.seq, e.type.value, _canonical(e.body))))


def _canonical(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _canonical(v)) for k, v in value.items()))
    return value


def _has_withdrawal_and_decision(events: list[Event], side_of: Callable[[str], Side]) -> bool:
    withdrawal = decision = False
    for e in events:
        if e.type is not EventType.STATUS_CHANGED:
            continue
        to = Status(e.body["to"])
        side = side_of(e.origin)
        withdrawal = withdrawal or (side is Side.STATION and to is Status.WITHDRAWN)
        decision = decision or (side is Side.HUB and to in DECISIONS)
    return withdrawal and decision


class _Fold:
    """Mutable accumulator for one pass of the fold; `freeze` makes the immutable state."""

    def __init__(
        self,
        case: str,
        side_of: Callable[[str], Side],
        *,
        hold_withdrawals: bool = False,
        overruled_by: StatusChange | None = None,
    ) -> None:
        self.case = case
        self.side_of = side_of
        self.hold_withdrawals = hold_withdrawals
        self.overruled_by = overruled_by
        self.created_by: str | None = None
        self.service: str | None = None
        self.applicant: dict[str, object] = {}
        self.fields: dict[str, object] = {}
        self.status = INITIAL
        self.status_event: str | None = None
        self.history: list[StatusChange] = []
        self.materials: dict[str, Material] = {}
        self.supplements: dict[str, SupplementRequest] = {}
        self.notes: list[Note] = []
        self.conflicts: list[Conflict] = []

    def apply(self, e: Event) -> None:
        side = self.side_of(e.origin)
        reason = self._refusal(e, side)
        if reason is not None:
            self.conflicts.append(Conflict(event_id=e.id, reason=reason))
            return
        body = e.body
        match e.type:
            case EventType.CASE_CREATED:
                self.created_by = e.id
                self.service = body["service"]
                self.applicant = dict(body["applicant"])
                # Field by field, so a field_set that sorts earlier is overwritten like any
                # other earlier write (last writer wins, per field).
                self.fields.update(body["fields"])
            case EventType.FIELD_SET:
                if body["value"] is None:
                    self.fields.pop(body["name"], None)
                else:
                    self.fields[body["name"]] = body["value"]
            case EventType.MATERIAL_ADDED:
                self._add_material(e)
            case EventType.MATERIAL_SUPERSEDED:
                old = self.materials[body["sha256"]]
                self.materials[old.sha256] = replace(
                    old,
                    superseded_by=e.id,
                    replaced_by=body.get("by"),
                    superseded_reason=body.get("reason"),
                )
            case EventType.SUPPLEMENT_REQUESTED:
                self.supplements[body["request"]] = SupplementRequest(
                    id=body["request"], what=body["what"], requested_hlc=e.hlc, requested_by=e.id
                )
            case EventType.STATUS_CHANGED:
                to = Status(body["to"])
                self.history.append(
                    StatusChange(
                        event_id=e.id,
                        origin=e.origin,
                        side=side,
                        hlc=e.hlc,
                        from_status=self.status,
                        to_status=to,
                        reason=body.get("reason"),
                    )
                )
                self.status, self.status_event = to, e.id
            case EventType.NOTE_ADDED:
                self.notes.append(
                    Note(event_id=e.id, origin=e.origin, side=side, hlc=e.hlc, text=body["text"])
                )

    def _refusal(self, e: Event, side: Side) -> str | None:
        """Why `e` cannot take effect here, or None. The single place conflicts are decided."""
        if side not in EVENT_SIDES[e.type]:
            owners = " or ".join(sorted(EVENT_SIDES[e.type]))
            return f"only the {owners} may record {e.type}; this came from the {side} {e.origin}"
        body = e.body
        if e.type is EventType.STATUS_CHANGED:
            return self._status_refusal(side, Status(body["to"]))
        if e.type is EventType.NOTE_ADDED:
            return None  # notes are how people sort conflicts out: always welcome
        if self.status in CLOSED:
            return (
                f"the case is {self.status} (event {self.status_event}); its content is final, "
                f"so this {e.type} has no effect"
            )
        match e.type:
            case EventType.CASE_CREATED if self.created_by is not None:
                return f"the case was already created by event {self.created_by}"
            case EventType.MATERIAL_ADDED if body.get("answers") is not None:
                if body["answers"] not in self.supplements:
                    return (
                        f"this {e.type} answers supplement request {body['answers']!r}, which "
                        "the case does not have at this point"
                    )
            case EventType.MATERIAL_SUPERSEDED:
                old = self.materials.get(body["sha256"])
                if old is None:
                    return (
                        f"this {e.type} names material {body['sha256'][:12]}…, which is not in "
                        "the case at this point"
                    )
                if old.superseded_by is not None:
                    return (
                        f"material {old.sha256[:12]}… was already superseded by event "
                        f"{old.superseded_by}"
                    )
                if "by" in body and body["by"] not in self.materials:
                    return (
                        f"this {e.type} names the replacement {body['by'][:12]}…, which is not "
                        "in the case at this point"
                    )
            case EventType.SUPPLEMENT_REQUESTED if body["request"] in self.supplements:
                earlier = self.supplements[body["request"]].requested_by
                return f"request id {body['request']!r} was already used by event {earlier}"
        return None

    def _status_refusal(self, side: Side, to: Status) -> str | None:
        if side is Side.STATION and to is Status.WITHDRAWN:
            if self.overruled_by is not None:
                d = self.overruled_by
                return (
                    f"withdrawal overruled: the hub decided this case ({d.to_status}, event "
                    f"{d.event_id}), and a hub decision beats any withdrawal whatever the "
                    "clocks say"
                )
            if self.hold_withdrawals:
                return "withdrawal held back while checking for a hub decision"
        reason = refusal(side, self.status, to)
        if reason is not None and self.status in FINAL and self.status_event is not None:
            reason += f" (it became {self.status} by event {self.status_event})"
        return reason

    def _add_material(self, e: Event) -> None:
        body = e.body
        sha, answers = body["sha256"], body.get("answers")
        if sha not in self.materials:
            self.materials[sha] = Material(
                sha256=sha,
                kind=body["kind"],
                pages=body["pages"],
                size=body["size"],
                mime=body["mime"],
                added_by=e.id,
                answers=answers,
            )
        # A second add of a known hash changes nothing about the material, but may still
        # answer a request ("the document you need is the one already sent").
        if answers is not None:
            request = self.supplements[answers]
            if sha not in request.answered_by:
                self.supplements[answers] = replace(
                    request, answered_by=(*request.answered_by, sha)
                )

    def freeze(self, id_conflicts: list[Conflict], *, event_count: int, last_hlc: int) -> CaseState:
        return CaseState(
            case=self.case,
            created_by=self.created_by,
            service=self.service,
            applicant=MappingProxyType(self.applicant),
            fields=MappingProxyType(self.fields),
            status=self.status,
            status_history=tuple(self.history),
            materials=tuple(self.materials.values()),
            supplements=tuple(self.supplements.values()),
            notes=tuple(self.notes),
            conflicts=(*id_conflicts, *self.conflicts),
            event_count=event_count,
            last_hlc=last_hlc,
        )
