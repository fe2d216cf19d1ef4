"""The ID-card protocol's one exception family.

As in h11: `LocalProtocolError` means *we* broke the protocol (an invalid command or value built
on this side, a decoder fed without being drained); `RemoteProtocolError` means the peer did (a
bad checksum, an impossible length, a text block that is not a card). A decoder that raises a
remote error has already skipped the offending bytes and can be used for the next frame.
"""

from __future__ import annotations

__all__ = [
    "CardDataError",
    "FrameChecksumError",
    "FrameLengthError",
    "IdCardProtocolError",
    "InvalidValue",
    "LocalProtocolError",
    "RemoteProtocolError",
]


class IdCardProtocolError(Exception):
    """Root of every error raised by `protocols.idcard`."""


class LocalProtocolError(IdCardProtocolError):
    """This side broke the protocol: fix the calling code, not the device."""


class RemoteProtocolError(IdCardProtocolError):
    """The peer (reader, card, or host when we emulate a reader) broke the protocol."""


class FrameLengthError(RemoteProtocolError):
    """A frame whose length field is impossible (below the minimum or above the bound)."""


class FrameChecksumError(RemoteProtocolError):
    """A frame whose checksum does not match its bytes."""


class InvalidValue(LocalProtocolError):
    """A value that cannot exist in a card record or message; names the field it was for."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class CardDataError(RemoteProtocolError):
    """A card's text block that does not parse; `field` names the part that was wrong.

    Messages describe the problem without echoing the value: card data is personal data.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(
            f"card text field {field!r}: {message}; the card or the read is damaged, "
            "ask the citizen to place the card again"
        )
        self.field = field
