"""The metric names of the shared contract (/tmp/cunlink-contracts.md, "Metric names"), as
Prometheus exposes them: counters end in `_total`, histograms add `_bucket/_sum/_count`.

The dashboard, the alert rules and the station's exposition are all checked against these, so
a renamed metric breaks a test instead of silently emptying a panel or an alert.
"""

from __future__ import annotations

import re

STATION_METRICS = frozenset(
    {
        "cunlink_build_info",
        "cunlink_outbox_items",
        "cunlink_outbox_bytes",
        "cunlink_outbox_oldest_age_seconds",
        "cunlink_outbox_held_items",
        "cunlink_link_up",
        "cunlink_link_connects_total",
        "cunlink_link_disconnects_total",
        "cunlink_link_stalls_total",
        "cunlink_link_sent_bytes_total",
        "cunlink_link_received_bytes_total",
        "cunlink_link_chunks_resent_total",
        "cunlink_link_rtt_seconds",
        "cunlink_clock_offset_seconds",
        "cunlink_device_up",
        "cunlink_device_state",
        "cunlink_device_errors_total",
        "cunlink_cases",
        "cunlink_case_conflicts",
        "cunlink_api_requests_total",
        "cunlink_api_request_duration_seconds",  # histogram
        "cunlink_disk_free_bytes",
        "cunlink_beacons_sent_total",
    }
)

HUB_METRICS = frozenset(
    {
        "cunlink_hub_packages_accepted_total",
        "cunlink_hub_packages_rejected_total",
        "cunlink_hub_commit_duration_seconds",  # histogram
        "cunlink_hub_chunks_duplicate_total",
        "cunlink_hub_chunk_duplicate_bytes_total",
        "cunlink_hub_downlink_sent_total",
        "cunlink_hub_beacons_invalid_total",
        "cunlink_hub_station_last_seen_timestamp_seconds",
        "cunlink_hub_station_link_up",
        "cunlink_hub_station_outbox_items",
        "cunlink_hub_station_outbox_oldest_age_seconds",
        "cunlink_hub_station_disk_free_bytes",
        "cunlink_hub_station_clock_offset_seconds",
        "cunlink_hub_station_device_up",
        "cunlink_hub_station_conflicts",
        "cunlink_hub_station_errors",
    }
)

HISTOGRAMS = frozenset(
    {"cunlink_api_request_duration_seconds", "cunlink_hub_commit_duration_seconds"}
)

_NAME = re.compile(r"\bcunlink_[a-z0-9_]+")


def metric_names(expr: str) -> set[str]:
    """The cunlink metric names a PromQL expression reads (histogram suffixes removed)."""
    names = set()
    for name in _NAME.findall(expr):
        for suffix in ("_bucket", "_sum", "_count"):
            base = name.removesuffix(suffix)
            if base != name and base in HISTOGRAMS:
                name = base
        names.add(name)
    return names
