"""The 256-byte text block of a card read: layout tables, parser and encoder.

The block is UCS-2 little-endian, each field padded with spaces to its fixed width. The two
bytes at offset 248 tell the card type (space, ``J``, ``I``, ``Y``); the tables below give each
type's fields as (name, byte offset, byte width), straight from the reference table. Parsing
strips the padding, decodes sex, nation, dates (``长期`` = no expiry, `None`) and validates
ID numbers; anything wrong raises `CardDataError` naming the field, never quoting its value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Final

from protocols.idcard.cards import (
    LONG_TERM,
    CardText,
    CardType,
    ForeignPermit2017,
    ForeignPermit2023,
    HkMoTwPermit,
    ResidentCard,
    Sex,
)
from protocols.idcard.errors import CardDataError, InvalidValue, LocalProtocolError

__all__ = ["TEXT_BLOCK_SIZE", "card_type_of", "encode_text_block", "parse_text_block"]

TEXT_BLOCK_SIZE: Final = 256
_MARKER_OFFSET: Final = 248
_PAD: Final = " "
_STRIP: Final = " \x00"


@dataclass(frozen=True, slots=True)
class _Slot:
    name: str
    offset: int
    width: int  # bytes; characters are width // 2

    @property
    def chars(self) -> int:
        return self.width // 2


_MARKERS: Final[Mapping[str, CardType]] = {
    " ": CardType.RESIDENT,
    "J": CardType.HKMOTW,
    "I": CardType.FOREIGN_2017,
    "Y": CardType.FOREIGN_2023,
}
_MARKER_OF: Final = {card_type: marker for marker, card_type in _MARKERS.items()}

_LAYOUTS: Final[Mapping[CardType, tuple[_Slot, ...]]] = {
    CardType.RESIDENT: (
        _Slot("name", 0, 30),
        _Slot("sex", 30, 2),
        _Slot("nation", 32, 4),
        _Slot("birth_date", 36, 16),
        _Slot("address", 52, 70),
        _Slot("id_number", 122, 36),
        _Slot("issuing_authority", 158, 30),
        _Slot("valid_from", 188, 16),
        _Slot("valid_to", 204, 16),
    ),
    CardType.HKMOTW: (
        _Slot("name", 0, 30),
        _Slot("sex", 30, 2),
        _Slot("birth_date", 36, 16),
        _Slot("address", 52, 70),
        _Slot("id_number", 122, 36),
        _Slot("issuing_authority", 158, 30),
        _Slot("valid_from", 188, 16),
        _Slot("valid_to", 204, 16),
        _Slot("pass_number", 220, 18),
        _Slot("issue_count", 238, 4),
    ),
    CardType.FOREIGN_2017: (
        _Slot("english_name", 0, 120),
        _Slot("sex", 120, 2),
        _Slot("permit_number", 122, 30),
        _Slot("nationality", 152, 6),
        _Slot("chinese_name", 158, 30),
        _Slot("valid_from", 188, 16),
        _Slot("valid_to", 204, 16),
        _Slot("birth_date", 220, 16),
        _Slot("card_version", 236, 4),
        _Slot("authority_code", 240, 8),
    ),
    CardType.FOREIGN_2023: (
        _Slot("chinese_name", 0, 30),
        _Slot("sex", 30, 2),
        _Slot("renewal_count", 32, 4),
        _Slot("birth_date", 36, 16),
        _Slot("english_name_1", 52, 70),
        _Slot("id_number", 122, 36),
        _Slot("valid_from", 188, 16),
        _Slot("valid_to", 204, 16),
        _Slot("english_name_2", 220, 22),
        _Slot("nationality", 242, 6),
    ),
}
_ENGLISH_1_CHARS: Final = 35  # english_name_1 of the 2023 card, in characters


def card_type_of(block: bytes) -> CardType:
    """The card type from the marker at offset 248 of a text block."""
    if len(block) != TEXT_BLOCK_SIZE:
        raise CardDataError(
            "text", f"a text block is {TEXT_BLOCK_SIZE} bytes, the reader sent {len(block)}"
        )
    marker = block[_MARKER_OFFSET : _MARKER_OFFSET + 2]
    card_type = _MARKERS.get(marker.decode("utf-16-le", errors="replace"))
    if card_type is None:
        raise CardDataError(
            "card_type", f"unknown card type marker {marker.hex(' ')} at offset 248"
        )
    return card_type


def _raw(block: bytes, slot: _Slot) -> str:
    try:
        return block[slot.offset : slot.offset + slot.width].decode("utf-16-le")
    except UnicodeDecodeError:
        raise CardDataError(slot.name, "is not valid UCS-2 text") from None


def _date(field: str, text: str) -> date:
    if len(text) != 8 or not text.isascii() or not text.isdigit():
        raise CardDataError(field, "is not a date in YYYYMMDD digits")
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise CardDataError(field, "is not a real calendar date") from None


_SEX_CODES: Final = {str(sex.value): sex for sex in Sex}


def _sex(text: str) -> Sex:
    if text not in _SEX_CODES:
        raise CardDataError("sex", "is not one of the codes 0, 1, 2, 9")
    return _SEX_CODES[text]


def _count(field: str, text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise CardDataError(field, "is not a number")
    return int(text)


def parse_text_block(block: bytes) -> CardText:
    """The typed record in a 256-byte text block, of whichever of the four card types."""
    card_type = card_type_of(block)
    raw = {slot.name: _raw(block, slot) for slot in _LAYOUTS[card_type]}
    f = {name: value.strip(_STRIP) for name, value in raw.items()}
    valid_to = None if f["valid_to"] == LONG_TERM else _date("valid_to", f["valid_to"])
    sex = _sex(f["sex"])
    birth_date = _date("birth_date", f["birth_date"])
    valid_from = _date("valid_from", f["valid_from"])
    try:
        match card_type:
            case CardType.RESIDENT:
                return ResidentCard(
                    name=f["name"],
                    nation_code=f["nation"],
                    address=f["address"],
                    id_number=f["id_number"],
                    issuing_authority=f["issuing_authority"],
                    sex=sex,
                    birth_date=birth_date,
                    valid_from=valid_from,
                    valid_to=valid_to,
                )
            case CardType.HKMOTW:
                return HkMoTwPermit(
                    name=f["name"],
                    address=f["address"],
                    id_number=f["id_number"],
                    issuing_authority=f["issuing_authority"],
                    pass_number=f["pass_number"],
                    issue_count=_count("issue_count", f["issue_count"]),
                    sex=sex,
                    birth_date=birth_date,
                    valid_from=valid_from,
                    valid_to=valid_to,
                )
            case CardType.FOREIGN_2017:
                return ForeignPermit2017(
                    english_name=f["english_name"],
                    chinese_name=f["chinese_name"],
                    permit_number=f["permit_number"],
                    nationality=f["nationality"],
                    card_version=f["card_version"],
                    authority_code=f["authority_code"],
                    sex=sex,
                    birth_date=birth_date,
                    valid_from=valid_from,
                    valid_to=valid_to,
                )
            case CardType.FOREIGN_2023:
                # The English name runs on from part 1 into part 2: join before stripping, so a
                # space that falls on the boundary survives.
                english = (raw["english_name_1"] + raw["english_name_2"]).strip(_STRIP)
                return ForeignPermit2023(
                    chinese_name=f["chinese_name"],
                    english_name=english,
                    renewal_count=_count("renewal_count", f["renewal_count"]),
                    id_number=f["id_number"],
                    nationality=f["nationality"],
                    sex=sex,
                    birth_date=birth_date,
                    valid_from=valid_from,
                    valid_to=valid_to,
                )
    except InvalidValue as exc:
        raise CardDataError(exc.field, str(exc).removeprefix(f"{exc.field}: ")) from exc


def _fmt_date(value: date) -> str:
    return f"{value.year:04d}{value.month:02d}{value.day:02d}"


def _fields(card: CardText) -> dict[str, str]:
    out = {
        "sex": str(card.sex.value),
        "birth_date": _fmt_date(card.birth_date),
        "valid_from": _fmt_date(card.valid_from),
        "valid_to": LONG_TERM if card.valid_to is None else _fmt_date(card.valid_to),
    }
    match card:
        case ResidentCard():
            out |= {
                "name": card.name,
                "nation": card.nation_code,
                "address": card.address,
                "id_number": card.id_number,
                "issuing_authority": card.issuing_authority,
            }
        case HkMoTwPermit():
            out |= {
                "name": card.name,
                "address": card.address,
                "id_number": card.id_number,
                "issuing_authority": card.issuing_authority,
                "pass_number": card.pass_number,
                "issue_count": f"{card.issue_count:02d}",
            }
        case ForeignPermit2017():
            out |= {
                "english_name": card.english_name,
                "chinese_name": card.chinese_name,
                "permit_number": card.permit_number,
                "nationality": card.nationality,
                "card_version": card.card_version,
                "authority_code": card.authority_code,
            }
        case ForeignPermit2023():
            out |= {
                "chinese_name": card.chinese_name,
                "english_name_1": card.english_name[:_ENGLISH_1_CHARS],
                "english_name_2": card.english_name[_ENGLISH_1_CHARS:],
                "renewal_count": f"{card.renewal_count:02d}",
                "id_number": card.id_number,
                "nationality": card.nationality,
            }
    return out


def encode_text_block(card: CardText) -> bytes:
    """The 256-byte block a reader would send for `card` (for emulators and tests)."""
    chars = [_PAD] * (TEXT_BLOCK_SIZE // 2)
    values = _fields(card)
    for slot in _LAYOUTS[card.card_type]:
        value = values[slot.name]
        if len(value) > slot.chars:
            raise LocalProtocolError(
                f"{card.card_type.value} card field {slot.name!r} holds at most {slot.chars} "
                f"characters, got {len(value)}"
            )
        start = slot.offset // 2
        chars[start : start + len(value)] = value
    chars[_MARKER_OFFSET // 2] = _MARKER_OF[card.card_type]
    return "".join(chars).encode("utf-16-le")
