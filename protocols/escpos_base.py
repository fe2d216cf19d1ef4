"""ESC/POS building blocks shared by the composer, the status decoder and the stream parser.

Command bytes, the two Chinese encodings a printer may be set to, and the one exception family
of the ESC/POS codec. Pure: no I/O. The byte-level facts come from
`shared/reference/devices.md`, section 2.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

# --- command bytes -------------------------------------------------------------------------

LF: Final = 0x0A
CR: Final = 0x0D
HT: Final = 0x09
DLE: Final = 0x10
EOT: Final = 0x04
ESC: Final = 0x1B
FS: Final = 0x1C
GS: Final = 0x1D

INITIALISE: Final = bytes((ESC, 0x40))  # ESC @: clears the buffer and every mode
CHINESE_MODE_ON: Final = bytes((FS, 0x26))  # FS &
CHINESE_MODE_OFF: Final = bytes((FS, 0x2E))  # FS .

# GS ( k: QR code functions (cn = 0x31 selects the QR symbol family).
QR_CN: Final = 0x31
QR_FN_MODEL: Final = 0x41
QR_FN_MODULE_SIZE: Final = 0x43
QR_FN_ERROR_LEVEL: Final = 0x45
QR_FN_STORE: Final = 0x50
QR_FN_PRINT: Final = 0x51
QR_M: Final = 0x30  # the `m` parameter of store/print is always 0x30

# The largest payload a version-40 QR code holds in byte mode at level L (2953 bytes); a store
# command declaring more can only be a mistake, so both sides refuse it before buffering it.
QR_MAX_DATA: Final = 2953
QR_MODULE_SIZES: Final = range(1, 17)


class QrErrorLevel(StrEnum):
    """QR error-correction level; the wire byte is 0x30 + index (L, M, Q, H)."""

    L = "L"
    M = "M"
    Q = "Q"
    H = "H"

    @property
    def wire(self) -> int:
        return 0x30 + "LMQH".index(self.value)

    @classmethod
    def from_wire(cls, byte: int) -> QrErrorLevel:
        if not 0x30 <= byte <= 0x33:
            raise ValueError(f"QR error level byte {byte:#04x} is not 0x30..0x33")
        return cls("LMQH"[byte - 0x30])


class Align(StrEnum):
    """Justification of a line (ESC a n, n = 0, 1, 2)."""

    LEFT = "left"
    CENTER = "center"
    RIGHT = "right"

    @property
    def wire(self) -> int:
        return ("left", "center", "right").index(self.value)

    @classmethod
    def from_wire(cls, byte: int) -> Align:
        # Firmware accepts both 0..2 and the ASCII digits '0'..'2'.
        index = byte - 0x30 if byte >= 0x30 else byte
        if not 0 <= index <= 2:
            raise ValueError(f"justification byte {byte:#04x} is not 0..2 or '0'..'2'")
        return (cls.LEFT, cls.CENTER, cls.RIGHT)[index]


class CutKind(StrEnum):
    FULL = "full"
    PARTIAL = "partial"


# --- encodings -----------------------------------------------------------------------------


class TextEncoding(StrEnum):
    """How a printer's firmware reads two-byte Chinese codes (a per-printer setting)."""

    GB18030 = "gb18030"
    GB2312 = "gb2312"


# GB2312 has these glyphs, but Python's codec maps them from a different code point than the one
# people type: the middle dot in minority names (阿卜杜·热合曼) is U+00B7 on keyboards and
# U+30FB in the codec; the em dash is U+2014 vs U+2015. Same printed glyph, so map, not fail.
_GB2312_EQUIVALENTS: Final = str.maketrans({"\u00b7": "\u30fb", "\u2014": "\u2015"})


# --- errors --------------------------------------------------------------------------------


class EscposError(Exception):
    """Base of every error raised by the ESC/POS codec."""


class EscposEncodingError(EscposError, ValueError):
    """We were asked to compose something the printer cannot print (our side's mistake)."""


class EscposStatusError(EscposError):
    """A status reply that does not have the `0xx1xx10` shape: the peer broke the protocol."""


class EscposReceiveError(EscposError):
    """The byte stream received from a host broke a bound or the protocol (the peer's error)."""


def encode_text(text: str, encoding: TextEncoding, *, replacement: str | None = None) -> bytes:
    """Encode one line of printable text for a printer in Chinese mode.

    Every character is encoded on its own, so the error names exactly the character that the
    printer's code table lacks. With `replacement` (itself encodable, e.g. "□"), such characters
    are replaced by it instead; the caller decides, and the composer records each substitution.
    Control characters are refused: inside text they would be read as printer commands.
    """
    if encoding is TextEncoding.GB2312:
        text = text.translate(_GB2312_EQUIVALENTS)
    out = bytearray()
    for index, char in enumerate(text):
        code = ord(char)
        if code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0:
            raise EscposEncodingError(
                f"control character U+{code:04X} at position {index} of {text!r}: text lines "
                "may not contain control characters (they would be read as printer commands); "
                "split the text into lines instead"
            )
        try:
            out += char.encode(encoding.value)
        except UnicodeEncodeError as exc:
            if replacement is None:
                raise EscposEncodingError(
                    f"character {char!r} (U+{code:04X}) at position {index} of {text!r} has no "
                    f"{encoding.value.upper()} code, so the printer cannot print it; set the "
                    "printer's encoding to gb18030 if its firmware supports it, or compose "
                    "with a replacement character"
                ) from exc
            out += encode_text(replacement, encoding)
    return bytes(out)


def unencodable(text: str, encoding: TextEncoding) -> tuple[str, ...]:
    """The characters of `text` that have no code in `encoding` (after the GB2312 mapping)."""
    if encoding is TextEncoding.GB2312:
        text = text.translate(_GB2312_EQUIVALENTS)
    missing: list[str] = []
    for char in text:
        try:
            char.encode(encoding.value)
        except UnicodeEncodeError:
            if char not in missing:
                missing.append(char)
    return tuple(missing)


def columns(encoded: bytes) -> int:
    """Printed width in columns of GB-encoded text in Chinese mode.

    The printer decides by the code, not by Unicode: a one-byte (ASCII) code is one column
    (12 dots on the usual 12x24 font), a two- or four-byte code is one full-width glyph of two
    columns (24 dots). GB18030 four-byte codes start with a lead byte and a digit 0x30..0x39.
    """
    width = 0
    i = 0
    while i < len(encoded):
        byte = encoded[i]
        if byte < 0x80:
            width += 1
            i += 1
        elif i + 1 < len(encoded) and 0x30 <= encoded[i + 1] <= 0x39:
            width += 2
            i += 4
        else:
            width += 2
            i += 2
    return width
