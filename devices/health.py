"""Per-device health: the state table, the snapshot the daemon and metrics read, and backoff.

A device is in one of four states:

- ``starting``: supervised, but nothing has succeeded since the supervisor started it;
- ``ok``: its last operation succeeded;
- ``degraded``: reachable but reporting a problem (paper out, cover open), or it failed and is
  being reconnected, fewer than `down_after` times in a row;
- ``down``: it failed `down_after` times in a row (unplugged, powered off, wrong port).

The transitions live in one table and one function, so what moves a device from one state to
another can be read in a glance and tested exhaustively.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "DeviceError",
    "DeviceHealth",
    "DeviceState",
    "HealthEvent",
    "backoff_delay",
    "next_state",
]


class DeviceError(Exception):
    """Root of the errors raised by `devices/`: a device could not do what was asked.

    Messages say what happened, to which device (path, address), and what to do about it.
    """


class DeviceState(StrEnum):
    STARTING = "starting"
    OK = "ok"
    DEGRADED = "degraded"
    DOWN = "down"


class HealthEvent(StrEnum):
    SUCCESS = "success"  # an operation or probe succeeded
    PROBLEM = "problem"  # the device answered but reports it cannot work (paper out …)
    FAILURE = "failure"  # the device task failed, fewer than `down_after` times in a row
    FAILURE_LIMIT = "failure_limit"  # … `down_after` or more times in a row


# Every (state, event) pair has an entry: a missing one would be a bug in this table, not a
# device condition, so `next_state` raises KeyError rather than guessing.
_TRANSITIONS: dict[tuple[DeviceState, HealthEvent], DeviceState] = {
    (DeviceState.STARTING, HealthEvent.SUCCESS): DeviceState.OK,
    (DeviceState.STARTING, HealthEvent.PROBLEM): DeviceState.DEGRADED,
    # A device that never came up stays "starting" through its first few retries: a reader
    # that takes two probes to answer at boot is not worth an alert.
    (DeviceState.STARTING, HealthEvent.FAILURE): DeviceState.STARTING,
    (DeviceState.STARTING, HealthEvent.FAILURE_LIMIT): DeviceState.DOWN,
    (DeviceState.OK, HealthEvent.SUCCESS): DeviceState.OK,
    (DeviceState.OK, HealthEvent.PROBLEM): DeviceState.DEGRADED,
    (DeviceState.OK, HealthEvent.FAILURE): DeviceState.DEGRADED,
    (DeviceState.OK, HealthEvent.FAILURE_LIMIT): DeviceState.DOWN,
    (DeviceState.DEGRADED, HealthEvent.SUCCESS): DeviceState.OK,
    (DeviceState.DEGRADED, HealthEvent.PROBLEM): DeviceState.DEGRADED,
    (DeviceState.DEGRADED, HealthEvent.FAILURE): DeviceState.DEGRADED,
    (DeviceState.DEGRADED, HealthEvent.FAILURE_LIMIT): DeviceState.DOWN,
    (DeviceState.DOWN, HealthEvent.SUCCESS): DeviceState.OK,
    (DeviceState.DOWN, HealthEvent.PROBLEM): DeviceState.DEGRADED,
    (DeviceState.DOWN, HealthEvent.FAILURE): DeviceState.DOWN,
    (DeviceState.DOWN, HealthEvent.FAILURE_LIMIT): DeviceState.DOWN,
}


def next_state(state: DeviceState, event: HealthEvent) -> DeviceState:
    """The state after `event` in `state`, from the transition table."""
    return _TRANSITIONS[(state, event)]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceHealth:
    """A point-in-time copy of one device's health; safe to hand to other tasks.

    Times are wall-clock seconds since the epoch (for display and metrics), or None if the
    thing has not happened yet. `last_error` is a device-level message: it never carries
    personal data because drivers never put any into their exceptions.
    `detail` holds short device facts for display, e.g. ``("sam_id", "05.01-…")``.
    """

    name: str
    kind: str
    state: DeviceState
    last_error: str | None = None
    last_error_at: float | None = None
    last_success_at: float | None = None
    successes: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    reconnects: int = 0
    detail: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a device health record needs a non-empty device name")
        for counter in ("successes", "failures", "consecutive_failures", "reconnects"):
            if getattr(self, counter) < 0:
                raise ValueError(f"device {self.name!r}: {counter} cannot be negative")

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form, for `cunlink devices list --json` and the local API."""
        return {
            "name": self.name,
            "kind": self.kind,
            "state": self.state.value,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "last_success_at": self.last_success_at,
            "successes": self.successes,
            "failures": self.failures,
            "consecutive_failures": self.consecutive_failures,
            "reconnects": self.reconnects,
            "detail": dict(self.detail),
        }


def backoff_delay(
    failures: int, *, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait before the next attempt after `failures` consecutive failures.

    Exponential with full jitter (uniform in [0, min(cap, base * 2**(failures-1))]): spreading
    retries over the whole window keeps a roomful of replugged devices, or a fleet of stations
    after a power cut, from retrying in lock-step.
    """
    if failures < 1:
        raise ValueError(f"backoff needs at least one failure, got {failures}")
    if base <= 0 or cap < base:
        raise ValueError(f"backoff needs 0 < base <= cap, got base={base} cap={cap}")
    # Bound the exponent: 2**64 seconds is already past any cap, and avoids float overflow.
    ceiling = min(cap, base * 2.0 ** min(failures - 1, 64))
    return (rng or random).uniform(0.0, ceiling)
