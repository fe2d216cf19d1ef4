"""The sync wire messages carried over MQTT 5 between a station and the county hub.

Pure: bytes in, typed messages out. Every message is one msgpack array
``[version, type, field, ...]`` with positional fields (topics cross 2G, so no field names on
the wire). Sizes are checked before anything is unpacked. Specified, with test vectors, in
``docs/protocol.md`` section 6; the tests check the code against those vectors byte for byte.

Topics (``{s}`` = station id):
    cl/{s}/u  station -> hub: Hello, Chunk, Offer, DownAck
    cl/{s}/d  hub -> station: Need, Ack, Reject, DownPackage
    cl/{s}/s  station state, retained; the last will says offline
    cl/{s}/h  health beacons (compact msgpack map; see gateway metrics)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import msgpack

WIRE_VERSION = 1

#: Largest MQTT payload cunlink ever sends or accepts (chunks are at most 64 KiB by default;
#: the broker is configured with the same limit).
MAX_MESSAGE_BYTES = 262_144
#: Largest data field of one chunk: the message limit less room for the other fields.
MAX_CHUNK_DATA = MAX_MESSAGE_BYTES - 256
#: Largest sealed package (a blob container) a transfer may announce: 2 GiB.
MAX_PACKAGE_BYTES = 2 * 1024**3
#: Most missing ranges one Need may list; more are merged into the last one.
MAX_RANGES = 64
#: Largest downlink package sent whole in one message.
MAX_DOWN_PACKAGE = 131_072
MAX_TEXT = 512
PACKAGE_ID_LEN = 16

_STATION_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class WireError(Exception):
    """A message that does not follow this protocol; always the sender's fault."""


class MsgType(IntEnum):
    HELLO = 1
    OFFER = 2
    CHUNK = 3
    DOWN_ACK = 4
    NEED = 16
    ACK = 17
    REJECT = 18
    DOWN_PACKAGE = 19
    STATE = 32


class PackageKind(IntEnum):
    BATCH = 0  # a sealed event batch
    BLOB = 1  # a sealed blob container
    BUNDLE = 2  # a sealed batch carrying several small packages (docs/protocol.md section 7)


class RejectReason(IntEnum):
    """Why the hub refused a package for good. The station holds the entry for a person."""

    MALFORMED = 1
    UNKNOWN_STATION = 2
    BAD_SIGNATURE = 3
    WRONG_RECIPIENT = 4
    SENDER_MISMATCH = 5  # signer is not the station whose topic carried it
    UNSUPPORTED = 6
    TOO_LARGE = 7
    BAD_CONTENT = 8  # opened fine, but the events inside are invalid (e.g. forged origin)


def _pid(value: bytes) -> bytes:
    if not isinstance(value, bytes) or len(value) != PACKAGE_ID_LEN:
        raise WireError(f"package id must be {PACKAGE_ID_LEN} bytes, got {value!r:.40}")
    return value


def _uint(name: str, value: object, upper: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= upper:
        raise WireError(f"{name} must be an integer from 0 to {upper}, got {value!r:.40}")
    return value


def _text(name: str, value: object) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise WireError(f"{name} must be text of at most {MAX_TEXT} characters")
    return value


_HLC_MAX = 2**64 - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    """Station, after every (re)connect: here I am; resend what I have not acknowledged."""

    hlc: int
    down_high_water: int = 0  # downlink packages applied so far (diagnostic)

    def __post_init__(self) -> None:
        _uint("hlc", self.hlc, _HLC_MAX)
        _uint("down_high_water", self.down_high_water, _HLC_MAX)


@dataclass(frozen=True, slots=True, kw_only=True)
class Offer:
    """Station: I hold this package; tell me which byte ranges you still need."""

    package_id: bytes
    kind: PackageKind
    size: int
    priority: int

    def __post_init__(self) -> None:
        _pid(self.package_id)
        _uint("size", self.size, MAX_PACKAGE_BYTES)
        if self.size == 0:
            raise WireError("size must be at least 1 byte")
        _uint("priority", self.priority, 9)


@dataclass(frozen=True, slots=True, kw_only=True)
class Chunk:
    """Station: bytes ``[offset, offset + len(data))`` of a sealed package.

    Kind and total size travel with every chunk so that any hub worker of a shared
    subscription can start the transfer from whichever chunk reaches it first.
    """

    package_id: bytes
    kind: PackageKind
    size: int
    offset: int
    data: bytes

    def __post_init__(self) -> None:
        _pid(self.package_id)
        _uint("size", self.size, MAX_PACKAGE_BYTES)
        _uint("offset", self.offset, MAX_PACKAGE_BYTES)
        if not isinstance(self.data, bytes) or not 0 < len(self.data) <= MAX_CHUNK_DATA:
            raise WireError(f"chunk data must be 1 to {MAX_CHUNK_DATA} bytes")
        if self.offset + len(self.data) > self.size:
            raise WireError(
                f"chunk [{self.offset}, {self.offset + len(self.data)}) runs past the "
                f"package size {self.size}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class DownAck:
    """Station: I applied (and committed) this downlink package."""

    package_id: bytes

    def __post_init__(self) -> None:
        _pid(self.package_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class Need:
    """Hub: the byte ranges ``[start, end)`` of a package I still miss (empty: none, committing)."""

    package_id: bytes
    ranges: tuple[tuple[int, int], ...]
    hub_hlc: int

    def __post_init__(self) -> None:
        _pid(self.package_id)
        _uint("hub_hlc", self.hub_hlc, _HLC_MAX)
        if len(self.ranges) > MAX_RANGES:
            raise WireError(f"a need lists at most {MAX_RANGES} ranges, got {len(self.ranges)}")
        last_end = -1
        for pair in self.ranges:
            if not (isinstance(pair, tuple) and len(pair) == 2):
                raise WireError("each range must be a pair [start, end)")
            start = _uint("range start", pair[0], MAX_PACKAGE_BYTES)
            end = _uint("range end", pair[1], MAX_PACKAGE_BYTES)
            if not last_end < start < end:
                raise WireError("ranges must be non-empty, sorted and disjoint")
            last_end = end


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    """Hub: this package is committed in my store. Only this removes it from an outbox."""

    package_id: bytes
    hub_hlc: int
    committed_ms: int

    def __post_init__(self) -> None:
        _pid(self.package_id)
        _uint("hub_hlc", self.hub_hlc, _HLC_MAX)
        _uint("committed_ms", self.committed_ms, _HLC_MAX)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reject:
    """Hub: this package will never be accepted as it is; a person must look at it."""

    package_id: bytes
    reason: RejectReason
    detail: str = ""

    def __post_init__(self) -> None:
        _pid(self.package_id)
        _text("detail", self.detail)


@dataclass(frozen=True, slots=True, kw_only=True)
class DownPackage:
    """Hub: a sealed event batch for the station (status changes, supplement requests)."""

    package_id: bytes
    sealed: bytes
    hub_hlc: int

    def __post_init__(self) -> None:
        _pid(self.package_id)
        _uint("hub_hlc", self.hub_hlc, _HLC_MAX)
        if not isinstance(self.sealed, bytes) or not 0 < len(self.sealed) <= MAX_DOWN_PACKAGE:
            raise WireError(f"a downlink package must be 1 to {MAX_DOWN_PACKAGE} bytes")


@dataclass(frozen=True, slots=True, kw_only=True)
class State:
    """Station state, retained on ``cl/{s}/s``; the MQTT last will publishes ``online=False``."""

    online: bool
    hlc: int = 0
    software: str = ""
    extra: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _uint("hlc", self.hlc, _HLC_MAX)
        _text("software", self.software)


Message = Hello | Offer | Chunk | DownAck | Need | Ack | Reject | DownPackage | State


def encode(message: Message) -> bytes:
    """Serialise one message; the result is at most MAX_MESSAGE_BYTES."""
    fields: list[Any]
    match message:
        case Hello():
            fields = [MsgType.HELLO, message.hlc, message.down_high_water]
        case Offer():
            fields = [MsgType.OFFER, message.package_id, int(message.kind), message.size,
                      message.priority]
        case Chunk():
            fields = [MsgType.CHUNK, message.package_id, int(message.kind), message.size,
                      message.offset, message.data]
        case DownAck():
            fields = [MsgType.DOWN_ACK, message.package_id]
        case Need():
            fields = [MsgType.NEED, message.package_id, [list(r) for r in message.ranges],
                      message.hub_hlc]
        case Ack():
            fields = [MsgType.ACK, message.package_id, message.hub_hlc, message.committed_ms]
        case Reject():
            fields = [MsgType.REJECT, message.package_id, int(message.reason), message.detail]
        case DownPackage():
            fields = [MsgType.DOWN_PACKAGE, message.package_id, message.sealed, message.hub_hlc]
        case State():
            fields = [MsgType.STATE, message.online, message.hlc, message.software,
                      dict(message.extra)]
    out: bytes = msgpack.packb([WIRE_VERSION, *[int(f) if isinstance(f, IntEnum) else f
                                                for f in fields]], use_bin_type=True)
    return out


def decode(data: bytes) -> Message:
    """Parse one message; raises WireError (never anything else) when it is not valid."""
    if not isinstance(data, bytes | bytearray):
        raise WireError("a message must be bytes")
    if len(data) > MAX_MESSAGE_BYTES:
        raise WireError(f"message of {len(data)} bytes exceeds the limit of {MAX_MESSAGE_BYTES}")
    try:
        raw = msgpack.unpackb(
            bytes(data), raw=False, use_list=True, strict_map_key=True,
            max_bin_len=MAX_MESSAGE_BYTES, max_str_len=MAX_TEXT * 4,
            max_array_len=MAX_RANGES + 8, max_map_len=32, max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise WireError(f"not a msgpack message: {exc}") from exc
    if not isinstance(raw, list) or len(raw) < 2:
        raise WireError("a message must be an array [version, type, ...]")
    version, kind, *rest = raw
    if version != WIRE_VERSION:
        raise WireError(f"unsupported wire version {version!r}; this side speaks {WIRE_VERSION}")
    try:
        return _build(kind, rest)
    except WireError:
        raise
    except (TypeError, ValueError) as exc:
        raise WireError(f"bad fields for message type {kind!r}: {exc}") from exc


def _arity(rest: list[Any], n: int, name: str) -> None:
    if len(rest) != n:
        raise WireError(f"{name} has {n} fields, got {len(rest)}")


def _build(kind: object, rest: list[Any]) -> Message:
    match kind:
        case MsgType.HELLO:
            _arity(rest, 2, "hello")
            return Hello(hlc=rest[0], down_high_water=rest[1])
        case MsgType.OFFER:
            _arity(rest, 4, "offer")
            return Offer(package_id=rest[0], kind=PackageKind(rest[1]), size=rest[2],
                         priority=rest[3])
        case MsgType.CHUNK:
            _arity(rest, 5, "chunk")
            return Chunk(package_id=rest[0], kind=PackageKind(rest[1]), size=rest[2],
                         offset=rest[3], data=rest[4])
        case MsgType.DOWN_ACK:
            _arity(rest, 1, "down-ack")
            return DownAck(package_id=rest[0])
        case MsgType.NEED:
            _arity(rest, 3, "need")
            if not isinstance(rest[1], list):
                raise WireError("need ranges must be an array")
            ranges = tuple(tuple(r) if isinstance(r, list) else r for r in rest[1])
            return Need(package_id=rest[0], ranges=ranges, hub_hlc=rest[2])
        case MsgType.ACK:
            _arity(rest, 3, "ack")
            return Ack(package_id=rest[0], hub_hlc=rest[1], committed_ms=rest[2])
        case MsgType.REJECT:
            _arity(rest, 3, "reject")
            return Reject(package_id=rest[0], reason=RejectReason(rest[1]), detail=rest[2])
        case MsgType.DOWN_PACKAGE:
            _arity(rest, 3, "down-package")
            return DownPackage(package_id=rest[0], sealed=rest[1], hub_hlc=rest[2])
        case MsgType.STATE:
            _arity(rest, 4, "state")
            if not isinstance(rest[0], bool) or not isinstance(rest[3], dict):
                raise WireError("state needs a boolean and a map")
            extra = {str(k): _uint(f"state {k}", v, _HLC_MAX) for k, v in rest[3].items()}
            return State(online=rest[0], hlc=rest[1], software=rest[2], extra=extra)
    raise WireError(f"unknown message type {kind!r}")


def valid_station_id(station: str) -> bool:
    return bool(_STATION_ID.match(station))


def topic(station: str, channel: str) -> str:
    """``cl/{station}/{channel}`` for channel in u, d, s, h."""
    if not valid_station_id(station):
        raise WireError(f"station id {station!r} must be 1-32 of A-Z a-z 0-9 _ -")
    if channel not in ("u", "d", "s", "h"):
        raise WireError(f"unknown channel {channel!r}")
    return f"cl/{station}/{channel}"


def parse_topic(value: str) -> tuple[str, str]:
    """The station id and channel of a cunlink topic; WireError for anything else."""
    parts = value.split("/")
    if len(parts) != 3 or parts[0] != "cl" or parts[2] not in ("u", "d", "s", "h"):
        raise WireError(f"not a cunlink topic: {value[:80]!r}")
    if not valid_station_id(parts[1]):
        raise WireError(f"bad station id in topic {value[:80]!r}")
    return parts[1], parts[2]


# --- byte-range arithmetic shared by both ends -------------------------------------------

Ranges = tuple[tuple[int, int], ...]


def add_range(have: Ranges, start: int, end: int) -> Ranges:
    """Union of sorted disjoint ranges with ``[start, end)``, merged where they touch."""
    out: list[tuple[int, int]] = []
    placed = False
    for a, b in have:
        if b < start:
            out.append((a, b))
        elif end < a:
            if not placed:
                out.append((start, end))
                placed = True
            out.append((a, b))
        else:
            start, end = min(a, start), max(b, end)
    if not placed:
        out.append((start, end))
    out.sort()
    return tuple(out)


def missing_ranges(have: Ranges, size: int, limit: int = MAX_RANGES) -> Ranges:
    """The complement of ``have`` in ``[0, size)``: at most ``limit`` ranges (tail merged)."""
    gaps: list[tuple[int, int]] = []
    cursor = 0
    for a, b in have:
        if a > cursor:
            gaps.append((cursor, a))
        cursor = max(cursor, b)
    if cursor < size:
        gaps.append((cursor, size))
    if len(gaps) > limit:
        gaps = [*gaps[: limit - 1], (gaps[limit - 1][0], gaps[-1][1])]
    return tuple(gaps)


def covered(have: Ranges) -> int:
    return sum(b - a for a, b in have)
