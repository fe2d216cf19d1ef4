"""Synthetic cards for the ID-card reader emulator, one of each of the four types.

Every person here is invented: names and addresses say 示例/测试/SAMPLE, the resident number is
the worked example printed in GB 11643 itself, and the others are made up with valid check
digits. Photos and fingerprints are deterministic filler bytes labelled as synthetic, not WLT
images (nothing in cunlink decodes WLT anyway).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType
from typing import Final

from protocols.idcard import (
    FINGERPRINT_SIZE,
    PHOTO_SIZE,
    PREAMBLE,
    CardText,
    ForeignPermit2017,
    ForeignPermit2023,
    HkMoTwPermit,
    ReadResult,
    ResidentCard,
    Sex,
)

__all__ = ["SAMPLE_CARDS", "SampleCard", "filler", "sample_card"]


def filler(label: str, size: int) -> bytes:
    """`size` deterministic bytes starting with `label`, with no frame preamble inside."""
    out = bytearray(label.encode("ascii"))
    block = 0
    while len(out) < size:
        out += hashlib.sha256(f"{label}/{block}".encode()).digest()
        block += 1
    data = bytes(out[:size])
    # A preamble inside a photo would only cost a resync, but keep the samples clean anyway.
    return data.replace(PREAMBLE, b"\x00" * len(PREAMBLE))


@dataclass(frozen=True, slots=True, kw_only=True)
class SampleCard:
    """A card to place on the emulated reader: its text, photo, fingerprint and RF serial."""

    key: str
    text: CardText
    photo_wlt: bytes
    fingerprint: bytes | None
    serial: bytes

    def __post_init__(self) -> None:
        if len(self.serial) != 8:
            raise ValueError(f"sample card {self.key!r}: the RF serial is 8 bytes")
        if not self.photo_wlt:
            raise ValueError(f"sample card {self.key!r}: a card always carries a photo")

    def expected(self, *, with_fingerprint: bool = False) -> ReadResult:
        """What a driver should report after reading this card."""
        fingerprint = (self.fingerprint or b"") if with_fingerprint else None
        return ReadResult.of(self.text, self.photo_wlt, fingerprint)


def _sample(key: str, text: CardText, *, fingerprint: bool) -> SampleCard:
    return SampleCard(
        key=key,
        text=text,
        photo_wlt=filler(f"SYNTHETIC-WLT:{key}:", PHOTO_SIZE),
        fingerprint=filler(f"SYNTHETIC-FP:{key}:", FINGERPRINT_SIZE) if fingerprint else None,
        serial=hashlib.sha256(key.encode()).digest()[:8],
    )


_CARDS = (
    _sample(
        "resident",
        ResidentCard(
            name="李示例",
            sex=Sex.FEMALE,
            nation_code="01",
            birth_date=date(1949, 12, 31),
            address="北京市东城区示例路1号测试小区2号楼301室",
            id_number="11010519491231002X",
            issuing_authority="北京市公安局东城分局",
            valid_from=date(2010, 1, 1),
            valid_to=None,
        ),
        fingerprint=True,
    ),
    _sample(
        "hkmotw",
        HkMoTwPermit(
            name="陈测试",
            sex=Sex.MALE,
            birth_date=date(1999, 1, 1),
            address="广东省深圳市福田区示例街道测试路8号",
            id_number="810000199901010014",
            issuing_authority="深圳市公安局福田分局",
            valid_from=date(2023, 5, 1),
            valid_to=date(2028, 5, 1),
            pass_number="H00000001",
            issue_count=1,
        ),
        fingerprint=False,
    ),
    _sample(
        "foreign2017",
        ForeignPermit2017(
            english_name="SAMPLE, TEST PERSON",
            chinese_name="测试者",
            sex=Sex.MALE,
            permit_number="USA110850315018",
            nationality="USA",
            birth_date=date(1985, 3, 15),
            valid_from=date(2017, 6, 1),
            valid_to=date(2027, 6, 1),
            card_version="01",
            authority_code="1100",
        ),
        fingerprint=False,
    ),
    _sample(
        "foreign2023",
        ForeignPermit2023(
            chinese_name="样本",
            english_name="EXAMPLE, ALEXANDRA MARIA TESTPERSON-SAMPLE",
            sex=Sex.FEMALE,
            renewal_count=0,
            birth_date=date(1990, 7, 20),
            id_number="912431199007200026",
            nationality="CAN",
            valid_from=date(2023, 12, 1),
            valid_to=date(2033, 12, 1),
        ),
        fingerprint=False,
    ),
)

#: The samples by key: resident, hkmotw, foreign2017, foreign2023 (also the CLI's names).
SAMPLE_CARDS: Final[Mapping[str, SampleCard]] = MappingProxyType({c.key: c for c in _CARDS})


def sample_card(key: str) -> SampleCard:
    """The sample named `key`, or a ValueError listing the names there are."""
    try:
        return SAMPLE_CARDS[key]
    except KeyError:
        raise ValueError(
            f"no sample card {key!r}; choose one of {', '.join(SAMPLE_CARDS)}"
        ) from None
