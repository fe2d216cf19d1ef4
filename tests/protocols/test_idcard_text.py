"""The 256-byte text block: all four card types, field decoding, check digits, masking."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.idcard import (
    NATIONS,
    TEXT_BLOCK_SIZE,
    CardDataError,
    CardType,
    ForeignPermit2017,
    ForeignPermit2023,
    HkMoTwPermit,
    InvalidValue,
    LocalProtocolError,
    ResidentCard,
    Sex,
    card_type_of,
    check_digit,
    describe,
    encode_text_block,
    is_valid_id_number,
    masked_id,
    parse_text_block,
)


def block(fields: dict[int, str], marker: str = " ") -> bytes:
    """A text block built by hand from (character offset -> text), independent of the encoder."""
    chars = [" "] * 128
    for at, text in fields.items():
        chars[at : at + len(text)] = text
    chars[124] = marker
    return "".join(chars).encode("utf-16-le")


# Byte offsets from the reference table, halved: resident ID card.
RESIDENT = {
    0: "张三丰",
    15: "1",
    16: "03",
    18: "19491231",
    26: "北京市东城区示例路1号",
    61: "11010519491231002X",
    79: "北京市公安局东城分局",
    94: "20100101",
    102: "长期",
}


def test_resident_card_from_a_hand_built_block() -> None:
    card = parse_text_block(block(RESIDENT))
    assert card == ResidentCard(
        name="张三丰",
        sex=Sex.MALE,
        nation_code="03",
        birth_date=date(1949, 12, 31),
        address="北京市东城区示例路1号",
        id_number="11010519491231002X",
        issuing_authority="北京市公安局东城分局",
        valid_from=date(2010, 1, 1),
        valid_to=None,
    )
    assert isinstance(card, ResidentCard)
    assert card.nation == "回"
    assert encode_text_block(card) == block(RESIDENT)


def test_hong_kong_macao_taiwan_permit() -> None:
    fields = {
        0: "陈测试",
        15: "2",
        18: "19990101",
        26: "广东省深圳市福田区示例路8号",
        61: "810000199901010014",
        79: "深圳市公安局",
        94: "20230501",
        102: "20280501",
        110: "H00000001",
        119: "03",
    }
    card = parse_text_block(block(fields, "J"))
    assert isinstance(card, HkMoTwPermit)
    assert (card.sex, card.pass_number, card.issue_count) == (Sex.FEMALE, "H00000001", 3)
    assert card.valid_to == date(2028, 5, 1)
    assert encode_text_block(card) == block(fields, "J")


def test_foreign_permit_2017() -> None:
    fields = {
        0: "SAMPLE, TEST PERSON",
        60: "9",
        61: "USA110850315018",
        76: "USA",
        79: "测试者",
        94: "20170601",
        102: "20270601",
        110: "19850315",
        118: "01",
        120: "1100",
    }
    card = parse_text_block(block(fields, "I"))
    assert isinstance(card, ForeignPermit2017)
    assert card.english_name == "SAMPLE, TEST PERSON"
    assert (card.sex, card.nationality, card.permit_number) == (
        Sex.UNSTATED,
        "USA",
        "USA110850315018",
    )
    assert (card.birth_date, card.card_version, card.authority_code) == (
        date(1985, 3, 15),
        "01",
        "1100",
    )
    assert card.display_name == "测试者"
    assert encode_text_block(card) == block(fields, "I")


def test_foreign_permit_2023_joins_the_english_name_across_its_two_parts() -> None:
    english = "EXAMPLE, ALEXANDRA MARIA TESTPERSON SAMPLE"  # 35th character is the last N
    fields = {
        0: "样本",
        15: "0",
        16: "02",
        18: "19900720",
        26: english[:35],
        61: "912431199007200026",
        94: "20231201",
        102: "20331201",
        110: english[35:],
        121: "CAN",
    }
    card = parse_text_block(block(fields, "Y"))
    assert isinstance(card, ForeignPermit2023)
    assert card.english_name == english
    assert (card.sex, card.renewal_count, card.nationality) == (Sex.UNKNOWN, 2, "CAN")
    assert encode_text_block(card) == block(fields, "Y")


def test_a_space_on_the_english_name_boundary_survives() -> None:
    english = "A" * 34 + " " + "B" * 5  # the space is the 35th character, end of part 1
    fields = {0: "样本", 15: "1", 16: "00", 18: "19900720", 26: english[:35]}
    fields |= {61: "912431199007200026", 94: "20231201", 102: "20331201", 110: english[35:]}
    fields[121] = "CAN"
    card = parse_text_block(block(fields, "Y"))
    assert isinstance(card, ForeignPermit2023)
    assert card.english_name == english


@pytest.mark.parametrize(
    ("marker", "card_type"),
    [(" ", CardType.RESIDENT), ("J", CardType.HKMOTW), ("I", CardType.FOREIGN_2017),
     ("Y", CardType.FOREIGN_2023)],
)  # fmt: skip
def test_card_type_marker(marker: str, card_type: CardType) -> None:
    assert card_type_of(block({}, marker)) is card_type


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({124: "Q"}, "card_type"),
        ({15: "3"}, "sex"),
        ({16: "57"}, "nation"),
        ({18: "19491331"}, "birth_date"),
        ({18: "1949123X"}, "birth_date"),
        ({94: "        "}, "valid_from"),
        ({102: "20000101"}, "valid_to"),  # expires before it is valid
        ({61: "110105194912310021"}, "id_number"),  # wrong check digit
        ({61: "11010519491331002X"}, "id_number"),  # impossible birth date
        ({0: "               "}, "name"),
    ],
)
def test_bad_fields_raise_card_data_error_naming_the_field(
    change: dict[int, str], field: str
) -> None:
    fields, change = dict(RESIDENT), dict(change)
    marker = change.pop(124, " ")
    fields |= change
    with pytest.raises(CardDataError) as caught:
        parse_text_block(block(fields, marker))
    assert caught.value.field == field
    assert "11010519491231002X" not in str(caught.value)  # never quotes personal data


def test_wrong_block_size_and_bad_ucs2_are_card_data_errors() -> None:
    with pytest.raises(CardDataError, match="256 bytes"):
        parse_text_block(b" \x00" * 127)
    broken = bytearray(block(RESIDENT))
    broken[0:2] = b"\x00\xd8"  # a lone surrogate in the name
    with pytest.raises(CardDataError) as caught:
        parse_text_block(bytes(broken))
    assert caught.value.field == "name"


@pytest.mark.parametrize(
    "number", ["11010519491231002X", "440524188001010014", "130423198811184328"]
)
def test_check_digit_samples(number: str) -> None:
    assert check_digit(number[:17]) == number[17]
    assert is_valid_id_number(number)


@pytest.mark.parametrize(
    "number", ["110105194912310021", "11010519491231002", "1101051949123100XX"]
)
def test_invalid_numbers(number: str) -> None:
    assert not is_valid_id_number(number)


def test_masked_id_keeps_first_and_last_four() -> None:
    assert masked_id("11010519491231002X") == "1101**********002X"
    assert masked_id("USA110850315018") == "USA1*******5018"
    assert masked_id("12345678") == "********"


def test_nations_table_has_56_nationalities_and_two_extra_codes() -> None:
    assert len(NATIONS) == 58
    assert (NATIONS["01"], NATIONS["56"], NATIONS["98"]) == ("汉", "基诺", "外国血统中国籍人士")


def test_records_refuse_invalid_values_and_hide_personal_data_in_repr() -> None:
    card = parse_text_block(block(RESIDENT))
    assert "张" not in repr(card) and "1101**********002X" in repr(card)
    with pytest.raises(InvalidValue, match="id_number"):
        ResidentCard(**{**_resident_kwargs(), "id_number": "110105194912310021"})
    with pytest.raises(InvalidValue, match="name"):
        ResidentCard(**{**_resident_kwargs(), "name": " 张三"})
    too_long = ResidentCard(**{**_resident_kwargs(), "name": "张" * 16})
    with pytest.raises(LocalProtocolError, match="at most 15 characters"):
        encode_text_block(too_long)


def test_describe_masks_unless_revealed() -> None:
    card = parse_text_block(block(RESIDENT))
    masked = describe(card)
    assert masked["number"] == "1101**********002X"
    assert masked["name"] == "张**" and masked["address"].startswith("北京市*")
    assert masked["valid_to"] == "长期" and masked["nation"] == "回"
    shown = describe(card, reveal=True)
    assert shown["number"] == "11010519491231002X" and shown["name"] == "张三丰"


def _resident_kwargs() -> dict[str, object]:
    return {
        "name": "张三丰",
        "sex": Sex.MALE,
        "nation_code": "01",
        "birth_date": date(1949, 12, 31),
        "address": "",
        "id_number": "11010519491231002X",
        "issuing_authority": "",
        "valid_from": date(2010, 1, 1),
        "valid_to": None,
    }


# -- property tests ----------------------------------------------------------------------------


def text(max_size: int, *, min_size: int = 0) -> st.SearchStrategy[str]:
    chars = st.characters(min_codepoint=0x20, max_codepoint=0xFFFF, exclude_categories=("Cs",))
    return (
        st.text(chars, min_size=min_size, max_size=max_size)
        .map(lambda s: s.strip(" "))
        .filter(lambda s: len(s) >= min_size)
    )


@st.composite
def id_numbers(draw: st.DrawFn, first: str = "") -> str:
    area = first + "".join(
        str(d)
        for d in draw(st.lists(st.integers(0, 9), min_size=6 - len(first), max_size=6 - len(first)))
    )
    born = draw(st.dates(min_value=date(1900, 1, 1), max_value=date(2099, 12, 31)))
    seq = draw(st.integers(0, 999))
    body = f"{area}{born:%Y%m%d}{seq:03d}"
    return body + check_digit(body)


dates = st.dates(min_value=date(1900, 1, 1), max_value=date(2099, 12, 31))
expiries = st.none() | st.integers(0, 20000).map(lambda d: timedelta(days=d))
sexes = st.sampled_from(Sex)
nationalities = st.text(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ"), min_size=3, max_size=3)


@st.composite
def cards(draw: st.DrawFn) -> ResidentCard | HkMoTwPermit | ForeignPermit2017 | ForeignPermit2023:
    valid_from = draw(st.dates(min_value=date(1990, 1, 1), max_value=date(2040, 1, 1)))
    delta = draw(expiries)
    valid_to = None if delta is None else valid_from + delta
    common = {
        "sex": draw(sexes),
        "birth_date": draw(dates),
        "valid_from": valid_from,
        "valid_to": valid_to,
    }
    kind = draw(st.sampled_from(CardType))
    if kind is CardType.RESIDENT:
        return ResidentCard(
            name=draw(text(15, min_size=1)),
            nation_code=draw(st.sampled_from(sorted(NATIONS))),
            address=draw(text(35)),
            id_number=draw(id_numbers()),
            issuing_authority=draw(text(15)),
            **common,
        )
    if kind is CardType.HKMOTW:
        return HkMoTwPermit(
            name=draw(text(15, min_size=1)),
            address=draw(text(35)),
            id_number=draw(id_numbers("8")),
            issuing_authority=draw(text(15)),
            pass_number=draw(text(9)),
            issue_count=draw(st.integers(0, 99)),
            **common,
        )
    if kind is CardType.FOREIGN_2017:
        return ForeignPermit2017(
            english_name=draw(text(60, min_size=1)),
            chinese_name=draw(text(15)),
            permit_number=draw(st.text(st.sampled_from("ABC0123456789"), min_size=1, max_size=15)),
            nationality=draw(nationalities),
            card_version=draw(text(2)),
            authority_code=draw(text(4)),
            **common,
        )
    return ForeignPermit2023(
        chinese_name=draw(text(15)),
        english_name=draw(text(46, min_size=1)),
        renewal_count=draw(st.integers(0, 99)),
        id_number=draw(id_numbers("9")),
        nationality=draw(nationalities),
        **common,
    )


@given(card=cards())
def test_any_card_round_trips_through_its_text_block(card: object) -> None:
    assert isinstance(card, ResidentCard | HkMoTwPermit | ForeignPermit2017 | ForeignPermit2023)
    encoded = encode_text_block(card)
    assert len(encoded) == TEXT_BLOCK_SIZE
    assert parse_text_block(encoded) == card


@given(
    raw=st.binary(min_size=TEXT_BLOCK_SIZE, max_size=TEXT_BLOCK_SIZE),
    marker=st.sampled_from(" JIY"),
)
def test_random_blocks_parse_or_raise_card_data_error_only(raw: bytes, marker: str) -> None:
    data = raw[:248] + marker.encode("utf-16-le") + raw[250:]
    try:
        card = parse_text_block(data)
    except CardDataError as exc:
        assert exc.field
    else:
        assert card.card_type is card_type_of(data)
