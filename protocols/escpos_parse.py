"""A pure decoder of the ESC/POS byte stream a host sends to a printer, into receipts.

    parser = EscposParser(encoding=TextEncoding.GB18030)
    parser.feed(chunk)
    while (event := parser.next_event()) is not NEED_DATA:
        ...   # StatusRequest(n) to answer, ReceiptCut(receipt) to render, Ignored(...) to log

The model is what a printer would put on paper: lines made of styled spans (bold, underline,
width and height multipliers) with their justification, QR codes with their payload, paper
feeds; a cut ends a receipt. The printer emulator is built on it.

Bounds: `feed` refuses to hold more than `max_buffer` unparsed bytes; a line may hold at most
MAX_LINE_BYTES bytes and a receipt MAX_ITEMS items; a QR store command may declare at most
QR_MAX_DATA bytes. Going past a bound raises `EscposReceiveError` (the host's fault) and leaves
the parser in an error state until `reset()`. Large commands we do not model (raster images,
other 2D symbols) are skipped as they stream by, never buffered. Unknown commands are skipped
and reported as `Ignored`, as a real printer would ignore them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Final

from protocols.escpos_base import (
    DLE,
    EOT,
    ESC,
    FS,
    GS,
    LF,
    QR_CN,
    QR_FN_ERROR_LEVEL,
    QR_FN_MODEL,
    QR_FN_MODULE_SIZE,
    QR_FN_PRINT,
    QR_FN_STORE,
    QR_MAX_DATA,
    Align,
    CutKind,
    EscposReceiveError,
    QrErrorLevel,
    TextEncoding,
)
from protocols.escpos_receipt import (
    NEED_DATA,
    Ignored,
    Item,
    NeedData,
    PaperFeed,
    ParsedReceipt,
    ParseEvent,
    PrintedLine,
    PrintedQr,
    ReceiptCut,
    Span,
    StatusRequest,
)

__all__ = [
    "MAX_ITEMS",
    "MAX_LINE_BYTES",
    "NEED_DATA",
    "EscposParser",
    "Ignored",
    "PaperFeed",
    "ParseEvent",
    "ParsedReceipt",
    "PrintedLine",
    "PrintedQr",
    "ReceiptCut",
    "Span",
    "StatusRequest",
]

MAX_LINE_BYTES: Final = 4096
MAX_ITEMS: Final = 4096
DEFAULT_MAX_BUFFER: Final = 16 * 1024
_CONTROL: Final = re.compile(rb"[\x00-\x1f]")

# ESC/GS/FS commands we do not model, by total length in bytes (prefix + code + parameters).
_ESC_FIXED: Final = {
    0x20: 3, 0x25: 3, 0x32: 2, 0x33: 3, 0x3C: 2, 0x3D: 3, 0x3F: 3, 0x47: 3, 0x4C: 2, 0x4D: 3,
    0x52: 3, 0x53: 2, 0x54: 3, 0x55: 3, 0x56: 3, 0x65: 3, 0x70: 5, 0x72: 3, 0x74: 3, 0x7B: 3,
    0x24: 4, 0x5C: 4, 0x4A: 3, 0x63: 4,
}
_GS_FIXED: Final = {
    0x42: 3, 0x48: 3, 0x49: 3, 0x4C: 4, 0x50: 4, 0x57: 4, 0x61: 3, 0x62: 3, 0x66: 3, 0x68: 3,
    0x72: 3, 0x77: 3, 0x24: 4, 0x5C: 4, 0x54: 3, 0x3A: 2,
}
_FS_FIXED: Final = {0x2D: 3, 0x43: 3, 0x53: 4, 0x57: 3, 0x70: 4}


@dataclass(slots=True)
class _Mode:
    bold: bool = False
    underline: bool = False
    width: int = 1
    height: int = 1
    align: Align = Align.LEFT


@dataclass(slots=True)
class _QrSettings:
    model: int = 2
    module_size: int = 3
    level: QrErrorLevel = QrErrorLevel.L
    data: bytes = b""


@dataclass(slots=True)
class _LineBuilder:
    spans: list[Span] = field(default_factory=list)
    raw: bytearray = field(default_factory=bytearray)
    span_mode: _Mode | None = None
    align: Align | None = None
    size: int = 0


class _Incomplete(Exception):
    """Internal: the command at the head of the buffer is not all here yet."""


class EscposParser:
    """Incremental decoder: `feed(bytes)`, then `next_event()` until it returns NEED_DATA."""

    def __init__(
        self,
        *,
        encoding: TextEncoding | str = TextEncoding.GB18030,
        max_buffer: int = DEFAULT_MAX_BUFFER,
    ) -> None:
        if max_buffer < QR_MAX_DATA + 16:
            raise ValueError(f"max_buffer {max_buffer} cannot hold one QR store command")
        self.encoding = TextEncoding(encoding)
        self.max_buffer = max_buffer
        self.reset()

    def reset(self) -> None:
        """Forget everything, as a printer does at power-on (Chinese mode on)."""
        self._buf = bytearray()
        self._skip = 0
        self._events: list[ParseEvent] = []
        self._mode = _Mode()
        self._qr = _QrSettings()
        self._line = _LineBuilder()
        self._items: list[Item] = []
        self._chinese = True
        self._error: str | None = None

    @property
    def buffered(self) -> int:
        """Bytes received and not yet parsed (bounded by `max_buffer`)."""
        return len(self._buf)

    @property
    def pending_items(self) -> int:
        """Items printed since the last cut."""
        return len(self._items)

    def feed(self, data: bytes) -> None:
        self._check_usable()
        if len(self._buf) + len(data) > self.max_buffer:
            self._fail(
                f"receive buffer would hold {len(self._buf) + len(data)} bytes, over the bound "
                f"of {self.max_buffer}: drain next_event() between feeds"
            )
        self._buf += data

    def next_event(self) -> ParseEvent | NeedData:
        self._check_usable()
        while not self._events:
            if self._skip:
                taken = min(self._skip, len(self._buf))
                del self._buf[:taken]
                self._skip -= taken
                if self._skip:
                    return NEED_DATA
            if not self._buf:
                return NEED_DATA
            try:
                self._parse_one()
            except _Incomplete:
                return NEED_DATA
            except EscposReceiveError as exc:
                self._error = str(exc)
                raise
        return self._events.pop(0)

    # --- internals -------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._error is not None:
            raise EscposReceiveError(f"parser stopped after an error ({self._error}); reset() it")

    def _fail(self, message: str) -> None:
        self._error = message
        raise EscposReceiveError(message)

    def _need(self, n: int) -> None:
        if len(self._buf) < n:
            raise _Incomplete

    def _take(self, n: int) -> bytes:
        taken = bytes(self._buf[:n])
        del self._buf[:n]
        return taken

    def _ignore(self, n: int, reason: str) -> None:
        self._events.append(Ignored(command=self._take(n), reason=reason))

    def _parse_one(self) -> None:
        head = self._buf[0]
        if head >= 0x20:
            match = _CONTROL.search(self._buf)
            self._add_text(self._take(match.start() if match else len(self._buf)))
        elif head == LF:
            self._take(1)
            self._end_line(force=True)
        elif head == DLE:
            self._dle()
        elif head == ESC:
            self._esc()
        elif head == GS:
            self._gs()
        elif head == FS:
            self._fs()
        elif head in (0x00, 0x0D):
            self._take(1)  # NUL padding and CR are no-ops on receipt printers
        else:
            self._ignore(1, f"control byte {head:#04x}")

    def _add_text(self, raw: bytes) -> None:
        line = self._line
        if line.size + len(raw) > MAX_LINE_BYTES:
            self._fail(f"a line of more than {MAX_LINE_BYTES} bytes without LF")
        if line.align is None:
            line.align = self._mode.align  # ESC a counts only at the start of a line
        if line.span_mode != self._mode:
            self._close_span()
            line.span_mode = replace(self._mode)
        line.raw += raw
        line.size += len(raw)

    def _close_span(self) -> None:
        line = self._line
        if line.raw and line.span_mode is not None:
            codec = self.encoding.value if self._chinese else "cp437"
            mode = line.span_mode
            line.spans.append(Span(text=line.raw.decode(codec, errors="replace"), bold=mode.bold,
                                   underline=mode.underline, width=mode.width,
                                   height=mode.height))
        line.raw = bytearray()

    def _end_line(self, *, force: bool) -> None:
        """Print the line buffer; `force` prints even an empty one (LF feeds a line)."""
        if not force and self._line.size == 0:
            return
        self._close_span()
        align = self._line.align if self._line.align is not None else self._mode.align
        self._add_item(PrintedLine(spans=tuple(self._line.spans), align=align))
        self._line = _LineBuilder()

    def _add_item(self, item: Item) -> None:
        if len(self._items) >= MAX_ITEMS:
            self._fail(f"a receipt of more than {MAX_ITEMS} items without a cut")
        self._items.append(item)

    def _cut(self, kind: CutKind, feed: int) -> None:
        self._end_line(force=False)
        if feed:
            self._add_item(PaperFeed(lines=feed))
        self._events.append(ReceiptCut(receipt=ParsedReceipt(items=tuple(self._items), cut=kind)))
        self._items = []

    def _dle(self) -> None:
        self._need(2)
        code = self._buf[1]
        if code == EOT:
            self._need(3)
            n = self._buf[2]
            if 1 <= n <= 4:
                self._take(3)
                self._events.append(StatusRequest(n=n))
            elif n in (7, 8):
                self._need(4)
                self._ignore(4, "extended status request")
            else:
                self._ignore(3, f"DLE EOT with n={n}")
        elif code == 0x05:
            self._need(3)
            self._ignore(3, "DLE ENQ real-time request")
        elif code == 0x14:
            self._need(3)
            self._need(10 if self._buf[2] == 8 else 5)
            self._ignore(10 if self._buf[2] == 8 else 5, "DLE DC4 real-time command")
        else:
            self._ignore(1, "DLE not followed by a real-time command")

    def _esc(self) -> None:
        self._need(2)
        code = self._buf[1]
        if code == 0x40:  # ESC @: clear the print buffer and every mode
            self._take(2)
            self._line = _LineBuilder()
            self._mode = _Mode()
            self._qr = _QrSettings()
            return
        if code in (0x69, 0x6D):  # ESC i / ESC m: legacy full / partial cut
            self._take(2)
            self._cut(CutKind.FULL if code == 0x69 else CutKind.PARTIAL, 0)
            return
        if code in (0x45, 0x2D, 0x61, 0x64, 0x21):
            self._need(3)
            n = self._take(3)[2]
            self._esc_mode(code, n)
            return
        if code in _ESC_FIXED:
            self._need(_ESC_FIXED[code])
            if code == 0x4A:
                self._end_line(force=False)  # ESC J prints the buffer, then feeds dots
            self._ignore(_ESC_FIXED[code], f"ESC {chr(code)!r} not modelled")
            return
        self._ignore(2, f"unknown command ESC {code:#04x}")

    def _esc_mode(self, code: int, n: int) -> None:
        mode = self._mode
        if code == 0x45:
            mode.bold = bool(n & 1)
        elif code == 0x2D:
            mode.underline = n in (1, 2, 0x31, 0x32)
        elif code == 0x61:
            try:
                mode.align = Align.from_wire(n)
            except ValueError as exc:
                self._events.append(Ignored(command=bytes((ESC, code, n)), reason=str(exc)))
        elif code == 0x64:
            self._end_line(force=False)
            self._add_item(PaperFeed(lines=n))
        else:  # ESC ! n: bit 3 bold, 4 double height, 5 double width, 7 underline
            mode.bold = bool(n & 0x08)
            mode.height = 2 if n & 0x10 else 1
            mode.width = 2 if n & 0x20 else 1
            mode.underline = bool(n & 0x80)

    def _fs(self) -> None:
        self._need(2)
        code = self._buf[1]
        if code in (0x26, 0x2E):
            self._take(2)
            self._close_span()  # bytes before the switch decode in the old mode
            self._line.span_mode = None
            self._chinese = code == 0x26
        elif code == 0x21:  # FS ! n: Chinese print mode: bit 2 double width, 3 double height
            self._need(3)
            n = self._take(3)[2]
            self._mode.width = 2 if n & 0x04 else 1
            self._mode.height = 2 if n & 0x08 else 1
            self._mode.underline = bool(n & 0x80)
        elif code in _FS_FIXED:
            self._need(_FS_FIXED[code])
            self._ignore(_FS_FIXED[code], f"FS {chr(code)!r} not modelled")
        else:
            self._ignore(2, f"unknown command FS {code:#04x}")

    def _gs(self) -> None:
        self._need(2)
        code = self._buf[1]
        if code == 0x21:  # GS ! n: bits 4-6 width - 1, bits 0-2 height - 1
            self._need(3)
            n = self._take(3)[2]
            self._mode.width = (n >> 4 & 7) + 1
            self._mode.height = (n & 7) + 1
        elif code == 0x56:
            self._gs_cut()
        elif code == 0x28:
            self._gs_paren()
        elif code == 0x76:
            self._gs_raster()
        elif code == 0x6B:
            self._gs_barcode()
        elif code in _GS_FIXED:
            self._need(_GS_FIXED[code])
            self._ignore(_GS_FIXED[code], f"GS {chr(code)!r} not modelled")
        else:
            self._ignore(2, f"unknown command GS {code:#04x}")

    def _gs_cut(self) -> None:
        self._need(3)
        m = self._buf[2]
        if m in (0, 1, 48, 49):
            self._take(3)
            self._cut(CutKind.FULL if m in (0, 48) else CutKind.PARTIAL, 0)
        elif m in (65, 66, 97, 98, 103, 104):
            self._need(4)
            feed = self._take(4)[3]
            self._cut(CutKind.FULL if m in (65, 97, 103) else CutKind.PARTIAL, feed)
        else:
            self._ignore(3, f"GS V with unknown cut mode {m}")

    def _gs_paren(self) -> None:
        self._need(5)
        length = self._buf[3] | self._buf[4] << 8
        if length >= 2:
            self._need(6)
        if self._buf[2] != 0x6B or length < 2 or self._buf[5] != QR_CN:
            # Some other GS ( function, or another 2D symbol: skip its declared length.
            self._ignore(5, "GS ( function not modelled")
            self._skip = length
            return
        self._need(7)
        fn = self._buf[6]
        if fn == QR_FN_STORE and length - 3 > QR_MAX_DATA:
            self._fail(f"QR store command declares {length - 3} bytes, over {QR_MAX_DATA}")
        if fn != QR_FN_STORE and length > 16:
            self._ignore(5, f"QR function {fn:#04x} with {length} parameter bytes")
            self._skip = length
            return
        self._need(5 + length)
        body = self._take(5 + length)[5:]
        self._qr_function(fn, body[2:])

    def _qr_function(self, fn: int, params: bytes) -> None:
        qr = self._qr
        try:
            if fn == QR_FN_MODEL and params[:1] in (b"\x31", b"\x32"):
                qr.model = params[0] - 0x30
            elif fn == QR_FN_MODULE_SIZE and params and 1 <= params[0] <= 16:
                qr.module_size = params[0]
            elif fn == QR_FN_ERROR_LEVEL and params:
                qr.level = QrErrorLevel.from_wire(params[0])
            elif fn == QR_FN_STORE and params[:1] == b"\x30":
                qr.data = params[1:]
            elif fn == QR_FN_PRINT and qr.data:
                self._end_line(force=False)
                self._add_item(PrintedQr(payload=qr.data, module_size=qr.module_size,
                                         level=qr.level, model=qr.model, align=self._mode.align))
            else:
                raise ValueError(f"QR function {fn:#04x} with parameters {params[:8].hex()}")
        except ValueError as exc:
            command = bytes((GS, 0x28, 0x6B, QR_CN, fn)) + params[:8]
            self._events.append(Ignored(command=command, reason=str(exc)))

    def _gs_raster(self) -> None:
        self._need(8)
        if self._buf[2] != 0x30:
            self._ignore(3, "GS v other than raster bit image")
            return
        x_bytes = self._buf[4] | self._buf[5] << 8
        y_dots = self._buf[6] | self._buf[7] << 8
        self._end_line(force=False)
        self._ignore(8, f"raster image {x_bytes * 8}x{y_dots} dots not modelled")
        self._skip = x_bytes * y_dots

    def _gs_barcode(self) -> None:
        self._need(3)
        m = self._buf[2]
        if m <= 6:  # data ends with NUL
            end = self._buf.find(0, 3, 3 + 256)
            if end < 0:
                if len(self._buf) >= 3 + 256:
                    self._fail("a GS k barcode of more than 255 bytes without its NUL")
                raise _Incomplete
            self._ignore(end + 1, "barcode not modelled")
        else:
            self._need(4)
            self._need(4 + self._buf[3])
            self._ignore(4 + self._buf[3], "barcode not modelled")
