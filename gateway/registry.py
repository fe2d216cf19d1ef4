"""The hub's enrolled stations: one enrollment file per station under ``<state>/stations/``.

``cunlink hub enroll FILE`` validates a station's enrollment file and copies it here; running
hub workers pick new files up on the next lookup, so enrolling needs no restart.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from gateway.keys import Enrollment, load_enrollment
from protocols.envelope import PeerIdentity


class EnrollmentError(Exception):
    pass


class StationRegistry:
    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._cache: dict[str, tuple[float, PeerIdentity]] = {}

    def path(self, station: str) -> Path:
        return self._dir / f"{station}.enrollment.json"

    def lookup(self, station: str) -> PeerIdentity | None:
        path = self.path(station)
        try:
            mtime = path.stat().st_mtime
        except (FileNotFoundError, OSError):
            return None
        cached = self._cache.get(station)
        if cached and cached[0] == mtime:
            return cached[1]
        peer = load_enrollment(path).peer()
        self._cache[station] = (mtime, peer)
        return peer

    def enroll(self, source: Path, *, force: bool = False) -> Enrollment:
        enrollment = load_enrollment(source)
        if enrollment.role != "station":
            raise EnrollmentError(f"{source}: role is {enrollment.role!r}; only station "
                                  "enrollment files can be enrolled at a hub")
        target = self.path(enrollment.id)
        if target.exists() and not force:
            current = load_enrollment(target)
            if current.peer().signing_key_id != enrollment.peer().signing_key_id:
                raise EnrollmentError(
                    f"station {enrollment.id} is already enrolled with other keys; re-run with "
                    "--force if the station's keys were really replaced")
        self._dir.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        shutil.copyfile(source, tmp)
        tmp.replace(target)
        return enrollment

    def stations(self) -> list[str]:
        if not self._dir.exists():
            return []
        return sorted(p.name.removesuffix(".enrollment.json")
                      for p in self._dir.glob("*.enrollment.json"))
