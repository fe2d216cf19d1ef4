"""The printer driver's data: its configuration, states, events, health and results, the
subscription that delivers events, and the errors beyond a broken link."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, Self

from devices.printer_transport import PrinterError
from protocols.escpos import PrinterStatus

__all__ = [
    "PrintJobTooLarge",
    "PrintResult",
    "PrinterClosed",
    "PrinterConfig",
    "PrinterEvent",
    "PrinterHealth",
    "PrinterQueueFull",
    "PrinterState",
    "Subscription",
    "state_of",
]


class PrinterQueueFull(PrinterError):
    """`submit` was refused: the queue holds as many jobs as it may."""


class PrinterClosed(PrinterError):
    """The driver was closed: pending jobs fail with it, subscriptions end with it."""


class PrintJobTooLarge(PrinterError):
    """A job over `PrinterConfig.max_job_bytes`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PrinterConfig:
    """Where the printer is and how the driver treats it (times in seconds).

    connection:  "serial" (a serial or USB-serial port at `port`) or "tcp" (raw port 9100).
    io_timeout:  how long a status reply or a write may take before the link counts as broken.
    queue_size:  jobs that may wait; a full queue refuses new jobs rather than growing.
    """

    connection: Literal["serial", "tcp"] = "serial"
    port: str = "/dev/cunlink-printer"
    baudrate: int = 9600
    host: str = ""
    tcp_port: int = 9100
    name: str = "printer"
    status_poll_seconds: float = 5.0
    io_timeout: float = 3.0
    queue_size: int = 32
    max_job_bytes: int = 1 << 20
    backoff_base: float = 0.5
    backoff_cap: float = 30.0

    def __post_init__(self) -> None:
        where = f"printer {self.name!r}"
        if self.connection not in ("serial", "tcp"):
            raise ValueError(f"{where}: connection {self.connection!r} is not serial or tcp")
        if self.connection == "serial" and not self.port:
            raise ValueError(f"{where}: a serial printer needs a port (e.g. /dev/ttyUSB0)")
        if self.connection == "tcp" and not self.host:
            raise ValueError(f"{where}: a TCP printer needs a host (its IP address)")
        if not 0 < self.tcp_port < 65536:
            raise ValueError(f"{where}: tcp_port {self.tcp_port} is outside 1..65535")
        if self.baudrate <= 0:
            raise ValueError(f"{where}: baudrate {self.baudrate} must be positive")
        for key in ("status_poll_seconds", "io_timeout", "backoff_base"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{where}: {key} must be positive, got {getattr(self, key)}")
        if self.backoff_cap < self.backoff_base:
            raise ValueError(f"{where}: backoff_cap must be at least backoff_base")
        if not 1 <= self.queue_size <= 10_000:
            raise ValueError(f"{where}: queue_size {self.queue_size} is outside 1..10000")
        if self.max_job_bytes < 1:
            raise ValueError(f"{where}: max_job_bytes must be positive")

    @property
    def address(self) -> str:
        return self.port if self.connection == "serial" else f"{self.host}:{self.tcp_port}"


class PrinterState(StrEnum):
    CONNECTING = "connecting"
    READY = "ready"
    PAPER_OUT = "paper_out"
    COVER_OPEN = "cover_open"
    OFFLINE = "offline"
    ERROR = "error"  # cutter or other printer-side error
    DISCONNECTED = "disconnected"
    CLOSED = "closed"


def state_of(status: PrinterStatus) -> PrinterState:
    """The one state a status reports; the operator's most actionable fault wins."""
    if status.paper_end:
        return PrinterState.PAPER_OUT
    if status.cover_open:
        return PrinterState.COVER_OPEN
    if status.cutter_error or status.unrecoverable_error or status.auto_recoverable_error:
        return PrinterState.ERROR
    if not status.online:
        return PrinterState.OFFLINE
    return PrinterState.READY


@dataclass(frozen=True, slots=True, kw_only=True)
class PrinterEvent:
    """A state change, delivered to subscribers."""

    state: PrinterState
    previous: PrinterState
    status: PrinterStatus | None
    message: str
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PrinterHealth:
    """A snapshot of the driver's health; times are wall-clock epoch seconds or None."""

    name: str
    address: str
    state: PrinterState
    status: PrinterStatus | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    last_success_at: float | None = None
    jobs_submitted: int = 0
    jobs_printed: int = 0
    jobs_failed: int = 0
    jobs_refused: int = 0
    write_errors: int = 0
    status_errors: int = 0
    connects: int = 0
    queue_depth: int = 0

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            k: getattr(self, k) for k in self.__dataclass_fields__ if k != "status"
        }
        out["state"] = self.state.value
        out["problems"] = list(self.status.problems) if self.status else []
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class PrintResult:
    job_id: int
    attempts: int
    printed_at: float


class Subscription:
    """Async iterator of `PrinterEvent`s; raises `PrinterClosed` when the driver closes.

    Its queue is bounded: a subscriber that falls behind loses the oldest events (the state
    in the newest one is what matters) and `dropped` counts them."""

    def __init__(self, bound: int) -> None:
        self._queue: deque[PrinterEvent | None] = deque()
        self._bound = bound
        self._ready = asyncio.Event()
        self._end = "the printer driver was closed"
        self.dropped = 0

    def _close(self, reason: str) -> None:
        if None not in self._queue:
            self._end = reason
            self._put(None)

    def _put(self, event: PrinterEvent | None) -> None:
        if event is not None and len(self._queue) >= self._bound:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(event)
        self._ready.set()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> PrinterEvent:
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        event = self._queue.popleft()
        if event is None:
            self._queue.appendleft(None)  # stay closed for the next call too
            raise PrinterClosed(self._end)
        return event
