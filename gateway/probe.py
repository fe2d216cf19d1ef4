"""Look at a station from outside without disturbing it.

Two windows, both used by the technician's CLI (`cunlink status`, `doctor`, `outbox`):

- the running daemon, asked over its Unix socket `<state_dir>/cunlink.sock` (`GET
  /api/v1/status`; the socket's file permissions are the authentication, no token);
- the store, read read-only when the daemon is not there to answer, so a technician still sees
  the backlog of a stopped station.

Reading the store never writes it: with no write-ahead log beside the database (the daemon is
stopped and checkpointed) it is opened `immutable`, which creates no files; with a log present
it is opened `mode=ro`, and a shared-memory file SQLite had to create is handed to the
database's owner, so a root technician does not leave a root-owned file the daemon's own
account could not open.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import aiohttp

from sync.hlc import physical_ms
from sync.ids import IdError, parse_case_number
from sync.store import StoreLayout

SOCKET_NAME = "cunlink.sock"
STATUS_PATH = "/api/v1/status"
#: Outbox priority classes by name (contract: 0 control, 1 case events, 2 scanned materials).
CLASS_NAMES = {0: "control", 1: "events", 2: "materials"}
#: The shortest package-id prefix accepted: shorter ones match by accident.
MIN_PREFIX = 4
_HEX_RE = re.compile(r"[0-9a-f]{4,128}")

Reason = Literal["no_socket", "refused", "denied", "timeout", "bad_answer", "error"]


def socket_path(state_dir: Path) -> Path:
    return Path(state_dir) / SOCKET_NAME


# -- the daemon ----------------------------------------------------------------------------------


class DaemonUnavailable(Exception):
    """The daemon did not answer on its socket; `reason` says why in one word."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason: Reason = reason
        self.detail = detail


async def fetch_status(sock: Path, *, wait_s: float = 10.0) -> dict[str, Any]:
    """The daemon's status snapshot (see the contract), or DaemonUnavailable."""
    try:
        connector = aiohttp.UnixConnector(path=str(sock))
        async with (
            aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=wait_s)
            ) as session,
            session.get(f"http://localhost{STATUS_PATH}") as resp,
        ):
            if resp.status != 200:
                text = (await resp.text(errors="replace"))[:200]
                raise DaemonUnavailable("bad_answer", f"HTTP {resp.status}: {text}")
            body = await resp.json(content_type=None)
    except aiohttp.ClientConnectorError as exc:
        code = exc.os_error.errno
        if code == errno.ENOENT:
            raise DaemonUnavailable("no_socket", "no socket file") from exc
        reason = exc.os_error.strerror or str(exc.os_error)
        if code == errno.ECONNREFUSED:
            raise DaemonUnavailable("refused", reason) from exc
        if code in (errno.EACCES, errno.EPERM):
            raise DaemonUnavailable("denied", reason) from exc
        raise DaemonUnavailable("error", reason) from exc
    except TimeoutError as exc:
        raise DaemonUnavailable("timeout", f"no answer within {wait_s:g} s") from exc
    except (aiohttp.ClientError, ValueError) as exc:
        raise DaemonUnavailable("error", str(exc) or type(exc).__name__) from exc
    if isinstance(body, dict) and "station" not in body and isinstance(body.get("status"), dict):
        body = body["status"]  # tolerate a wrapped answer: {"status": {...}}
    if not isinstance(body, dict):
        raise DaemonUnavailable("bad_answer", f"expected a JSON object, got {type(body).__name__}")
    return body


# -- the store, read-only ------------------------------------------------------------------------


class StoreUnreadable(Exception):
    """The store could not be read (missing, locked beyond patience, damaged)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxFigures:
    """The outbox part of the status snapshot, computed from the database itself."""

    count: int
    bytes_pending: int
    oldest_age_seconds: float | None
    by_class: dict[str, int]
    held: int

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "bytes_pending": self.bytes_pending,
                "oldest_age_seconds": self.oldest_age_seconds, "by_class": dict(self.by_class),
                "held": self.held}


@dataclass(frozen=True, slots=True, kw_only=True)
class PackageRef:
    """One undelivered package, as `outbox hold|retry` needs to name it."""

    package_id: bytes
    kind: str
    priority: int
    case: str | None
    state: str
    size: int


def store_db(state_dir: Path) -> Path:
    return StoreLayout.station(state_dir).db


@contextlib.contextmanager
def read_only(db: Path, *, busy_timeout_s: float = 5.0) -> Iterator[sqlite3.Connection]:
    """A connection that cannot write the store (see the module docstring)."""
    if not db.is_file():
        raise StoreUnreadable(f"no store at {db}")
    wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
    shm_existed = shm.exists()
    mode = "ro" if wal.exists() else "ro&immutable=1"
    try:
        conn = sqlite3.connect(
            f"file:{quote(str(db.absolute()))}?mode={mode}", uri=True, timeout=busy_timeout_s
        )
    except sqlite3.Error as exc:
        raise StoreUnreadable(f"cannot open {db} read-only: {exc}") from exc
    try:
        yield conn
    except sqlite3.Error as exc:
        raise StoreUnreadable(f"cannot read {db}: {exc}") from exc
    finally:
        conn.close()
        if not shm_existed and os.geteuid() == 0:
            _give_to_owner(shm, db)


def _give_to_owner(path: Path, like: Path) -> None:
    with contextlib.suppress(OSError):  # gone again, or not ours to change: nothing to fix
        st = like.stat()
        os.chown(path, st.st_uid, st.st_gid)


def read_outbox(db: Path, *, now_ms: int) -> OutboxFigures:
    """Count, bytes, age and held entries of the outbox (the same sums as Store.outbox_stats)."""
    with read_only(db) as conn:
        counts = {int(p): int(n) for p, n in conn.execute(
            "SELECT priority, count(*) FROM outbox GROUP BY priority")}
        pending, oldest, held = conn.execute(
            "SELECT coalesce(sum(size - bytes_acked), 0), min(first_queued_ms), "
            "coalesce(sum(state = 'held'), 0) FROM outbox").fetchone()
    by_class = {name: 0 for name in CLASS_NAMES.values()}
    for priority, n in counts.items():
        name = CLASS_NAMES.get(priority, str(priority))
        by_class[name] = by_class.get(name, 0) + n
    return OutboxFigures(
        count=sum(counts.values()), bytes_pending=int(pending),
        oldest_age_seconds=None if oldest is None else max(0, now_ms - int(oldest)) / 1000,
        by_class=by_class, held=int(held),
    )


def read_clock(db: Path) -> tuple[int, int]:
    """(wall-clock ms of the store's last timestamp, the hub offset estimate in ms)."""
    with read_only(db) as conn:
        row = conn.execute("SELECT last, hub_offset_ms FROM clock WHERE id = 1").fetchone()
    if row is None:
        return 0, 0
    return physical_ms(int(row[0])), int(row[1])


class BadPackageRef(ValueError):
    """The text given is neither a package id (prefix) nor a case number."""


def is_case_number(text: str) -> bool:
    try:
        parse_case_number(text)
    except IdError:
        return False
    return True


def find_packages(db: Path, ident: str) -> tuple[Literal["case", "package"], list[PackageRef]]:
    """Undelivered packages named by `ident`: a case number (all of that case's packages) or
    a package id in hex, whole or a unique-looking prefix of at least MIN_PREFIX characters
    (the caller decides what more than one match means)."""
    params: tuple[object, ...]
    kind: Literal["case", "package"]
    if is_case_number(ident):
        where, params, kind = "case_id = ?", (ident,), "case"
    else:
        text = ident.strip().lower()
        if not _HEX_RE.fullmatch(text):
            raise BadPackageRef(ident)
        where, params = "substr(lower(hex(package_id)), 1, ?) = ?", (len(text), text)
        kind = "package"
    with read_only(db) as conn:
        rows = conn.execute(
            f"SELECT package_id, kind, priority, case_id, state, size FROM outbox WHERE {where} "
            "ORDER BY priority, seq LIMIT 1000", params).fetchall()
    return kind, [PackageRef(package_id=bytes(r[0]), kind=r[1], priority=int(r[2]), case=r[3],
                             state=r[4], size=int(r[5])) for r in rows]
