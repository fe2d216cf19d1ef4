"""The bundle payload (protocols.bundle, docs/protocol.md section 7): the spec's vector, round
trips, and every refusal naming what was wrong."""

from __future__ import annotations

import os
import random

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.bundle import (
    MAX_BUNDLE_BYTES,
    MAX_BUNDLE_ITEMS,
    BundleError,
    BundleItem,
    ItemKind,
    decode_bundle,
    encode_bundle,
    encoded_size,
)
from tests.protocols.test_envelope_vectors import doc_vectors

ID1 = bytes.fromhex("01936f3e2a407c1d8e5f0a1b2c3d4e5f")
ID2 = bytes.fromhex("01936f3e2a407c1d8e5f0a1b2c3d4e60")
VECTOR_ITEMS = [
    BundleItem(package_id=ID1, kind=ItemKind.BATCH,
               content=b"cunlink test vector: event batch payload"),
    BundleItem(package_id=ID2, kind=ItemKind.BLOB, content=bytes(range(30))),
]
BUNDLE_VECTORS = {"bundle.payload": VECTOR_ITEMS}


def test_the_spec_vector_matches_the_code() -> None:
    doc = doc_vectors()["bundle.payload"]
    assert encode_bundle(VECTOR_ITEMS).hex() == doc.hex()
    assert len(doc) == 132
    assert decode_bundle(doc) == VECTOR_ITEMS


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
    assert decode_bundle(data) == items
    assert len(data) == encoded_size([len(i.content) for i in items])


@pytest.mark.parametrize("lengths", [
    [1], [255], [256], [65535], [65536], [1] * 15, [1] * 16, [300] * 256, [1, 70_000, 255],
])
def test_encoded_size_is_exact_at_the_msgpack_boundaries(lengths: list[int]) -> None:
    items = [BundleItem(package_id=n.to_bytes(16, "big"), kind=ItemKind.BLOB,
                        content=b"x" * size) for n, size in enumerate(lengths)]
    assert len(encode_bundle(items)) == encoded_size(lengths)


def raw(*items: object, tag: object = "cunlink.bundle", version: object = 1) -> bytes:
    data: bytes = msgpack.packb([tag, version, list(items)], use_bin_type=True)
    return data


GOOD = [ID1, 0, b"x"]


@pytest.mark.parametrize(("data", "fragment"), [
    (b"", "msgpack"),
    (b"\xc1", "msgpack"),
    (msgpack.packb({"a": 1}), "msgpack"),  # maps are refused while unpacking
    (msgpack.packb([1, 2]), "not a bundle"),
    (raw(GOOD, tag="cunlink.batch"), "not a bundle"),
    (raw(GOOD, version=2), "version 2"),
    (raw(), "1 to 256 items"),
    (raw(*[[n.to_bytes(16, "big"), 0, b"x"] for n in range(MAX_BUNDLE_ITEMS + 1)]), "msgpack"),
    (raw([b"\x00" * 15, 0, b"x"]), "16 bytes"),
    (raw([b"\x00" * 17, 0, b"x"]), "16 bytes"),
    (raw(GOOD, GOOD), ID1.hex()),
    (raw([ID1, 2, b"x"]), "item 0"),
    (raw([ID1, "0", b"x"]), "item 0"),
    (raw([ID1, 0, b""]), "content"),
    (raw([ID1, 0, "text"]), "item 0"),
    (raw([ID1, 0]), "item 0"),
    (msgpack.packb(["cunlink.bundle", 1, [[ID1, 0, msgpack.ExtType(1, b"e")]]]), "msgpack"),
    (raw(GOOD) + b"\x00", "msgpack"),  # trailing bytes
    (b"\xdd\xff\xff\xff\xff", "msgpack"),  # an array claiming 4 billion items in 5 bytes
])
def test_bad_bundles_are_refused_with_what_was_wrong(data: bytes, fragment: str) -> None:
    with pytest.raises(BundleError, match=fragment):
        decode_bundle(data)


def test_an_oversized_payload_is_refused_before_unpacking() -> None:
    with pytest.raises(BundleError, match="exceeds"):
        decode_bundle(b"\x00" * (MAX_BUNDLE_BYTES + 1))


@pytest.mark.parametrize(("items", "fragment"), [
    ([], "1 to 256 items"),
    ([BundleItem(package_id=ID1, kind=ItemKind.BLOB, content=b"")], "content"),
    ([BundleItem(package_id=b"short", kind=ItemKind.BLOB, content=b"x")], "16 bytes"),
    (VECTOR_ITEMS + VECTOR_ITEMS[:1], ID1.hex()),
    ([BundleItem(package_id=ID1, kind=ItemKind.BLOB, content=b"x" * MAX_BUNDLE_BYTES)],
     "exceeds"),
])
def test_the_encoder_refuses_what_the_decoder_would(items: list[BundleItem],
                                                    fragment: str) -> None:
    with pytest.raises(BundleError, match=fragment):
        encode_bundle(items)


def test_random_and_mutated_input_raises_only_bundle_error() -> None:
    rng = random.Random(7)
    good = encode_bundle(VECTOR_ITEMS)
    inputs = [os.urandom(rng.randrange(0, 200)) for _ in range(1000)]
    for _ in range(1000):
        mutated = bytearray(good)
        for _ in range(rng.randrange(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        inputs.append(bytes(mutated[: rng.randrange(len(mutated) + 1)]))
    for data in inputs:
        try:
            items = decode_bundle(data)
        except BundleError:
            continue
        assert 1 <= len(items) <= MAX_BUNDLE_ITEMS
        assert len({i.package_id for i in items}) == len(items)
