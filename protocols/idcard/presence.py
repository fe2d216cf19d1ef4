"""Card-presence debounce for a polling reader: one read per placement, not a stream.

A host polls find-card; each poll is a sighting (found or not). A card counts as placed after
`insert_after` sightings in a row and as gone after `remove_after` misses in a row, so a card
sliding onto the reader, or one flaky find while it lies there, neither triggers a second read
nor a false removal. The transitions are a table; thresholds promote a state when reached.
Pure: no clock, no I/O; the driver feeds it one sighting per poll.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

from protocols.idcard.errors import LocalProtocolError

__all__ = ["Action", "Presence", "PresenceTracker"]


class Presence(Enum):
    EMPTY = "empty"  # no card
    ARRIVING = "arriving"  # seen, fewer than insert_after times in a row
    PRESENT = "present"  # placed: it has been read (or the read was attempted)
    LEAVING = "leaving"  # present, missed fewer than remove_after times in a row


class Action(Enum):
    NONE = "none"
    READ = "read"  # the card just counted as placed: read it once
    REMOVED = "removed"  # the card just counted as gone


# (state, seen) -> next state. A repeat of the same state extends its streak.
_NEXT: Final = {
    (Presence.EMPTY, True): Presence.ARRIVING,
    (Presence.EMPTY, False): Presence.EMPTY,
    (Presence.ARRIVING, True): Presence.ARRIVING,
    (Presence.ARRIVING, False): Presence.EMPTY,
    (Presence.PRESENT, True): Presence.PRESENT,
    (Presence.PRESENT, False): Presence.LEAVING,
    (Presence.LEAVING, True): Presence.PRESENT,
    (Presence.LEAVING, False): Presence.LEAVING,
}
# A state whose streak reaches its threshold becomes another, with an action.
_PROMOTE: Final = {
    Presence.ARRIVING: (Presence.PRESENT, Action.READ),
    Presence.LEAVING: (Presence.EMPTY, Action.REMOVED),
}


class PresenceTracker:
    """Feed `sighting(found)` once per poll; act on the returned `Action`."""

    def __init__(self, *, insert_after: int, remove_after: int) -> None:
        if insert_after < 1 or remove_after < 1:
            raise LocalProtocolError(
                f"presence thresholds must be >= 1, got insert_after={insert_after} "
                f"remove_after={remove_after}"
            )
        self._threshold = {Presence.ARRIVING: insert_after, Presence.LEAVING: remove_after}
        self.state = Presence.EMPTY
        self.streak = 0

    def sighting(self, found: bool) -> Action:
        nxt = _NEXT[(self.state, found)]
        self.streak = self.streak + 1 if nxt is self.state else 1
        self.state = nxt
        if nxt in _PROMOTE and self.streak >= self._threshold[nxt]:
            self.state, action = _PROMOTE[nxt]
            self.streak = 0
            return action
        return Action.NONE
