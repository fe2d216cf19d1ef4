"""Convergence: whatever the network does, replicas holding the same events hold the same state.

Two properties, both with hypothesis:

1. The fold is a function of the *set* of events: any arrival order, with duplicates, and every
   prefix of an arrival log, folds exactly like the same set in canonical order. Two replicas
   that receive the events split and shuffled end up identical.
2. A simulated station and hub, each with its own hybrid logical clock and wall clock (which
   jumps, reboots into 1970, and gets corrected by the hub's acks), make plausible and
   implausible events from what they currently see, over a network that reorders, duplicates,
   delays and drops; after anti-entropy both fold to the same state, and every event a node made
   carries a timestamp above everything that node had seen.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sync.events import Event, EventType
from sync.hlc import DEFAULT_MAX_AHEAD_MS, HybridLogicalClock
from sync.ids import uuid7
from sync.model import CaseState, Side, Status, fold
from sync.workflow import CLOSED, TRANSITIONS

CASE = "ST001-20261122-0007"
ST, HUB = "ST001", "HUB01"
HUBS = frozenset({HUB})
SHAS = [c * 64 for c in "abc"]
REQUESTS = ["r1", "r2"]
T = EventType
BASE_MS = 1_795_305_600_000

APPLICANT = {"id_type": "resident_id", "id_number": "1", "name": "n", "sex": "f"}


def body_for(t: EventType, pick: int) -> dict[str, Any]:
    """A valid body of type `t`; `pick` chooses among a few variants so events collide."""
    match t:
        case T.CASE_CREATED:
            return {"service": f"S{pick % 2}", "applicant": APPLICANT, "fields": {"a": pick % 3}}
        case T.FIELD_SET:
            return {"name": "ab"[pick % 2], "value": [1, "x", None][pick % 3]}
        case T.MATERIAL_ADDED:
            body: dict[str, Any] = {
                "sha256": SHAS[pick % 3],
                "kind": "k",
                "pages": 1 + pick % 2,
                "size": 10,
                "mime": "image/jpeg",
            }
            if pick % 4 == 3:
                body["answers"] = REQUESTS[pick % 2]
            return body
        case T.MATERIAL_SUPERSEDED:
            b: dict[str, Any] = {"sha256": SHAS[pick % 3]}
            if pick % 2:
                b["by"] = SHAS[(pick + 1) % 3]
            return b
        case T.SUPPLEMENT_REQUESTED:
            return {"request": REQUESTS[pick % 2], "what": "more"}
        case T.STATUS_CHANGED:
            return {"to": list(Status)[pick % len(Status)].value}
        case T.NOTE_ADDED:
            return {"text": f"note {pick}"}
    raise AssertionError(t)  # pragma: no cover


def make_event(
    n: int, origin: str, seq: int, hlc: int, t: EventType, body: dict[str, Any]
) -> Event:
    return Event(
        id=uuid7(BASE_MS + n, n.to_bytes(10, "big")),
        case=CASE,
        origin=origin,
        seq=seq,
        hlc=hlc,
        type=t,
        body=body,
    )


# A plausible spine (each step valid in order), so sets are not all noise.
SPINES = [
    [(ST, T.CASE_CREATED, 0)],
    [(ST, T.CASE_CREATED, 0), (ST, T.STATUS_CHANGED, 1), (HUB, T.STATUS_CHANGED, 3)],
    [
        (ST, T.CASE_CREATED, 0),
        (ST, T.STATUS_CHANGED, 1),  # submitted
        (HUB, T.STATUS_CHANGED, 3),  # received
        (HUB, T.STATUS_CHANGED, 4),  # in_review
        (HUB, T.SUPPLEMENT_REQUESTED, 0),
        (HUB, T.STATUS_CHANGED, 5),  # needs_supplement
        (ST, T.MATERIAL_ADDED, 3),  # answers r2... or not: noise decides
        (HUB, T.STATUS_CHANGED, 4),  # in_review
        (HUB, T.STATUS_CHANGED, 6),  # approved
        (HUB, T.STATUS_CHANGED, 8),  # completed
    ],
]


@st.composite
def event_sets(draw: st.DrawFn) -> list[Event]:
    """A spine of plausible events plus noise; HLCs from a small range so ties happen.

    Each noise event is drawn as one integer whose bit fields choose origin, type, body variant
    and HLC slot: one draw per event keeps generation fast and still shrinks towards simple.
    """
    spine = draw(st.sampled_from(SPINES))
    noise = draw(st.lists(st.integers(0, (1 << 16) - 1), max_size=14))
    types = list(EventType)
    events = []
    seq = {ST: 0, HUB: 0}
    for n, (origin, t, pick) in enumerate(spine):
        seq[origin] += 1
        events.append(make_event(n, origin, seq[origin], (n + 1) << 16, t, body_for(t, pick)))
    for n, x in enumerate(noise, start=len(spine)):
        origin = (ST, HUB)[x & 1]
        t = types[(x >> 1) % len(types)]
        hlc = ((x >> 8) % (len(spine) + 3) + 1) << 16
        seq[origin] += 1
        events.append(make_event(n, origin, seq[origin], hlc, t, body_for(t, (x >> 4) % 12)))
    return events


def canonical(events: list[Event]) -> CaseState:
    """The fold of the set, in the one order every replica agrees on."""
    return fold(sorted(set(events), key=Event.sort_key), hub_origins=HUBS)


@settings(max_examples=150, deadline=None)
@given(event_sets(), st.data())
def test_any_arrival_order_with_duplicates_folds_like_the_set(
    events: list[Event], data: st.DataObject
) -> None:
    extra = data.draw(st.lists(st.sampled_from(events), max_size=6), label="duplicates")
    arrival = [*events, *extra]
    data.draw(st.randoms(use_true_random=False), label="arrival").shuffle(arrival)
    assert fold(arrival, hub_origins=HUBS) == canonical(events)
    # Prefixes too: a replica that has seen part of the set agrees with any other that has
    # seen the same part, whatever order it came in.
    for cut in data.draw(st.lists(st.integers(1, len(arrival)), max_size=3), label="cuts"):
        prefix = arrival[:cut]
        assert fold(prefix, hub_origins=HUBS) == canonical(prefix)


@settings(max_examples=150, deadline=None)
@given(event_sets(), st.data())
def test_two_replicas_converge(events: list[Event], data: st.DataObject) -> None:
    station = [e for e in events if e.origin == ST]
    hub = [e for e in events if e.origin == HUB]
    # Each replica gets the other's events late, shuffled and some twice, interleaved with its
    # own; some of its own come back to it too (echoes after a resync).
    rnd = data.draw(st.randoms(use_true_random=False), label="network")
    echoes = data.draw(st.lists(st.sampled_from(events), max_size=8), label="echoes")
    to_station = hub + echoes[: len(echoes) // 2]
    to_hub = station + echoes[len(echoes) // 2 :]
    rnd.shuffle(to_station)
    rnd.shuffle(to_hub)
    station_log = interleave(station, to_station, rnd)
    hub_log = interleave(hub, to_hub, rnd)
    if not station_log or not hub_log:
        return
    a = fold(station_log, hub_origins=HUBS)
    b = fold(hub_log, hub_origins=HUBS)
    assert a == b
    assert a.event_count == len(set(events))
    assert_nothing_dropped(a, events)


def interleave(own: list[Event], incoming: list[Event], rnd: random.Random) -> list[Event]:
    """Own events in the order they were made, arrivals slotted in between at random."""
    flags = [True] * len(own) + [False] * len(incoming)
    rnd.shuffle(flags)
    mine, theirs = iter(own), iter(incoming)
    return [next(mine) if flag else next(theirs) for flag in flags]


def assert_nothing_dropped(state: CaseState, events: list[Event]) -> None:
    """Every event is reflected in the state or reported as a conflict. Field writes that a
    later write overwrote, and repeated adds of a known material, legitimately leave no trace
    of their own, so they are exempt."""
    ids = {e.id for e in events}
    exempt = {e.id for e in events if e.type in (T.FIELD_SET, T.MATERIAL_ADDED)}
    seen = accounted_for(state)
    assert seen <= ids
    assert ids - exempt <= seen


def accounted_for(state: CaseState) -> set[str]:
    """Event ids visible in a state: applied ones, or conflicts."""
    seen = {c.event_id for c in state.conflicts}
    seen |= {h.event_id for h in state.status_history}
    seen |= {m.added_by for m in state.materials}
    seen |= {m.superseded_by for m in state.materials if m.superseded_by}
    seen |= {r.requested_by for r in state.supplements}
    seen |= {n.event_id for n in state.notes}
    if state.created_by:
        seen.add(state.created_by)
    return seen


# -- a simulated station and hub -----------------------------------------------------------------


def max_ahead(side: Side) -> int | None:
    """The hub clamps station clocks; a station never clamps its hub (see sync.hlc)."""
    return None if side is Side.STATION else DEFAULT_MAX_AHEAD_MS


@dataclass
class Node:
    origin: str
    side: Side
    wall: list[int]  # boxed so the clock's callable sees changes
    clock: HybridLogicalClock
    known: dict[str, Event] = field(default_factory=dict)
    made: list[Event] = field(default_factory=list)
    clamped: bool = False  # ever clamped a remote timestamp (survives reboots, unlike the count)

    def reboot(self, *, wall_ms: int) -> None:
        """Power cycle: the wall clock restarts at `wall_ms`, the clock from its persisted value."""
        wall = self.wall
        wall[0] = wall_ms
        self.clock = HybridLogicalClock(
            wall_ms=lambda: wall[0], last=self.clock.last, max_ahead_ms=max_ahead(self.side)
        )

    def state(self) -> CaseState | None:
        return fold(self.known.values(), hub_origins=HUBS) if self.known else None


class World:
    def __init__(self) -> None:
        self.n = 0
        self.nodes = {
            ST: self._node(ST, Side.STATION, BASE_MS),
            HUB: self._node(HUB, Side.HUB, BASE_MS + 2_000),
        }
        self.wire: list[tuple[str, Event]] = []  # (destination, event) in flight

    @staticmethod
    def _node(origin: str, side: Side, ms: int) -> Node:
        wall = [ms]
        clock = HybridLogicalClock(wall_ms=lambda: wall[0], max_ahead_ms=max_ahead(side))
        return Node(origin, side, wall, clock)

    def make(self, node: Node, pick: int, *, implausible: bool) -> None:
        choice = self._choose(node, pick, implausible)
        if choice is None:
            return
        t, body = choice
        before = max((e.hlc for e in node.known.values()), default=0)
        self.n += 1
        e = make_event(self.n, node.origin, len(node.made) + 1, node.clock.now(), t, body)
        # Causality: a node's new event is after everything it has seen, unless it had to
        # clamp a remote clock (only the hub clamps: a station's clock ran too far ahead).
        if not node.clamped:
            assert e.hlc > before
        assert not node.made or e.hlc > node.made[-1].hlc
        node.made.append(e)
        node.known[e.id] = e
        other = HUB if node.origin == ST else ST
        self.wire.append((other, e))

    def _choose(self, node: Node, pick: int, implausible: bool) -> tuple[EventType, Any] | None:
        state = node.state()
        if implausible:
            t = list(EventType)[pick % len(EventType)]
            return t, body_for(t, pick // len(EventType))
        if state is None:
            if node.side is Side.HUB:
                return None
            return T.CASE_CREATED, body_for(T.CASE_CREATED, pick)
        moves = [
            to
            for (frm, to), side in TRANSITIONS.items()
            if frm is state.status and side is node.side
        ]
        # Mostly move the case along (withdraw only now and then), so runs reach review,
        # supplements and decisions rather than piling notes on a draft; ask for and send
        # supplements before moving on, often enough that whole rounds happen.
        fresh = [r for r in REQUESTS if r not in {q.id for q in state.supplements}]
        if node.side is Side.HUB and state.status is Status.IN_REVIEW and fresh and pick % 2:
            return T.SUPPLEMENT_REQUESTED, {"request": fresh[0], "what": "the other page"}
        if node.side is Side.STATION and state.open_requests and pick % 2:
            answer = {**body_for(T.MATERIAL_ADDED, pick), "answers": state.open_requests[0].id}
            return T.MATERIAL_ADDED, answer
        onward = [to for to in moves if to is not Status.WITHDRAWN or pick % 7 == 0]
        if onward and pick % 3:
            return T.STATUS_CHANGED, {"to": onward[pick % len(onward)].value}
        options: list[tuple[EventType, Any]] = [(T.NOTE_ADDED, {"text": "ok"})]
        if state.status not in CLOSED and node.side is Side.STATION:
            options.append((T.FIELD_SET, body_for(T.FIELD_SET, pick)))
            options.append((T.MATERIAL_ADDED, body_for(T.MATERIAL_ADDED, 0)))
        return options[pick % len(options)]

    def deliver(self, index: int) -> None:
        if not self.wire:
            return
        dest, e = self.wire.pop(index % len(self.wire))
        node = self.nodes[dest]
        before = node.clock.clamped_count
        node.clock.observe(e.hlc)
        node.clamped = node.clamped or node.clock.clamped_count > before
        node.known.setdefault(e.id, e)

    def anti_entropy(self) -> None:
        """What reconnecting does: each side offers everything, the other takes what it lacks."""
        for dest, e in self.wire:
            self.nodes[dest].known.setdefault(e.id, e)
        self.wire.clear()
        st_node, hub_node = self.nodes[ST], self.nodes[HUB]
        everything = {**st_node.known, **hub_node.known}
        st_node.known, hub_node.known = dict(everything), dict(everything)


# One step: (kind, node, pick, rare, wall delta). Kinds repeat to weight them: mostly making
# events and moving them, sometimes a network or clock accident.
KINDS = ["make"] * 5 + ["deliver"] * 3 + ["sync"] * 2
KINDS += ["duplicate", "drop", "wall", "reboot", "ack"]
STEPS = st.lists(
    st.tuples(
        st.sampled_from(KINDS),
        st.sampled_from([ST, HUB]),
        st.integers(0, 50),
        st.integers(0, 9),
        # Small drifts, and jumps past the hub's 300 s bound in both directions.
        st.sampled_from([-600_000, -5_000, -1, 0, 1, 5_000, 299_000, 400_000, 3_600_000]),
    ),
    min_size=10,
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(STEPS)
def test_simulated_station_and_hub_converge(steps: list[tuple[Any, ...]]) -> None:
    world = World()
    world.make(world.nodes[ST], 0, implausible=False)  # the case exists from the start
    for kind, origin, pick, rare, delta in steps:
        node = world.nodes[origin]
        match kind:
            case "make":
                world.make(node, pick, implausible=rare == 0)
            case "deliver":
                world.deliver(pick)
            case "sync":
                while world.wire:
                    world.deliver(0)
            case "duplicate" if world.wire:
                world.wire.append(world.wire[pick % len(world.wire)])
            case "drop" if world.wire:
                world.wire.pop(pick % len(world.wire))
            case "wall":
                node.wall[0] = max(0, node.wall[0] + delta)
            case "reboot":
                world.nodes[ST].reboot(wall_ms=0 if rare < 5 else world.nodes[ST].wall[0])
            case "ack":
                world.nodes[ST].clock.absorb_hub(world.nodes[HUB].clock.last)
    world.anti_entropy()
    a, b = world.nodes[ST].state(), world.nodes[HUB].state()
    assert a is not None and b is not None
    assert a == b
    made = [e for node in world.nodes.values() for e in node.made]
    assert a.event_count == len(made)
    assert_nothing_dropped(a, made)
