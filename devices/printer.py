"""The receipt-printer driver: a queue of print jobs in front of a serial or TCP 9100 printer.

    async with Printer(PrinterConfig(connection="tcp", host="10.0.0.7")) as printer:
        async with printer.subscribe() as events:   # state changes: paper out, cover open …
            job = printer.submit(receipt.to_bytes())
            await job                                 # done when the printer confirmed it

Jobs wait in a bounded in-memory queue (`PrinterQueueFull` when it is full) and are sent one at
a time, each only after a status query (`DLE EOT 1..4`) shows the printer ready. A job is done
when the printer, after receiving all of it, answers a status query in a ready state: the
query goes down the same line after the job, so the answer proves the printer has the whole job
and can print it (a printer that runs out of paper mid-receipt keeps the rest and resumes when
paper is loaded). When the printer
is out of paper, has its cover open or is offline, jobs wait and go out when it recovers; when a
write fails, the driver reconnects with backoff and sends the job again. A job is never dropped
while the driver runs: it fails only when the driver is closed. The price of never losing a
receipt is that a job interrupted mid-write may print twice.

`run_session` is one connection's lifetime and fits `devices.supervisor` as a device task;
entering the `Printer` instead runs sessions itself with the same backoff. Blocking serial I/O
runs in one owner thread; TCP uses asyncio streams. ESC/POS bytes come from `protocols.escpos`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Self

from devices.health import backoff_delay
from devices.printer_model import (
    PrinterClosed,
    PrinterConfig,
    PrinterEvent,
    PrinterHealth,
    PrinterQueueFull,
    PrinterState,
    PrintJobTooLarge,
    PrintResult,
    Subscription,
    state_of,
)
from devices.printer_transport import (
    PrinterConnectionError,
    PrinterError,
    SerialTransport,
    TcpTransport,
    Transport,
)
from devices.supervisor import HealthRecorder
from protocols.escpos import EscposStatusError, PrinterStatus, decode_status, status_query
from protocols.escpos_status import ErrorReply, OfflineReply, PaperReply, PrinterReply

__all__ = [
    "PrintJob",
    "PrintJobTooLarge",
    "PrintResult",
    "Printer",
    "PrinterClosed",
    "PrinterConfig",
    "PrinterConnectionError",
    "PrinterError",
    "PrinterEvent",
    "PrinterHealth",
    "PrinterQueueFull",
    "PrinterState",
    "Subscription",
]

log = logging.getLogger(__name__)

_STATUS_QUERIES = b"".join(status_query(n) for n in (1, 2, 3, 4))


@dataclass(eq=False, slots=True, kw_only=True)
class PrintJob:
    """A queued job; await it for its `PrintResult` (or the error that ended it).

    Cancelling the awaiting task does not cancel the job: once submitted, it prints."""

    id: int
    data: bytes = field(repr=False)  # the receipt itself stays out of logs and reprs
    label: str
    future: asyncio.Future[PrintResult]
    attempts: int = 0

    def __await__(self) -> Generator[Any, None, PrintResult]:
        return asyncio.shield(self.future).__await__()

    def done(self) -> bool:
        return self.future.done()


class Printer:
    """The driver. An async context manager that runs its own connection loop; or give
    `run_session` to a `Supervisor` and call `close()` at shutdown. Not re-entrant."""

    def __init__(self, config: PrinterConfig) -> None:
        self.config = config
        self._queue: deque[PrintJob] = deque()
        self._wake = asyncio.Event()
        self._subscribers: set[Subscription] = set()
        self._ids = itertools.count(1)
        self._health = PrinterHealth(name=config.name, address=config.address,
                                     state=PrinterState.CONNECTING)
        self._session_lock = asyncio.Lock()
        self._runner: asyncio.Task[None] | None = None
        self._entered = False
        self._closed = False

    # --- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._entered or self._closed:
            raise PrinterError(f"printer {self.config.name!r} driver was already started; "
                               "create a new Printer")
        self._entered = True
        self._runner = asyncio.create_task(self._run_forever(),
                                           name=f"printer:{self.config.name}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop; jobs still queued fail with `PrinterClosed`; subscriptions end."""
        if self._runner is not None:
            self._runner.cancel()
            # asyncio.wait, not await: a cancellation of close() itself must still propagate.
            await asyncio.wait([self._runner])
            self._runner = None
        if self._closed:
            return
        self._closed = True
        while self._queue:
            job = self._queue.popleft()
            self._count(jobs_failed=1)
            error = PrinterClosed(
                f"print job {job.id} ({job.label or 'unlabelled'}) was not printed: the printer "
                f"driver for {self.config.address} stopped; submit it again after restart")
            log.warning("printer %s: %s", self.config.name, error)
            job.future.set_exception(error)
            # Logged just above; a submitter that stopped waiting need not retrieve it too.
            job.future.exception()
        self._set_state(PrinterState.CLOSED, None, "driver closed")
        for sub in self._subscribers:
            sub._close("the printer driver was closed")
        self._wake.set()

    # --- the public surface ------------------------------------------------------------------

    def submit(self, data: bytes, *, label: str = "") -> PrintJob:
        """Queue `data` (a whole ESC/POS job) for printing; returns at once."""
        if self._closed:
            raise PrinterClosed(f"printer {self.config.name!r} driver is closed; not queued")
        if not data or len(data) > self.config.max_job_bytes:
            raise PrintJobTooLarge(
                f"print job of {len(data)} bytes for printer {self.config.name!r}: a job must "
                f"hold 1..{self.config.max_job_bytes} bytes")
        if len(self._queue) >= self.config.queue_size:
            self._count(jobs_refused=1)
            raise PrinterQueueFull(
                f"print queue of printer {self.config.name!r} ({self.config.address}) is full: "
                f"{len(self._queue)} jobs wait while the printer is {self._health.state.value}; "
                "fix the printer (paper, cover, cable) and submit again")
        job = PrintJob(id=next(self._ids), data=bytes(data), label=label,
                       future=asyncio.get_running_loop().create_future())
        self._queue.append(job)
        self._count(jobs_submitted=1)
        self._wake.set()
        log.info("printer %s: job %d queued (%d bytes, %d waiting)",
                 self.config.name, job.id, len(data), len(self._queue))
        return job

    async def print(self, data: bytes, *, label: str = "") -> PrintResult:
        return await self.submit(data, label=label)

    @asynccontextmanager
    async def subscribe(self, bound: int = 64) -> AsyncIterator[Subscription]:
        """State changes from now on; the first event is the current state."""
        sub = Subscription(bound)
        h = self._health
        sub._put(PrinterEvent(state=h.state, previous=h.state, status=h.status,
                              message="current state", at=time.time()))
        if self._closed:
            sub._close("the printer driver was closed")
        self._subscribers.add(sub)
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)
            sub._close("this subscription has ended (its `async with` block was left)")

    def health(self) -> PrinterHealth:
        return replace(self._health, queue_depth=len(self._queue))

    @property
    def state(self) -> PrinterState:
        return self._health.state

    # --- the connection loop -----------------------------------------------------------------

    async def _run_forever(self) -> None:
        failures = 0
        while not self._closed:
            connects = self._health.connects
            try:
                await self.run_session()
            except PrinterError as exc:
                log.warning("printer %s: %s", self.config.name, exc)
            except Exception:
                # A bug, not a device condition; the queue must still drain once it passes.
                log.exception("printer %s: driver session crashed", self.config.name)
                self._set_state(PrinterState.DISCONNECTED, None, "driver session crashed")
            # A session that got as far as a good status reply resets the backoff.
            failures = 1 if self._health.connects > connects else failures + 1
            delay = backoff_delay(failures, base=self.config.backoff_base,
                                  cap=self.config.backoff_cap)
            await asyncio.sleep(delay)

    async def run_session(self, recorder: HealthRecorder | None = None) -> None:
        """Open the printer and serve the queue until the link fails (raises PrinterError)."""
        if self._closed:
            raise PrinterClosed(f"printer {self.config.name!r} driver is closed; stop its "
                                "supervisor before closing the driver")
        if self._session_lock.locked():
            raise PrinterError(f"printer {self.config.name!r} already has a session running")
        async with self._session_lock:
            transport = self._transport()
            self._set_state(PrinterState.CONNECTING, None, f"opening {transport.describe}")
            try:
                await transport.open()
                await self._serve(transport, recorder)
            except PrinterError as exc:
                self._error(str(exc))
                self._set_state(PrinterState.DISCONNECTED, None, str(exc))
                raise
            finally:
                await transport.close()

    def _transport(self) -> Transport:
        c = self.config
        if c.connection == "serial":
            return SerialTransport(c.port, baudrate=c.baudrate, timeout=c.io_timeout)
        return TcpTransport(c.host, c.tcp_port, timeout=c.io_timeout)

    async def _serve(self, transport: Transport, recorder: HealthRecorder | None) -> None:
        first = True
        while not self._closed:
            status = await self._poll(transport, recorder)
            if first:
                self._count(connects=1)
                first = False
            if status.ready and self._queue:
                await self._send(self._queue[0], transport, recorder)
                continue
            self._wake.clear()
            # asyncio.timeout, not wait_for: on 3.11 wait_for can turn a cancellation that
            # races the timeout into TimeoutError, and the driver would never stop.
            with suppress(TimeoutError):  # no new job: time for the next status poll
                async with asyncio.timeout(self.config.status_poll_seconds):
                    await self._wake.wait()

    async def _poll(self, transport: Transport, recorder: HealthRecorder | None) -> PrinterStatus:
        """Ask DLE EOT 1..4 in one write; the four replies come back in order."""
        await transport.write(_STATUS_QUERIES)
        replies = await transport.read(4)
        try:
            p, o, e, pa = (decode_status(n, b) for n, b in zip((1, 2, 3, 4), replies, strict=True))
        except EscposStatusError as exc:
            self._count(status_errors=1)
            raise PrinterConnectionError(
                f"printer at {transport.describe} sent a malformed status reply "
                f"{replies.hex()}: {exc}") from exc
        assert isinstance(p, PrinterReply) and isinstance(o, OfflineReply)
        assert isinstance(e, ErrorReply) and isinstance(pa, PaperReply)
        status = PrinterStatus.from_replies(p, o, e, pa)
        state = state_of(status)
        message = ", ".join(status.problems) or "ready"
        self._set_state(state, status, message)
        if recorder is not None:
            if status.ready:
                recorder.success(state=state.value)
            else:
                recorder.problem(f"printer {self.config.address}: {message}", state=state.value)
        if not status.ready:
            self._error(message)
        return status

    async def _send(self, job: PrintJob, transport: Transport,
                    recorder: HealthRecorder | None) -> None:
        job.attempts += 1
        try:
            await transport.write(job.data)
        except PrinterConnectionError:
            self._count(write_errors=1)
            raise
        after = await self._poll(transport, recorder)
        if not after.ready:
            # The printer stopped during the job: send it again once it recovers (a duplicate
            # receipt is better than none).
            log.warning("printer %s: job %d not confirmed (%s); will resend",
                        self.config.name, job.id, ", ".join(after.problems))
            return
        self._queue.popleft()
        now = time.time()
        self._health = replace(self._health, last_success_at=now,
                               jobs_printed=self._health.jobs_printed + 1)
        job.future.set_result(PrintResult(job_id=job.id, attempts=job.attempts, printed_at=now))
        log.info("printer %s: job %d printed (attempt %d)", self.config.name, job.id,
                 job.attempts)

    # --- bookkeeping -------------------------------------------------------------------------

    def _count(self, **deltas: int) -> None:
        h = self._health
        self._health = replace(h, **{k: getattr(h, k) + v for k, v in deltas.items()})

    def _error(self, message: str) -> None:
        self._health = replace(self._health, last_error=message, last_error_at=time.time())

    def _set_state(self, state: PrinterState, status: PrinterStatus | None, message: str) -> None:
        previous = self._health.state
        self._health = replace(self._health, state=state,
                               status=status if status is not None else self._health.status)
        if state is previous:
            return
        log.info("printer %s: %s -> %s (%s)", self.config.name, previous.value, state.value,
                 message)
        event = PrinterEvent(state=state, previous=previous, status=status, message=message,
                             at=time.time())
        for sub in self._subscribers:
            sub._put(event)

