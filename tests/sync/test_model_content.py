"""The fold's content rules: form fields, materials, supplement requests."""

from __future__ import annotations

import random
from typing import Any

import pytest

from sync.model import fold
from tests.sync.test_model import HUB, HUBS, SHA, ST, Log, S, T, at

# -- fields -------------------------------------------------------------------------------------


def test_fields_last_writer_wins_by_hlc_not_by_arrival() -> None:
    log = Log()
    log.create(size=3, name="x")
    log.add(ST, T.FIELD_SET, {"name": "size", "value": 5}, hlc=50 << 16)
    log.add(ST, T.FIELD_SET, {"name": "size", "value": 4}, hlc=40 << 16)
    log.add(ST, T.FIELD_SET, {"name": "name", "value": None}, hlc=60 << 16)
    events = list(log.events)
    random.Random(7).shuffle(events)
    state = fold(events, hub_origins=HUBS)
    assert dict(state.fields) == {"size": 5}


def test_field_set_by_the_hub_is_a_conflict() -> None:
    log = at(S.IN_REVIEW)
    e = log.add(HUB, T.FIELD_SET, {"name": "size", "value": 1})
    state = log.fold()
    assert "size" not in state.fields
    assert state.conflicts[0].event_id == e.id
    assert "only the station may record field_set" in state.conflicts[0].reason


def test_fields_freeze_when_the_case_is_closed() -> None:
    log = at(S.APPROVED)
    e = log.add(ST, T.FIELD_SET, {"name": "size", "value": 1})
    assert [c.event_id for c in log.fold().conflicts] == [e.id]


def test_second_case_created_is_a_conflict_and_created_by_the_hub_too() -> None:
    log = Log()
    first = log.create(a=1)
    second = log.create(a=2)
    hub_made = log.add(HUB, T.CASE_CREATED, dict(first.body))
    state = log.fold()
    assert state.created_by == first.id
    assert dict(state.fields) == {"a": 1}
    assert state.service == "MZ-0031"
    assert state.applicant["name"] == "n"
    assert [c.event_id for c in state.conflicts] == [second.id, hub_made.id]
    assert "already created" in state.conflicts[0].reason
    assert "only the station may record case_created" in state.conflicts[1].reason


# -- materials ----------------------------------------------------------------------------------


def test_same_material_twice_is_harmless() -> None:
    log = at(S.SUBMITTED)
    first = log.material(1)
    log.material(1)
    state = log.fold()
    assert state.conflicts == ()
    assert [(m.sha256, m.added_by) for m in state.materials] == [(SHA[1], first.id)]


def test_a_known_material_can_answer_a_request_later() -> None:
    log = at(S.IN_REVIEW)
    log.material(1)
    log.add(HUB, T.SUPPLEMENT_REQUESTED, {"request": "r1", "what": "the same page, please"})
    log.material(1, answers="r1")
    state = log.fold()
    assert state.conflicts == ()
    assert state.supplements[0].answered_by == (SHA[1],)
    assert state.materials[0].answers is None  # the material itself keeps its first add


def test_example_5_answering_an_unknown_request_is_a_conflict() -> None:
    log = at(S.IN_REVIEW)
    e = log.material(1, answers="r9")
    state = log.fold()
    assert state.materials == ()
    assert state.conflicts[0].event_id == e.id
    assert "'r9'" in state.conflicts[0].reason


def test_supersede_keeps_the_old_material_and_links_the_new_one() -> None:
    log = at(S.NEEDS_SUPPLEMENT)
    log.material(1)
    log.material(2)
    sup = log.add(ST, T.MATERIAL_SUPERSEDED, {"sha256": SHA[1], "by": SHA[2], "reason": "blurred"})
    state = log.fold()
    assert state.conflicts == ()
    old, new = state.materials
    assert (old.superseded_by, old.replaced_by, old.superseded_reason) == (
        sup.id,
        SHA[2],
        "blurred",
    )
    assert new.superseded_by is None
    assert state.current_materials == (new,)


def test_hub_may_supersede_but_not_add() -> None:
    log = at(S.IN_REVIEW)
    log.material(1)
    log.add(HUB, T.MATERIAL_SUPERSEDED, {"sha256": SHA[1], "reason": "unreadable"})
    added = log.add(
        HUB,
        T.MATERIAL_ADDED,
        {"sha256": SHA[3], "kind": "k", "pages": 1, "size": 1, "mime": "application/pdf"},
    )
    state = log.fold()
    assert state.materials[0].superseded_reason == "unreadable"
    assert [c.event_id for c in state.conflicts] == [added.id]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"sha256": SHA[4]}, "not in the case"),
        ({"sha256": SHA[1], "by": SHA[4]}, "replacement"),
    ],
)
def test_supersede_of_unknown_material_is_a_conflict(body: dict[str, Any], reason: str) -> None:
    log = at(S.SUBMITTED)
    log.material(1)
    e = log.add(ST, T.MATERIAL_SUPERSEDED, body)
    state = log.fold()
    assert state.materials[0].superseded_by is None
    assert state.conflicts[0].event_id == e.id
    assert reason in state.conflicts[0].reason


def test_superseding_twice_is_a_conflict() -> None:
    log = at(S.SUBMITTED)
    log.material(1)
    first = log.add(ST, T.MATERIAL_SUPERSEDED, {"sha256": SHA[1]})
    second = log.add(ST, T.MATERIAL_SUPERSEDED, {"sha256": SHA[1], "reason": "again"})
    state = log.fold()
    assert state.materials[0].superseded_by == first.id
    assert [c.event_id for c in state.conflicts] == [second.id]


def test_supplement_request_rules() -> None:
    log = at(S.IN_REVIEW)
    log.add(HUB, T.SUPPLEMENT_REQUESTED, {"request": "r1", "what": "a"})
    again = log.add(HUB, T.SUPPLEMENT_REQUESTED, {"request": "r1", "what": "b"})
    by_station = log.add(ST, T.SUPPLEMENT_REQUESTED, {"request": "r2", "what": "c"})
    state = log.fold()
    assert [(r.id, r.what) for r in state.supplements] == [("r1", "a")]
    assert [c.event_id for c in state.conflicts] == [again.id, by_station.id]
