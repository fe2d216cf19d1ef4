"""Coalescing small queued packages into one sealed bundle at send time (station side).

Every accepted case is sealed at once, package by package (a batch of events, a container per
scan), because a case is accepted only when it is sealed. On a 2G link those envelopes are a
large share of a small case: ~240 bytes per batch and ~330 per scan container, plus one wire
message and one Ack each. When several small packages wait, the uplink carries their contents
in one sealed batch instead (`protocols.bundle`, docs/protocol.md section 7): one signature,
one HPKE seal, one message and one Ack for all of them. The members keep their package ids, so
the hub still commits each exactly once, whichever way it arrives.

A bundle is only ever made here, at send time, and lives in memory until the hub acknowledges
it; the members stay queued in the outbox until then, so a daemon restart simply sends them
again (the hub skips what it already committed).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from protocols.bundle import MAX_BUNDLE_ITEMS, BundleItem, ItemKind, encode_bundle, encoded_size
from protocols.envelope import LocalIdentity, PeerIdentity, Suite, seal_batch
from sync.ids import uuid7
from sync.store import OutboxEntry


def seal_overhead(sender: str, recipient: str) -> int:
    """Envelope bytes around a bundle's payload (an upper bound, docs/protocol.md 3.1, 3.2):
    the frame header (43 + n), HPKE enc (32) and tag (16), the signature (64) and the signed
    header around the payload (array, tag, version, suite, both ids, package id, created_ms,
    two key ids, the payload's bin header)."""
    n, r = len(sender.encode()), len(recipient.encode())
    return 43 + n + 32 + 16 + 64 + (1 + 14 + 1 + 1 + 1 + n + 1 + r + 18 + 9 + 10 + 10 + 5)


def content_bound(entry: OutboxEntry) -> int | None:
    """Bytes this package's content adds to a bundle (an upper bound), or None when it can only
    travel on its own (queued before bundles existed, held, or not a kind a bundle carries)."""
    if entry.state != "queued":
        return None
    if entry.kind == "batch" and entry.plain:
        return len(entry.plain)
    if entry.kind == "blob" and entry.blob_sha256 is not None:
        return entry.size  # the sealed container is larger than the material inside it
    return None


def plan(entries: Sequence[OutboxEntry], *, cap: int, overhead: int) -> list[OutboxEntry]:
    """The members of the next bundle: a run of consecutive ``entries`` (already in sending
    order) of one priority class, each at most half of ``cap``, the sealed bundle at most
    ``cap`` bytes. Fewer than two: no bundle (the package goes on its own, as it would have)."""
    members: list[OutboxEntry] = []
    lengths: list[int] = []
    for entry in entries:
        size = content_bound(entry)
        if size is None or size > cap // 2 or len(members) >= MAX_BUNDLE_ITEMS:
            break
        if members and entry.priority != members[0].priority:
            break
        if overhead + encoded_size([*lengths, size]) > cap:
            break
        members.append(entry)
        lengths.append(size)
    return members if len(members) >= 2 else []


def new_package_id(wall_ms: int) -> bytes:
    return uuid.UUID(uuid7(wall_ms, os.urandom(10))).bytes


def build(
    members: Sequence[OutboxEntry],
    *,
    blob_path: Callable[[str], Path],
    sender: LocalIdentity,
    recipient: PeerIdentity,
    suite: Suite,
    package_id: bytes,
    created_ms: int,
) -> bytes:
    """Seal one bundle of ``members`` (blocking: reads blob files; run it in a thread).

    Raises FileNotFoundError / OSError when a member's material cannot be read; the caller
    then sends that member on its own (its sealed container does not need the plaintext)."""
    items: list[BundleItem] = []
    for entry in members:
        if entry.kind == "batch":
            assert entry.plain is not None
            items.append(BundleItem(package_id=entry.package_id, kind=ItemKind.BATCH,
                                    content=entry.plain))
        else:
            assert entry.blob_sha256 is not None
            content = blob_path(entry.blob_sha256).read_bytes()
            if hashlib.sha256(content).hexdigest() != entry.blob_sha256:
                # A damaged copy must not travel in place of the scan: the hub would file it
                # under another hash and acknowledge the member. Its sealed container, made
                # when the case was accepted, carries the scan instead.
                raise OSError(f"blob {entry.blob_sha256} no longer matches its SHA-256")
            items.append(BundleItem(package_id=entry.package_id, kind=ItemKind.BLOB,
                                    content=content))
    return seal_batch(encode_bundle(items), sender=sender, recipient=recipient,
                      package_id=package_id, created_ms=created_ms, suite=suite)
