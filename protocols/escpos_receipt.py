"""What the ESC/POS stream parser produces: the receipt model and the parser's events.

A receipt is what a printer puts on paper between two cuts: lines made of styled spans
(bold, underline, width and height multipliers) with their justification, QR codes with their
payload and settings, and paper feeds. Pure data: frozen, validated on construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from protocols.escpos_base import QR_MAX_DATA, Align, CutKind, QrErrorLevel

__all__ = [
    "NEED_DATA",
    "Ignored",
    "Item",
    "NeedData",
    "PaperFeed",
    "ParseEvent",
    "ParsedReceipt",
    "PrintedLine",
    "PrintedQr",
    "ReceiptCut",
    "Span",
    "StatusRequest",
]


# --- the receipt model ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Span:
    """Text printed in one style."""

    text: str
    bold: bool = False
    underline: bool = False
    width: int = 1
    height: int = 1

    def __post_init__(self) -> None:
        if not (1 <= self.width <= 8 and 1 <= self.height <= 8):
            raise ValueError(f"size {self.width}x{self.height}: multipliers are 1..8")


@dataclass(frozen=True, slots=True, kw_only=True)
class PrintedLine:
    spans: tuple[Span, ...] = ()
    align: Align = Align.LEFT

    @property
    def text(self) -> str:
        return "".join(span.text for span in self.spans)


@dataclass(frozen=True, slots=True, kw_only=True)
class PrintedQr:
    payload: bytes
    module_size: int = 3
    level: QrErrorLevel = QrErrorLevel.L
    model: int = 2
    align: Align = Align.LEFT

    def __post_init__(self) -> None:
        if not 1 <= len(self.payload) <= QR_MAX_DATA:
            raise ValueError(f"QR payload of {len(self.payload)} bytes is outside 1..{QR_MAX_DATA}")


@dataclass(frozen=True, slots=True, kw_only=True)
class PaperFeed:
    lines: int


Item = PrintedLine | PrintedQr | PaperFeed


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedReceipt:
    items: tuple[Item, ...]
    cut: CutKind

    @property
    def lines(self) -> tuple[PrintedLine, ...]:
        return tuple(item for item in self.items if isinstance(item, PrintedLine))

    @property
    def qr_codes(self) -> tuple[PrintedQr, ...]:
        return tuple(item for item in self.items if isinstance(item, PrintedQr))

    @property
    def text(self) -> str:
        """The printed text, one line per line; trailing spaces dropped."""
        return "\n".join(line.text.rstrip() for line in self.lines)


# --- events --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusRequest:
    """`DLE EOT n`: the host waits for one status byte."""

    n: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiptCut:
    receipt: ParsedReceipt


@dataclass(frozen=True, slots=True, kw_only=True)
class Ignored:
    """Bytes skipped: a command we do not model, or a malformed one a printer would ignore."""

    command: bytes
    reason: str


class NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()
ParseEvent = StatusRequest | ReceiptCut | Ignored
