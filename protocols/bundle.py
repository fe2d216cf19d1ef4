"""Bundles: several small packages carried in one sealed event batch (docs/protocol.md §7).

Pure: bytes in, items out. A bundle is the *payload* of an ordinary sealed batch (so it is
signed and encrypted exactly as any batch); inside, each member keeps the package id it was
sealed under at acceptance, so the hub's replay check still works member by member:

    [ "cunlink.bundle", 1, [ [package_id, kind, content], ... ] ]

``kind`` 0: ``content`` is a member batch's event payload; 1: a member blob's plaintext.
Every bound is checked before or while unpacking; anything else is a ``BundleError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import msgpack

from protocols.envelope import MAX_BATCH_PAYLOAD

BUNDLE_TAG = "cunlink.bundle"
BUNDLE_VERSION = 1
MAX_BUNDLE_ITEMS = 256
#: A bundle is the payload of one sealed batch, so the batch bound applies to it whole.
MAX_BUNDLE_BYTES = MAX_BATCH_PAYLOAD
PACKAGE_ID_LEN = 16


class BundleError(ValueError):
    """Not a valid bundle: always the sender's fault; the message says what and where."""


class ItemKind(IntEnum):
    BATCH = 0  # content: an event batch payload
    BLOB = 1  # content: a material's plaintext


@dataclass(frozen=True, slots=True, kw_only=True)
class BundleItem:
    package_id: bytes
    kind: ItemKind
    content: bytes


def _check(items: Sequence[BundleItem]) -> None:
    if not 1 <= len(items) <= MAX_BUNDLE_ITEMS:
        raise BundleError(f"a bundle holds 1 to {MAX_BUNDLE_ITEMS} items, got {len(items)}")
    seen: set[bytes] = set()
    for index, item in enumerate(items):
        if len(item.package_id) != PACKAGE_ID_LEN:
            raise BundleError(f"item {index}: a package id is {PACKAGE_ID_LEN} bytes, got "
                              f"{len(item.package_id)}")
        if item.package_id in seen:
            raise BundleError(f"item {index}: package {item.package_id.hex()} is in the bundle "
                              "twice")
        seen.add(item.package_id)
        if not 1 <= len(item.content) <= MAX_BUNDLE_BYTES:
            raise BundleError(f"item {index} (package {item.package_id.hex()}): content must "
                              f"be 1 to {MAX_BUNDLE_BYTES} bytes, got {len(item.content)}")


def encode_bundle(items: Sequence[BundleItem]) -> bytes:
    """The payload for ``items``; refuses what `decode_bundle` would refuse."""
    _check(items)
    data: bytes = msgpack.packb(
        [BUNDLE_TAG, BUNDLE_VERSION,
         [[item.package_id, int(item.kind), item.content] for item in items]],
        use_bin_type=True)
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(f"a bundle of {len(data)} bytes exceeds the limit of "
                          f"{MAX_BUNDLE_BYTES}; carry fewer packages in it")
    return data


def decode_bundle(data: bytes) -> list[BundleItem]:
    """Parse a bundle payload; raises BundleError (and nothing else) when it is not valid."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(f"a bundle of {len(data)} bytes exceeds the limit of "
                          f"{MAX_BUNDLE_BYTES}")
    try:
        raw = msgpack.unpackb(
            bytes(data), raw=False, use_list=True, max_bin_len=MAX_BUNDLE_BYTES,
            max_str_len=64, max_array_len=MAX_BUNDLE_ITEMS, max_map_len=0, max_ext_len=0)
    # msgpack raises several unrelated types for bad input (ExtraData for trailing bytes)
    except Exception as exc:
        raise BundleError(f"not a msgpack bundle: {exc}") from exc
    if not (isinstance(raw, list) and len(raw) == 3 and raw[0] == BUNDLE_TAG):
        raise BundleError(f'not a bundle: expected ["{BUNDLE_TAG}", version, items]')
    version, entries = raw[1], raw[2]
    if version != BUNDLE_VERSION or isinstance(version, bool):
        raise BundleError(f"bundle version {version!r}; this side reads version "
                          f"{BUNDLE_VERSION} (the sender runs another cunlink release)")
    if not isinstance(entries, list):
        raise BundleError("the bundle's items must be an array")
    items = []
    for index, entry in enumerate(entries):
        if not (isinstance(entry, list) and len(entry) == 3):
            raise BundleError(f"item {index} is not [package_id, kind, content]")
        package_id, kind, content = entry
        if not isinstance(package_id, bytes):
            raise BundleError(f"item {index}: the package id must be 16 bytes of bin")
        if not isinstance(kind, int) or isinstance(kind, bool) or kind not in (0, 1):
            raise BundleError(f"item {index}: unknown kind {kind!r} (0 batch, 1 blob)")
        if not isinstance(content, bytes):
            raise BundleError(f"item {index}: the content must be bin, got "
                              f"{type(content).__name__}")
        items.append(BundleItem(package_id=package_id, kind=ItemKind(kind), content=content))
    _check(items)
    return items


def _bin_header(length: int) -> int:
    return 2 if length < 2**8 else 3 if length < 2**16 else 5


def encoded_size(content_lengths: Sequence[int]) -> int:
    """The exact size of `encode_bundle` for items with these content lengths, computed
    without encoding: the station plans a bundle that fits one chunk with it."""
    count = len(content_lengths)
    size = 1 + 1 + len(BUNDLE_TAG) + 1 + (1 if count < 16 else 3 if count < 2**16 else 5)
    for length in content_lengths:
        # fixarray(3), bin8 header + 16-byte id, positive fixint kind, bin header + content
        size += 1 + 2 + PACKAGE_ID_LEN + 1 + _bin_header(length) + length
    return size
