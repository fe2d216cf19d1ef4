"""The receipt composer: pinned bytes, both encodings, full-width punctuation, QR commands."""

from __future__ import annotations

from datetime import datetime

import pytest

from protocols.escpos import (
    REPLACEMENT_CHAR,
    CutKind,
    EscposEncodingError,
    QrErrorLevel,
    Receipt,
    compose_case_receipt,
    mask_id_number,
    mask_name,
    qr_commands,
)
from protocols.escpos_base import TextEncoding, columns, encode_text


def test_small_receipt_bytes_are_pinned() -> None:
    # The test vector for docs: every byte of a small receipt, by hand from devices.md §2.
    receipt = (
        Receipt(32, "gb18030")
        .text("回执", bold=True, align="center")
        .key_value("编号：", "A1")
        .qr("A1", module_size=4)
        .cut(feed=2)
    )
    expected = bytes.fromhex(
        "1b40" "1c26"  # initialise, Chinese mode on
        "1b6101" "1b4501" "bbd8d6b4" "0a"  # centre, bold, 回执, LF
        "1b6100" "1b4500" "b1e0bac5a3ba" + "20" * 24 + "4131" "0a"  # 编号： … A1
        "1b6101"  # centre the QR code
        "1d286b0400314132" "00"  # model 2
        "1d286b03003143" "04"  # module size 4
        "1d286b03003145" "31"  # error level M
        "1d286b0500315030" "4131"  # store "A1" (pL = 2 + 3)
        "1d286b0300315130"  # print
        "1d564202"  # feed 2 lines and cut partially
    )
    assert receipt.to_bytes() == expected


def test_job_starts_with_initialise_and_chinese_mode() -> None:
    assert Receipt().to_bytes() == b"\x1b\x40\x1c\x26"


@pytest.mark.parametrize("encoding", ["gb18030", "gb2312"])
def test_full_width_punctuation_only_encodes_as_gb_codes(encoding: str) -> None:
    # python-escpos printed `?` for strings made only of full-width punctuation.
    data = Receipt(32, encoding).text("，。：（）").to_bytes()
    assert bytes.fromhex("a3aca1a3a3baa3a8a3a9") + b"\n" in data
    assert b"?" not in data


@pytest.mark.parametrize(
    ("encoding", "text", "expected"),
    [
        ("gb18030", "受理回执", "cadcc0edbbd8d6b4"),
        ("gb2312", "受理回执", "cadcc0edbbd8d6b4"),
        ("gb18030", "喆", "86b4"),  # GBK extension: two bytes
        ("gb18030", "𠮷", "9534b235"),  # outside the BMP: four bytes
        ("gb2312", "阿卜杜·热合曼", "b0a2b2b7b6c5a1a4c8c8bacfc2fc"),  # U+00B7 mapped to A1A4
    ],
)
def test_chinese_text_encodes_per_printer_setting(encoding: str, text: str, expected: str) -> None:
    assert encode_text(text, TextEncoding(encoding)).hex() == expected


def test_gb2312_refuses_a_character_it_lacks_and_names_it() -> None:
    receipt = Receipt(32, "gb2312")
    with pytest.raises(EscposEncodingError, match=r"'喆' \(U\+5586\) at position 1.*GB2312"):
        receipt.text("王喆")


def test_gb2312_replacement_is_recorded_not_silent() -> None:
    receipt = Receipt(32, "gb2312", replacement=REPLACEMENT_CHAR).text("王喆")
    assert receipt.substitutions == ("喆",)
    assert bytes.fromhex("cdf5a1f5") + b"\n" in receipt.to_bytes()  # 王□


def test_replacement_must_itself_be_encodable() -> None:
    with pytest.raises(EscposEncodingError, match="replacement"):
        Receipt(32, "gb2312", replacement="喆")


def test_control_characters_in_text_are_refused() -> None:
    with pytest.raises(EscposEncodingError, match="control character U\\+001B"):
        Receipt().text("a\x1b@")


def test_unknown_encoding_is_refused() -> None:
    with pytest.raises(EscposEncodingError, match="gb18030 or gb2312"):
        Receipt(32, "big5")


@pytest.mark.parametrize(("text", "cols"), [("abc", 3), ("受理", 4), ("，", 2), ("a受𠮷", 5)])
def test_columns_count_full_width_glyphs_twice(text: str, cols: int) -> None:
    assert columns(encode_text(text, TextEncoding.GB18030)) == cols


def test_key_value_fills_the_line_counting_cjk_as_two_columns() -> None:
    data = Receipt(32).key_value("材料份数：", "3份").to_bytes()
    line = data[4:].split(b"\n")[0]
    assert columns(line) == 32
    assert line.startswith(encode_text("材料份数：", TextEncoding.GB18030))
    assert line.endswith(encode_text("3份", TextEncoding.GB18030))


def test_key_value_too_long_for_one_line_goes_on_two() -> None:
    data = Receipt(16).key_value("办理事项：", "城乡居民医保参保").to_bytes()
    lines = [line for line in data.split(b"\n") if line]
    assert len(lines) == 2
    assert lines[1].startswith(b"\x1b\x61\x02")  # the value flush right


def test_text_wraps_at_paper_width_without_splitting_a_glyph() -> None:
    data = Receipt(16).text("一二三四五六七八九十").to_bytes()  # 20 columns
    lines = data[4:].split(b"\n")
    assert [columns(x) for x in lines[:2]] == [16, 4]


def test_double_width_halves_the_columns_per_line() -> None:
    data = Receipt(16).text("一二三四五", width=2).to_bytes()
    assert data.count(b"\n") == 2  # 8 columns at double width: 4 + 1 glyphs


def test_size_beyond_double_is_refused() -> None:
    with pytest.raises(EscposEncodingError, match="1 \\(normal\\) or 2 \\(double\\)"):
        Receipt().text("x", width=3)


def test_qr_store_length_is_little_endian_for_long_payloads() -> None:
    data = qr_commands(b"x" * 300, module_size=5, level=QrErrorLevel.H)
    store = 9 + 8 + 8  # after model, module size, error level
    assert data[store:store + 8] == bytes.fromhex("1d286b" "2f01" "315030")  # 303 = 0x012F
    assert data[store + 8:store + 308] == b"x" * 300
    assert bytes.fromhex("1d286b0300314533") in data  # level H


@pytest.mark.parametrize("size", [0, 17])
def test_qr_module_size_is_bounded(size: int) -> None:
    with pytest.raises(EscposEncodingError, match="module size"):
        qr_commands(b"x", module_size=size)


def test_qr_payload_is_bounded() -> None:
    with pytest.raises(EscposEncodingError, match="1..2953"):
        qr_commands(b"x" * 3000)


def test_cut_kinds() -> None:
    assert Receipt().cut(CutKind.FULL, feed=0).to_bytes().endswith(b"\x1d\x56\x41\x00")
    assert Receipt().cut("partial", feed=5).to_bytes().endswith(b"\x1d\x56\x42\x05")


def test_masks() -> None:
    assert mask_name("张三丰") == "张**"
    assert mask_name("李四") == "李*"
    assert mask_id_number("11010519491231002X") == "1101**********002X"
    with pytest.raises(EscposEncodingError, match="too short"):
        mask_id_number("1234")


def _case(**overrides: object) -> bytes:
    fields: dict[str, object] = dict(
        station="东坡村便民服务站", case_number="ST001-20261122-0007", service="医保参保登记",
        applicant_name="张三丰", id_number="11010519491231002X", materials=3,
        accepted_at=datetime(2026, 11, 22, 10, 30),
    )
    fields.update(overrides)
    return compose_case_receipt(**fields).to_bytes()  # type: ignore[arg-type]


def test_case_receipt_masks_personal_data_and_carries_the_case_number() -> None:
    data = _case()
    assert encode_text("张**", TextEncoding.GB18030) in data
    assert b"1101**********002X" in data
    assert "三丰".encode("gb18030") not in data
    assert b"11010519491231002X" not in data
    assert bytes.fromhex("1d286b1600315030") + b"ST001-20261122-0007" in data  # QR store
    assert data.endswith(b"\x1d\x56\x42\x04")


def test_case_receipt_in_gb2312_with_a_rare_name_needs_the_replacement() -> None:
    with pytest.raises(EscposEncodingError, match="'喆'"):
        _case(encoding="gb2312", station="喆村")
    assert "□村".encode("gb2312") in _case(encoding="gb2312", station="喆村",
                                           replacement=REPLACEMENT_CHAR)


def test_substitutions_are_recorded_once_per_call_whatever_the_builder() -> None:
    receipt = Receipt(16, "gb2312", replacement=REPLACEMENT_CHAR)
    receipt.key_value("喆", "x").key_value("办理事项：", "喆喆喆喆喆喆").text("一二三四五六七八喆")
    assert receipt.substitutions == ("喆", "喆", "喆")
