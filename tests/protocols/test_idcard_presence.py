"""Card-presence debounce: one read per placement, removal only after enough misses."""

from __future__ import annotations

import pytest

from protocols.idcard import LocalProtocolError
from protocols.idcard.presence import Action, Presence, PresenceTracker


def run(tracker: PresenceTracker, sightings: str) -> list[Action]:
    return [tracker.sighting(s == "+") for s in sightings]


def test_one_read_per_placement_despite_flaky_finds() -> None:
    tracker = PresenceTracker(insert_after=2, remove_after=3)
    actions = run(tracker, "-+-++++-+--+++---+-")
    assert actions.count(Action.READ) == 1
    assert actions.index(Action.READ) == 4  # "+-" does not count; "++" does
    assert actions.count(Action.REMOVED) == 1
    assert actions.index(Action.REMOVED) == 16  # "---" after the card stayed through "-+--+"
    assert tracker.state is Presence.EMPTY


def test_thresholds_of_one_react_at_once() -> None:
    tracker = PresenceTracker(insert_after=1, remove_after=1)
    assert run(tracker, "+-+") == [Action.READ, Action.REMOVED, Action.READ]


def test_every_state_and_sighting_has_a_transition() -> None:
    for state in Presence:
        for seen in (True, False):
            tracker = PresenceTracker(insert_after=5, remove_after=5)
            tracker.state = state
            tracker.sighting(seen)  # raises KeyError if the table misses a pair
            assert tracker.state in Presence
    with pytest.raises(LocalProtocolError):
        PresenceTracker(insert_after=0, remove_after=1)
