"""The station's Prometheus metrics: status-snapshot series, API counters, the HTTP endpoint.

Why a cached snapshot: prometheus_client collects in its HTTP server's thread, while the
station's state lives in the asyncio loop (`StationRuntime.status()` is async). The daemon
runs `refresh_snapshot` beside its other tasks; it writes the latest snapshot into a
`SnapshotCache` every few seconds, and the scrape only reads that cache. A scrape therefore
never touches the loop, the store or a device, and answers even while the loop is busy.

Why prometheus_client's own server (`start_http_server`) rather than a route in the API app:
metrics have their own `[metrics] listen/port` and no bearer token (county ops scrape it), so
they must not share the API's socket or auth; the stock server already does content
negotiation (text / OpenMetrics), gzip and `name[]` filtering, and it runs in its own daemon
thread, so a slow scraper never takes time from the event loop.

Names follow Prometheus conventions (base units, `_total` counters); docs/observability.md
lists every series. The hub's collector is gateway/hub_metrics.py; `start_metrics_server`
serves either.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Protocol
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sync.workflow import Status

__all__ = [
    "API_LATENCY_BUCKETS",
    "DEVICE_STATES",
    "OUTBOX_CLASSES",
    "MetricsServer",
    "SnapshotCache",
    "StationMetrics",
    "refresh_snapshot",
    "start_metrics_server",
]

log = logging.getLogger(__name__)

#: Outbox priority classes by number (0 control, 1 events, 2 materials; see sync/uplink.py).
OUTBOX_CLASSES = ("control", "events", "materials")
#: Device states always exported by `cunlink_device_state` (a state set: exactly one is 1), so
#: a state change never leaves a stale series behind. devices/health.py names "ok" the up state.
DEVICE_STATES = ("starting", "ok", "degraded", "down")
_UP_STATES = frozenset({"ok", "up"})
#: API latency buckets: a durable commit on an SD card takes tens of ms; a receipt print, seconds.
API_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _package_version() -> str:
    try:
        return metadata.version("cunlink")
    except metadata.PackageNotFoundError:  # running from a source tree without install
        return "unknown"


class SnapshotCache:
    """The last status snapshot, shared between the event loop (writer) and scrapes (readers).

    `set` stores a deep copy: the scrape thread reads it while the loop keeps changing its own
    dicts, and a snapshot is small (a few KB), so copying every few seconds costs nothing.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: Mapping[str, Any] | None = None
        self._at: float | None = None

    def set(self, snapshot: Mapping[str, Any]) -> None:
        with self._lock:
            self._snapshot, self._at = copy.deepcopy(snapshot), time.monotonic()

    def get(self) -> Mapping[str, Any] | None:
        with self._lock:
            return self._snapshot

    def age(self) -> float | None:
        """Seconds since the last `set`, or None before the first one."""
        with self._lock:
            return None if self._at is None else time.monotonic() - self._at


async def refresh_snapshot(
    cache: SnapshotCache,
    status: Callable[[], Awaitable[Mapping[str, Any]]],
    *,
    interval: float = 5.0,
    stop: asyncio.Event | None = None,
) -> None:
    """Keep `cache` fresh: call `status()` now and every `interval` seconds until `stop` is set
    (or the task is cancelled). A failing status call is logged and retried next round, so a
    bug in one section of the snapshot cannot take the metrics down for good."""
    if interval <= 0:
        raise ValueError(f"snapshot refresh interval must be positive, got {interval}")
    stop = stop or asyncio.Event()
    while not stop.is_set():
        try:
            cache.set(await status())
        except Exception:  # logged, and the previous snapshot stays in place
            log.exception("could not refresh the status snapshot for metrics")
        with contextlib.suppress(TimeoutError):  # the normal case: time for the next round
            await asyncio.wait_for(stop.wait(), timeout=interval)


# --- reading the snapshot ----------------------------------------------------------------------


def _num(section: Mapping[str, Any] | None, key: str) -> float | None:
    """A number from the snapshot, or None if absent/null/not a number (never a fake zero)."""
    if not isinstance(section, Mapping):
        return None
    value = section.get(key)
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


def _section(snapshot: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = snapshot.get(key)
    return value if isinstance(value, Mapping) else {}


def _gauge(name: str, doc: str, value: float | None) -> Iterable[Metric]:
    if value is not None:
        yield GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float | None) -> Iterable[Metric]:
    if value is not None:
        yield CounterMetricFamily(name, doc, value=value)


class _StatusCollector(Collector):
    """Turns the cached snapshot into metric families at each scrape."""

    def __init__(self, snapshot: Callable[[], Mapping[str, Any] | None], version: str) -> None:
        self._snapshot = snapshot
        self._version = version

    def collect(self) -> Iterable[Metric]:
        info = GaugeMetricFamily(
            "cunlink_build_info",
            "Always 1; the version label names the running software.",
            labels=["version"],
        )
        info.add_metric([self._version], 1)
        yield info
        snapshot = self._snapshot()
        if snapshot is None:  # before the first refresh: no numbers rather than made-up zeros
            return
        yield from self._outbox(_section(snapshot, "outbox"))
        yield from self._link(_section(snapshot, "link"))
        devices = snapshot.get("devices")
        yield from self._devices(devices if isinstance(devices, list) else [])
        yield from self._cases(_section(snapshot, "cases"))
        disk = _section(snapshot, "disk")
        yield from _gauge(
            "cunlink_disk_free_bytes",
            "Free bytes on the state directory's disk.",
            _num(disk, "free_bytes"),
        )

    def _outbox(self, outbox: Mapping[str, Any]) -> Iterable[Metric]:
        items = GaugeMetricFamily(
            "cunlink_outbox_items",
            "Packages waiting to be delivered, by priority class.",
            labels=["class"],
        )
        by_class = outbox.get("by_class")
        by_class = by_class if isinstance(by_class, Mapping) else {}
        for name in (*OUTBOX_CLASSES, *sorted(set(by_class) - set(OUTBOX_CLASSES))):
            items.add_metric([str(name)], _num(by_class, name) or 0.0)
        yield items
        yield from _gauge(
            "cunlink_outbox_bytes",
            "Bytes of packages not yet delivered.",
            _num(outbox, "bytes_pending"),
        )
        # An empty outbox has no oldest item; 0 keeps "backlog older than N hours" quiet.
        yield from _gauge(
            "cunlink_outbox_oldest_age_seconds",
            "Age of the oldest undelivered package (0 when the outbox is empty).",
            _num(outbox, "oldest_age_seconds") or 0.0,
        )
        yield from _gauge(
            "cunlink_outbox_held_items",
            "Packages held for a person (rejected by the hub, or held by hand).",
            _num(outbox, "held"),
        )

    def _link(self, link: Mapping[str, Any]) -> Iterable[Metric]:
        yield from _gauge(
            "cunlink_link_up", "1 while connected to the county broker.", _num(link, "up")
        )
        for key, name, doc in (
            ("connects", "cunlink_link_connects", "Connections made to the broker."),
            ("disconnects", "cunlink_link_disconnects", "Connections lost or closed."),
            ("stalls", "cunlink_link_stalls", "Connections dropped because nothing got through."),
            ("bytes_up", "cunlink_link_sent_bytes", "Payload bytes sent to the hub."),
            ("bytes_down", "cunlink_link_received_bytes", "Payload bytes received from the hub."),
            ("chunks_resent", "cunlink_link_chunks_resent", "Chunks sent again after a loss."),
            ("beacons_sent", "cunlink_beacons_sent", "Health beacons published."),
        ):
            value = _num(link, key)
            if value is None and key == "beacons_sent":
                value = 0.0  # the series exists from the start, before the first beacon
            yield from _counter(name, doc, value)
        yield from _gauge(
            "cunlink_link_rtt_seconds", "Round-trip estimate to the hub.", _num(link, "rtt_seconds")
        )
        offset = _num(link, "hub_offset_ms")
        yield from _gauge(
            "cunlink_clock_offset_seconds",
            "Hub clock minus this station's clock (positive: station is behind).",
            None if offset is None else offset / 1000,
        )

    def _devices(self, devices: list[Any]) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "cunlink_device_up", "1 while the device works (state ok).", labels=["device", "kind"]
        )
        state = GaugeMetricFamily(
            "cunlink_device_state",
            "1 for the device's current state, 0 for the others.",
            labels=["device", "state"],
        )
        errors = CounterMetricFamily(
            "cunlink_device_errors", "Failed operations or probes of the device.", labels=["device"]
        )
        for dev in devices:
            if not isinstance(dev, Mapping) or not dev.get("name"):
                continue
            name, current = str(dev["name"]), str(dev.get("state", ""))
            up.add_metric([name, str(dev.get("kind", ""))], 1.0 if current in _UP_STATES else 0.0)
            for s in (*DEVICE_STATES, *([current] if current not in DEVICE_STATES else [])):
                state.add_metric([name, s], 1.0 if s == current else 0.0)
            errors.add_metric([name], _num(dev, "failures") or 0.0)
        yield from (up, state, errors)

    def _cases(self, cases: Mapping[str, Any]) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "cunlink_cases", "Cases held at this station, by status.", labels=["status"]
        )
        by_status = cases.get("by_status")
        by_status = by_status if isinstance(by_status, Mapping) else {}
        known = [s.value for s in Status]
        for status in (*known, *sorted(set(by_status) - set(known))):
            family.add_metric([str(status)], _num(by_status, status) or 0.0)
        yield family
        yield from _gauge(
            "cunlink_case_conflicts", "Cases with an unresolved conflict.", _num(cases, "conflicts")
        )


# --- the registry ------------------------------------------------------------------------------


class StationMetrics:
    """Everything the station exports, in its own registry (never prometheus_client's global
    one: two daemons in one test process must not see each other's series)."""

    def __init__(
        self,
        snapshot: Callable[[], Mapping[str, Any] | None],
        *,
        version: str | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_StatusCollector(snapshot, version or _package_version()))
        self._requests = Counter(
            "cunlink_api_requests",
            "Local API requests answered, by method, route and code.",
            ["method", "route", "code"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "cunlink_api_request_duration_seconds",
            "Local API request latency, by route.",
            ["route"],
            buckets=API_LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered API request. `route` must be the route template
        (``/api/v1/cases/{id}``), never the raw path: one series per case id would explode."""
        self._requests.labels(method.upper(), route, str(status)).inc()
        self._latency.labels(route).observe(max(0.0, seconds))


# --- the HTTP endpoint -------------------------------------------------------------------------


class _HasRegistry(Protocol):
    @property
    def registry(self) -> CollectorRegistry: ...


@dataclass(slots=True)
class MetricsServer:
    """A running metrics endpoint; `close()` stops it and frees the port."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def close(self, timeout: float = 5.0) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout)


def serve_metrics(metrics: _HasRegistry, listen: str, port: int) -> MetricsServer:
    """Serve `metrics.registry` on listen:port (0 = any free port; for tests) in a thread."""
    try:
        server, thread = start_http_server(port, addr=listen, registry=metrics.registry)
    except OSError as exc:
        raise OSError(
            exc.errno,
            f"cannot serve metrics on {listen}:{port}: {exc.strerror or exc}; "
            "free the port or set another [metrics] port (0 turns metrics off)",
        ) from exc
    return MetricsServer(server=server, thread=thread)


def start_metrics_server(metrics: _HasRegistry, listen: str, port: int) -> MetricsServer | None:
    """The daemon's entry point: serve metrics per `[metrics] listen/port`; port 0 means off."""
    if port == 0:
        return None
    return serve_metrics(metrics, listen, port)
