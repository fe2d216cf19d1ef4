"""Real-time status: `DLE EOT n` (n = 1..4) and the one-byte replies to it.

Every reply has the fixed bit pattern `0xx1xx10` (bit 7 = 0, bit 4 = 1, bit 1 = 1, bit 0 = 0);
a byte without it is not a status reply and is refused. The meaning of the free bits:

    n=1 printer:       bit 3 offline, bit 5 waiting for online recovery
    n=2 offline cause: bit 2 cover open, bit 3 paper fed by the button, bit 5 printing stopped
                       at paper end, bit 6 an error occurred
    n=3 error cause:   bit 3 auto-cutter error, bit 5 unrecoverable error, bit 6 auto-recoverable
                       error
    n=4 paper sensor:  bits 2+3 paper near end, bits 5+6 paper end (firmware sets both bits of a
                       pair; either one is taken as the condition, since a missed warning costs
                       more than a false one)

Pure: the driver sends `status_query(n)` and feeds the byte it reads to `decode_status(n, b)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from protocols.escpos_base import DLE, EOT, EscposStatusError

_PATTERN_MASK: Final = 0b1001_0011
_PATTERN: Final = 0b0001_0010
STATUS_KINDS: Final = (1, 2, 3, 4)


def _bit(byte: int, n: int) -> bool:
    return bool(byte >> n & 1)


def _check_n(n: int) -> None:
    if n not in STATUS_KINDS:
        raise EscposStatusError(f"status kind n={n} is not one of 1..4 (DLE EOT n)")


def status_query(n: int) -> bytes:
    """`DLE EOT n`: ask for status byte `n` (1 printer, 2 offline cause, 3 error, 4 paper)."""
    _check_n(n)
    return bytes((DLE, EOT, n))


@dataclass(frozen=True, slots=True, kw_only=True)
class PrinterReply:
    """n = 1."""

    offline: bool = False
    waiting_for_recovery: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class OfflineReply:
    """n = 2: why the printer is offline."""

    cover_open: bool = False
    feed_button: bool = False
    paper_end_stop: bool = False
    error: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorReply:
    """n = 3: which error."""

    cutter_error: bool = False
    unrecoverable: bool = False
    auto_recoverable: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class PaperReply:
    """n = 4: the roll paper sensors."""

    near_end: bool = False
    paper_end: bool = False


StatusReply = PrinterReply | OfflineReply | ErrorReply | PaperReply


def decode_status(n: int, byte: int) -> StatusReply:
    """Decode the reply byte to `DLE EOT n`; raises `EscposStatusError` if it is not one."""
    _check_n(n)
    if not 0 <= byte <= 0xFF or byte & _PATTERN_MASK != _PATTERN:
        raise EscposStatusError(
            f"byte {byte:#04x} received after DLE EOT {n} is not a status reply (expected the "
            "bit pattern 0xx1xx10); the line is noisy, the baud rate is wrong or the device is "
            "not an ESC/POS printer"
        )
    match n:
        case 1:
            return PrinterReply(offline=_bit(byte, 3), waiting_for_recovery=_bit(byte, 5))
        case 2:
            return OfflineReply(cover_open=_bit(byte, 2), feed_button=_bit(byte, 3),
                                paper_end_stop=_bit(byte, 5), error=_bit(byte, 6))
        case 3:
            return ErrorReply(cutter_error=_bit(byte, 3), unrecoverable=_bit(byte, 5),
                              auto_recoverable=_bit(byte, 6))
        case _:
            return PaperReply(near_end=_bit(byte, 2) or _bit(byte, 3),
                              paper_end=_bit(byte, 5) or _bit(byte, 6))


def encode_status(reply: StatusReply) -> int:
    """The byte a printer sends for `reply` (used by the emulator and by tests)."""
    bits: tuple[tuple[int, bool], ...]
    match reply:
        case PrinterReply():
            bits = ((3, reply.offline), (5, reply.waiting_for_recovery))
        case OfflineReply():
            bits = ((2, reply.cover_open), (3, reply.feed_button), (5, reply.paper_end_stop),
                    (6, reply.error))
        case ErrorReply():
            bits = ((3, reply.cutter_error), (5, reply.unrecoverable), (6, reply.auto_recoverable))
        case PaperReply():
            bits = ((2, reply.near_end), (3, reply.near_end), (5, reply.paper_end),
                    (6, reply.paper_end))
    byte = _PATTERN
    for position, on in bits:
        byte |= on << position
    return byte


@dataclass(frozen=True, slots=True, kw_only=True)
class PrinterStatus:
    """The printer's condition, from the four replies."""

    online: bool = True
    waiting_for_recovery: bool = False
    cover_open: bool = False
    paper_end: bool = False
    paper_near_end: bool = False
    cutter_error: bool = False
    unrecoverable_error: bool = False
    auto_recoverable_error: bool = False

    @classmethod
    def from_replies(
        cls, printer: PrinterReply, offline: OfflineReply, error: ErrorReply, paper: PaperReply
    ) -> PrinterStatus:
        return cls(
            online=not printer.offline,
            waiting_for_recovery=printer.waiting_for_recovery,
            cover_open=offline.cover_open,
            paper_end=paper.paper_end or offline.paper_end_stop,
            paper_near_end=paper.near_end,
            cutter_error=error.cutter_error,
            unrecoverable_error=error.unrecoverable,
            auto_recoverable_error=error.auto_recoverable,
        )

    def replies(self) -> tuple[PrinterReply, OfflineReply, ErrorReply, PaperReply]:
        """The replies to DLE EOT 1..4 a printer in this condition sends."""
        error = self.cutter_error or self.unrecoverable_error or self.auto_recoverable_error
        return (
            PrinterReply(offline=not self.online, waiting_for_recovery=self.waiting_for_recovery),
            OfflineReply(cover_open=self.cover_open, paper_end_stop=self.paper_end, error=error),
            ErrorReply(cutter_error=self.cutter_error, unrecoverable=self.unrecoverable_error,
                       auto_recoverable=self.auto_recoverable_error),
            PaperReply(near_end=self.paper_near_end or self.paper_end, paper_end=self.paper_end),
        )

    @property
    def ready(self) -> bool:
        """True when a job sent now would print (paper near end still prints)."""
        return self.online and not (
            self.cover_open or self.paper_end or self.cutter_error
            or self.unrecoverable_error or self.auto_recoverable_error
        )

    @property
    def problems(self) -> tuple[str, ...]:
        """Short operator-facing names of what is wrong, most actionable first."""
        found = (
            ("paper out", self.paper_end),
            ("cover open", self.cover_open),
            ("cutter error", self.cutter_error),
            ("unrecoverable error", self.unrecoverable_error),
            ("recoverable error", self.auto_recoverable_error),
            ("offline", not self.online),
            ("paper near end", self.paper_near_end and not self.paper_end),
        )
        return tuple(name for name, on in found if on)
