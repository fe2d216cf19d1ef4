"""The ID-card reader driver: a SAM reader on a serial port, as an async context manager.

    async with IdCardReader("/dev/ttyUSB0") as reader:
        async for event in reader.events():
            match event:
                case CardInserted(result=result): ...
                case CardRemoved(): ...
                case ReaderError(message=message): ...

Entering opens the port, probes `ReaderSettings.bauds` (115200, then 9600) with SAM status and
reads the SAM id. `events()` polls find-card with debounced presence (`protocols.idcard.presence`):
one read per placement. A stream raises `IdCardReaderError` when the reader is gone (unplugged,
silent): the supervisor reopens it. `read_once()` is the one-shot read for `devices read-card`.
pyserial lives on one thread (`devices.serialport`). Events carry personal data; messages never.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from types import TracebackType
from typing import Final, Self, TypeVar

from devices.health import DeviceError
from devices.serialport import PORT_ERRORS, NoReply, PortThread, describe_open_error, error_text
from protocols.idcard import (
    BAUD_RATES,
    FIND_CARD,
    NEED_DATA,
    READ_TEXT_PHOTO,
    READ_WITH_FINGERPRINT,
    SAM_ID,
    SAM_STATUS,
    SELECT_CARD,
    Command,
    FrameDecoder,
    ReadResult,
    RemoteProtocolError,
    Response,
    Status,
    decode_response,
    decode_sam_id,
    encode_command,
    parse_read,
)
from protocols.idcard.presence import Action, Presence, PresenceTracker

__all__ = [
    "CardInserted",
    "CardReadFailed",
    "CardRemoved",
    "IdCardReader",
    "IdCardReaderError",
    "NoCard",
    "ReaderDisconnected",
    "ReaderError",
    "ReaderEvent",
    "ReaderInfo",
    "ReaderNotResponding",
    "ReaderSettings",
    "ReaderUnavailable",
]


class IdCardReaderError(DeviceError):
    """Root of the ID-card driver's errors; messages name the port and what to do."""


class ReaderUnavailable(IdCardReaderError):
    """The port could not be opened (missing, no permission, held by another program)."""


class ReaderDisconnected(IdCardReaderError):
    """The port went away while open (USB unplugged, EIO)."""


class ReaderNotResponding(IdCardReaderError):
    """Nothing valid came back: no reader on the port, wrong speed, or a hung reader."""


class NoCard(IdCardReaderError):
    """`read_once` saw no card within its timeout."""


class CardReadFailed(IdCardReaderError):
    """A card was on the reader but could not be read; `status` is the reader's SW3."""

    def __init__(self, message: str, status: Status | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True, kw_only=True)
class ReaderSettings:
    """bauds: speeds to probe, in order. reply_timeout: seconds a reader may think before its
    reply starts (wire time for the reply's size is added). poll_interval: seconds between finds.
    insert_after / remove_after: finds / misses in a row that make a card present / gone.
    read_attempts: select+read tries per placement. retries: resends of a command that got no
    valid reply before the reader counts as not responding. health_interval: seconds between
    SAM status checks while polling. with_fingerprint: read 30 10 instead of 30 01."""

    bauds: tuple[int, ...] = (115200, 9600)
    reply_timeout: float = 1.0
    probe_timeout: float = 0.5
    poll_interval: float = 0.2
    insert_after: int = 2
    remove_after: int = 3
    read_attempts: int = 2
    retries: int = 1
    health_interval: float = 60.0
    with_fingerprint: bool = False
    queue_size: int = 32

    def __post_init__(self) -> None:
        if not self.bauds or any(b not in BAUD_RATES for b in self.bauds):
            raise ValueError(f"reader bauds must be taken from {BAUD_RATES}, got {self.bauds}")
        for name in ("reply_timeout", "probe_timeout", "poll_interval", "health_interval"):
            if getattr(self, name) <= 0:
                raise ValueError(f"reader setting {name} must be > 0 seconds")
        for name in ("insert_after", "remove_after", "read_attempts", "queue_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"reader setting {name} must be >= 1")
        if self.retries < 0:
            raise ValueError("reader setting retries must be >= 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReaderInfo:
    """What the probe found: for health and `cunlink devices list`."""

    path: str
    baud: int
    sam_id: str
    sam_ok: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CardInserted:
    result: ReadResult
    read_seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CardRemoved:
    """The card placed last has left the reader (after a CardInserted or a failed read)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReaderError:
    """The reader works but something failed (a read, the SAM); no personal data inside."""

    message: str
    status: Status | None = None


ReaderEvent = CardInserted | CardRemoved | ReaderError

_NAMES: Final = {
    SAM_STATUS: "SAM status",
    SAM_ID: "SAM id",
    FIND_CARD: "find card",
    SELECT_CARD: "select card",
    READ_TEXT_PHOTO: "read text+photo",
    READ_WITH_FINGERPRINT: "read text+photo+fingerprint",
}
# Largest reply, in bytes, to size each command's timeout to the wire (9600 baud: 2.4 s).
_REPLY_BYTES: Final = {READ_TEXT_PHOTO: 1295, READ_WITH_FINGERPRINT: 2321}
_SHORT_REPLY: Final = 64
T = TypeVar("T")
_READ_SLICE: Final = 0.05  # seconds one pyserial read may block: how often deadlines are checked


class EventStream:
    """One subscriber's events: an async iterator that ends when the reader closes and raises
    the reader's error when it fails. Holds at most `size` events (the oldest are dropped)."""

    def __init__(self, reader: IdCardReader, size: int) -> None:
        self._reader = reader
        self._queue: deque[ReaderEvent] = deque(maxlen=size)
        self._ready = asyncio.Event()
        self._ended = False
        self.dropped = 0

    def _put(self, event: ReaderEvent | None) -> None:
        """Queue `event`; None ends the stream once what is queued has been read."""
        if event is None:
            self._ended = True
        else:
            self.dropped += len(self._queue) == self._queue.maxlen
            self._queue.append(event)
        self._ready.set()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ReaderEvent:
        while not self._queue:
            if self._ended:
                self.close()
                if (failure := self._reader.failure) is not None:
                    raise type(failure)(*failure.args) from failure  # a fresh one per stream
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()

    def close(self) -> None:
        self._reader._unsubscribe(self)


class IdCardReader:
    """A SAM ID-card reader on `path`. Not re-entrant; one instance per open of the port."""

    def __init__(self, path: str, settings: ReaderSettings | None = None) -> None:
        self.path = path
        self.settings = settings or ReaderSettings()
        self._io = PortThread(f"idcard:{path}")
        self._decoder = FrameDecoder()  # used on the port's thread only
        self._garbled: RemoteProtocolError | None = None
        self._lock = asyncio.Lock()
        self._entered = False
        self._info: ReaderInfo | None = None
        self._streams: list[EventStream] = []
        self._poller: asyncio.Task[None] | None = None
        self.failure: IdCardReaderError | None = None
        self.reads = 0
        self.read_failures = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._entered:
            raise IdCardReaderError(
                f"ID-card reader {self.path} is already open; create a new IdCardReader"
            )
        self._entered = True
        try:
            await self._probe()
        except BaseException:
            await self._io.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            await asyncio.gather(poller, return_exceptions=True)
        self._finish(None)
        await self._io.aclose()

    @property
    def info(self) -> ReaderInfo:
        if self._info is None:
            raise IdCardReaderError(f"ID-card reader {self.path} is not open: use `async with`")
        return self._info

    def stats(self) -> dict[str, int]:
        """Counters for health and metrics."""
        return {
            "reads": self.reads,
            "read_failures": self.read_failures,
            "frames_rejected": self._decoder.errors,
            "garbage_bytes": self._decoder.skipped,
        }

    # -- the serial thread's side ------------------------------------------------------------

    async def _run(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the port's thread, translating port failures into ReaderDisconnected."""
        try:
            return await self._io.run(fn)
        except PORT_ERRORS as exc:
            raise ReaderDisconnected(
                f"ID-card reader on {self.path} went away ({error_text(exc)}); check its USB "
                "cable: it is reopened when it comes back"
            ) from exc

    def _take(self, chunk: bytes) -> Response | None:
        """Feed received bytes to the decoder; the reply once a whole frame is in (thread)."""
        self._decoder.feed(chunk)
        while True:
            try:
                frame = self._decoder.next_frame()
            except RemoteProtocolError as exc:
                self._garbled = exc  # a corrupt frame; a good one may still follow
                continue
            return None if frame is NEED_DATA else decode_response(frame)

    def _exchange_blocking(self, wire: bytes, wait: float) -> Response:
        self._decoder.clear()
        self._garbled = None
        return self._io.exchange_blocking(wire, self._take, wait)

    # -- exchanges ---------------------------------------------------------------------------

    def _timeout(self, command: Command) -> float:
        baud = self._info.baud if self._info else max(self.settings.bauds)
        wire = _REPLY_BYTES.get(command, _SHORT_REPLY) * 10 / baud
        return self.settings.reply_timeout + 2 * wire

    async def _exchange(
        self, command: Command, *, wait: float | None = None, tries: int | None = None
    ) -> Response:
        """Send `command`, return the reply; resend on silence or a corrupt reply."""
        tries = self.settings.retries + 1 if tries is None else tries
        wait = self._timeout(command) if wait is None else wait
        wire = encode_command(command)
        problem = "no reply"
        for _ in range(tries):
            try:
                return await self._run(partial(self._exchange_blocking, wire, wait))
            except NoReply:
                if self._garbled is not None:
                    problem = f"only corrupt replies ({self._garbled})"
                else:
                    problem = f"no reply within {wait:.2f} s"
        name = _NAMES.get(command, f"command {command.cmd:02X} {command.para:02X}")
        raise ReaderNotResponding(
            f"ID-card reader on {self.path} gave no valid reply to {name} in {tries} "
            f"tries: {problem}; check the cable and the baud rate, or power-cycle the reader"
        )

    async def _probe(self) -> None:
        tried = []
        for baud in self.settings.bauds:
            try:
                await self._io.run(
                    partial(self._io.open_blocking, self.path, baud, read_timeout=_READ_SLICE)
                )
            except PORT_ERRORS as exc:
                raise ReaderUnavailable(
                    f"ID-card reader: {describe_open_error(self.path, exc)}"
                ) from exc
            try:
                status = await self._exchange(SAM_STATUS, wait=self.settings.probe_timeout, tries=1)
            except ReaderNotResponding:
                tried.append(str(baud))
                continue
            self._info = ReaderInfo(
                path=self.path, baud=baud, sam_id="unknown", sam_ok=status.status is Status.OK
            )
            reply = await self._exchange(SAM_ID)
            if reply.status is Status.OK:
                self._info = replace(self._info, sam_id=decode_sam_id(reply.data))
            return
        raise ReaderNotResponding(
            f"no ID-card reader answered on {self.path} at {' or '.join(tried)} baud; check "
            "that the port in [devices.idcard] is the reader's, and that it is powered"
        )

    async def sam_status(self) -> Status | None:
        """The SAM's self-reported status (OK when healthy)."""
        async with self._lock:
            return (await self._exchange(SAM_STATUS)).status

    async def _read_card(self) -> ReadResult:
        """select + read, up to `read_attempts` times; raises CardReadFailed."""
        read = READ_WITH_FINGERPRINT if self.settings.with_fingerprint else READ_TEXT_PHOTO
        failure = CardReadFailed("no attempt made")
        for _ in range(self.settings.read_attempts):
            async with self._lock:
                try:
                    selected = await self._exchange(SELECT_CARD)
                    response = await self._exchange(read) if selected.status is Status.OK else None
                except ReaderNotResponding as exc:
                    failure = CardReadFailed(f"reading the card failed: {exc}")
                    continue
            if response is None:
                failure = _status_failure("selecting the card", selected)
                continue
            if response.status is not Status.OK:
                failure = _status_failure("reading the card", response)
                continue
            try:
                return parse_read(response, with_fingerprint=self.settings.with_fingerprint)
            except RemoteProtocolError as exc:
                failure = CardReadFailed(f"the card's data did not parse: {exc}")
        self.read_failures += 1
        raise failure

    # The wait is for a person to place a card, and running out of it is an answer (NoCard),
    # not a cancellation: so a plain parameter, not asyncio.timeout around the call.
    async def read_once(self, timeout: float = 10.0) -> ReadResult:  # noqa: ASYNC109
        """Wait up to `timeout` seconds for a card and read it (no debounce: the first find
        counts). Raises NoCard, CardReadFailed, or the reader's own errors."""
        _ = self.info  # raises if the reader is not open
        deadline = time.monotonic() + timeout
        while True:
            async with self._lock:
                found = await self._exchange(FIND_CARD)
            if found.status is Status.CARD_FOUND:
                result = await self._read_card()
                self.reads += 1
                return result
            if time.monotonic() + self.settings.poll_interval > deadline:
                raise NoCard(
                    f"no card was placed on the ID-card reader {self.path} within "
                    f"{timeout:g} s; place the card flat on the reader and try again"
                )
            await asyncio.sleep(self.settings.poll_interval)

    # -- events ------------------------------------------------------------------------------

    def events(self) -> EventStream:
        """A new subscription to this reader's events; starts polling on first use."""
        if self._info is None:
            raise IdCardReaderError(f"ID-card reader {self.path} is not open: use `async with`")
        stream = EventStream(self, self.settings.queue_size)
        if self.failure is not None or (self._poller is not None and self._poller.done()):
            stream._put(None)
            return stream
        self._streams.append(stream)
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll(), name=f"idcard-poll:{self.path}")
        return stream

    def _unsubscribe(self, stream: EventStream) -> None:
        if stream in self._streams:
            self._streams.remove(stream)

    def _emit(self, event: ReaderEvent) -> None:
        for stream in self._streams:
            stream._put(event)

    def _finish(self, failure: IdCardReaderError | None) -> None:
        if self.failure is None:
            self.failure = failure
        for stream in list(self._streams):
            stream._put(None)

    async def _poll(self) -> None:
        try:
            await self._poll_loop()
        except IdCardReaderError as exc:
            self._finish(exc)
        except Exception as exc:  # a bug: subscribers must still hear that the stream ended
            self._finish(IdCardReaderError(f"ID-card reader {self.path} driver crashed: {exc!r}"))
            raise

    async def _poll_loop(self) -> None:
        tracker = PresenceTracker(
            insert_after=self.settings.insert_after, remove_after=self.settings.remove_after
        )
        last_problem: str | None = None
        next_health = time.monotonic() + self.settings.health_interval
        if not self.info.sam_ok:
            self._emit(ReaderError(message=f"the SAM of reader {self.path} reports a fault"))
        while True:
            async with self._lock:
                found = await self._exchange(FIND_CARD)
            problem = None
            if found.status not in (Status.CARD_FOUND, Status.NO_CARD):
                problem = f"find card answered 0x{found.sw3:02X}"
            if problem is not None and problem != last_problem:
                self._emit(ReaderError(message=problem, status=found.status))
            last_problem = problem
            match tracker.sighting(found.status is Status.CARD_FOUND):
                case Action.READ:
                    started = time.monotonic()
                    try:
                        result = await self._read_card()
                    except CardReadFailed as exc:
                        self._emit(ReaderError(message=str(exc), status=exc.status))
                    else:
                        self.reads += 1
                        took = time.monotonic() - started
                        self._emit(CardInserted(result=result, read_seconds=took))
                case Action.REMOVED:
                    self._emit(CardRemoved())
                case Action.NONE:
                    pass
            if tracker.state is Presence.EMPTY and time.monotonic() >= next_health:
                next_health = time.monotonic() + self.settings.health_interval
                status = await self.sam_status()
                if status is not Status.OK:
                    self._emit(ReaderError(message="the SAM reports a fault", status=status))
            await asyncio.sleep(self.settings.poll_interval)


def _status_failure(what: str, response: Response) -> CardReadFailed:
    status = response.status
    text = status.description if status is not None else "an unknown status"
    return CardReadFailed(
        f"{what} failed: the reader answered 0x{response.sw3:02X} ({text}); lift the card "
        "and place it again",
        status,
    )
