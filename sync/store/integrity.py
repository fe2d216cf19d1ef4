"""Start-up integrity check: a damaged database is moved aside and reported, never recreated.

`check_and_quarantine(path)` runs `PRAGMA integrity_check`. If the file is damaged (the check
reports problems, or SQLite says it is corrupt or not a database) the database and its `-wal` /
`-shm` files are renamed to `<name>.corrupt-<UTC timestamp>[-wal|-shm]` (nothing is deleted, so
it can still be salvaged with `sqlite3 FILE .recover`), and a line describing what happened is
appended to `<name>.quarantine.jsonl` beside it, which the CLI shows until someone removes it.
Other failures (permissions, I/O errors, a lock held too long) are raised as StoreError and
leave the file where it is: those are not corruption.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sync.durable import fsync_dir
from sync.store.errors import StoreError

_CORRUPT_CODES = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}
MAX_PROBLEMS_REPORTED = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class QuarantineReport:
    """One damaged database moved aside."""

    original: Path
    moved_to: tuple[Path, ...]
    detected_at: str  # UTC, ISO 8601
    reason: str

    def describe(self) -> str:
        moved = ", ".join(str(p) for p in self.moved_to)
        return (
            f"{self.detected_at}: {self.original} failed its integrity check ({self.reason}); "
            f"moved aside to {moved}. Nothing was deleted: salvage with "
            f"`sqlite3 {self.moved_to[0]} .recover` or restore a backup"
        )


def marker_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".quarantine.jsonl")


def integrity_problems(
    path: Path, *, quick: bool = False, busy_timeout_s: float = 10.0
) -> list[str] | None:
    """None if `path` is sound; else what is wrong. Raises StoreError for non-corruption.

    `quick` runs `quick_check` (skips matching indexes against tables: much faster on a large
    hub database, still finds damaged pages)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=busy_timeout_s)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the store {path} to check it: {exc}") from exc
    try:
        pragma = "quick_check" if quick else "integrity_check"
        rows = conn.execute(f"PRAGMA {pragma}").fetchall()
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorname", "") in _CORRUPT_CODES:
            return [str(exc)]
        raise StoreError(
            f"could not check the integrity of {path}: {exc}; the file was left in place"
        ) from exc
    finally:
        conn.close()
    found = [str(r[0]) for r in rows]
    return None if found == ["ok"] else found[:MAX_PROBLEMS_REPORTED]


def _free_name(base: Path) -> Path:
    candidate, n = base, 1
    while candidate.exists():
        candidate = base.with_name(f"{base.name}.{n}")
        n += 1
    return candidate


def check_and_quarantine(
    path: Path, *, quick: bool = False, now: datetime | None = None
) -> QuarantineReport | None:
    """Check `path`; if damaged, move it aside, record and return the report."""
    if not path.exists():
        return None
    problems = integrity_problems(path, quick=quick)
    if problems is None:
        return None
    when = (now or datetime.now(UTC)).astimezone(UTC)
    stamp = when.strftime("%Y%m%dT%H%M%SZ")
    target = _free_name(path.with_name(f"{path.name}.corrupt-{stamp}"))
    moved: list[Path] = []
    for suffix in ("", "-wal", "-shm"):
        src = path.with_name(path.name + suffix)
        if src.exists():
            dst = target.with_name(target.name + suffix)
            os.replace(src, dst)
            moved.append(dst)
    fsync_dir(path.parent)
    report = QuarantineReport(
        original=path, moved_to=tuple(moved),
        detected_at=when.isoformat(timespec="seconds"), reason="; ".join(problems),
    )
    line = json.dumps({
        "original": str(report.original), "moved_to": [str(p) for p in report.moved_to],
        "detected_at": report.detected_at, "reason": report.reason,
    }, ensure_ascii=False)
    with open(marker_path(path), "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return report


def quarantine_reports(path: Path) -> list[QuarantineReport]:
    """Every quarantine recorded beside `path` (oldest first); [] if none."""
    marker = marker_path(path)
    if not marker.exists():
        return []
    reports = []
    for line in marker.read_text(encoding="utf-8").splitlines():
        try:
            item = json.loads(line)
            reports.append(QuarantineReport(
                original=Path(item["original"]),
                moved_to=tuple(Path(p) for p in item["moved_to"]),
                detected_at=str(item["detected_at"]), reason=str(item["reason"]),
            ))
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line after a crash: skip it, keep the rest readable
    return reports

