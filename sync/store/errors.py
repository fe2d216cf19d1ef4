"""The store's one exception family.

Everything the store raises on purpose is a `StoreError`; SQLite and OS errors are translated at
the boundary (`raise StoreError(...) from exc`) so callers above `sync.store` never have to know
about `sqlite3`. Messages say what went wrong, where, and what an operator can do about it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sync.store.integrity import QuarantineReport


class StoreError(Exception):
    """The durable store could not do what was asked; nothing was half-done."""


class DiskFloorError(StoreError):
    """Free disk space is below the configured floor: new materials are refused.

    Events for existing cases are still accepted below the floor (they are small and finishing
    open cases is what frees space), and nothing already accepted is ever evicted.
    """

    def __init__(self, message: str, *, free_bytes: int, floor_bytes: int, needed_bytes: int):
        super().__init__(message)
        self.free_bytes = free_bytes
        self.floor_bytes = floor_bytes
        self.needed_bytes = needed_bytes


class StoreCorruptError(StoreError):
    """The database failed its integrity check and was moved aside (see `report`)."""

    def __init__(self, message: str, *, report: QuarantineReport):
        super().__init__(message)
        self.report = report
