"""The fold: the workflow table, merge rules, and conflicts (docs/case-model.md examples)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from sync.events import CaseModelError, Event, EventType
from sync.ids import uuid7
from sync.model import CaseState, Side, Status, fold, transition_allowed
from sync.workflow import CLOSED, FINAL, TRANSITIONS

CASE = "ST001-20261122-0007"
ST, HUB = "ST001", "HUB01"
HUBS = frozenset({HUB})
SHA = {n: f"{n:x}" * 64 for n in range(1, 6)}
T = EventType
S = Status


class Log:
    """Builds one case's events with increasing (or chosen) HLCs, as the two sides would."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._n = 0
        self._seq: dict[str, int] = {}

    def add(self, origin: str, type: EventType, body: dict[str, Any], *, hlc: int = 0) -> Event:
        self._n += 1
        self._seq[origin] = self._seq.get(origin, 0) + 1
        e = Event(
            id=uuid7(1_795_305_600_000 + self._n, self._n.to_bytes(10, "big")),
            case=CASE,
            origin=origin,
            seq=self._seq[origin],
            hlc=hlc or self._n << 16,
            type=type,
            body=body,
        )
        self.events.append(e)
        return e

    def create(self, **fields: object) -> Event:
        return self.add(
            ST,
            T.CASE_CREATED,
            {
                "service": "MZ-0031",
                "applicant": {"id_type": "resident_id", "id_number": "1", "name": "n", "sex": "f"},
                "fields": dict(fields),
            },
        )

    def status(self, origin: str, to: Status, *, hlc: int = 0) -> Event:
        return self.add(origin, T.STATUS_CHANGED, {"to": to.value}, hlc=hlc)

    def material(self, n: int, *, answers: str | None = None, hlc: int = 0) -> Event:
        body: dict[str, Any] = {
            "sha256": SHA[n],
            "kind": f"kind{n}",
            "pages": 1,
            "size": 1000 + n,
            "mime": "image/jpeg",
        }
        if answers is not None:
            body["answers"] = answers
        return self.add(ST, T.MATERIAL_ADDED, body, hlc=hlc)

    def fold(self) -> CaseState:
        return fold(self.events, hub_origins=HUBS)


# How to reach each status by ordinary work; each step is (side, status).
PATHS: dict[Status, list[tuple[str, Status]]] = {
    S.DRAFT: [],
    S.SUBMITTED: [(ST, S.SUBMITTED)],
    S.WITHDRAWN: [(ST, S.SUBMITTED), (ST, S.WITHDRAWN)],
    S.RECEIVED: [(ST, S.SUBMITTED), (HUB, S.RECEIVED)],
    S.IN_REVIEW: [(ST, S.SUBMITTED), (HUB, S.RECEIVED), (HUB, S.IN_REVIEW)],
    S.NEEDS_SUPPLEMENT: [
        (ST, S.SUBMITTED),
        (HUB, S.RECEIVED),
        (HUB, S.IN_REVIEW),
        (HUB, S.NEEDS_SUPPLEMENT),
    ],
    S.APPROVED: [(ST, S.SUBMITTED), (HUB, S.RECEIVED), (HUB, S.IN_REVIEW), (HUB, S.APPROVED)],
    S.REJECTED: [(ST, S.SUBMITTED), (HUB, S.RECEIVED), (HUB, S.REJECTED)],
    S.COMPLETED: [
        (ST, S.SUBMITTED),
        (HUB, S.RECEIVED),
        (HUB, S.IN_REVIEW),
        (HUB, S.APPROVED),
        (HUB, S.COMPLETED),
    ],
}


def at(status: Status) -> Log:
    log = Log()
    log.create()
    for origin, to in PATHS[status]:
        log.status(origin, to)
    assert log.fold().status is status
    assert not log.fold().conflicts
    return log


# The workflow, written out independently of sync.workflow: who may do what.
EXPECTED = {
    Side.STATION: {
        (S.DRAFT, S.SUBMITTED),
        (S.DRAFT, S.WITHDRAWN),
        (S.SUBMITTED, S.WITHDRAWN),
        (S.RECEIVED, S.WITHDRAWN),
        (S.IN_REVIEW, S.WITHDRAWN),
        (S.NEEDS_SUPPLEMENT, S.WITHDRAWN),
    },
    Side.HUB: {
        (S.SUBMITTED, S.RECEIVED),
        (S.RECEIVED, S.IN_REVIEW),
        (S.RECEIVED, S.REJECTED),
        (S.IN_REVIEW, S.NEEDS_SUPPLEMENT),
        (S.NEEDS_SUPPLEMENT, S.IN_REVIEW),
        (S.NEEDS_SUPPLEMENT, S.REJECTED),
        (S.IN_REVIEW, S.APPROVED),
        (S.IN_REVIEW, S.REJECTED),
        (S.APPROVED, S.COMPLETED),
    },
}

ALL = list(itertools.product(Side, Status, Status))


@pytest.mark.parametrize(("side", "frm", "to"), ALL)
def test_transition_table(side: Side, frm: Status, to: Status) -> None:
    assert transition_allowed(side, frm, to) == ((frm, to) in EXPECTED[side])


@pytest.mark.parametrize(("side", "frm", "to"), ALL)
def test_fold_applies_exactly_the_table(side: Side, frm: Status, to: Status) -> None:
    log = at(frm)
    e = log.status(HUB if side is Side.HUB else ST, to)
    state = log.fold()
    if transition_allowed(side, frm, to):
        assert state.status is to
        assert state.conflicts == ()
        assert state.status_history[-1].event_id == e.id
        assert state.status_history[-1].from_status is frm
    else:
        assert state.status is frm
        assert [c.event_id for c in state.conflicts] == [e.id]
        assert e.id not in {h.event_id for h in state.status_history}


def test_every_transition_has_one_owner_and_final_states_have_none() -> None:
    assert set(TRANSITIONS) == EXPECTED[Side.STATION] | EXPECTED[Side.HUB]
    assert set(FINAL) == {S.WITHDRAWN, S.REJECTED, S.COMPLETED}
    assert set(CLOSED) == {S.WITHDRAWN, S.REJECTED, S.COMPLETED, S.APPROVED}


def test_refusal_reasons_say_who_and_why() -> None:
    log = at(S.IN_REVIEW)
    log.status(ST, S.APPROVED)
    log.status(HUB, S.SUBMITTED)
    log.status(HUB, S.IN_REVIEW)
    reasons = [c.reason for c in log.fold().conflicts]
    assert reasons[0] == "only the hub may move a case from in_review to approved, not the station"
    assert reasons[1].startswith("the hub cannot move a case from in_review to submitted")
    assert "approved, needs_supplement, rejected" in reasons[1]
    assert reasons[2] == "the case is already in_review"


def test_final_status_reason_names_the_event_that_closed_the_case() -> None:
    log = at(S.SUBMITTED)
    withdraw = log.status(ST, S.WITHDRAWN)
    log.status(HUB, S.RECEIVED)
    (conflict,) = log.fold().conflicts
    assert "withdrawn, which is final" in conflict.reason
    assert withdraw.id in conflict.reason


# -- worked examples from docs/case-model.md -----------------------------------------------------


def test_example_1_hub_decision_beats_an_earlier_withdrawal() -> None:
    log = at(S.IN_REVIEW)
    # The station withdraws at hlc 100 while the hub, not yet knowing, approves at hlc 101.
    withdraw = log.status(ST, S.WITHDRAWN, hlc=100 << 16)
    approve = log.status(HUB, S.APPROVED, hlc=101 << 16)
    state = log.fold()
    assert state.status is S.APPROVED
    assert [c.event_id for c in state.conflicts] == [withdraw.id]
    assert "withdrawal overruled" in state.conflicts[0].reason
    assert approve.id in state.conflicts[0].reason
    # The same when the withdrawal's clock is later: precedence does not depend on clocks.
    log2 = at(S.IN_REVIEW)
    log2.status(HUB, S.APPROVED, hlc=100 << 16)
    log2.status(ST, S.WITHDRAWN, hlc=101 << 16)
    assert log2.fold().status is S.APPROVED


def test_example_2_withdrawal_beats_hub_progress_that_is_not_a_decision() -> None:
    log = at(S.SUBMITTED)
    withdraw = log.status(ST, S.WITHDRAWN, hlc=100 << 16)
    received = log.status(HUB, S.RECEIVED, hlc=101 << 16)
    review = log.status(HUB, S.IN_REVIEW, hlc=102 << 16)
    state = log.fold()
    assert state.status is S.WITHDRAWN
    assert [c.event_id for c in state.conflicts] == [received.id, review.id]
    assert all(withdraw.id in c.reason for c in state.conflicts)


def test_example_3_material_after_rejection_is_a_conflict() -> None:
    log = at(S.REJECTED)
    late = log.material(1)
    note = log.add(ST, T.NOTE_ADDED, {"text": "applicant brought the missing page"})
    state = log.fold()
    assert state.materials == ()
    assert [c.event_id for c in state.conflicts] == [late.id]
    assert "rejected" in state.conflicts[0].reason
    assert [n.event_id for n in state.notes] == [note.id]  # notes are always accepted


def test_example_4_supplement_round_without_conflicts() -> None:
    log = at(S.IN_REVIEW)
    log.add(HUB, T.SUPPLEMENT_REQUESTED, {"request": "r1", "what": "户口本首页"})
    log.status(HUB, S.NEEDS_SUPPLEMENT)
    assert [r.id for r in log.fold().open_requests] == ["r1"]
    log.material(2, answers="r1")
    log.status(HUB, S.IN_REVIEW)
    log.status(HUB, S.APPROVED)
    log.status(HUB, S.COMPLETED)
    state = log.fold()
    assert state.conflicts == ()
    assert state.status is S.COMPLETED
    assert state.open_requests == ()
    assert state.supplements[0].answered_by == (SHA[2],)
    assert state.materials[0].answers == "r1"
    assert [h.to_status for h in state.status_history][-4:] == [
        S.NEEDS_SUPPLEMENT,
        S.IN_REVIEW,
        S.APPROVED,
        S.COMPLETED,
    ]


def test_two_hub_decisions_first_in_fold_order_wins() -> None:
    log = at(S.IN_REVIEW)
    reject = log.status(HUB, S.REJECTED, hlc=200 << 16)
    approve = log.status(HUB, S.APPROVED, hlc=200 << 16)  # same hlc: origin, then id decide
    state = log.fold()
    first, second = sorted([reject, approve], key=Event.sort_key)
    assert state.status.value == first.body["to"]
    assert [c.event_id for c in state.conflicts] == [second.id]


def test_example_6_invalid_hub_decision_does_not_overrule_a_withdrawal() -> None:
    log = at(S.RECEIVED)
    withdraw = log.status(ST, S.WITHDRAWN)
    approve = log.status(HUB, S.APPROVED)  # received -> approved skips review: not allowed
    state = log.fold()
    assert state.status is S.WITHDRAWN
    assert [c.event_id for c in state.conflicts] == [approve.id]
    assert withdraw.id == state.status_history[-1].event_id


# -- the fold itself ----------------------------------------------------------------------------


def test_duplicates_do_not_count_and_conflicting_ids_are_reported() -> None:
    log = at(S.SUBMITTED)
    note = log.add(ST, T.NOTE_ADDED, {"text": "original"})
    forged = Event(
        id=note.id,
        case=CASE,
        origin=ST,
        seq=note.seq,
        hlc=note.hlc,
        type=T.NOTE_ADDED,
        body={"text": "tampered"},
    )
    plain = log.fold()
    doubled = fold([*log.events, *log.events], hub_origins=HUBS)
    assert doubled == plain
    assert plain.event_count == len(log.events)
    a = fold([*log.events, forged], hub_origins=HUBS)
    b = fold([forged, *reversed(log.events)], hub_origins=HUBS)
    assert a == b
    assert a.event_count == len(log.events)
    assert a.conflicts[0].event_id == note.id
    assert "2 different events share this id" in a.conflicts[0].reason
    assert len(a.notes) == 1


def test_side_may_be_given_as_a_function() -> None:
    log = at(S.RECEIVED)

    def side(origin: str) -> Side:
        return Side.HUB if origin.startswith("HUB") else Side.STATION

    assert fold(log.events, hub_origins=side) == log.fold()


@pytest.mark.parametrize(
    ("events", "hub_origins", "match"),
    [
        ([], HUBS, "no events"),
        (["x"], HUBS, "Event objects"),
        (None, "HUB01", "is a string"),
        (None, lambda origin: "hub", "not a Side"),
    ],
)
def test_fold_rejects_caller_mistakes(events: Any, hub_origins: Any, match: str) -> None:
    if events is None:
        events = at(S.RECEIVED).events
    with pytest.raises(CaseModelError, match=match):
        fold(events, hub_origins=hub_origins)


def test_fold_rejects_events_of_two_cases() -> None:
    log = Log()
    log.create()
    other = log.events[0]
    moved = Event(
        id=uuid7(1, bytes(10)),
        case="ST001-20261122-0008",
        origin=other.origin,
        seq=2,
        hlc=other.hlc + 1,
        type=other.type,
        body=other.body,
    )
    with pytest.raises(CaseModelError, match="two cases"):
        fold([other, moved], hub_origins=HUBS)


def test_state_counts_and_last_hlc() -> None:
    log = at(S.IN_REVIEW)
    state = log.fold()
    assert state.case == CASE
    assert state.event_count == 4
    assert state.last_hlc == max(e.hlc for e in log.events)
    assert state.status_history[0].side is Side.STATION
    assert state.status_history[1].origin == HUB
