"""Where a station's store lives under its state directory (one place, so the daemon, the CLI
and the tests agree)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreLayout:
    """The database file, the blob directory and the sealed-package directory."""

    db: Path
    blobs: Path
    sealed: Path

    @classmethod
    def station(cls, state_dir: Path) -> StoreLayout:
        state_dir = Path(state_dir)
        return cls(db=state_dir / "station.db", blobs=state_dir / "blobs",
                   sealed=state_dir / "sealed")
