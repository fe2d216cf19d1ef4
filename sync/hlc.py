"""Hybrid logical clock (Kulkarni et al., 2014), packed into one integer.

A timestamp is ``(physical_ms << 16) | logical``: the physical part is milliseconds since the
Unix epoch, the logical part orders events within one millisecond. Packed this way, integer
order is timestamp order, and "add one" is the whole HLC tick: when the 16-bit logical part
overflows, the carry bumps the physical part by one millisecond, so the clock never stalls and
never goes backwards. Values stay below 2**63 so SQLite stores them as plain INTEGERs.

The clock is pure: the wall clock is an injected callable, and the store persists `last` and
passes it back after a restart. That is what keeps a station board without an RTC battery
monotonic across reboots, even when it wakes up believing it is 1970: the clock then counts on
from `last` until the wall clock (or the hub, see `absorb_hub`) catches up.

How the two sides use it:

- every new local event takes `now()`;
- the hub's clock (default `max_ahead_ms`) merges each station event's timestamp with
  `observe(hlc)`: a station clock more than `max_ahead_ms` ahead is clamped and counted
  (`clamped_count`, exported as a metric);
- a station's clock is made with ``max_ahead_ms=None``: its only peer is the hub, the county's
  reference clock, so it merges the hub's downlink events with `observe(hlc)` unclamped, and the
  hub time carried in acks with `absorb_hub(hlc)`. Clamping there would be harmful: a board
  freshly rebooted into 1970 would clamp every hub event and then stamp its answers *before*
  the requests they answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from sync.events import MAX_HLC, CaseModelError

LOGICAL_BITS: Final = 16
LOGICAL_MAX: Final = (1 << LOGICAL_BITS) - 1
MAX_PHYSICAL_MS: Final = MAX_HLC >> LOGICAL_BITS
#: Default bound on how far ahead of our wall clock a remote timestamp may be before it is
#: clamped: generous for NTP-less boards, small enough that one bad clock cannot drag a whole
#: county's ordering days into the future.
DEFAULT_MAX_AHEAD_MS: Final = 300_000


class ClockError(CaseModelError):
    """A timestamp or wall-clock reading is outside the packed HLC's range."""


def _check_int(value: object, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ClockError(f"{what}={value!r} must be an integer in [{lo}, {hi}]")
    return value


def pack(ms: int, logical: int) -> int:
    """Pack physical milliseconds and a logical counter into one HLC integer."""
    _check_int(ms, "hlc physical ms", 0, MAX_PHYSICAL_MS)
    _check_int(logical, "hlc logical", 0, LOGICAL_MAX)
    return (ms << LOGICAL_BITS) | logical


def unpack(h: int) -> tuple[int, int]:
    """Split an HLC integer into (physical_ms, logical)."""
    _check_int(h, "hlc", 0, MAX_HLC)
    return h >> LOGICAL_BITS, h & LOGICAL_MAX


def physical_ms(h: int) -> int:
    """The physical (millisecond) part of an HLC integer."""
    return unpack(h)[0]


def offset_estimate_ms(hub_hlc: int, wall_ms: int) -> int:
    """How far the hub's clock is ahead of a local wall-clock reading (negative: behind).

    For metrics and the health beacon. It includes the ack's transit time, so on 2G it is
    accurate to a few seconds, which is plenty to spot a board that thinks it is 1970.
    """
    return physical_ms(hub_hlc) - wall_ms


class HybridLogicalClock:
    """A monotonic HLC: every value from `now` or `observe` exceeds all it returned or saw.

    wall_ms:      returns the local wall clock in Unix milliseconds (e.g. ``time.time_ns() //
                  1_000_000``); it may jump backwards, the clock will not.
    last:         the value persisted by the store; restoring it keeps the clock monotonic.
    max_ahead_ms: a remote timestamp further ahead of our (hub-corrected) wall clock than this
                  is clamped to that bound before it is merged, and counted in `clamped_count`.
                  The event keeps its own timestamp; only our clock refuses to be dragged.
                  None: never clamp (a station, whose only peer is the hub).
    hub_offset_ms: an offset learned earlier from the hub (see `absorb_hub`); only meaningful
                  while the wall clock has not restarted (the daemon restarted, not the board).
    """

    __slots__ = ("_clamped", "_hub_offset_ms", "_last", "_max_ahead_ms", "_wall_ms")

    def __init__(
        self,
        *,
        wall_ms: Callable[[], int],
        last: int = 0,
        max_ahead_ms: int | None = DEFAULT_MAX_AHEAD_MS,
        hub_offset_ms: int = 0,
    ) -> None:
        if not callable(wall_ms):
            raise ClockError("wall_ms must be a callable returning Unix milliseconds")
        self._wall_ms = wall_ms
        self._last = _check_int(last, "HybridLogicalClock last", 0, MAX_HLC)
        self._max_ahead_ms = (
            None
            if max_ahead_ms is None
            else _check_int(max_ahead_ms, "max_ahead_ms", 0, MAX_PHYSICAL_MS)
        )
        self._hub_offset_ms = _check_int(
            hub_offset_ms, "hub_offset_ms", -MAX_PHYSICAL_MS, MAX_PHYSICAL_MS
        )
        self._clamped = 0

    @property
    def last(self) -> int:
        """The highest value returned or absorbed: what the store persists."""
        return self._last

    @property
    def clamped_count(self) -> int:
        """How many remote timestamps were too far ahead and were clamped (a metric)."""
        return self._clamped

    @property
    def hub_offset_ms(self) -> int:
        """The hub's clock minus our wall clock at the last `absorb_hub` (0 before any)."""
        return self._hub_offset_ms

    def _read_wall(self) -> int:
        raw = self._wall_ms()
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ClockError(f"wall_ms() returned {raw!r}; it must return integer milliseconds")
        return raw

    def _physical_now(self) -> int:
        """Our best idea of the time: the wall clock corrected by what the hub told us."""
        raw = self._read_wall()
        # A reading before the epoch (a board whose RTC is unset) is as useless as 0; clamp it
        # rather than fail, `last` carries the ordering anyway.
        return min(max(raw + self._hub_offset_ms, 0), MAX_PHYSICAL_MS)

    def _advance(self, candidate: int) -> int:
        if candidate > MAX_HLC:
            raise ClockError(
                f"hybrid logical clock would pass its maximum {MAX_HLC}; the persisted value "
                "is corrupt or a remote clock is absurd"
            )
        self._last = candidate
        return candidate

    def now(self) -> int:
        """A timestamp for a new local event."""
        # last + 1 is the HLC tick (logical + 1, carrying into the millisecond on overflow).
        return self._advance(max(self._last + 1, self._physical_now() << LOGICAL_BITS))

    def observe(self, remote: int) -> int:
        """Merge a timestamp received from another node; return a new local timestamp after it.

        A remote timestamp more than `max_ahead_ms` ahead of our wall clock is clamped to
        ``wall + max_ahead_ms`` first and counted. The clamp only protects our clock: an event
        carrying such a timestamp keeps it and folds in its place, so a station whose clock runs
        far ahead may see its events sort after the hub's replies (the metric says why).
        """
        _check_int(remote, "remote hlc", 0, MAX_HLC)
        wall = self._physical_now()
        if self._max_ahead_ms is not None:
            limit = min(wall + self._max_ahead_ms, MAX_PHYSICAL_MS)
            if remote >> LOGICAL_BITS > limit:
                self._clamped += 1
                remote = limit << LOGICAL_BITS
        return self._advance(max(self._last + 1, remote + 1, wall << LOGICAL_BITS))

    def absorb_hub(self, hub_hlc: int) -> None:
        """Take in the hub's clock from an ack: the hub is the county's reference time.

        Not clamped (the hub's clock is the one we trust), so a board that booted in 1970 jumps
        to the county's time at its first ack. The offset between the hub and our wall clock is
        remembered, so later local timestamps carry a sensible physical part instead of
        counting on from the last ack.
        """
        _check_int(hub_hlc, "hub hlc", 0, MAX_HLC)
        raw = self._read_wall()
        self._hub_offset_ms = max(
            -MAX_PHYSICAL_MS, min(offset_estimate_ms(hub_hlc, raw), MAX_PHYSICAL_MS)
        )
        self._last = max(self._last, hub_hlc)
