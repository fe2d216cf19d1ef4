"""The bundle payload (protocols.bundle, docs/protocol.md section 7): the spec's vector, round
trips, the exact size the station plans with, and every refusal naming what was wrong."""

from __future__ import annotations

import random
import tracemalloc

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.bundle import (
    BUNDLE_TAG,
    BUNDLE_VERSION,
    MAX_BUNDLE_BYTES,
    MAX_BUNDLE_ITEMS,
    BundleError,
    BundleItem,
    ItemKind,
    decode_bundle,
    encode_bundle,
    encoded_size,
)
from protocols.envelope import MAX_BATCH_PAYLOAD
from tests.protocols.test_envelope_vectors import doc_vectors

ID1 = bytes.fromhex("01936f3e2a407c1d8e5f0a1b2c3d4e5f")
ID2 = bytes.fromhex("01936f3e2a407c1d8e5f0a1b2c3d4e60")
VECTOR_ITEMS = [
    BundleItem(package_id=ID1, kind=ItemKind.BATCH,
               content=b"cunlink test vector: event batch payload"),
    BundleItem(package_id=ID2, kind=ItemKind.BLOB, content=bytes(i % 256 for i in range(30))),
]
#: The vectors this module checks; test_envelope_vectors counts them as known.
BUNDLE_VECTORS = {"bundle.payload": VECTOR_ITEMS}


def test_the_constants_are_the_specified_ones() -> None:
    assert (BUNDLE_TAG, BUNDLE_VERSION, MAX_BUNDLE_ITEMS) == ("cunlink.bundle", 1, 256)
    assert MAX_BUNDLE_BYTES == MAX_BATCH_PAYLOAD == 1_048_576
    assert (ItemKind.BATCH, ItemKind.BLOB) == (0, 1)


def test_the_spec_vector_matches_the_code() -> None:
    doc = doc_vectors()["bundle.payload"]
    assert len(VECTOR_ITEMS[0].content) == 40
    assert encode_bundle(VECTOR_ITEMS).hex() == doc.hex()
    assert len(doc) == 132 == encoded_size([40, 30])
    assert decode_bundle(doc) == VECTOR_ITEMS


# --- round trips and sizes ----------------------------------------------------------------

items_strategy = st.lists(
    st.builds(BundleItem, package_id=st.binary(min_size=16, max_size=16),
              kind=st.sampled_from(ItemKind), content=st.binary(min_size=1, max_size=600)),
    min_size=1, max_size=40, unique_by=lambda item: item.package_id)


@given(items_strategy)
@settings(max_examples=200, deadline=None)
def test_any_valid_bundle_round_trips_and_its_size_is_known_in_advance(
    items: list[BundleItem],
) -> None:
    data = encode_bundle(items)
    decoded = decode_bundle(data)
    assert decoded == items
    assert all(type(item.kind) is ItemKind for item in decoded)
    assert len(data) == encoded_size([len(i.content) for i in items])


def _items_of(lengths: list[int]) -> list[BundleItem]:
    return [BundleItem(package_id=n.to_bytes(16, "big"), kind=ItemKind(n % 2),
                       content=b"x" * size) for n, size in enumerate(lengths)]


# msgpack changes header size at these lengths (bin8 → bin16 → bin32) and item counts
# (fixarray → array16); both sides of each edge are drawn often.
BOUNDARIES = [1, 2, 254, 255, 256, 257, 65534, 65535, 65536, 65537]
lengths_strategy = st.one_of(
    st.sampled_from(BOUNDARIES), st.integers(1, 300), st.integers(1, 70_000))
counts_strategy = st.one_of(st.sampled_from([1, 14, 15, 16, 17]), st.integers(1, 40))


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_encoded_size_is_exact_over_many_lengths(data: st.DataObject) -> None:
    count = data.draw(counts_strategy)
    lengths = data.draw(st.lists(lengths_strategy, min_size=count, max_size=count))
    expected = encoded_size(lengths)
    if expected > MAX_BUNDLE_BYTES:
        with pytest.raises(BundleError, match="exceeds the limit"):
            encode_bundle(_items_of(lengths))
    else:
        assert len(encode_bundle(_items_of(lengths))) == expected


@pytest.mark.parametrize("lengths", [
    [1], [255], [256], [65535], [65536], [1] * 15, [1] * 16, [300] * MAX_BUNDLE_ITEMS,
    [1, 70_000, 255], [65535] * 15, [65536] * 15,
])
def test_encoded_size_is_exact_at_the_msgpack_boundaries(lengths: list[int]) -> None:
    assert len(encode_bundle(_items_of(lengths))) == encoded_size(lengths)


def test_a_bundle_of_exactly_the_limit_is_accepted_and_one_more_byte_is_not() -> None:
    overhead = encoded_size([70_000]) - 70_000  # everything but the content (bin32 header)
    content = MAX_BUNDLE_BYTES - overhead
    exact = encode_bundle(_items_of([content]))
    assert len(exact) == MAX_BUNDLE_BYTES
    assert decode_bundle(exact)[0].content == b"x" * content
    with pytest.raises(BundleError, match=f"{MAX_BUNDLE_BYTES + 1} bytes exceeds"):
        encode_bundle(_items_of([content + 1]))


# --- refusals -----------------------------------------------------------------------------

def raw(*items: object, tag: object = "cunlink.bundle", version: object = 1) -> bytes:
    data: bytes = msgpack.packb([tag, version, list(items)], use_bin_type=True)
    return data


def packed(value: object) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


GOOD = [ID1, 0, b"x"]
PREFIX = packed(BUNDLE_TAG)  # the tag as it is packed
MANY = [[n.to_bytes(16, "big"), 0, b"x"] for n in range(MAX_BUNDLE_ITEMS + 1)]


@pytest.mark.parametrize(("data", "fragment"), [
    pytest.param(b"", "not a msgpack bundle", id="empty"),
    pytest.param(b"\xc1", "not a msgpack bundle", id="not-msgpack"),
    pytest.param(b"\x93\xae", "not a msgpack bundle", id="truncated"),
    pytest.param(packed(7), r"expected \[.*got int", id="top-int"),
    pytest.param(packed(b"x"), r"expected \[.*got bytes", id="top-bin"),
    pytest.param(packed([BUNDLE_TAG, 1]), "got an array of 2", id="top-array-of-2"),
    pytest.param(packed([BUNDLE_TAG, 1, [GOOD], 0]), "got an array of 4", id="top-array-of-4"),
    pytest.param(raw(GOOD, tag="cunlink.batch"), "tag is 'cunlink.batch'", id="wrong-tag"),
    pytest.param(raw(GOOD, tag=b"cunlink.bundle"), "tag is b'cunlink.bundle'", id="tag-as-bin"),
    pytest.param(raw(GOOD, version=2), "version 2.*sender runs a newer", id="version-newer"),
    pytest.param(raw(GOOD, version=0), "version 0.*sender runs an? older", id="version-older"),
    pytest.param(raw(GOOD, version="1"), "version must be an int, got str", id="version-str"),
    pytest.param(raw(GOOD, version=True), "version must be an int, got bool",
                 id="version-bool"),
    pytest.param(packed([BUNDLE_TAG, 1, b"items"]), "items must be an array, got bytes",
                 id="items-not-array"),
    pytest.param(raw(), "1 to 256 items, got 0", id="no-items"),
    pytest.param(raw(*MANY), "1 to 256 items, got 257", id="257-items"),
    pytest.param(raw([b"\x00" * 15, 0, b"x"]), "item 0: a package id is 16 bytes, got 15",
                 id="id-15"),
    pytest.param(raw(GOOD, [b"\x00" * 17, 0, b"x"]), "item 1: a package id is 16 bytes, got 17",
                 id="id-17"),
    pytest.param(raw([ID1.hex(), 0, b"x"]), "item 0: the package id must be 16 bytes of bin",
                 id="id-as-str"),
    pytest.param(raw(GOOD, [ID2, 1, b"y"], GOOD), f"item 2: package {ID1.hex()} is in the "
                 "bundle twice", id="duplicate-id"),
    pytest.param(raw(GOOD, [ID2, 2, b"x"]), f"item 1 \\(package {ID2.hex()}\\): unknown kind 2",
                 id="kind-2"),
    pytest.param(raw([ID1, -1, b"x"]), "item 0.*unknown kind -1", id="kind-negative"),
    pytest.param(raw([ID1, "0", b"x"]), "item 0.*unknown kind '0'", id="kind-str"),
    pytest.param(raw([ID1, True, b"x"]), "item 0.*unknown kind True", id="kind-bool"),
    pytest.param(raw([ID1, 0, b""]), "item 0.*content must be 1 to 1048576 bytes, got 0",
                 id="empty-content"),
    pytest.param(raw([ID1, 0, "text"]), "item 0.*content must be bin, got str",
                 id="content-str"),
    pytest.param(raw([ID1, 0]), r"item 0 is not \[package_id, kind, content\]",
                 id="item-of-2"),
    pytest.param(raw([ID1, 0, b"x", b"y"]), "item 0 is not.*array of 4", id="item-of-4"),
    pytest.param(raw(b"item"), "item 0 is not.*got bytes", id="item-not-array"),
    # maps are refused while unpacking, wherever they are, even an empty one
    pytest.param(packed({"a": 1}), "not a msgpack bundle.*max_map_len", id="map-top"),
    pytest.param(raw({"id": ID1}), "not a msgpack bundle.*max_map_len", id="map-item"),
    pytest.param(raw([ID1, 0, {}]), "map is not allowed", id="empty-map-content"),
    pytest.param(raw([ID1, 0, b"x"], version={}), "map is not allowed", id="map-version"),
    # ext types are refused, even a zero-length one that max_ext_len = 0 lets through
    pytest.param(packed([BUNDLE_TAG, 1, [[ID1, 0, msgpack.ExtType(1, b"e")]]]),
                 "not a msgpack bundle.*max_ext_len", id="ext"),
    pytest.param(packed([BUNDLE_TAG, 1, [[ID1, msgpack.ExtType(5, b""), b"x"]]]),
                 "ext type 5 is not allowed", id="ext-empty"),
    pytest.param(raw(GOOD) + b"\x00", "trailing bytes after the bundle: 1 bytes",
                 id="trailing-byte"),
    pytest.param(raw(GOOD) + raw(GOOD), "trailing bytes", id="trailing-bundle"),
    pytest.param(PREFIX * 3, "trailing bytes", id="three-strs"),
    pytest.param(packed(["x" * 65, 1, [GOOD]]), "not a msgpack bundle.*max_str_len",
                 id="long-str"),
])
def test_bad_bundles_are_refused_with_what_was_wrong(data: bytes, fragment: str) -> None:
    with pytest.raises(BundleError, match=fragment):
        decode_bundle(data)


def test_an_oversized_payload_is_refused_before_unpacking(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def must_not_unpack(*_args: object, **_kwargs: object) -> object:
        raise AssertionError("unpacked a payload over the limit")

    monkeypatch.setattr(msgpack, "unpackb", must_not_unpack)
    with pytest.raises(BundleError, match=f"{MAX_BUNDLE_BYTES + 1} bytes exceeds the limit"):
        decode_bundle(b"\x90" * (MAX_BUNDLE_BYTES + 1))


HEADER = b"\x93" + PREFIX + b"\x01"  # [tag, 1, ... : the items array follows


@pytest.mark.parametrize("data", [
    pytest.param(b"\xdd\xff\xff\xff\xff" * 2, id="array32-in-array32"),
    pytest.param(b"\xdc\xff\xff" * 3 + b"\x00", id="array16-nested"),
    pytest.param(HEADER + b"\xdd\xff\xff\xff\xff", id="items-array32"),
    pytest.param(HEADER + b"\x91\xdd\xff\xff\xff\xff", id="item-array32"),
    pytest.param(HEADER + b"\x91\x93\xc6\xff\xff\xff\xff", id="id-bin32"),
    pytest.param(HEADER + b"\x91\x93" + packed(ID1) + b"\x00\xc6\x7f\xff\xff\xff", id="bin32"),
    pytest.param(b"\xdb\xff\xff\xff\xff\x00\x00\x00\x00\x00", id="str32"),
    pytest.param(b"\xdf\xff\xff\xff\xff" + b"\x00" * 5, id="map32"),
    pytest.param(b"\xc9\xff\xff\xff\xff\x01" + b"\x00" * 4, id="ext32"),
    pytest.param(b"\x91" * 100_000, id="deep-nesting"),
])
def test_length_bombs_are_refused_without_allocating(data: bytes) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(BundleError, match="not a msgpack bundle"):
            decode_bundle(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * len(data) + 64 * 1024  # nothing near what the prefixes claim


@pytest.mark.parametrize(("items", "fragment"), [
    ([], "1 to 256 items, got 0"),
    (_items_of([1] * (MAX_BUNDLE_ITEMS + 1)), "1 to 256 items, got 257"),
    ([BundleItem(package_id=ID1, kind=ItemKind.BLOB, content=b"")],
     f"item 0 \\(package {ID1.hex()}\\): content must be 1 to"),
    ([BundleItem(package_id=b"\x00" * 15, kind=ItemKind.BLOB, content=b"x")],
     "item 0: a package id is 16 bytes, got 15"),
    ([BundleItem(package_id=b"\x00" * 17, kind=ItemKind.BLOB, content=b"x")],
     "item 0: a package id is 16 bytes, got 17"),
    ([*VECTOR_ITEMS, VECTOR_ITEMS[0]], f"item 2: package {ID1.hex()} is in the bundle twice"),
    ([BundleItem(package_id=ID1, kind=ItemKind.BLOB, content=b"x" * MAX_BUNDLE_BYTES)],
     "exceeds the limit"),
    ([BundleItem(package_id=ID1, kind=ItemKind.BLOB, content=b"x" * (MAX_BUNDLE_BYTES + 1))],
     "content must be 1 to 1048576 bytes, got 1048577"),
    (_items_of([MAX_BUNDLE_BYTES // 2] * 2), "exceeds the limit"),
])
def test_the_encoder_refuses_what_the_decoder_would(items: list[BundleItem],
                                                    fragment: str) -> None:
    with pytest.raises(BundleError, match=fragment):
        encode_bundle(items)


def test_most_items_and_smallest_contents_are_accepted() -> None:
    items = _items_of([1] * MAX_BUNDLE_ITEMS)
    assert decode_bundle(encode_bundle(items)) == items


# --- fuzz ---------------------------------------------------------------------------------

def _mutations(rng: random.Random, good: bytes) -> bytes:
    mutated = bytearray(good)
    for _ in range(rng.randrange(1, 5)):
        where = rng.randrange(len(mutated) + 1)
        action = rng.randrange(4)
        if action == 0 and where < len(mutated):  # flip a byte
            mutated[where] = rng.randrange(256)
        elif action == 1:  # insert bytes
            mutated[where:where] = rng.randbytes(rng.randrange(1, 6))
        elif action == 2:  # delete bytes
            del mutated[where:where + rng.randrange(1, 6)]
        else:  # a length or type byte msgpack cares about
            if where < len(mutated):
                mutated[where] = rng.choice(
                    [0x90, 0x93, 0x9f, 0xc4, 0xc5, 0xc6, 0xc7, 0xd4, 0xdc, 0xdd, 0xde, 0xdf,
                     0x80, 0xa0, 0xc0, 0xc2, 0xc3, 0xcb, 0xcc, 0xd0, 0xff])
    return bytes(mutated[: rng.randrange(len(mutated) + 1)] if rng.random() < 0.2 else mutated)


def test_random_and_mutated_input_raises_only_bundle_error() -> None:
    rng = random.Random(20261205)
    goods = [encode_bundle(VECTOR_ITEMS), encode_bundle(_items_of([1] * 17)),
             encode_bundle(_items_of([300, 2, 70]))]
    inputs = [rng.randbytes(rng.randrange(0, 200)) for _ in range(1000)]
    inputs += [_mutations(rng, rng.choice(goods)) for _ in range(1000)]
    decoded = 0
    for data in inputs:
        try:
            items = decode_bundle(data)
        except BundleError:
            continue
        decoded += 1
        assert 1 <= len(items) <= MAX_BUNDLE_ITEMS
        assert len({i.package_id for i in items}) == len(items)
        assert all(len(i.package_id) == 16 and i.content for i in items)
        assert encode_bundle(items) == data  # what decodes is exactly what encode would send
    assert decoded > 0  # some mutations keep a valid bundle (a changed content byte)
