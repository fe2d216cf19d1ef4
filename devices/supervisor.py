"""The device supervisor: each configured device runs as a named task, restarted after failures.

A device task is an async callable that takes a `HealthRecorder`, opens its device, and works
until something goes wrong, reporting successes (and device-side problems such as paper out) on
the recorder as it goes. When it raises, the supervisor records the error, waits an exponential
backoff with full jitter, and runs it again: that is how an unplugged reader or a camera service
that restarts comes back without anyone touching the daemon. A task's failure never reaches the
other devices or the daemon; cancellation (shutdown) always does.

    async with Supervisor() as sup:
        sup.start("camera", "camera", camera.watch)
        ...
        sup.snapshot()      # tuple of DeviceHealth, for the API, metrics and the beacon
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Self

from devices.health import (
    DeviceError,
    DeviceHealth,
    DeviceState,
    HealthEvent,
    backoff_delay,
    next_state,
)

__all__ = ["DeviceTask", "HealthRecorder", "Supervisor", "SupervisorError", "SupervisorPolicy"]

log = logging.getLogger(__name__)


class SupervisorError(DeviceError):
    """The supervisor was used out of order (not entered, a name given twice …)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorPolicy:
    """How the supervisor retries.

    backoff_base / backoff_cap: seconds; the wait after n failures in a row is uniform in
    [0, min(cap, base * 2**(n-1))].
    down_after: failures in a row after which a device counts as down (and alerts fire).
    """

    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    down_after: int = 3

    def __post_init__(self) -> None:
        if not 0 < self.backoff_base <= self.backoff_cap:
            raise ValueError(
                f"supervisor policy: need 0 < backoff_base <= backoff_cap, got "
                f"{self.backoff_base} and {self.backoff_cap}"
            )
        if self.down_after < 1:
            raise ValueError(f"supervisor policy: down_after must be >= 1, got {self.down_after}")


class HealthRecorder:
    """One device's live health, written by its task and the supervisor, read as snapshots.

    Used from the event loop thread only (drivers report from their coroutines, not from their
    I/O threads), so it needs no lock.
    """

    def __init__(
        self, *, name: str, kind: str, changed: Callable[[], None], clock: Callable[[], float]
    ) -> None:
        self._health = DeviceHealth(name=name, kind=kind, state=DeviceState.STARTING)
        self._changed = changed
        self._clock = clock

    @property
    def name(self) -> str:
        return self._health.name

    def snapshot(self) -> DeviceHealth:
        return self._health

    def success(self, **detail: str) -> None:
        """An operation or probe succeeded; `detail` replaces the device facts if given."""
        h = self._health
        self._set(
            replace(
                h,
                state=next_state(h.state, HealthEvent.SUCCESS),
                last_success_at=self._clock(),
                successes=h.successes + 1,
                consecutive_failures=0,
                detail=tuple(sorted(detail.items())) if detail else h.detail,
            )
        )

    def problem(self, message: str, **detail: str) -> None:
        """The device answered but cannot work (paper out, cover open): degraded, not failed."""
        h = self._health
        self._set(
            replace(
                h,
                state=next_state(h.state, HealthEvent.PROBLEM),
                last_error=message,
                last_error_at=self._clock(),
                detail=tuple(sorted(detail.items())) if detail else h.detail,
            )
        )

    def failure(self, message: str, *, down_after: int) -> None:
        """The device task failed; the supervisor calls this before it backs off."""
        h = self._health
        consecutive = h.consecutive_failures + 1
        event = HealthEvent.FAILURE_LIMIT if consecutive >= down_after else HealthEvent.FAILURE
        self._set(
            replace(
                h,
                state=next_state(h.state, event),
                last_error=message,
                last_error_at=self._clock(),
                failures=h.failures + 1,
                consecutive_failures=consecutive,
            )
        )

    def restarted(self) -> None:
        self._set(replace(self._health, reconnects=self._health.reconnects + 1))

    def _set(self, health: DeviceHealth) -> None:
        self._health = health
        self._changed()


DeviceTask = Callable[[HealthRecorder], Awaitable[None]]


class Supervisor:
    """Runs device tasks in one TaskGroup, restarts them with backoff, keeps their health.

    An async context manager: leaving it cancels every device task and waits for each to close
    its device. Not re-entrant.
    """

    def __init__(
        self,
        *,
        policy: SupervisorPolicy | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._policy = policy or SupervisorPolicy()
        self._rng = rng or random.Random()
        self._clock = clock
        self._recorders: dict[str, HealthRecorder] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._group: asyncio.TaskGroup | None = None
        self._changed = asyncio.Event()
        self._entered = False

    async def __aenter__(self) -> Self:
        if self._entered:
            raise SupervisorError("this supervisor is already running; create a new one")
        self._entered = True
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        for task in self._tasks.values():
            task.cancel()
        group, self._group = self._group, None
        assert group is not None  # set in __aenter__, which must have succeeded
        await group.__aexit__(exc_type, exc, tb)
        return None

    def start(self, name: str, kind: str, task: DeviceTask) -> None:
        """Run `task` under supervision as the asyncio task ``device:<name>``."""
        if self._group is None:
            raise SupervisorError(f"cannot start device {name!r}: the supervisor is not running")
        if name in self._recorders:
            raise SupervisorError(f"device {name!r} is already supervised; names must be unique")
        recorder = HealthRecorder(name=name, kind=kind, changed=self._notify, clock=self._clock)
        self._recorders[name] = recorder
        self._tasks[name] = self._group.create_task(
            self._supervise(recorder, task), name=f"device:{name}"
        )
        self._notify()

    async def stop(self, name: str) -> bool:
        """Stop supervising `name` (cancel its task, wait for it to close the device), so it can
        be started again with new settings (SIGHUP). False if no such device was running."""
        task = self._tasks.pop(name, None)
        self._recorders.pop(name, None)
        if task is None:
            return False
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        self._notify()
        return True

    def snapshot(self) -> tuple[DeviceHealth, ...]:
        """Every supervised device's health, in the order they were started."""
        return tuple(r.snapshot() for r in self._recorders.values())

    def health(self, name: str) -> DeviceHealth:
        try:
            return self._recorders[name].snapshot()
        except KeyError:
            raise SupervisorError(
                f"no supervised device named {name!r}; known: {sorted(self._recorders)}"
            ) from None

    async def wait_for(self, name: str, predicate: Callable[[DeviceHealth], bool]) -> DeviceHealth:
        """Wait until `name`'s health satisfies `predicate` (bound it with asyncio.timeout)."""
        while not predicate(health := self.health(name)):
            await self._changed.wait()
        return health

    def _notify(self) -> None:
        # One Event per generation of changes: setting it wakes every current waiter, and the
        # fresh one makes the next waiters sleep until the next change.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _supervise(self, recorder: HealthRecorder, task: DeviceTask) -> None:
        policy = self._policy
        first = True
        while True:
            if not first:
                recorder.restarted()
            first = False
            try:
                await task(recorder)
                message = "the device task stopped without an error; restarting it"
                is_device_error = True
            except Exception as exc:  # one device's fault must not stop the others
                is_device_error = isinstance(exc, DeviceError)
                message = str(exc) if is_device_error else f"{type(exc).__name__}: {exc}"
            recorder.failure(message, down_after=policy.down_after)
            health = recorder.snapshot()
            delay = backoff_delay(
                health.consecutive_failures,
                base=policy.backoff_base,
                cap=policy.backoff_cap,
                rng=self._rng,
            )
            # Unexpected exceptions are bugs in a driver: keep their type in the log so they can
            # be found; device errors are routine (unplugged) and need no traceback.
            log.warning(
                "device %s %s (failure %d in a row, state %s); retrying in %.1f s: %s",
                recorder.name,
                "failed" if is_device_error else "crashed",
                health.consecutive_failures,
                health.state.value,
                delay,
                message,
            )
            await asyncio.sleep(delay)
