"""Typed, validated records for the four kinds of card a SAM reader reads.

`CardText` is the union; dispatch on it with `match`. Every record is frozen and checks itself
on construction (raising `InvalidValue`, a `LocalProtocolError`, naming the field); the parser
in `text` turns those into `CardDataError`s, the peer's fault. Their `repr` shows only the card
type and the masked number, so a record that ends up in a log leaks nothing.

Decision on ID-number check digits: a number whose check digit (or embedded birth date) is wrong
cannot be constructed, so a text block carrying one fails to parse with a `CardDataError` whose
`field` is ``"id_number"``. Chip data is signed and verified by the SAM, so a bad check digit
means a damaged read or a forged card, never a real citizen to serve as-is: re-reading is the
right answer, and a flag would invite ignoring it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import IntEnum, StrEnum
from typing import ClassVar, Final

from protocols.idcard.errors import InvalidValue
from protocols.idcard.idnumber import id_number_problem, masked_id
from protocols.idcard.nations import nation_name

__all__ = [
    "CardText",
    "CardType",
    "ForeignPermit2017",
    "ForeignPermit2023",
    "HkMoTwPermit",
    "ResidentCard",
    "Sex",
    "describe",
]

LONG_TERM: Final = "长期"


class CardType(StrEnum):
    """Which card was read; the values are the names the CLI and the emulator use."""

    RESIDENT = "resident"
    HKMOTW = "hkmotw"  # Hong Kong / Macao / Taiwan residence permit
    FOREIGN_2017 = "foreign2017"  # foreign permanent resident card, 2017 edition
    FOREIGN_2023 = "foreign2023"  # foreign permanent resident card, 2023 edition


class Sex(IntEnum):
    """GB/T 2261.1 sex codes as written on the card."""

    UNKNOWN = 0
    MALE = 1
    FEMALE = 2
    UNSTATED = 9


def _text(field: str, value: str, *, required: bool) -> None:
    if required and not value:
        raise InvalidValue(field, "must not be empty")
    if value != value.strip(" "):
        # The card pads with spaces; a value that starts or ends with one cannot round-trip.
        raise InvalidValue(field, "must not start or end with a space")
    if any(0xD800 <= ord(c) <= 0xDFFF or ord(c) > 0xFFFF or ord(c) < 0x20 for c in value):
        raise InvalidValue(field, "holds a character outside UCS-2 text (or a control code)")


def _id_number(field: str, value: str) -> None:
    problem = id_number_problem(value)
    if problem is not None:
        raise InvalidValue(field, problem)


def _validity(valid_from: date, valid_to: date | None) -> None:
    if valid_to is not None and valid_to < valid_from:
        raise InvalidValue("valid_to", "the card cannot expire before it becomes valid")


def _nationality(value: str) -> None:
    if len(value) != 3 or not value.isascii() or not value.isalpha() or not value.isupper():
        raise InvalidValue("nationality", "must be a 3-letter upper-case ISO 3166 code")


def _count(field: str, value: int) -> None:
    if not 0 <= value <= 99:
        raise InvalidValue(field, f"must be 0..99 (two digits on the card), got {value}")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class ResidentCard:
    """Second-generation resident ID card (居民身份证). `valid_to` None means long-term."""

    card_type: ClassVar[CardType] = CardType.RESIDENT
    name: str
    sex: Sex
    nation_code: str
    birth_date: date
    address: str
    id_number: str
    issuing_authority: str
    valid_from: date
    valid_to: date | None

    def __post_init__(self) -> None:
        _text("name", self.name, required=True)
        if nation_name(self.nation_code) is None:
            raise InvalidValue("nation", "not a GB/T 3304 nationality code")
        _text("address", self.address, required=False)
        _id_number("id_number", self.id_number)
        _text("issuing_authority", self.issuing_authority, required=False)
        _validity(self.valid_from, self.valid_to)

    @property
    def nation(self) -> str:
        """The nationality's name (e.g. 汉) for `nation_code`."""
        return nation_name(self.nation_code) or self.nation_code

    @property
    def display_name(self) -> str:
        return self.name

    @property
    def document_number(self) -> str:
        return self.id_number

    def __repr__(self) -> str:
        return f"ResidentCard(id_number={masked_id(self.id_number)!r})"


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class HkMoTwPermit:
    """Residence permit for Hong Kong, Macao and Taiwan residents (港澳台居民居住证)."""

    card_type: ClassVar[CardType] = CardType.HKMOTW
    name: str
    sex: Sex
    birth_date: date
    address: str
    id_number: str
    issuing_authority: str
    valid_from: date
    valid_to: date | None
    pass_number: str
    issue_count: int

    def __post_init__(self) -> None:
        _text("name", self.name, required=True)
        _text("address", self.address, required=False)
        _id_number("id_number", self.id_number)
        _text("issuing_authority", self.issuing_authority, required=False)
        _validity(self.valid_from, self.valid_to)
        _text("pass_number", self.pass_number, required=False)
        _count("issue_count", self.issue_count)

    @property
    def display_name(self) -> str:
        return self.name

    @property
    def document_number(self) -> str:
        return self.id_number

    def __repr__(self) -> str:
        return f"HkMoTwPermit(id_number={masked_id(self.id_number)!r})"


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class ForeignPermit2017:
    """Foreign permanent resident card, 2017 edition (外国人永久居留身份证, marker ``I``)."""

    card_type: ClassVar[CardType] = CardType.FOREIGN_2017
    english_name: str
    chinese_name: str
    sex: Sex
    permit_number: str
    nationality: str
    birth_date: date
    valid_from: date
    valid_to: date | None
    card_version: str
    authority_code: str

    def __post_init__(self) -> None:
        _text("english_name", self.english_name, required=True)
        _text("chinese_name", self.chinese_name, required=False)
        if not self.permit_number or not (
            self.permit_number.isascii() and self.permit_number.isalnum()
        ):
            raise InvalidValue("permit_number", "must be non-empty ASCII letters and digits")
        _nationality(self.nationality)
        _validity(self.valid_from, self.valid_to)
        _text("card_version", self.card_version, required=False)
        _text("authority_code", self.authority_code, required=False)

    @property
    def display_name(self) -> str:
        return self.chinese_name or self.english_name

    @property
    def document_number(self) -> str:
        return self.permit_number

    def __repr__(self) -> str:
        return f"ForeignPermit2017(permit_number={masked_id(self.permit_number)!r})"


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class ForeignPermit2023:
    """Foreign permanent resident card, 2023 edition (marker ``Y``; 18-character number)."""

    card_type: ClassVar[CardType] = CardType.FOREIGN_2023
    chinese_name: str
    english_name: str
    sex: Sex
    renewal_count: int
    birth_date: date
    id_number: str
    nationality: str
    valid_from: date
    valid_to: date | None

    def __post_init__(self) -> None:
        _text("chinese_name", self.chinese_name, required=False)
        _text("english_name", self.english_name, required=True)
        _count("renewal_count", self.renewal_count)
        _id_number("id_number", self.id_number)
        _nationality(self.nationality)
        _validity(self.valid_from, self.valid_to)

    @property
    def display_name(self) -> str:
        return self.chinese_name or self.english_name

    @property
    def document_number(self) -> str:
        return self.id_number

    def __repr__(self) -> str:
        return f"ForeignPermit2023(id_number={masked_id(self.id_number)!r})"


CardText = ResidentCard | HkMoTwPermit | ForeignPermit2017 | ForeignPermit2023


def _mask_text(value: str, keep: int) -> str:
    return value[:keep] + "*" * max(len(value) - keep, 0)


def _date(value: date | None) -> str:
    return LONG_TERM if value is None else value.isoformat()


def describe(card: CardText, *, reveal: bool = False) -> dict[str, str]:
    """Display fields for an operator or the CLI, personal data masked unless `reveal`.

    Masked: the number keeps its first 4 and last 4 characters, names their first character,
    addresses their first 3 (the province).
    """

    def name(value: str) -> str:
        return value if reveal else _mask_text(value, 1)

    number = card.document_number if reveal else masked_id(card.document_number)
    out = {"card_type": card.card_type.value, "name": name(card.display_name), "number": number}
    out["sex"] = card.sex.name.lower()
    out["birth_date"] = card.birth_date.isoformat() if reveal else "****-**-**"
    match card:
        case ResidentCard():
            out["nation"] = card.nation
            out["address"] = card.address if reveal else _mask_text(card.address, 3)
            out["issuing_authority"] = card.issuing_authority
        case HkMoTwPermit():
            out["address"] = card.address if reveal else _mask_text(card.address, 3)
            out["issuing_authority"] = card.issuing_authority
            out["issue_count"] = str(card.issue_count)
        case ForeignPermit2017():
            out["english_name"] = name(card.english_name)
            out["nationality"] = card.nationality
        case ForeignPermit2023():
            out["english_name"] = name(card.english_name)
            out["nationality"] = card.nationality
            out["renewal_count"] = str(card.renewal_count)
    out["valid_from"] = card.valid_from.isoformat()
    out["valid_to"] = _date(card.valid_to)
    return out
