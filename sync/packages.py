"""Opening a sealed event batch and checking what it claims, for both ends of the link.

The envelope proves who signed a package; this adds the check the envelope cannot make: every
event inside must have been made by that signer. A station must not slip in events that claim
to come from the hub (a forged approval) or from another station.
"""

from __future__ import annotations

from collections.abc import Mapping

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
    try:
        events = decode_events(opened.payload)
    except EventFormatError as exc:
        raise PackageContentError(f"events in package {opened.package_id.hex()}: {exc}") from exc
    for event in events:
        if event.origin != opened.sender:
            raise PackageContentError(
                f"package {opened.package_id.hex()} signed by {opened.sender!r} carries event "
                f"{event.id} claiming origin {event.origin!r}")
    return opened, events
