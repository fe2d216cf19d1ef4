"""The case workflow: statuses, the two sides, and who may move a case from where to where.

The table is the whole state machine. Each transition has exactly one owner: the station moves
a case into the county's hands (submit) or takes it back (withdraw); the hub does everything
in between (receive, review, ask for more, decide, complete). Because no status can be left by
both sides through ordinary work, the only race between the sides is a withdrawal against the
hub's progress, and `sync.model.fold` settles that with one explicit rule (a hub decision beats
any withdrawal; see docs/case-model.md).

This module imports nothing from the rest of `sync`, so `sync.events` can validate status
values against it without an import cycle.
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType
from typing import Final


class Status(StrEnum):
    """Where a case stands. Values are stable wire names (they appear in `status_changed`)."""

    DRAFT = "draft"
    SUBMITTED = "submitted"
    WITHDRAWN = "withdrawn"
    RECEIVED = "received"
    IN_REVIEW = "in_review"
    NEEDS_SUPPLEMENT = "needs_supplement"
    APPROVED = "approved"
    REJECTED = "rejected"
    COMPLETED = "completed"


class Side(StrEnum):
    """Which half of the system made an event: a village station or the county hub."""

    STATION = "station"
    HUB = "hub"


S = Status

#: (from, to) -> the only side allowed to make that move. Anything absent is not a transition.
TRANSITIONS: Final = MappingProxyType(
    {
        # station: hand the case over, or take it back before the county has decided
        (S.DRAFT, S.SUBMITTED): Side.STATION,
        (S.DRAFT, S.WITHDRAWN): Side.STATION,
        (S.SUBMITTED, S.WITHDRAWN): Side.STATION,
        (S.RECEIVED, S.WITHDRAWN): Side.STATION,
        (S.IN_REVIEW, S.WITHDRAWN): Side.STATION,
        (S.NEEDS_SUPPLEMENT, S.WITHDRAWN): Side.STATION,
        # hub: everything between hand-over and the end
        (S.SUBMITTED, S.RECEIVED): Side.HUB,
        (S.RECEIVED, S.IN_REVIEW): Side.HUB,
        (S.RECEIVED, S.REJECTED): Side.HUB,  # not admissible at all (不予受理)
        (S.IN_REVIEW, S.NEEDS_SUPPLEMENT): Side.HUB,
        # The hub, not the station, resumes review once the supplement is in: if the station
        # could also leave needs_supplement (by "resubmitting"), answering a request would race
        # with the hub's own resume and every normal supplement round would end in a conflict.
        (S.NEEDS_SUPPLEMENT, S.IN_REVIEW): Side.HUB,
        (S.NEEDS_SUPPLEMENT, S.REJECTED): Side.HUB,  # the supplement never came (逾期未补正)
        (S.IN_REVIEW, S.APPROVED): Side.HUB,
        (S.IN_REVIEW, S.REJECTED): Side.HUB,
        (S.APPROVED, S.COMPLETED): Side.HUB,
    }
)

#: The status every case starts in (before and at `case_created`).
INITIAL: Final = Status.DRAFT

#: Statuses no transition leaves.
FINAL: Final = frozenset(s for s in Status if not any(frm == s for frm, _ in TRANSITIONS))

#: The hub's decisions. One that takes effect overrules every withdrawal (see sync.model).
DECISIONS: Final = frozenset({Status.APPROVED, Status.REJECTED, Status.COMPLETED})

#: Statuses in which the case's content (fields, materials, supplement requests) is frozen:
#: the applicant took the case back, or the county has decided on what it had.
CLOSED: Final = FINAL | DECISIONS


def refusal(side: Side, frm: Status, to: Status) -> str | None:
    """The transition function: None if `side` may move a case from `frm` to `to`, else why not.

    The reason is a sentence for the person who resolves the conflict.
    """
    owner = TRANSITIONS.get((frm, to))
    if owner == side:
        return None
    if frm == to:
        return f"the case is already {frm}"
    if owner is not None:
        return f"only the {owner} may move a case from {frm} to {to}, not the {side}"
    if frm in FINAL:
        return f"the case is {frm}, which is final; it cannot become {to}"
    allowed = sorted(str(t) for (f, t), o in TRANSITIONS.items() if f is frm and o is side)
    options = ", ".join(allowed) if allowed else "nothing (it is the other side's move)"
    return f"the {side} cannot move a case from {frm} to {to}; from {frm} it may go to {options}"


def transition_allowed(side: Side, frm: Status, to: Status) -> bool:
    """True if the table lets `side` move a case from `frm` to `to`."""
    return refusal(side, frm, to) is None
