"""Bundles: several small packages carried in one sealed batch (docs/protocol.md section 7)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import msgpack

from protocols.envelope import MAX_BATCH_PAYLOAD

MAX_BUNDLE_ITEMS = 256
MAX_BUNDLE_BYTES = MAX_BATCH_PAYLOAD
BUNDLE_TAG = "cunlink.bundle"
BUNDLE_VERSION = 1


class BundleError(ValueError):
    """Not a valid bundle."""


class ItemKind(IntEnum):
    BATCH = 0
    BLOB = 1


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
        if len(item.package_id) != 16:
            raise BundleError(f"item {index}: package id must be 16 bytes")
        if item.package_id in seen:
            raise BundleError(f"item {index}: package id {item.package_id.hex()} twice")
        seen.add(item.package_id)
        if not 1 <= len(item.content) <= MAX_BUNDLE_BYTES:
            raise BundleError(f"item {index}: content must be 1 to {MAX_BUNDLE_BYTES} bytes")


def encode_bundle(items: Sequence[BundleItem]) -> bytes:
    _check(items)
    data: bytes = msgpack.packb(
        [BUNDLE_TAG, BUNDLE_VERSION, [[i.package_id, int(i.kind), i.content] for i in items]],
        use_bin_type=True)
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(f"bundle of {len(data)} bytes exceeds {MAX_BUNDLE_BYTES}")
    return data


def decode_bundle(data: bytes) -> list[BundleItem]:
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(f"bundle of {len(data)} bytes exceeds {MAX_BUNDLE_BYTES}")
    try:
        raw = msgpack.unpackb(data, raw=False, max_bin_len=MAX_BUNDLE_BYTES, max_str_len=64,
                              max_array_len=MAX_BUNDLE_ITEMS, max_map_len=0, max_ext_len=0)
    except Exception as exc:
        raise BundleError(f"not a msgpack bundle: {exc}") from exc
    if not (isinstance(raw, list) and len(raw) == 3 and raw[0] == BUNDLE_TAG):
        raise BundleError("not a bundle")
    if raw[1] != BUNDLE_VERSION:
        raise BundleError(f"bundle version {raw[1]!r}, this side reads {BUNDLE_VERSION}")
    if not isinstance(raw[2], list):
        raise BundleError("items must be an array")
    items = []
    for index, item in enumerate(raw[2]):
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], bytes)
                and isinstance(item[1], int) and item[1] in (0, 1)
                and isinstance(item[2], bytes)):
            raise BundleError(f"item {index} is not [id, kind, content]")
        items.append(BundleItem(package_id=item[0], kind=ItemKind(item[1]), content=item[2]))
    _check(items)
    return items


def _bin_header(n: int) -> int:
    return 2 if n < 256 else 3 if n < 65536 else 5


def encoded_size(content_lengths: Sequence[int]) -> int:
    n = len(content_lengths)
    size = 1 + 1 + len(BUNDLE_TAG) + 1 + (1 if n < 16 else 3 if n < 65536 else 5)
    for length in content_lengths:
        size += 1 + 2 + 16 + 1 + _bin_header(length) + length
    return size
