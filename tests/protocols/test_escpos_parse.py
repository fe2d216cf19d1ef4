"""The stream parser: parse(compose(x)) == x, fed whole, byte by byte and with trailing bytes;
bounds; and random bytes (it raises only its own error, its buffer stays bounded)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.escpos import QrErrorLevel, Receipt, compose_case_receipt
from protocols.escpos_base import Align, CutKind, EscposReceiveError
from protocols.escpos_parse import (
    MAX_LINE_BYTES,
    NEED_DATA,
    EscposParser,
    Ignored,
    PaperFeed,
    ParsedReceipt,
    PrintedLine,
    PrintedQr,
    ReceiptCut,
    Span,
    StatusRequest,
)

CASE = compose_case_receipt(
    station="东坡村便民服务站", case_number="ST001-20261122-0007", service="医保参保登记",
    applicant_name="张三丰", id_number="11010519491231002X", materials=3,
    accepted_at=datetime(2026, 11, 22, 10, 30),
)


def drain(parser: EscposParser) -> list[object]:
    events: list[object] = []
    for _ in range(100_000):  # bounded: a parser that never says NEED_DATA fails the test
        event = parser.next_event()
        if event is NEED_DATA:
            return events
        events.append(event)
    raise AssertionError("parser never ran out of events")


def parse(chunks: Iterable[bytes], encoding: str = "gb18030") -> list[object]:
    parser = EscposParser(encoding=encoding)
    events: list[object] = []
    for chunk in chunks:
        parser.feed(chunk)
        events += drain(parser)
    return events


def receipts(events: list[object]) -> list[ParsedReceipt]:
    return [e.receipt for e in events if isinstance(e, ReceiptCut)]


def test_case_receipt_round_trip() -> None:
    [receipt] = receipts(parse([CASE.to_bytes()]))
    assert receipt.cut is CutKind.PARTIAL
    assert receipt.lines[0] == PrintedLine(
        spans=(Span(text="受理回执", bold=True, width=2, height=2),), align=Align.CENTER)
    assert receipt.text.splitlines()[3] == "受理编号：   ST001-20261122-0007"
    assert "申请人：                    张**" in receipt.text
    assert receipt.qr_codes == (PrintedQr(payload=b"ST001-20261122-0007", module_size=6,
                                          level=QrErrorLevel.M, model=2, align=Align.CENTER),)
    assert receipt.items[-1] == PaperFeed(lines=4)


@pytest.mark.parametrize("encoding", ["gb18030", "gb2312"])
def test_round_trip_whole_byte_by_byte_and_with_trailing_bytes(encoding: str) -> None:
    data = (Receipt(32, encoding).text("，。：（）", underline=True)
            .text("右", align="right").qr("A1", level="H").feed(2).cut("full", feed=0).to_bytes())
    whole = parse([data], encoding)
    assert parse([bytes((b,)) for b in data], encoding) == whole
    trailing = parse([data + b"\x10\x04\x02" + data[:7]], encoding)
    assert trailing == [*whole, StatusRequest(n=2)]
    [receipt] = receipts(whole)
    assert [line.text for line in receipt.lines] == ["，。：（）", "右"]
    assert receipt.lines[0].spans[0].underline and receipt.lines[1].align is Align.RIGHT
    assert receipt.qr_codes[0].level is QrErrorLevel.H
    assert receipt.cut is CutKind.FULL


def test_status_requests_arrive_in_stream_order() -> None:
    events = parse([b"\x10\x04\x01\x10\x04\x04hello\n\x1d\x56\x00\x10\x04\x03"])
    assert events[0] == StatusRequest(n=1) and events[1] == StatusRequest(n=4)
    assert isinstance(events[2], ReceiptCut) and events[2].receipt.text == "hello"
    assert events[3] == StatusRequest(n=3)


def test_style_changes_inside_a_line_make_spans() -> None:
    [receipt] = receipts(parse([b"a\x1bE\x01b\x1d\x21\x11c\x1b!\x00d\n\x1bi"]))
    assert receipt.lines[0].spans == (
        Span(text="a"), Span(text="b", bold=True), Span(text="c", bold=True, width=2, height=2),
        Span(text="d"))


def test_initialise_clears_unprinted_text_and_modes() -> None:
    [receipt] = receipts(parse([b"\x1bE\x01lost\x1b@kept\n\x1dV\x01"]))
    assert receipt.lines == (PrintedLine(spans=(Span(text="kept"),)),)


def test_chinese_mode_off_decodes_as_a_code_page() -> None:
    data = b"\x1c\x2e" + "受".encode("gb18030") + b"\n\x1c\x26" + "受".encode("gb18030") + b"\n"
    [receipt] = receipts(parse([data + b"\x1dV\x00"]))
    assert receipt.lines[0].text != "受" and receipt.lines[1].text == "受"


def test_text_without_lf_is_printed_at_the_cut() -> None:
    [receipt] = receipts(parse([b"tail\x1dVB\x03"]))
    assert receipt.lines[0].text == "tail" and receipt.items[-1] == PaperFeed(lines=3)


def test_unknown_and_unmodelled_commands_are_skipped_and_reported() -> None:
    raster = b"\x1dv0\x00\x02\x00\x03\x00" + b"\xff" * 6  # 16x3 dots
    events = parse([b"\x1bt\x00\x1b\x99" + raster + b"x\n\x1dV\x00"])
    ignored = [e for e in events if isinstance(e, Ignored)]
    assert [i.command[:2] for i in ignored] == [b"\x1bt", b"\x1b\x99", b"\x1dv"]
    assert receipts(events)[0].text == "x"  # the image bytes were not taken for text


def test_a_large_raster_image_is_skipped_not_buffered() -> None:
    parser = EscposParser(max_buffer=4096 + 16 + 2953)
    parser.feed(b"\x1dv0\x00\xff\x00\xff\x00")  # 255 x 255 bytes follow
    drain(parser)
    for _ in range(16):
        parser.feed(b"\x00" * 4096)
        drain(parser)
        assert parser.buffered == 0
    parser.feed(b"\x00" * (255 * 255 - 16 * 4096) + b"ok\n\x1dV\x00")
    assert receipts(drain(parser))[0].text == "ok"


def test_qr_store_over_the_bound_is_the_peers_error() -> None:
    parser = EscposParser()
    parser.feed(b"\x1d(k\xff\xff\x31\x50\x30")
    with pytest.raises(EscposReceiveError, match="QR store command declares 65532 bytes"):
        drain(parser)
    with pytest.raises(EscposReceiveError, match="reset"):
        parser.feed(b"x")
    parser.reset()
    parser.feed(b"y\n\x1dV\x00")
    assert receipts(drain(parser))[0].text == "y"


def test_a_line_without_lf_is_bounded() -> None:
    parser = EscposParser()
    with pytest.raises(EscposReceiveError, match=f"more than {MAX_LINE_BYTES} bytes"):
        for _ in range(MAX_LINE_BYTES // 1000 + 2):
            parser.feed(b"x" * 1000)
            drain(parser)


def test_feeding_past_the_buffer_bound_is_refused() -> None:
    parser = EscposParser(max_buffer=4096)
    parser.feed(b"\x1d(k\x00\x08")  # a QR command whose 2048 bytes have not all come
    with pytest.raises(EscposReceiveError, match="receive buffer"):
        parser.feed(b"x" * 4096)


def test_qr_print_without_stored_data_is_ignored() -> None:
    events = parse([b"\x1d(k\x03\x00\x31\x51\x30\x1dV\x00"])
    assert isinstance(events[0], Ignored)
    assert receipts(events)[0].qr_codes == ()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=600), max_size=12))
def test_random_bytes_raise_only_the_parsers_error_and_stay_bounded(chunks: list[bytes]) -> None:
    parser = EscposParser(max_buffer=4096)
    for chunk in chunks:
        try:
            parser.feed(chunk)
            drain(parser)
        except EscposReceiveError:
            parser.reset()
        assert parser.buffered <= parser.max_buffer


# Commands glued onto random bytes reach the deeper states (QR, cut, raster, barcode).
_PIECES = st.sampled_from([
    b"\x1b", b"\x1d", b"\x1c", b"\x10\x04", b"\x1d(k", b"\x1dV", b"\x1dv0", b"\x1dk", b"\x1b!",
    b"\x1d(k\x05\x00\x31\x50\x30", b"\x1d(k\x03\x00\x31\x51\x30", b"\n", "受".encode("gb18030"),
])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(_PIECES, st.binary(max_size=8)), max_size=60))
def test_command_soup_never_breaks_the_parser(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    parser = EscposParser(max_buffer=4096)
    try:
        parser.feed(data)
        whole = drain(parser)
    except EscposReceiveError:
        return
    parser = EscposParser(max_buffer=4096)
    split: list[object] = []
    for b in data:
        parser.feed(bytes((b,)))
        split += drain(parser)
    assert split == whole  # chunking never changes what is decoded


_TEXT = st.text(
    alphabet=st.sampled_from(list("abcXYZ019 ，。：（）受理回执编号张三·-")), min_size=1, max_size=40)  # noqa: E501


@given(st.lists(st.tuples(_TEXT, st.booleans(), st.sampled_from(["left", "center", "right"])),
                min_size=1, max_size=8))
def test_parse_of_compose_gives_back_the_lines(lines: list[tuple[str, bool, str]]) -> None:
    receipt = Receipt(32)
    for text, bold, align in lines:
        receipt.text(text, bold=bold, align=align)
    [parsed] = receipts(parse([receipt.cut().to_bytes()]))
    assert "".join(line.text for line in parsed.lines) == "".join(t for t, _, _ in lines)
