"""The health beacon: a station's vital signs in one small message on ``cl/{station}/h``.

Pure: a `Beacon` in, bytes out, and back. The station publishes one after every connect and
every ``[metrics] beacon_interval_seconds`` (QoS 0: a lost beacon is replaced by the next one);
the hub turns each into per-station Prometheus series so county ops scrape one endpoint.

Wire form: one msgpack array, positional (no field names cross 2G)::

    [1, at_ms, software, uptime_s, link_up, connects, stalls, bytes_up, bytes_down,
     chunks_resent, rtt_ms|nil, hub_offset_ms|nil, outbox_items, outbox_bytes,
     outbox_oldest_s|nil, outbox_held, disk_free_mb, {device: state}, cases_open, conflicts,
     errors]

A device state the station knows is sent as a small integer (`STATE_CODES`), any other as a
short string, so a new state never needs a format change. docs/observability.md specifies the
format with a test vector and what beacons cost per day; tests/protocols/test_health.py checks
the vector byte for byte.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

import msgpack

__all__ = [
    "BEACON_VERSION",
    "MAX_BEACON_BYTES",
    "MAX_DEVICES",
    "MAX_DEVICE_NAME",
    "MAX_SOFTWARE",
    "MAX_STATE",
    "STATE_CODES",
    "Beacon",
    "BeaconError",
    "beacon_from_status",
    "decode_beacon",
    "encode_beacon",
]

BEACON_VERSION: Final = 1
#: Largest beacon sent or accepted; a full one (16 devices, long names) stays well under it.
MAX_BEACON_BYTES: Final = 2048
MAX_SOFTWARE: Final = 64  # UTF-8 bytes
MAX_DEVICES: Final = 16
MAX_DEVICE_NAME: Final = 32  # UTF-8 bytes (ten Chinese characters fit)
MAX_STATE: Final = 16  # UTF-8 bytes

#: Device states sent as one byte. Values are wire values: never reuse or renumber one.
STATE_CODES: Final[Mapping[str, int]] = MappingProxyType(
    {"starting": 0, "ok": 1, "degraded": 2, "down": 3, "up": 4}
)
_CODE_STATES: Final = {code: state for state, code in STATE_CODES.items()}

#: Case statuses no transition leaves (sync.workflow.FINAL; protocols/ does not import sync,
#: tests check the two agree). Every other status counts as an open case.
_FINAL_CASE_STATUSES: Final = frozenset({"withdrawn", "rejected", "completed"})

_U63: Final = 2**63 - 1  # counters and byte totals: anything msgpack's int64 can hold
_U32: Final = 2**32 - 1
_OFFSET_MAX_MS: Final = 10 * 365 * 86_400_000  # a clock more than ten years off is garbage
_FIELDS: Final = 21  # version + 20 fields


class BeaconError(ValueError):
    """A beacon that does not follow this format (the sender's fault), or cannot be built."""


def _uint(name: str, value: object, upper: int = _U63) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= upper:
        raise BeaconError(
            f"beacon field {name} must be an integer from 0 to {upper}, got {value!r:.40}"
        )
    return value


def _opt_int(name: str, value: object, lower: int, upper: int) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not lower <= value <= upper:
        raise BeaconError(
            f"beacon field {name} must be null or an integer from {lower} to "
            f"{upper}, got {value!r:.40}"
        )
    return value


def _text(name: str, value: object, limit: int, *, empty: bool = True) -> str:
    # Bounded in UTF-8 bytes, not characters, so the worst case is a fixed size on the wire.
    size = f"1 to {limit}" if not empty else f"at most {limit}"
    problem = f"beacon field {name} must be text of {size} UTF-8 bytes, got {value!r:.40}"
    if not isinstance(value, str) or (not empty and not value):
        raise BeaconError(problem)
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: not text msgpack can carry
        raise BeaconError(problem) from None
    if len(encoded) > limit:
        raise BeaconError(problem)
    return value


def _cut(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes, never inside a character."""
    return text.encode("utf-8", "replace")[:limit].decode("utf-8", "ignore")


@dataclass(frozen=True, slots=True, kw_only=True)
class Beacon:
    """One station's vital signs at `at_ms` (the station's wall clock, ms since the epoch)."""

    at_ms: int
    software: str
    uptime_s: int
    link_up: bool
    connects: int
    stalls: int
    bytes_up: int
    bytes_down: int
    chunks_resent: int
    rtt_ms: int | None
    hub_offset_ms: int | None  # hub clock minus station clock
    outbox_items: int
    outbox_bytes: int
    outbox_oldest_s: int | None  # None: the outbox is empty
    outbox_held: int
    disk_free_mb: int  # MiB (2**20 bytes), rounded down
    devices: dict[str, str]  # device name -> state (sent sorted by name)
    cases_open: int
    conflicts: int
    errors: int  # entries in the station's recent-errors list (at most 20)

    def __post_init__(self) -> None:
        _uint("at_ms", self.at_ms)
        _text("software", self.software, MAX_SOFTWARE)
        _uint("uptime_s", self.uptime_s)
        if not isinstance(self.link_up, bool):
            raise BeaconError(
                f"beacon field link_up must be true or false, got {self.link_up!r:.40}"
            )
        for name in (
            "connects",
            "stalls",
            "bytes_up",
            "bytes_down",
            "chunks_resent",
            "outbox_items",
            "outbox_bytes",
            "outbox_held",
            "disk_free_mb",
            "cases_open",
            "conflicts",
            "errors",
        ):
            _uint(name, getattr(self, name))
        _opt_int("rtt_ms", self.rtt_ms, 0, _U32)
        _opt_int("hub_offset_ms", self.hub_offset_ms, -_OFFSET_MAX_MS, _OFFSET_MAX_MS)
        _opt_int("outbox_oldest_s", self.outbox_oldest_s, 0, _U63)
        if not isinstance(self.devices, dict) or len(self.devices) > MAX_DEVICES:
            raise BeaconError(
                f"beacon field devices must map at most {MAX_DEVICES} device names to states"
            )
        for name, state in self.devices.items():
            _text("device name", name, MAX_DEVICE_NAME, empty=False)
            _text(f"state of device {name!r}", state, MAX_STATE, empty=False)
        # A private copy: the caller's dict changing later must not change the beacon.
        object.__setattr__(self, "devices", dict(self.devices))


def encode_beacon(b: Beacon) -> bytes:
    """The beacon's wire bytes; BeaconError if they would exceed MAX_BEACON_BYTES."""
    devices = {name: STATE_CODES.get(state, state) for name, state in sorted(b.devices.items())}
    value = [
        BEACON_VERSION,
        b.at_ms,
        b.software,
        b.uptime_s,
        b.link_up,
        b.connects,
        b.stalls,
        b.bytes_up,
        b.bytes_down,
        b.chunks_resent,
        b.rtt_ms,
        b.hub_offset_ms,
        b.outbox_items,
        b.outbox_bytes,
        b.outbox_oldest_s,
        b.outbox_held,
        b.disk_free_mb,
        devices,
        b.cases_open,
        b.conflicts,
        b.errors,
    ]
    data: bytes = msgpack.packb(value, use_bin_type=True)
    if len(data) > MAX_BEACON_BYTES:  # unreachable with the field bounds; kept as the contract
        raise BeaconError(f"beacon is {len(data)} bytes, more than {MAX_BEACON_BYTES}")
    return data


def decode_beacon(data: bytes) -> Beacon:
    """Parse and validate a beacon; BeaconError says what is wrong with it."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise BeaconError(f"a beacon is bytes, got {type(data).__name__}")
    if len(data) > MAX_BEACON_BYTES:
        raise BeaconError(
            f"beacon is {len(data)} bytes, more than the {MAX_BEACON_BYTES} "
            "allowed; the sender is not a cunlink station of this version"
        )
    try:
        # Limits keep a hostile payload from allocating much. The array limit is above this
        # version's 21 items so a newer version still reaches the clear version check below.
        value = msgpack.unpackb(
            bytes(data),
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_str_len=MAX_BEACON_BYTES,
            max_bin_len=0,
            max_array_len=64,
            max_map_len=MAX_DEVICES,
            max_ext_len=0,
        )
    except (ValueError, msgpack.UnpackException) as exc:
        raise BeaconError(f"beacon is not a valid msgpack array: {exc}") from None
    if not isinstance(value, list) or not value:
        raise BeaconError(
            f"beacon must be a msgpack array starting with the version, got {type(value).__name__}"
        )
    if value[0] != BEACON_VERSION or isinstance(value[0], bool):
        raise BeaconError(
            f"beacon version {value[0]!r:.20} is not supported (this build "
            f"reads version {BEACON_VERSION}); upgrade the hub or the station "
            "so both speak the same version"
        )
    if len(value) != _FIELDS:
        raise BeaconError(f"beacon version 1 has {_FIELDS} items, got {len(value)}")
    (
        _,
        at_ms,
        software,
        uptime_s,
        link_up,
        connects,
        stalls,
        bytes_up,
        bytes_down,
        chunks_resent,
        rtt_ms,
        hub_offset_ms,
        outbox_items,
        outbox_bytes,
        outbox_oldest_s,
        outbox_held,
        disk_free_mb,
        devices,
        cases_open,
        conflicts,
        errors,
    ) = value
    if not isinstance(devices, dict):
        raise BeaconError(f"beacon field devices must be a map, got {type(devices).__name__}")
    states: dict[str, str] = {}
    for name, state in devices.items():
        if isinstance(state, int) and not isinstance(state, bool):
            if state not in _CODE_STATES:
                raise BeaconError(f"device {name!r:.40} has unknown state code {state}")
            state = _CODE_STATES[state]
        states[_text("device name", name, MAX_DEVICE_NAME, empty=False)] = state
    return Beacon(
        at_ms=at_ms,
        software=software,
        uptime_s=uptime_s,
        link_up=link_up,
        connects=connects,
        stalls=stalls,
        bytes_up=bytes_up,
        bytes_down=bytes_down,
        chunks_resent=chunks_resent,
        rtt_ms=rtt_ms,
        hub_offset_ms=hub_offset_ms,
        outbox_items=outbox_items,
        outbox_bytes=outbox_bytes,
        outbox_oldest_s=outbox_oldest_s,
        outbox_held=outbox_held,
        disk_free_mb=disk_free_mb,
        devices=states,
        cases_open=cases_open,
        conflicts=conflicts,
        errors=errors,
    )


# --- from the station status snapshot ----------------------------------------------------------


def _get(status: Mapping[str, Any], path: str) -> Any:
    node: Any = status
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            raise BeaconError(
                f"station status has no {path!r}; cannot build a beacon "
                "(the status snapshot does not follow the agreed shape)"
            )
        node = node[key]
    return node


def _count(status: Mapping[str, Any], path: str) -> int:
    value = _get(status, path)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise BeaconError(
            f"station status {path!r} must be a non-negative number, got {value!r:.40}"
        )
    return min(int(value), _U63)


def _opt_scaled(status: Mapping[str, Any], path: str, scale: float, lo: int, hi: int) -> int | None:
    node = status
    *parents, last = path.split(".")
    for key in parents:
        node = _get(node, key)
    value = node.get(last) if isinstance(node, Mapping) else None
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    # Clamp rather than fail: a wild estimate is still worth reporting, a dropped beacon is not.
    return max(lo, min(hi, round(value * scale)))


def beacon_from_status(status: Mapping[str, Any], *, at_ms: int) -> Beacon:
    """The beacon for one status snapshot (the shape of ``GET /api/v1/status``).

    Device names longer than MAX_DEVICE_NAME are cut and only the first MAX_DEVICES devices
    (by name) are sent: the station's own configuration should not be able to silence its
    beacon. A missing section of the snapshot is a bug and raises BeaconError.
    """
    devices: dict[str, str] = {}
    raw_devices = _get(status, "devices")
    if not isinstance(raw_devices, list):
        raise BeaconError("station status 'devices' must be a list")
    for dev in sorted(
        raw_devices, key=lambda d: str(d.get("name", "")) if isinstance(d, Mapping) else ""
    ):
        if not isinstance(dev, Mapping) or not dev.get("name"):
            raise BeaconError(f"station status device entry {dev!r:.60} has no name")
        if len(devices) == MAX_DEVICES:
            break
        devices[_cut(str(dev["name"]), MAX_DEVICE_NAME)] = _cut(
            str(dev.get("state") or "unknown"), MAX_STATE
        )
    by_status = _get(status, "cases.by_status")
    if not isinstance(by_status, Mapping):
        raise BeaconError("station status 'cases.by_status' must be a map of status -> count")
    cases_open = sum(
        _count(status, f"cases.by_status.{s}") for s in by_status if s not in _FINAL_CASE_STATUSES
    )
    recent = _get(status, "recent_errors")
    return Beacon(
        at_ms=at_ms,
        software=_cut(str(_get(status, "software")), MAX_SOFTWARE),
        uptime_s=_count(status, "uptime_seconds"),
        link_up=bool(_get(status, "link.up")),
        connects=_count(status, "link.connects"),
        stalls=_count(status, "link.stalls"),
        bytes_up=_count(status, "link.bytes_up"),
        bytes_down=_count(status, "link.bytes_down"),
        chunks_resent=_count(status, "link.chunks_resent"),
        rtt_ms=_opt_scaled(status, "link.rtt_seconds", 1000, 0, _U32),
        hub_offset_ms=_opt_scaled(status, "link.hub_offset_ms", 1, -_OFFSET_MAX_MS, _OFFSET_MAX_MS),
        outbox_items=_count(status, "outbox.count"),
        outbox_bytes=_count(status, "outbox.bytes_pending"),
        outbox_oldest_s=_opt_scaled(status, "outbox.oldest_age_seconds", 1, 0, _U63),
        outbox_held=_count(status, "outbox.held"),
        disk_free_mb=_count(status, "disk.free_bytes") // 2**20,
        devices=devices,
        cases_open=max(0, cases_open),
        conflicts=_count(status, "cases.conflicts"),
        errors=len(recent) if isinstance(recent, list) else 0,
    )
