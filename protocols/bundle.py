"""Bundles: small packages coalesced at send time into one sealed event batch (docs/protocol.md
section 7).

Every accepted package is sealed on its own, and for a small one (an event batch of a few
hundred bytes, a scan of a few KB) the envelope — HPKE ``enc`` and tag, the Ed25519 signature,
the headers, ~250–330 bytes — is a large share of what crosses a 2G link. When several small
packages wait, the station carries their plaintext contents in ONE sealed event batch (made
with `protocols.envelope.seal_batch`, magic ``CLBA``): one signature and one HPKE seal for all
of them. That batch's *payload* is a bundle:

    [ "cunlink.bundle", 1, [ [package_id, kind, content], ... ] ]

Each member keeps the package id it was sealed under at acceptance, so the hub's replay check
still works member by member. ``kind`` 0 (`ItemKind.BATCH`): ``content`` is a member batch's
event payload; 1 (`ItemKind.BLOB`): a member blob's plaintext.

Pure: bytes in, items out, no I/O. Every bound is checked before or while unpacking, so no
length is trusted before it is bounded; `decode_bundle` raises `BundleError` and nothing else,
and `encode_bundle` refuses whatever `decode_bundle` would, so what is sent can be received.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import NoReturn

import msgpack

from protocols.envelope import MAX_BATCH_PAYLOAD

BUNDLE_TAG = "cunlink.bundle"
BUNDLE_VERSION = 1
MAX_BUNDLE_ITEMS = 256
#: A bundle is the payload of one sealed batch, so the batch bound applies to it whole.
MAX_BUNDLE_BYTES = MAX_BATCH_PAYLOAD
PACKAGE_ID_LEN = 16
#: msgpack str limit while unpacking: the tag is the only str a bundle has.
_MAX_STR_LEN = 64


class BundleError(ValueError):
    """Not a valid bundle: always the sender's fault; the message says what and where."""


class ItemKind(IntEnum):
    BATCH = 0  # content: an event batch payload (the sync layer's msgpack list of events)
    BLOB = 1  # content: a material's plaintext (what the blob container's chunks decrypt to)


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
        if item.kind not in (ItemKind.BATCH, ItemKind.BLOB):
            raise BundleError(f"item {index} (package {item.package_id.hex()}): unknown kind "
                              f"{item.kind!r} (0 batch, 1 blob)")
        if not 1 <= len(item.content) <= MAX_BUNDLE_BYTES:
            raise BundleError(f"item {index} (package {item.package_id.hex()}): content must "
                              f"be 1 to {MAX_BUNDLE_BYTES} bytes, got {len(item.content)}")


def encode_bundle(items: Sequence[BundleItem]) -> bytes:
    """The payload for ``items``; refuses (BundleError) what `decode_bundle` would refuse."""
    _check(items)
    size = encoded_size([len(item.content) for item in items])
    if size > MAX_BUNDLE_BYTES:
        raise BundleError(f"a bundle of {size} bytes exceeds the limit of {MAX_BUNDLE_BYTES}; "
                          "carry fewer packages in it")
    data: bytes = msgpack.packb(
        [BUNDLE_TAG, BUNDLE_VERSION,
         [[item.package_id, int(item.kind), item.content] for item in items]],
        use_bin_type=True)
    return data


# max_map_len = 0 and max_ext_len = 0 still let an empty map and an empty ext through
def _refuse_map(_pairs: object) -> NoReturn:
    raise BundleError("a msgpack map is not allowed in a bundle (records are arrays)")


def _refuse_ext(code: int, _data: bytes) -> NoReturn:
    raise BundleError(f"msgpack ext type {code} is not allowed in a bundle")


def decode_bundle(data: bytes) -> list[BundleItem]:
    """Parse a bundle payload; raises BundleError (and nothing else) when it is not valid."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(f"a bundle of {len(data)} bytes exceeds the limit of "
                          f"{MAX_BUNDLE_BYTES}")
    try:
        # One more array element than allowed, so that too many items get the clear message
        # of `_check`; every length stays bounded by the (already bounded) input either way.
        raw = msgpack.unpackb(
            bytes(data), raw=False, use_list=True,
            max_bin_len=MAX_BUNDLE_BYTES, max_str_len=_MAX_STR_LEN,
            max_array_len=MAX_BUNDLE_ITEMS + 1, max_map_len=0, max_ext_len=0,
            object_pairs_hook=_refuse_map, ext_hook=_refuse_ext)
    except BundleError:
        raise
    except msgpack.ExtraData as exc:
        raise BundleError(f"trailing bytes after the bundle: {len(exc.extra)} bytes follow "
                          "its msgpack value") from exc
    # msgpack raises several unrelated types for bad input (ValueError, StackError, ...)
    except Exception as exc:
        raise BundleError(f"not a msgpack bundle: {exc}") from exc
    return _items(raw)


def _items(raw: object) -> list[BundleItem]:
    if not (isinstance(raw, list) and len(raw) == 3):
        raise BundleError(f'not a bundle: expected ["{BUNDLE_TAG}", version, items], got '
                          f"{_describe(raw)}")
    tag, version, entries = raw
    if tag != BUNDLE_TAG:
        raise BundleError(f"not a bundle: the tag is {tag!r}, expected {BUNDLE_TAG!r}")
    if not isinstance(version, int) or isinstance(version, bool):
        raise BundleError(f"the bundle version must be an int, got {_describe(version)}")
    if version != BUNDLE_VERSION:
        newer = "newer" if version > BUNDLE_VERSION else "older"
        raise BundleError(f"bundle version {version}: this side reads version "
                          f"{BUNDLE_VERSION}; the sender runs a {newer} cunlink release")
    if not isinstance(entries, list):
        raise BundleError(f"the bundle's items must be an array, got {_describe(entries)}")
    items = []
    for index, entry in enumerate(entries):
        if not (isinstance(entry, list) and len(entry) == 3):
            raise BundleError(f"item {index} is not [package_id, kind, content]: got "
                              f"{_describe(entry)}")
        package_id, kind, content = entry
        if not isinstance(package_id, bytes):
            raise BundleError(f"item {index}: the package id must be {PACKAGE_ID_LEN} bytes "
                              f"of bin, got {_describe(package_id)}")
        where = f"item {index} (package {package_id.hex()})"
        if not isinstance(kind, int) or isinstance(kind, bool) or kind not in (0, 1):
            raise BundleError(f"{where}: unknown kind {kind!r} (0 batch, 1 blob)")
        if not isinstance(content, bytes):
            raise BundleError(f"{where}: the content must be bin, got {_describe(content)}")
        items.append(BundleItem(package_id=package_id, kind=ItemKind(kind), content=content))
    _check(items)
    return items


def _describe(value: object) -> str:
    if isinstance(value, list):
        return f"an array of {len(value)}"
    return type(value).__name__


def _length_header(length: int) -> int:
    """Bytes of msgpack's bin8/bin16/bin32 header for a byte string of ``length``."""
    return 2 if length < 2**8 else 3 if length < 2**16 else 5


def encoded_size(content_lengths: Sequence[int]) -> int:
    """The exact size of `encode_bundle` for items with these content lengths, computed
    without encoding: the station plans a bundle that fits one chunk with it."""
    count = len(content_lengths)
    # fixarray(3), fixstr header + tag, positive fixint version, fixarray / array16 / array32
    size = 1 + 1 + len(BUNDLE_TAG) + 1 + (1 if count < 16 else 3 if count < 2**16 else 5)
    for length in content_lengths:
        # fixarray(3), bin8 header + 16-byte id, positive fixint kind, bin header + content
        size += 1 + 2 + PACKAGE_ID_LEN + 1 + _length_header(length) + length
    return size
