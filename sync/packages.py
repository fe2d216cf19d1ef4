"""Opening a sealed event batch and checking what it claims, for both ends of the link.

The envelope proves who signed a package; this adds the check the envelope cannot make: every
event inside must have been made by that signer. A station must not slip in events that claim
to come from the hub (a forged approval) or from another station.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from protocols.bundle import BundleError, ItemKind, decode_bundle
from protocols.envelope import LocalIdentity, OpenedBatch, PeerIdentity, open_batch
from sync.events import Event, EventFormatError, decode_events


class PackageContentError(Exception):
    """The package opened, but its contents are not acceptable from this sender."""


def open_event_batch(
    sealed: bytes,
    *,
    me: LocalIdentity,
    peers: Mapping[bytes, PeerIdentity],
    expected_sender: str,
) -> tuple[OpenedBatch, list[Event]]:
    """Open, verify and decode; raises EnvelopeError or PackageContentError.

    Replays are handled by the caller's inbox before opening (a committed package id is
    acknowledged again, never applied twice), so the envelope's seen-check is not used here.
    """
    opened = open_batch(sealed, me=me, peers=peers, expected_sender=expected_sender,
                        seen=lambda _pid: False)
    return opened, signed_events(opened.payload, signer=opened.sender,
                                 package_id=opened.package_id)


def signed_events(payload: bytes, *, signer: str, package_id: bytes) -> list[Event]:
    """Decode an event batch payload whose every event must have been made by ``signer``."""
    try:
        events = decode_events(payload)
    except EventFormatError as exc:
        raise PackageContentError(f"events in package {package_id.hex()}: {exc}") from exc
    for event in events:
        if event.origin != signer:
            raise PackageContentError(
                f"package {package_id.hex()} signed by {signer!r} carries event "
                f"{event.id} claiming origin {event.origin!r}")
    return events


@dataclass(frozen=True, slots=True, kw_only=True)
class BundleMember:
    """One package a bundle carried: its events (a batch) or its material (a blob)."""

    package_id: bytes
    events: list[Event] | None = None
    blob: bytes | None = None


def open_bundle(
    sealed: bytes,
    *,
    me: LocalIdentity,
    peers: Mapping[bytes, PeerIdentity],
    expected_sender: str,
) -> tuple[OpenedBatch, list[BundleMember]]:
    """Open a bundle (docs/protocol.md section 7) and check every member as if it had come on
    its own; raises EnvelopeError or PackageContentError (then nothing of it may be applied)."""
    opened = open_batch(sealed, me=me, peers=peers, expected_sender=expected_sender,
                        seen=lambda _pid: False)
    where = f"bundle {opened.package_id.hex()}"
    try:
        items = decode_bundle(opened.payload)
    except BundleError as exc:
        raise PackageContentError(f"{where}: {exc}") from exc
    members: list[BundleMember] = []
    for item in items:
        if item.package_id == opened.package_id:
            raise PackageContentError(f"{where} names itself as one of its members")
        if item.kind == ItemKind.BATCH:
            events = signed_events(item.content, signer=opened.sender,
                                   package_id=item.package_id)
            members.append(BundleMember(package_id=item.package_id, events=events))
        else:
            members.append(BundleMember(package_id=item.package_id, blob=item.content))
    return opened, members
