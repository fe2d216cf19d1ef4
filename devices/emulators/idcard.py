"""An ID-card reader on a pseudo-terminal, speaking the real SAM frame protocol.

A driver opens `emulator.path` exactly as it would open ``/dev/ttyUSB0``. The emulator answers
SAM status / id / reset, find, select, the three reads and set-baud like a reader would, with
one of the synthetic sample cards on it (or none), and can inject faults: no card, read failed
(41), bad checksum, garbage before replies, silence. `unplug()` closes the pseudo-terminal (the
driver sees EIO, as when a USB reader is pulled) and `replug()` opens a new one; with `link`
set, a symlink follows it like a udev rule would.

Baud rate: a pseudo-terminal carries bytes at any speed, so the emulator reads the speed the
driver set on the line and ignores commands sent at a different one (a real reader sees only
framing errors then and stays silent): that is what makes a driver's baud probe testable. With
`pace` on, replies leave no faster than 8N1 at the configured baud (10 bits a byte, ~87 us at
115200), so benchmarks measure what a real wire allows.

One thread owns the pseudo-terminal; the control methods (`insert`, `set_fault` …) are
thread-safe and can be called from tests, the CLI or anywhere.
"""

from __future__ import annotations

import errno
import os
import select
import termios
import threading
import time
import tty
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from devices.emulators.sample_cards import SampleCard, sample_card
from devices.health import DeviceError
from protocols.idcard import (
    BAUD_RATES,
    NEED_DATA,
    PREAMBLE,
    Command,
    FrameChecksumError,
    FrameDecoder,
    RemoteProtocolError,
    Response,
    Status,
    decode_command,
    encode_read_data,
    encode_response,
    encode_sam_id,
)

__all__ = ["EmulatorError", "EmulatorSettings", "Fault", "IdCardEmulator", "wire_seconds"]

_TERMIOS_SPEEDS: Final = {
    getattr(termios, f"B{b}"): b
    for b in (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400)
}
_PACE_CHUNK: Final = 32
_GARBAGE: Final = bytes(range(0x30, 0x3C))  # no 0xAA: garbage must never look like a preamble


def wire_seconds(nbytes: int, baud: int) -> float:
    """Time `nbytes` take on an 8N1 line (start + 8 data + stop = 10 bits each)."""
    return nbytes * 10 / baud


class EmulatorError(DeviceError):
    """The emulator could not do what was asked (link path taken, used after close …)."""


class Fault(StrEnum):
    NO_CARD = "no-card"  # find answers 80 even with a card on the reader
    READ_FAILED = "read-failed"  # reads answer 41
    BAD_CHECKSUM = "bad-checksum"  # every reply goes out with a wrong checksum
    GARBAGE = "garbage"  # noise bytes before every reply (a driver must resync)
    SILENCE = "silence"  # no reply at all


@dataclass(frozen=True, slots=True, kw_only=True)
class EmulatorSettings:
    """baud: the reader's line speed; link: a symlink kept pointing at the current
    pseudo-terminal; pace: emulate wire time; card: the sample key on the reader at start
    (None: empty); sam_id: the five parts of the SAM id it reports."""

    baud: int = 115200
    link: Path | None = None
    pace: bool = False
    card: str | None = "resident"
    sam_id: tuple[int, int, int, int, int] = (5, 1, 20240101, 1234567890, 42)

    def __post_init__(self) -> None:
        if self.baud not in BAUD_RATES:
            raise ValueError(f"an ID-card reader runs at one of {BAUD_RATES} baud, not {self.baud}")
        if self.card is not None:
            sample_card(self.card)  # raises, listing the names there are


class IdCardEmulator:
    """The emulated reader. Use as a context manager (or `start()` / `close()`)."""

    def __init__(self, settings: EmulatorSettings | None = None) -> None:
        self.settings = settings or EmulatorSettings()
        self._lock = threading.Lock()
        self._baud = self.settings.baud
        self._card: SampleCard | None = (
            sample_card(self.settings.card) if self.settings.card else None
        )
        self._selected = False
        self._faults: dict[Fault, int | None] = {}
        self._garbage_at = 0
        self._fds: tuple[int, int] | None = None
        self._tty = ""
        self._thread: threading.Thread | None = None
        self._stop_r, self._stop_w = -1, -1
        self._closed = False
        #: Counters, for tests and the CLI's `status` command.
        self.commands = 0
        self.replies = 0
        self.ignored_bytes = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Plug the reader in: open a pseudo-terminal and start answering."""
        if self._closed:
            raise EmulatorError("this ID-card emulator was closed; create a new one")
        if self._fds is not None:
            return
        master, slave = os.openpty()
        # Raw from the start, so nothing written before a driver opens the port is echoed or
        # rewritten by the line discipline.
        tty.setraw(slave)
        os.set_blocking(master, False)
        termios.tcsetattr(slave, termios.TCSANOW, self._with_speed(slave, self._baud))
        self._fds = (master, slave)
        self._tty = os.ttyname(slave)
        self._stop_r, self._stop_w = os.pipe()
        if self.settings.link is not None:
            self._point_link(self.settings.link, self._tty)
        self._thread = threading.Thread(
            target=self._serve, args=(master, slave), name="idcard-emulator", daemon=True
        )
        self._thread.start()

    def unplug(self) -> None:
        """Pull the reader out: the pseudo-terminal (and the link) disappear."""
        thread, self._thread = self._thread, None
        if thread is not None:
            os.write(self._stop_w, b"x")
            thread.join(timeout=5)
        if self._fds is not None:
            for fd in self._fds:
                os.close(fd)
            self._fds = None
            os.close(self._stop_r)
            os.close(self._stop_w)
        link = self.settings.link
        if link is not None and link.is_symlink():
            link.unlink()
        with self._lock:
            self._selected = False

    def replug(self) -> None:
        """Plug the reader back in, on a new pseudo-terminal (the link follows it)."""
        self.unplug()
        self.start()

    def close(self) -> None:
        self.unplug()
        self._closed = True

    @property
    def path(self) -> str:
        """What to put in ``[devices.idcard] port``: the link if set, else the tty path."""
        if self.settings.link is not None:
            return str(self.settings.link)
        if not self._tty:
            raise EmulatorError("the ID-card emulator has not been started")
        return self._tty

    @property
    def tty_path(self) -> str:
        return self._tty

    @property
    def plugged(self) -> bool:
        return self._fds is not None

    # -- control -----------------------------------------------------------------------------

    def insert(self, card: str | SampleCard = "resident") -> None:
        """Place a card on the reader (replacing any card there)."""
        chosen = sample_card(card) if isinstance(card, str) else card
        with self._lock:
            self._card = chosen
            self._selected = False

    def remove(self) -> None:
        with self._lock:
            self._card = None
            self._selected = False

    @property
    def card(self) -> SampleCard | None:
        with self._lock:
            return self._card

    def set_fault(self, fault: Fault, count: int | None = None) -> None:
        """Inject `fault` for the next `count` times it applies (None: until cleared)."""
        if count is not None and count < 1:
            raise ValueError(f"a fault applies at least once, got count={count}")
        with self._lock:
            self._faults[fault] = count

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def faults(self) -> dict[Fault, int | None]:
        with self._lock:
            return dict(self._faults)

    @property
    def baud(self) -> int:
        with self._lock:
            return self._baud

    # -- the reader --------------------------------------------------------------------------

    def _take_fault(self, fault: Fault) -> bool:
        """True if `fault` applies now; counts it down. Call with the lock held."""
        if fault not in self._faults:
            return False
        left = self._faults[fault]
        if left is not None:
            if left <= 1:
                del self._faults[fault]
            else:
                self._faults[fault] = left - 1
        return True

    def _answer(self, command: Command) -> Response:
        """The reader's reply to one command (before faults). Call with the lock held."""
        match (command.cmd, command.para):
            case (0x10, 0xFF) | (0x11, 0xFF) | (0x61, 0xFF):  # reset, SAM status, max RF frame
                return Response(sw3=Status.OK)
            case (0x12, 0xFF):
                return Response(sw3=Status.OK, data=encode_sam_id(*self.settings.sam_id))
            case (0x20, 0x01):
                if self._card is None or self._take_fault(Fault.NO_CARD):
                    return Response(sw3=Status.NO_CARD)
                return Response(sw3=Status.CARD_FOUND, data=b"\x00\x00\x00\x00")
            case (0x20, 0x02):
                if self._card is None:
                    return Response(sw3=Status.SELECT_FAILED)
                self._selected = True
                return Response(sw3=Status.OK, data=self._card.serial)
            case (0x30, 0x01) | (0x30, 0x10):
                card = self._card
                if card is None or not self._selected or self._take_fault(Fault.READ_FAILED):
                    return Response(sw3=Status.READ_FAILED)
                fingerprint = (card.fingerprint or b"") if command.para == 0x10 else None
                data = encode_read_data(card.text, card.photo_wlt, fingerprint)
                return Response(sw3=Status.OK, data=data)
            case (0x30, 0x03):
                return Response(sw3=Status.ITEM_EMPTY)  # the samples carry no extra address
            case (0x60, index) if index < len(BAUD_RATES):
                return Response(sw3=Status.OK)  # answered at the old speed; see _serve
            case _:
                return Response(sw3=Status.BAD_COMMAND)

    def _reply_bytes(self, response: Response) -> bytes | None:
        """The wire bytes for `response` after faults. Call with the lock held."""
        if self._take_fault(Fault.SILENCE):
            return None
        out = bytearray(encode_response(response))
        if self._take_fault(Fault.BAD_CHECKSUM):
            out[-1] ^= 0x5A
        if self._take_fault(Fault.GARBAGE):
            self._garbage_at += 1
            noise = _GARBAGE[: 1 + self._garbage_at % len(_GARBAGE)]
            out[:0] = noise + PREAMBLE[:2]  # a half preamble too: the decoder must not stall
        return bytes(out)

    def _serve(self, master: int, slave: int) -> None:
        decoder = FrameDecoder()
        while True:
            ready, _, _ = select.select([master, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            try:
                data = os.read(master, 4096)
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:  # no slave open: cannot happen, we hold one
                    continue
                raise
            with self._lock:
                line_baud = _TERMIOS_SPEEDS.get(termios.tcgetattr(slave)[5])
                if line_baud != self._baud:
                    # A host at another speed: a real reader sees only framing errors.
                    self.ignored_bytes += len(data)
                    decoder.clear()
                    continue
            for start in range(0, len(data), 2048):
                decoder.feed(data[start : start + 2048])
                if not self._drain(decoder, master):
                    return

    def _drain(self, decoder: FrameDecoder, master: int) -> bool:
        """Answer every complete command in `decoder`; False if told to stop meanwhile."""
        while True:
            try:
                frame = decoder.next_frame()
            except RemoteProtocolError as exc:
                status = (
                    Status.CHECKSUM_ERROR
                    if isinstance(exc, FrameChecksumError)
                    else Status.LENGTH_ERROR
                )
                with self._lock:
                    reply = self._reply_bytes(Response(sw3=status))
                if reply is not None and not self._send(master, reply, 0):
                    return False
                continue
            if frame is NEED_DATA:
                return True
            command = decode_command(frame)
            with self._lock:
                self.commands += 1
                baud_before = self._baud
                response = self._answer(command)
                reply = self._reply_bytes(response)
                if command.cmd == 0x60 and response.sw3 == Status.OK:
                    self._baud = BAUD_RATES[command.para]
            received = len(frame.payload) + len(PREAMBLE) + 3
            if reply is not None and not self._send(master, reply, received, baud_before):
                return False

    def _send(self, master: int, data: bytes, received: int, baud: int | None = None) -> bool:
        """Write `data`, paced to the wire if asked; False if told to stop meanwhile."""
        baud = baud or self.baud
        pace = self.settings.pace
        start = time.monotonic()
        if pace:
            # The command itself took wire time to arrive before the reader could answer.
            start += wire_seconds(received, baud)
        sent = 0
        while sent < len(data):
            chunk = data[sent : sent + _PACE_CHUNK] if pace else data[sent:]
            if pace:
                # Hand each chunk over when its last byte would have crossed the wire.
                delay = start + wire_seconds(sent + len(chunk), baud) - time.monotonic()
                if delay > 0 and self._stopped(delay):
                    return False
            _, writable, _ = select.select([self._stop_r], [master], [], 1.0)
            if self._stopped(0):
                return False
            if not writable:
                continue  # the host is not reading; wait (a real UART would hold the line)
            try:
                sent += os.write(master, chunk)
            except BlockingIOError:
                continue
        with self._lock:
            self.replies += 1
        return True

    def _stopped(self, wait: float) -> bool:
        ready, _, _ = select.select([self._stop_r], [], [], wait)
        return bool(ready)

    # -- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _with_speed(fd: int, baud: int) -> list[Any]:
        attrs = termios.tcgetattr(fd)
        speed = next(k for k, v in _TERMIOS_SPEEDS.items() if v == baud)
        attrs[4] = attrs[5] = speed
        return attrs

    @staticmethod
    def _point_link(link: Path, target: str) -> None:
        if link.exists() and not link.is_symlink():
            raise EmulatorError(
                f"cannot link the emulated reader at {link}: a real file is there; choose "
                "another --link path"
            )
        tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, link)  # atomic: a driver never sees the link missing mid-replug
