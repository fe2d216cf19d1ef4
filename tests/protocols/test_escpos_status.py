"""DLE EOT n replies: the fixed bit pattern and the meaning of every free bit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.escpos import (
    ErrorReply,
    EscposStatusError,
    OfflineReply,
    PaperReply,
    PrinterReply,
    PrinterStatus,
    StatusReply,
    decode_status,
    encode_status,
    status_query,
)

BASE = 0b0001_0010  # 0xx1xx10 with every free bit clear


def test_queries() -> None:
    assert [status_query(n) for n in (1, 2, 3, 4)] == [
        b"\x10\x04\x01", b"\x10\x04\x02", b"\x10\x04\x03", b"\x10\x04\x04"]
    with pytest.raises(EscposStatusError, match="n=5"):
        status_query(5)


@pytest.mark.parametrize(
    ("n", "bit", "expected"),
    [
        (1, 3, PrinterReply(offline=True)),
        (1, 5, PrinterReply(waiting_for_recovery=True)),
        (1, 2, PrinterReply()),  # drawer kick-out pin: not a printer condition
        (1, 6, PrinterReply()),
        (2, 2, OfflineReply(cover_open=True)),
        (2, 3, OfflineReply(feed_button=True)),
        (2, 5, OfflineReply(paper_end_stop=True)),
        (2, 6, OfflineReply(error=True)),
        (3, 2, ErrorReply()),
        (3, 3, ErrorReply(cutter_error=True)),
        (3, 5, ErrorReply(unrecoverable=True)),
        (3, 6, ErrorReply(auto_recoverable=True)),
        (4, 2, PaperReply(near_end=True)),
        (4, 3, PaperReply(near_end=True)),
        (4, 5, PaperReply(paper_end=True)),
        (4, 6, PaperReply(paper_end=True)),
    ],
)
def test_every_free_bit(n: int, bit: int, expected: StatusReply) -> None:
    assert decode_status(n, BASE | 1 << bit) == expected


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_all_clear_means_nothing_wrong(n: int) -> None:
    reply = decode_status(n, BASE)
    assert not any(getattr(reply, f) for f in reply.__dataclass_fields__)


@pytest.mark.parametrize("byte", [0x00, 0xFF, 0x92, 0x02, 0x10, 0x13, 0x11, 0x3F])
def test_bytes_without_the_pattern_are_refused(byte: int) -> None:
    with pytest.raises(EscposStatusError, match=f"{byte:#04x}.*0xx1xx10"):
        decode_status(1, byte)


@given(st.integers(0, 255), st.sampled_from([1, 2, 3, 4]))
def test_decode_accepts_exactly_the_pattern(byte: int, n: int) -> None:
    if byte & 0b1001_0011 == BASE:
        decode_status(n, byte)
    else:
        with pytest.raises(EscposStatusError):
            decode_status(n, byte)


@given(st.builds(PrinterStatus, online=st.booleans(), waiting_for_recovery=st.booleans(),
                 cover_open=st.booleans(), paper_end=st.booleans(), paper_near_end=st.booleans(),
                 cutter_error=st.booleans(), unrecoverable_error=st.booleans(),
                 auto_recoverable_error=st.booleans()))
def test_status_round_trips_through_the_four_replies(status: PrinterStatus) -> None:
    printer, offline, error, paper = status.replies()
    decoded = [decode_status(n, encode_status(r))
               for n, r in ((1, printer), (2, offline), (3, error), (4, paper))]
    again = PrinterStatus.from_replies(*decoded)  # type: ignore[arg-type]
    # Paper end implies near end on the wire (the sensors are in that order on the roll).
    assert again == PrinterStatus(**{**_fields(status),
                                     "paper_near_end": status.paper_near_end or status.paper_end})


def _fields(status: PrinterStatus) -> dict[str, bool]:
    return {f: getattr(status, f) for f in status.__dataclass_fields__}


def test_ready_and_problems() -> None:
    assert PrinterStatus().ready and PrinterStatus().problems == ()
    assert PrinterStatus(paper_near_end=True).ready  # still prints
    paper_out = PrinterStatus(online=False, paper_end=True)
    assert not paper_out.ready
    assert paper_out.problems == ("paper out", "offline")
    assert not PrinterStatus(cover_open=True).ready
    assert not PrinterStatus(cutter_error=True).ready
    assert not PrinterStatus(online=False).ready
