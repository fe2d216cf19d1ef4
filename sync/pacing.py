"""How fast and how much to send: adaptive chunk size, reconnect backoff, the daily byte budget.

Pure arithmetic with time and randomness passed in, so the transfer engine stays readable and
these rules are tested without a network.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True, kw_only=True)
class ChunkSizer:
    """Chunk size that takes about ``target_seconds`` on the measured link.

    Throughput is measured from hub confirmations (bytes the hub says it holds), not from
    socket writes: a write only proves the kernel took the bytes. A smaller chunk wastes less
    when the link is cut; a larger one costs fewer per-message overheads. The size stays within
    ``[minimum, maximum]`` (the maximum is bounded by the broker's packet limit) and is rounded
    to 1 KiB so it does not jitter.

    On a link that breaks often the chunk also shrinks to ``1/lifetime_share`` of how long a
    connection lasts (the median of the last few): a cut throws away the half-sent chunk, so on
    a link cut every few seconds a chunk of a few seconds would waste a large share of it.
    """

    minimum: int
    maximum: int
    target_seconds: float
    window_seconds: float = 20.0
    lifetime_share: float = 16.0
    lifetimes_kept: int = 9
    _samples: deque[tuple[float, int]] = field(default_factory=deque)
    _lifetimes: deque[float] = field(default_factory=deque)
    _size: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.minimum <= self.maximum:
            raise ValueError("chunk sizes need 0 < minimum <= maximum")
        self._size = self.minimum

    @property
    def size(self) -> int:
        return self._size

    def confirmed(self, now: float, nbytes: int) -> None:
        """The hub confirmed ``nbytes`` more at time ``now`` (seconds, monotonic)."""
        if nbytes <= 0:
            return
        self._samples.append((now, nbytes))
        while self._samples and now - self._samples[0][0] > self.window_seconds:
            self._samples.popleft()
        rate = self.rate(now)
        if rate is not None:
            want = int(rate * self.chunk_seconds) // 1024 * 1024
            self._size = max(self.minimum, min(self.maximum, want))

    @property
    def chunk_seconds(self) -> float:
        """Seconds of transfer a chunk should take: the target, less on a link cut often."""
        if not self._lifetimes:
            return self.target_seconds
        ordered = sorted(self._lifetimes)
        median = ordered[len(ordered) // 2]
        return min(self.target_seconds, median / self.lifetime_share)

    def connection_ended(self, lifetime: float) -> None:
        """A connection broke after ``lifetime`` seconds (not counted: a clean stop)."""
        self._lifetimes.append(max(0.0, lifetime))
        while len(self._lifetimes) > self.lifetimes_kept:
            self._lifetimes.popleft()

    def rate(self, now: float) -> float | None:
        """Bytes per second over the sample window, or None before two samples."""
        if len(self._samples) < 2:
            return None
        span = now - self._samples[0][0]
        if span <= 0:
            return None
        return sum(n for _, n in list(self._samples)[1:]) / span

    def link_reset(self) -> None:
        """After a reconnect old samples describe a connection that no longer exists."""
        self._samples.clear()


@dataclass(slots=True, kw_only=True)
class Backoff:
    """Exponential backoff with full jitter (AWS architecture blog): thousands of stations that
    lost the county at the same moment must not come back in lock-step."""

    initial: float
    maximum: float
    attempt: int = 0

    def next_delay(self, random01: float) -> float:
        ceiling = min(self.maximum, self.initial * (2.0**self.attempt))
        self.attempt = min(self.attempt + 1, 30)
        return float(ceiling * random01)

    def reset(self) -> None:
        self.attempt = 0


@dataclass(slots=True, kw_only=True)
class DailyBudget:
    """Bytes of material blobs allowed per UTC day on a metered SIM (0 = unlimited).

    Control messages and case events are never held back by the budget: they are small, and a
    case that cannot even announce itself is worse than an overspent day.
    """

    limit: int
    day: int = 0
    used: int = 0

    def _roll(self, day: int) -> None:
        if day != self.day:
            self.day, self.used = day, 0

    def allows(self, day: int, nbytes: int) -> bool:
        self._roll(day)
        return self.limit <= 0 or self.used + nbytes <= self.limit

    def spend(self, day: int, nbytes: int) -> None:
        self._roll(day)
        self.used += nbytes

    def remaining(self, day: int) -> int | None:
        self._roll(day)
        return None if self.limit <= 0 else max(0, self.limit - self.used)
