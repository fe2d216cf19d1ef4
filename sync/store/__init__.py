"""The durable store: SQLite (WAL, synchronous=FULL, group commit) plus blob files.

Public names are re-exported here; import them from `sync.store`.
"""

from sync.store.blobs import BlobRef
from sync.store.errors import DiskFloorError, StoreCorruptError, StoreError
from sync.store.eventlog import ApplyResult, EventDraft
from sync.store.integrity import QuarantineReport, check_and_quarantine, quarantine_reports
from sync.store.layout import StoreLayout
from sync.store.outbox import (
    PRIORITY_BLOBS,
    PRIORITY_CONTROL,
    PRIORITY_EVENTS,
    OutboxEntry,
    OutboxPut,
    OutboxStats,
)
from sync.store.reads import CaseSummary, TransferIn
from sync.store.schema import LATEST_VERSION, MIGRATIONS, Migration
from sync.store.store import RemotePackage, Store
from sync.store.writer import WriterStats

__all__ = [
    "LATEST_VERSION",
    "MIGRATIONS",
    "PRIORITY_BLOBS",
    "PRIORITY_CONTROL",
    "PRIORITY_EVENTS",
    "ApplyResult",
    "BlobRef",
    "CaseSummary",
    "DiskFloorError",
    "EventDraft",
    "Migration",
    "OutboxEntry",
    "OutboxPut",
    "OutboxStats",
    "QuarantineReport",
    "RemotePackage",
    "Store",
    "StoreCorruptError",
    "StoreError",
    "StoreLayout",
    "TransferIn",
    "WriterStats",
    "check_and_quarantine",
    "quarantine_reports",
]
