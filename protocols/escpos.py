"""ESC/POS receipt composer for Chinese receipt printers, and the station's case receipt.

    receipt = Receipt(width_chars=32, encoding="gb18030")
    receipt.text("受理回执", bold=True, width=2, height=2, align="center")
    receipt.key_value("受理编号：", "ST001-20261122-0007")
    receipt.qr("ST001-20261122-0007").cut()
    data = receipt.to_bytes()      # starts with ESC @, FS & (Chinese mode)

Text is encoded character by character in the printer's encoding (GB18030 or GB2312), so
full-width punctuation such as `，。：（）` always goes out as its two-byte GB code. (python-escpos
chose a code page per string and printed `?` for strings made only of such punctuation.)

A character the encoding lacks is never sent as a silent `?`: by default the method that was
given it raises `EscposEncodingError` naming the character; with `replacement="□"` it is
replaced by that character instead and listed in `Receipt.substitutions`, so the caller can log
it. `□` (GB2312 A1F5) is the documented replacement `compose_case_receipt` offers.

Pure: no I/O. The status decoder lives in `protocols.escpos_status`, re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from protocols.escpos_base import (
    CHINESE_MODE_ON,
    ESC,
    GS,
    INITIALISE,
    LF,
    QR_CN,
    QR_FN_ERROR_LEVEL,
    QR_FN_MODEL,
    QR_FN_MODULE_SIZE,
    QR_FN_PRINT,
    QR_FN_STORE,
    QR_M,
    QR_MAX_DATA,
    QR_MODULE_SIZES,
    Align,
    CutKind,
    EscposEncodingError,
    EscposError,
    EscposReceiveError,
    EscposStatusError,
    QrErrorLevel,
    TextEncoding,
    columns,
    encode_text,
    unencodable,
)
from protocols.escpos_status import (
    ErrorReply,
    OfflineReply,
    PaperReply,
    PrinterReply,
    PrinterStatus,
    StatusReply,
    decode_status,
    encode_status,
    status_query,
)

__all__ = [
    "REPLACEMENT_CHAR",
    "Align",
    "CutKind",
    "ErrorReply",
    "EscposEncodingError",
    "EscposError",
    "EscposReceiveError",
    "EscposStatusError",
    "OfflineReply",
    "PaperReply",
    "PrinterReply",
    "PrinterStatus",
    "QrErrorLevel",
    "Receipt",
    "StatusReply",
    "TextEncoding",
    "compose_case_receipt",
    "decode_status",
    "encode_status",
    "mask_id_number",
    "mask_name",
    "qr_commands",
    "status_query",
]

REPLACEMENT_CHAR: Final = "□"
WIDTH_CHARS: Final = range(16, 97)  # 58 mm paper: 32 columns; 80 mm: 42 or 48
SIZES: Final = (1, 2)
MAX_FEED: Final = 255


@dataclass(frozen=True, slots=True, kw_only=True)
class _Style:
    bold: bool = False
    underline: bool = False
    width: int = 1
    height: int = 1
    align: Align = Align.LEFT

    def __post_init__(self) -> None:
        if self.width not in SIZES or self.height not in SIZES:
            raise EscposEncodingError(
                f"character size {self.width}x{self.height} is not supported: width and height "
                "must each be 1 (normal) or 2 (double)"
            )

    @property
    def size_byte(self) -> int:
        # GS ! n: bits 4-6 = width multiplier - 1, bits 0-2 = height multiplier - 1.
        return ((self.width - 1) << 4) | (self.height - 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Line:
    encoded: bytes
    style: _Style


@dataclass(frozen=True, slots=True, kw_only=True)
class _Qr:
    data: bytes
    module_size: int
    level: QrErrorLevel
    align: Align

    def __post_init__(self) -> None:
        if not 1 <= len(self.data) <= QR_MAX_DATA:
            raise EscposEncodingError(
                f"QR payload of {len(self.data)} bytes: it must hold 1..{QR_MAX_DATA} bytes"
            )
        if self.module_size not in QR_MODULE_SIZES:
            raise EscposEncodingError(
                f"QR module size {self.module_size} is outside 1..16 dots; 4..8 scans well"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class _Feed:
    lines: int


@dataclass(frozen=True, slots=True, kw_only=True)
class _Cut:
    kind: CutKind
    feed: int


_Block = _Line | _Qr | _Feed | _Cut


def _gs_k(fn: int, *params: int) -> bytes:
    body = bytes((QR_CN, fn, *params))
    return bytes((GS, 0x28, 0x6B, len(body) & 0xFF, len(body) >> 8)) + body


def qr_commands(
    data: bytes, *, module_size: int = 6, level: QrErrorLevel = QrErrorLevel.M
) -> bytes:
    """The five `GS ( k` functions that print one QR code: model 2, module size, error level,
    store (pL pH = len(data) + 3), print."""
    _Qr(data=data, module_size=module_size, level=level, align=Align.LEFT)  # validates
    store = bytes((QR_CN, QR_FN_STORE, QR_M)) + data
    return (
        _gs_k(QR_FN_MODEL, 0x32, 0x00)
        + _gs_k(QR_FN_MODULE_SIZE, module_size)
        + _gs_k(QR_FN_ERROR_LEVEL, level.wire)
        + bytes((GS, 0x28, 0x6B, len(store) & 0xFF, len(store) >> 8))
        + store
        + _gs_k(QR_FN_PRINT, QR_M)
    )


class Receipt:
    """A receipt under construction. Each method validates and encodes at once (so an error
    points at the call that caused it) and returns the receipt, for chaining."""

    __slots__ = ("_blocks", "_substitutions", "encoding", "replacement", "width_chars")

    def __init__(
        self,
        width_chars: int = 32,
        encoding: TextEncoding | str = TextEncoding.GB18030,
        *,
        replacement: str | None = None,
    ) -> None:
        if width_chars not in WIDTH_CHARS:
            raise EscposEncodingError(
                f"receipt width {width_chars} columns is outside {WIDTH_CHARS.start}.."
                f"{WIDTH_CHARS.stop - 1}; 58 mm paper has 32 columns, 80 mm has 42 or 48"
            )
        try:
            self.encoding = TextEncoding(encoding)
        except ValueError as exc:
            raise EscposEncodingError(
                f"printer encoding {encoding!r} is not supported: use gb18030 or gb2312"
            ) from exc
        if replacement is not None and (
            len(replacement) != 1 or unencodable(replacement, self.encoding)
        ):
            raise EscposEncodingError(
                f"replacement {replacement!r} must be one character with a "
                f"{self.encoding.value.upper()} code, e.g. {REPLACEMENT_CHAR!r}"
            )
        self.width_chars = width_chars
        self.replacement = replacement
        self._blocks: list[_Block] = []
        self._substitutions: list[str] = []

    @property
    def substitutions(self) -> tuple[str, ...]:
        """Characters replaced because the encoding lacks them, in order of appearance."""
        return tuple(self._substitutions)

    def _encode(self, text: str) -> bytes:
        if self.replacement is not None:
            self._substitutions.extend(unencodable(text, self.encoding))
        return encode_text(text, self.encoding, replacement=self.replacement)

    def _wrap(self, text: str, limit: int) -> list[bytes]:
        """Split `text` into encoded pieces of at most `limit` columns, never inside a glyph."""
        pieces: list[bytes] = []
        current = bytearray()
        used = 0
        for char in text:
            code = encode_text(char, self.encoding, replacement=self.replacement)
            width = columns(code)
            if used + width > limit and current:
                pieces.append(bytes(current))
                current.clear()
                used = 0
            current += code
            used += width
        pieces.append(bytes(current))
        return pieces

    def text(
        self,
        text: str,
        *,
        bold: bool = False,
        underline: bool = False,
        width: int = 1,
        height: int = 1,
        align: Align | str = Align.LEFT,
    ) -> Receipt:
        """One line of text, wrapped at the paper width (counted in columns, CJK = 2)."""
        style = _Style(bold=bold, underline=underline, width=width, height=height,
                       align=Align(align))
        self._encode(text)  # the whole line first: an error then shows it in full
        for piece in self._wrap(text, self.width_chars // width):
            self._blocks.append(_Line(encoded=piece, style=style))
        return self

    def blank(self) -> Receipt:
        """An empty line."""
        self._blocks.append(_Line(encoded=b"", style=_Style()))
        return self

    def separator(self, char: str = "-") -> Receipt:
        """A rule across the paper width made of `char` (full-width chars count twice)."""
        code = self._encode(char)
        if len(char) != 1 or not code:
            raise EscposEncodingError(f"separator {char!r} must be exactly one character")
        self._blocks.append(
            _Line(encoded=code * (self.width_chars // columns(code)), style=_Style())
        )
        return self

    def key_value(self, key: str, value: str, *, bold: bool = False) -> Receipt:
        """`key` on the left and `value` flush right on one line; when both do not fit, the
        key takes its own line and the value follows flush right (wrapped if it must be)."""
        key_code = encode_text(key, self.encoding, replacement=self.replacement)
        value_code = encode_text(value, self.encoding, replacement=self.replacement)
        key_cols, value_cols = columns(key_code), columns(value_code)
        style = _Style(bold=bold)
        if key_cols + 1 + value_cols <= self.width_chars:
            self._encode(key + value)  # records substitutions, once
            padding = b" " * (self.width_chars - key_cols - value_cols) if value_code else b""
            self._blocks.append(_Line(encoded=key_code + padding + value_code, style=style))
            return self
        self.text(key, bold=bold)
        return self.text(value, bold=bold, align=Align.RIGHT)

    def qr(
        self,
        data: str | bytes,
        *,
        module_size: int = 6,
        level: QrErrorLevel | str = QrErrorLevel.M,
        align: Align | str = Align.CENTER,
    ) -> Receipt:
        """A QR code (model 2). A str payload is encoded in the printer's encoding."""
        payload = data if isinstance(data, bytes) else self._encode(data)
        self._blocks.append(
            _Qr(data=payload, module_size=module_size, level=QrErrorLevel(level),
                align=Align(align))
        )
        return self

    def feed(self, lines: int = 1) -> Receipt:
        """Print what is buffered and feed `lines` blank lines (ESC d n)."""
        if not 0 <= lines <= MAX_FEED:
            raise EscposEncodingError(f"feed of {lines} lines is outside 0..{MAX_FEED}")
        self._blocks.append(_Feed(lines=lines))
        return self

    def cut(self, kind: CutKind | str = CutKind.PARTIAL, *, feed: int = 3) -> Receipt:
        """Feed `feed` lines (so the last line clears the blade) and cut (GS V 65/66 n)."""
        if not 0 <= feed <= MAX_FEED:
            raise EscposEncodingError(f"feed before cut of {feed} is outside 0..{MAX_FEED}")
        self._blocks.append(_Cut(kind=CutKind(kind), feed=feed))
        return self

    def to_bytes(self) -> bytes:
        """The whole job: ESC @, FS &, then each block; a style command is sent only when it
        changes (ESC @ has just put every style at its default)."""
        out = bytearray(INITIALISE + CHINESE_MODE_ON)
        state = _Style()
        for block in self._blocks:
            match block:
                case _Line(encoded=encoded, style=style):
                    out += _style_changes(state, style)
                    state = style
                    out += encoded + bytes((LF,))
                case _Qr(data=data, module_size=size, level=level, align=align):
                    if align is not state.align:
                        out += bytes((ESC, 0x61, align.wire))
                        state = _Style(bold=state.bold, underline=state.underline,
                                       width=state.width, height=state.height, align=align)
                    out += qr_commands(data, module_size=size, level=level)
                case _Feed(lines=lines):
                    out += bytes((ESC, 0x64, lines))
                case _Cut(kind=kind, feed=feed):
                    out += bytes((GS, 0x56, 65 if kind is CutKind.FULL else 66, feed))
        return bytes(out)


def _style_changes(old: _Style, new: _Style) -> bytes:
    out = bytearray()
    if new.align is not old.align:
        out += bytes((ESC, 0x61, new.align.wire))
    if new.bold != old.bold:
        out += bytes((ESC, 0x45, int(new.bold)))
    if new.underline != old.underline:
        out += bytes((ESC, 0x2D, int(new.underline)))
    if new.size_byte != old.size_byte:
        out += bytes((GS, 0x21, new.size_byte))
    return bytes(out)


def mask_name(name: str) -> str:
    """Keep the first character (the surname, usually), star the rest: 张三丰 → 张**."""
    name = name.strip()
    if not name:
        raise EscposEncodingError("applicant name is empty: a receipt needs the applicant")
    return name[0] + "*" * max(1, len(name) - 1)


def mask_id_number(id_number: str) -> str:
    """Keep the first 4 and last 4 characters (the project's rule for showing ID numbers)."""
    id_number = id_number.strip()
    if len(id_number) < 9:
        raise EscposEncodingError(
            f"ID number of {len(id_number)} characters is too short to mask (first 4 and last 4 "
            "are kept); pass the full number"
        )
    return id_number[:4] + "*" * (len(id_number) - 8) + id_number[-4:]


DEFAULT_FOOTER: Final = ("请妥善保管本回执，凭受理编号或扫描二维码查询办理进度。",)


def compose_case_receipt(
    *,
    station: str,
    case_number: str,
    service: str,
    applicant_name: str,
    id_number: str,
    materials: int,
    accepted_at: datetime,
    width_chars: int = 32,
    encoding: TextEncoding | str = TextEncoding.GB18030,
    title: str = "受理回执",
    footer: tuple[str, ...] = DEFAULT_FOOTER,
    replacement: str | None = None,
) -> Receipt:
    """The station's acceptance receipt (受理回执). The applicant's name and ID number are
    masked here, so the printed paper never shows them whole."""
    if materials < 0:
        raise EscposEncodingError(f"materials count {materials} is negative")
    if not case_number.isascii() or not case_number.strip():
        raise EscposEncodingError(
            f"case number {case_number!r} must be non-empty ASCII (it is the QR code's payload)"
        )
    receipt = Receipt(width_chars, encoding, replacement=replacement)
    receipt.text(title, bold=True, width=2, height=2, align=Align.CENTER)
    receipt.text(station, align=Align.CENTER)
    receipt.separator()
    receipt.key_value("受理编号：", case_number)
    receipt.key_value("办理事项：", service)
    receipt.key_value("申请人：", mask_name(applicant_name))
    receipt.key_value("身份证号：", mask_id_number(id_number))
    receipt.key_value("材料份数：", f"{materials}份")
    receipt.key_value("受理时间：", accepted_at.strftime("%Y-%m-%d %H:%M"))
    receipt.separator()
    receipt.qr(case_number, module_size=6, level=QrErrorLevel.M, align=Align.CENTER)
    receipt.text(case_number, align=Align.CENTER)
    for line in footer:
        receipt.text(line)
    return receipt.cut(CutKind.PARTIAL, feed=4)
