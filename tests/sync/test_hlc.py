"""The hybrid logical clock: monotonic whatever the wall clock does, persisted, clamped."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync.events import MAX_HLC, CaseModelError
from sync.hlc import (
    LOGICAL_MAX,
    MAX_PHYSICAL_MS,
    ClockError,
    HybridLogicalClock,
    offset_estimate_ms,
    pack,
    physical_ms,
    unpack,
)


class FakeWall:
    """A wall clock the test sets by hand."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def test_pack_layout() -> None:
    assert pack(1, 0) == 1 << 16
    assert pack(1, 5) == (1 << 16) | 5
    assert unpack(pack(123_456, 789)) == (123_456, 789)
    assert physical_ms(pack(42, LOGICAL_MAX)) == 42
    assert pack(MAX_PHYSICAL_MS, LOGICAL_MAX) == MAX_HLC


@pytest.mark.parametrize(
    ("ms", "logical"), [(-1, 0), (0, -1), (0, LOGICAL_MAX + 1), (MAX_PHYSICAL_MS + 1, 0)]
)
def test_pack_rejects_out_of_range(ms: int, logical: int) -> None:
    with pytest.raises(ClockError, match="must be an integer in"):
        pack(ms, logical)


@pytest.mark.parametrize("h", [-1, MAX_HLC + 1, True, 1.5])
def test_unpack_rejects_out_of_range(h: int) -> None:
    with pytest.raises(ClockError):
        unpack(h)


def test_now_follows_the_wall_clock_and_ticks_within_a_millisecond() -> None:
    wall = FakeWall(1_000)
    clock = HybridLogicalClock(wall_ms=wall)
    assert clock.now() == pack(1_000, 0)
    assert clock.now() == pack(1_000, 1)
    wall.ms = 2_000
    assert clock.now() == pack(2_000, 0)


def test_wall_clock_jumping_backwards_never_moves_the_clock_back() -> None:
    wall = FakeWall(5_000_000)
    clock = HybridLogicalClock(wall_ms=wall)
    before = clock.now()
    wall.ms = 10  # NTP correction, or the board rebooted into 1970
    after = [clock.now() for _ in range(3)]
    assert before < after[0] < after[1] < after[2]
    assert all(physical_ms(h) == 5_000_000 for h in after)


def test_restored_from_persisted_last_stays_monotonic_across_reboot() -> None:
    first = HybridLogicalClock(wall_ms=FakeWall(9_000_000))
    for _ in range(5):
        first.now()
    persisted = first.last
    # The board has no RTC battery: after the reboot its wall clock reads near zero.
    second = HybridLogicalClock(wall_ms=FakeWall(3), last=persisted)
    assert second.last == persisted
    assert second.now() > persisted


def test_logical_overflow_carries_into_the_millisecond() -> None:
    clock = HybridLogicalClock(wall_ms=FakeWall(0), last=pack(7, LOGICAL_MAX - 1))
    assert clock.now() == pack(7, LOGICAL_MAX)
    assert clock.now() == pack(8, 0)
    assert clock.now() == pack(8, 1)


def test_observe_moves_past_the_remote_timestamp() -> None:
    clock = HybridLogicalClock(wall_ms=FakeWall(1_000))
    remote = pack(1_100, 9)  # 100 ms ahead: within the bound
    got = clock.observe(remote)
    assert got == remote + 1
    assert clock.now() > got
    assert clock.clamped_count == 0


def test_observe_of_an_older_timestamp_still_advances() -> None:
    clock = HybridLogicalClock(wall_ms=FakeWall(1_000))
    mine = clock.now()
    assert clock.observe(pack(10, 0)) > mine


def test_remote_too_far_ahead_is_clamped_and_counted() -> None:
    wall = FakeWall(1_000_000)
    clock = HybridLogicalClock(wall_ms=wall, max_ahead_ms=60_000)
    got = clock.observe(pack(1_000_000 + 3_600_000, 0))  # an hour ahead
    assert clock.clamped_count == 1
    assert physical_ms(got) == 1_000_000 + 60_000
    # Exactly at the bound is not clamped.
    clock.observe(pack(1_000_000 + 60_000, 0))
    assert clock.clamped_count == 1
    clock.observe(pack(1_000_000 + 60_001, 0))
    assert clock.clamped_count == 2


def test_absorb_hub_pulls_a_station_without_rtc_forward() -> None:
    wall = FakeWall(1_000)  # booted into 1970
    station = HybridLogicalClock(wall_ms=wall)
    hub_time = 1_795_305_600_000
    station.absorb_hub(pack(hub_time, 3))
    assert station.last == pack(hub_time, 3)
    assert station.hub_offset_ms == hub_time - 1_000
    assert station.clamped_count == 0  # the hub is trusted, never clamped
    wall.ms = 6_000  # five seconds later by the local oscillator
    assert physical_ms(station.now()) == hub_time + 5_000
    # The remote clamp is measured from the corrected time, not from 1970.
    station.observe(pack(hub_time + 10_000, 0))
    assert station.clamped_count == 0


def test_absorb_hub_never_moves_the_clock_back() -> None:
    clock = HybridLogicalClock(wall_ms=FakeWall(10_000))
    high = clock.now()
    clock.absorb_hub(pack(5_000, 0))  # the hub is behind us
    assert clock.last == high
    assert clock.now() > high


def test_offset_estimate() -> None:
    assert offset_estimate_ms(pack(10_000, 7), 9_000) == 1_000
    assert offset_estimate_ms(pack(10_000, 0), 12_500) == -2_500


def test_pre_epoch_wall_reading_is_treated_as_zero() -> None:
    clock = HybridLogicalClock(wall_ms=FakeWall(-5))
    assert clock.now() == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"last": -1}, "last"),
        ({"last": MAX_HLC + 1}, "last"),
        ({"max_ahead_ms": -1}, "max_ahead_ms"),
        ({"wall_ms": 5}, "callable"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"wall_ms": FakeWall(0), **kwargs}
    with pytest.raises(ClockError, match=match):
        HybridLogicalClock(**args)  # type: ignore[arg-type]


def test_wall_clock_returning_a_float_is_refused() -> None:
    clock = HybridLogicalClock(wall_ms=lambda: 1.5)  # type: ignore[arg-type, return-value]
    with pytest.raises(ClockError, match="integer milliseconds"):
        clock.now()


def test_clock_at_its_maximum_refuses_to_wrap() -> None:
    clock = HybridLogicalClock(wall_ms=FakeWall(0), last=MAX_HLC)
    with pytest.raises(ClockError, match="maximum"):
        clock.now()
    assert clock.last == MAX_HLC
    assert issubclass(ClockError, CaseModelError)


@pytest.mark.parametrize("bad", [-1, MAX_HLC + 1, "12"])
def test_observe_and_absorb_reject_out_of_range(bad: int) -> None:
    clock = HybridLogicalClock(wall_ms=FakeWall(0))
    with pytest.raises(ClockError):
        clock.observe(bad)
    with pytest.raises(ClockError):
        clock.absorb_hub(bad)
    assert clock.last == 0


ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("wall"), st.integers(min_value=-1000, max_value=10**13)),
        st.tuples(st.just("now"), st.just(0)),
        st.tuples(st.just("observe"), st.integers(min_value=0, max_value=pack(10**13, 0))),
        st.tuples(st.just("absorb"), st.integers(min_value=0, max_value=pack(10**13, 0))),
        st.tuples(st.just("reboot"), st.just(0)),
    ),
    max_size=60,
)


@given(ACTIONS)
def test_every_value_exceeds_everything_returned_or_observed(
    actions: list[tuple[str, int]],
) -> None:
    wall = FakeWall(0)
    clock = HybridLogicalClock(wall_ms=wall, max_ahead_ms=1_000)
    high = 0  # the largest value returned, observed (after clamping) or absorbed
    for action, value in actions:
        match action:
            case "wall":
                wall.ms = value
            case "now":
                got = clock.now()
                assert got > high
                high = got
            case "observe":
                clamped_before = clock.clamped_count
                got = clock.observe(value)
                assert got > high
                if clock.clamped_count == clamped_before:
                    assert got > value
                high = got
            case "absorb":
                clock.absorb_hub(value)
                assert clock.last == max(high, value)
                high = clock.last
            case "reboot":
                clock = HybridLogicalClock(wall_ms=wall, last=clock.last, max_ahead_ms=1_000)
        assert clock.last == high


def test_a_station_clock_never_clamps_the_hub() -> None:
    station = HybridLogicalClock(wall_ms=FakeWall(1_000), max_ahead_ms=None)  # 1970
    hub_event = pack(1_795_305_600_000, 4)
    got = station.observe(hub_event)
    assert got == hub_event + 1
    assert station.clamped_count == 0
    assert station.hub_offset_ms == 0  # an event's time is not "now" at the hub: no offset
