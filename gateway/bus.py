"""The station's in-process events and its recent errors, shown to terminals and technicians.

`EventBus` fans station events (card inserted, capture done, link up, a county answer) out to
every WebSocket terminal through bounded per-subscriber queues: a terminal too slow to read
loses its oldest messages and is told so; the daemon never waits for it. `RecentErrors` keeps
the last warnings for `cunlink status`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any, Self

#: Messages one WebSocket subscriber may have waiting before the oldest are dropped.
SUBSCRIBER_QUEUE = 256
#: Most terminals (WebSocket subscribers) at once: each costs a queue.
MAX_SUBSCRIBERS = 64
#: Recent warnings and errors kept for `status()`.
RECENT_ERRORS = 20


def iso_utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class BusFull(RuntimeError):
    """Too many subscribers at once."""


class Subscription:
    """One subscriber's bounded queue; `get()` waits for the next message (a dict with
    `type` and `data`). After drops, the next message is ``{"type": "lagged", ...}``."""

    def __init__(self, bus: EventBus, size: int) -> None:
        self._bus = bus
        self._queue: deque[dict[str, Any]] = deque(maxlen=size)
        self._ready = asyncio.Event()
        self.dropped = 0  # since the last `lagged` message
        self.dropped_total = 0

    def _put(self, message: dict[str, Any]) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
            self.dropped_total += 1
        self._queue.append(message)  # a full deque drops its oldest: never blocks the daemon
        self._ready.set()

    async def get(self) -> dict[str, Any]:
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        if self.dropped:
            lagged = {"type": "lagged", "data": {"dropped": self.dropped}}
            self.dropped = 0
            return lagged
        return self._queue.popleft()

    def pending(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        self._bus._subscribers.discard(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Fan-out of station events to every subscriber; `publish` never waits."""

    def __init__(self, *, queue_size: int = SUBSCRIBER_QUEUE,
                 max_subscribers: int = MAX_SUBSCRIBERS) -> None:
        self._queue_size = queue_size
        self._max = max_subscribers
        self._subscribers: set[Subscription] = set()
        self.published = 0

    def subscribe(self) -> Subscription:
        if len(self._subscribers) >= self._max:
            raise BusFull(f"{self._max} event subscribers already; close an idle terminal")
        sub = Subscription(self, self._queue_size)
        self._subscribers.add(sub)
        return sub

    def publish(self, type_: str, data: dict[str, Any]) -> None:
        self.published += 1
        message = {"type": type_, "data": data, "at": iso_utc(time.time())}
        for sub in list(self._subscribers):
            sub._put(message)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)


# -- recent errors ----------------------------------------------------------------------------


class RecentErrors(logging.Handler):
    """Keeps the last WARNING-or-worse records (time, where, message) for `status()`.

    Log messages never carry personal data (the drivers and the store make sure of that), so
    they may be shown to the technician as they are."""

    def __init__(self, size: int = RECENT_ERRORS) -> None:
        super().__init__(level=logging.WARNING)
        self.records: deque[dict[str, str]] = deque(maxlen=size)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not break logging
            message = str(record.msg)
        where = record.name.removeprefix("cunlink.").split(".")[-1]
        self.records.append({"at": iso_utc(record.created), "where": where,
                             "level": record.levelname.lower(), "message": message[:300]})
        self.count += 1

    def snapshot(self) -> list[dict[str, str]]:
        return list(self.records)
