"""The sync wire messages: vectors from docs/protocol.md section 6, round trips, bad input."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.wire import (
    MAX_MESSAGE_BYTES,
    MAX_RANGES,
    Ack,
    Chunk,
    DownAck,
    DownPackage,
    Hello,
    Need,
    Offer,
    PackageKind,
    Reject,
    RejectReason,
    State,
    WireError,
    add_range,
    covered,
    decode,
    encode,
    missing_ranges,
    parse_topic,
    topic,
)

PID = bytes(range(16))

# The same vectors are printed in docs/protocol.md, section 6.4.
VECTORS = [
    (Hello(hlc=0x0190_0000_0001_0002, down_high_water=3), "940101cf019000000001000203"),
    (
        Offer(package_id=PID, kind=PackageKind.BLOB, size=1_000_000, priority=2),
        "960102c410000102030405060708090a0b0c0d0e0f01ce000f424002",
    ),
    (
        Chunk(package_id=PID, kind=PackageKind.BATCH, size=5, offset=0, data=b"hello"),
        "970103c410000102030405060708090a0b0c0d0e0f000500c40568656c6c6f",
    ),
    (
        Chunk(package_id=PID, kind=PackageKind.BUNDLE, size=5, offset=0, data=b"hello"),
        "970103c410000102030405060708090a0b0c0d0e0f020500c40568656c6c6f",
    ),
    (DownAck(package_id=PID), "930104c410000102030405060708090a0b0c0d0e0f"),
    (
        Need(package_id=PID, ranges=((0, 4096), (8192, 10000)), hub_hlc=7),
        "950110c410000102030405060708090a0b0c0d0e0f929200cd100092cd2000cd271007",
    ),
    (
        Ack(package_id=PID, hub_hlc=7, committed_ms=1795000000000),
        "950111c410000102030405060708090a0b0c0d0e0f07cf000001a1ee565e00",
    ),
    (
        Reject(package_id=PID, reason=RejectReason.SENDER_MISMATCH,
               detail="signer ST002 != topic ST001"),
        "950112c410000102030405060708090a0b0c0d0e0f05bb7369676e657220535430303220213d20746f"
        "706963205354303031",
    ),
    (
        DownPackage(package_id=PID, sealed=b"\x01\x02", hub_hlc=9),
        "950113c410000102030405060708090a0b0c0d0e0fc402010209",
    ),
    (State(online=False), "960120c200a080"),
]


@pytest.mark.parametrize(("message", "hexbytes"), VECTORS, ids=lambda v: type(v).__name__)
def test_vectors_encode_and_decode(message: object, hexbytes: str) -> None:
    assert encode(message).hex() == hexbytes  # type: ignore[arg-type]
    assert decode(bytes.fromhex(hexbytes)) == message


def test_the_spec_prints_the_same_vectors() -> None:
    from pathlib import Path

    spec = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")
    for _message, hexbytes in VECTORS:
        assert hexbytes in spec.replace("\n", "").replace(" ", "")


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"", "msgpack"),
        (b"\xc1", "msgpack"),
        (msgpack.packb({"a": 1}), "array"),
        (msgpack.packb([2, 1, 0, 0]), "version"),
        (msgpack.packb([1, 99]), "unknown message type"),
        (msgpack.packb([1, 4, b"short"]), "16 bytes"),
        (msgpack.packb([1, 4]), "1 fields"),
        (msgpack.packb([1, 3, PID, 0, 4, 2, b"abc"]), "runs past"),
        (msgpack.packb([1, 3, PID, 0, 4, 0, b""]), "chunk data"),
        (msgpack.packb([1, 3, PID, 7, 4, 0, b"abc"]), "fields for message type"),
        (msgpack.packb([1, 16, PID, [[5, 3]], 0]), "sorted"),
        (msgpack.packb([1, 16, PID, [[0, 3], [2, 9]], 0]), "disjoint"),
        (msgpack.packb([1, 17, PID, -1, 0]), "hub_hlc"),
        (msgpack.packb([1, 1, True, 0]), "hlc"),
        (b"\x00" * (MAX_MESSAGE_BYTES + 1), "exceeds"),
    ],
)
def test_bad_messages_raise_wire_error_naming_the_problem(raw: bytes, fragment: str) -> None:
    with pytest.raises(WireError, match=fragment):
        decode(raw)


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_only_ever_raises_wire_error(raw: bytes) -> None:
    with contextlib.suppress(WireError):
        decode(raw)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(st.integers(-(2**63), 2**64 - 1), st.binary(max_size=20),
                          st.text(max_size=5),
                          st.booleans(), st.none(),
                          st.lists(st.integers(0, 2**63), max_size=3)),
                max_size=7),
       st.sampled_from([1, 2, 3, 4, 16, 17, 18, 19, 32]))
def test_wrong_fields_only_ever_raise_wire_error(fields: list[object], kind: int) -> None:
    with contextlib.suppress(WireError):
        decode(msgpack.packb([1, kind, *fields]))


def test_need_holds_at_most_max_ranges() -> None:
    with pytest.raises(WireError, match="at most"):
        Need(package_id=PID, ranges=tuple((i * 10, i * 10 + 5) for i in range(MAX_RANGES + 1)),
             hub_hlc=0)


def test_largest_chunk_fits_in_the_message_limit() -> None:
    from protocols.wire import MAX_CHUNK_DATA

    big = Chunk(package_id=PID, kind=PackageKind.BLOB, size=2**31, offset=2**30,
                data=b"x" * MAX_CHUNK_DATA)
    assert len(encode(big)) <= MAX_MESSAGE_BYTES


def test_topics() -> None:
    assert topic("ST001", "u") == "cl/ST001/u"
    assert parse_topic("cl/ST-01/d") == ("ST-01", "d")
    for bad in ("cl/ST001/x", "cl/+/u", "xx/ST001/u", "cl/a/b/u", "cl//u"):
        with pytest.raises(WireError):
            parse_topic(bad)
    with pytest.raises(WireError):
        topic("a/b", "u")


@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(1, 200)), max_size=40))
def test_range_arithmetic_matches_a_set_of_bytes(spans: list[tuple[int, int]]) -> None:
    size = 1200
    have: tuple[tuple[int, int], ...] = ()
    truth: set[int] = set()
    for start, length in spans:
        end = min(size, start + length)
        have = add_range(have, start, end)
        truth.update(range(start, end))
    assert covered(have) == len(truth)
    assert all(a < b for a, b in have)
    assert all(have[i][1] < have[i + 1][0] for i in range(len(have) - 1))
    gaps = missing_ranges(have, size, limit=10_000)
    assert covered(gaps) == size - len(truth)
    limited = missing_ranges(have, size, limit=3)
    assert len(limited) <= 3
    # merging the tail may ask for bytes already held, never forgets a missing one
    missing = {i for a, b in gaps for i in range(a, b)}
    assert missing <= {i for a, b in limited for i in range(a, b)}
