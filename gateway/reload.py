"""What a SIGHUP may change in a running daemon, and reading the file again safely.

`plan_reload(old, new)` compares two validated configs setting by setting and sorts every
difference into "applies now" or "needs a restart", with a message for the technician. It is
pure: the daemon applies the live part itself (new transfer limits to the engine, reopened
devices, the new log level, ...), so transfers in flight are never dropped by a reload.

`ConfigReloader.reload()` reads the file again; if it does not load, the running configuration
stays as it is and the loader's error lines are logged, so a typo never takes a station down.
The configuration it keeps is the *effective* one: new values for live settings, the running
values for restart-only settings (the daemon still runs with those), so the next reload reminds
the technician again that a restart is pending.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

from gateway.config.errors import ConfigError
from gateway.config.fields import meta_of
from gateway.config.hub import HubConfig, load_hub_config
from gateway.config.render import REDACTED
from gateway.config.station import StationConfig, load_station_config

log = logging.getLogger("cunlink.reload")

C = TypeVar("C", bound=StationConfig | HubConfig)

RESTART_HINT = "restart the service to apply it (systemctl restart {unit})"

# Station: a key applies live if it equals one of these or lies below one (dotted prefixes).
# Anything not listed needs a restart: a new setting is safe until someone makes it live.
STATION_LIVE: dict[str, str] = {
    "log.level": "log level changed now",
    "transfer": "the transfer engine takes the new limits for its next chunk; "
    "chunks in flight finish as they are",
    "devices.idcard": "the ID-card reader is reopened with the new settings",
    "devices.printer": "the receipt printer is reopened with the new settings",
    "devices.camera": "the camera is reopened with the new settings",
    "api.tokens": "terminal tokens replaced; requests with a removed token are refused from now",
    "api.cors_origins": "allowed browser origins replaced",
    "metrics.beacon_interval_seconds": "the next health beacon goes at the new interval",
}
STATION_RESTART: dict[str, str] = {
    "station.id": "the station id is its identity on the broker and in every sealed package",
    "station.state_dir": "the open store and outbox live in the old folder",
    "station.language": "messages already set up keep the old language",
    "keys": "keys are loaded once at start-up",
    "mqtt": "the broker connection is set up once at start-up (host, port, TLS files, "
    "session)",
    "store": "the store is opened once at start-up",
    "api.listen": "the API keeps listening on the old address",
    "api.port": "the API keeps listening on the old port",
    # aiohttp fixes its own body limit (client_max_size) when the app is built
    "api.max_body_bytes": "the API's request size limit is set when it starts",
    "metrics.listen": "the metrics endpoint keeps listening on the old address",
    "metrics.port": "the metrics endpoint keeps listening on the old port",
}
HUB_LIVE: dict[str, str] = {"log.level": "log level changed now"}
HUB_RESTART: dict[str, str] = {
    "hub": "the hub's id and state folder are fixed at start-up",
    "keys": "keys are loaded once at start-up",
    "mqtt": "the broker connection and shared subscription are set up once at start-up",
    "store": "the store is opened once at start-up",
    "metrics": "the metrics endpoint keeps listening where it started",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """One setting that differs. `old` / `new` are printable; secrets show as ***."""

    key: str  # dotted: "transfer.window", "devices.camera.device", "api.tokens"
    old: str
    new: str
    live: bool
    message: str

    def line(self) -> str:
        return f"{self.key}: {self.old} -> {self.new}: {self.message}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReloadPlan:
    live: tuple[Change, ...] = ()
    restart: tuple[Change, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.live or self.restart)

    @property
    def live_keys(self) -> frozenset[str]:
        return frozenset(c.key for c in self.live)

    def touches(self, prefix: str) -> bool:
        """True if a live change is `prefix` or lies below it ("transfer", "devices.camera")."""
        return any(_under(c.key, prefix) for c in self.live)

    def summary(self) -> str:
        """One line for STATUS= and the log."""
        if not self.changed:
            return "configuration reloaded, nothing changed"
        text = f"configuration reloaded, {len(self.live)} change(s) applied"
        if self.restart:
            keys = ", ".join(c.key for c in self.restart)
            text += f"; {len(self.restart)} need a restart ({keys})"
        return text


def _under(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix + ".")


def _lookup(table: dict[str, str], key: str) -> str | None:
    """The message of the longest prefix in `table` that covers `key`."""
    best: str | None = None
    for prefix in table:
        if _under(key, prefix) and (best is None or len(prefix) > len(best)):
            best = prefix
    return None if best is None else table[best]


def _leaves(old: object, new: object, path: str) -> Iterator[tuple[str, str, str]]:
    """(dotted key, old, new) for every setting that differs; recurses into sections only."""
    for f in dataclasses.fields(old):  # type: ignore[arg-type]
        key = f"{path}.{f.name}" if path else f.name
        a, b = getattr(old, f.name), getattr(new, f.name)
        if a == b:
            continue
        meta = meta_of(f)
        if meta.kind == "section":
            yield from _leaves(a, b, key)
        elif meta.kind == "tables":
            # arrays of tables (api tokens) hold secrets: compare whole, print only the count
            yield key, f"{len(a)} entries", f"{len(b)} entries"
        elif meta.secret:
            yield key, REDACTED, REDACTED
        else:
            yield key, _show(a), _show(b)


def _show(value: object) -> str:
    # TOML spelling, as the technician wrote it in the file
    if isinstance(value, str | Path):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if value is None:
        return "(none)"
    return str(value)


def _plan(old: object, new: object, live: dict[str, str], restart: dict[str, str],
          unit: str) -> ReloadPlan:
    if type(old) is not type(new):
        raise TypeError(f"cannot compare a {type(old).__name__} with a {type(new).__name__}")
    applied: list[Change] = []
    pending: list[Change] = []
    for key, a, b in _leaves(old, new, ""):
        message = _lookup(live, key)
        if message is not None:
            applied.append(Change(key=key, old=a, new=b, live=True, message=message))
            continue
        why = _lookup(restart, key) or "this setting is read once at start-up"
        pending.append(Change(key=key, old=a, new=b, live=False,
                              message=f"{why}; {RESTART_HINT.format(unit=unit)}"))
    return ReloadPlan(live=tuple(applied), restart=tuple(pending))


def plan_reload(old: StationConfig, new: StationConfig) -> ReloadPlan:
    """Sort the station settings that differ into live changes and restart-only ones."""
    return _plan(old, new, STATION_LIVE, STATION_RESTART, "cunlink")


def plan_hub_reload(old: HubConfig, new: HubConfig) -> ReloadPlan:
    """The hub applies only the log level live; everything else needs a restart."""
    return _plan(old, new, HUB_LIVE, HUB_RESTART, "cunlink-hub")


def effective(old: C, new: C, plan: ReloadPlan) -> C:
    """`new` with every restart-only setting put back to its running value from `old`."""
    return cast(C, _merge(old, new, "", plan.live_keys))


def _merge(old: Any, new: Any, path: str, live: frozenset[str]) -> Any:
    updates: dict[str, Any] = {}
    for f in dataclasses.fields(old):
        key = f"{path}.{f.name}" if path else f.name
        a, b = getattr(old, f.name), getattr(new, f.name)
        if a == b:
            continue
        if meta_of(f).kind == "section":
            updates[f.name] = _merge(a, b, key, live)
        elif key in live:
            updates[f.name] = b
    return dataclasses.replace(old, **updates) if updates else old


def apply_log_level(level: str) -> None:
    """Set the daemon's log level ("debug", "info", "warning", "error") in place.

    Same rule as gateway.logs.setup: the MQTT library stays at warning or above, or its
    debug lines would drown the station's own.
    """
    root = logging.getLogger()
    root.setLevel(level.upper())
    logging.getLogger("aiomqtt").setLevel(max(logging.WARNING, root.level))


@dataclass(frozen=True, slots=True, kw_only=True)
class ReloadResult(Generic[C]):
    """What a reload attempt gave: the configuration to run with from now on, and why."""

    config: C  # the effective configuration (the unchanged old one if loading failed)
    plan: ReloadPlan | None  # None when the file did not load
    error: str = ""  # the loader's error lines, when it did not

    @property
    def ok(self) -> bool:
        return self.plan is not None

    def summary(self) -> str:
        if self.plan is None:
            first = self.error.splitlines()[0] if self.error else "unknown error"
            return f"reload failed, still running the previous configuration: {first}"
        return self.plan.summary()


class ConfigReloader(Generic[C]):
    """Holds the running configuration of one daemon and reads its file again on request."""

    def __init__(self, path: Path, current: C, *, load: Callable[[Path], C],
                 plan: Callable[[C, C], ReloadPlan]) -> None:
        self.path = path
        self.current: C = current
        self._load: Callable[[Path], C] = load
        self._plan: Callable[[C, C], ReloadPlan] = plan

    def reload(self) -> ReloadResult[C]:
        try:
            new = self._load(self.path)
        except ConfigError as exc:
            log.error("reload: %s does not load; still running the previous configuration. "
                      "Fix the file (check it with `cunlink config check %s`) and reload again:",
                      self.path, self.path)
            for line in exc.errors:
                log.error("reload: %s", line)
            return ReloadResult(config=self.current, plan=None, error=str(exc))
        except OSError as exc:  # the loader reports unreadable files itself; this is a backstop
            log.error("reload: cannot read %s (%s); still running the previous configuration",
                      self.path, exc)
            return ReloadResult(config=self.current, plan=None, error=f"{self.path}: {exc}")
        plan = self._plan(self.current, new)
        for change in plan.live:
            log.info("reload: %s", change.line())
        for change in plan.restart:
            log.warning("reload: not applied: %s", change.line())
        self.current = effective(self.current, new, plan)
        log.info("reload: %s", plan.summary())
        return ReloadResult(config=self.current, plan=plan)


def station_reloader(path: Path, current: StationConfig) -> ConfigReloader[StationConfig]:
    return ConfigReloader(path, current, load=load_station_config, plan=plan_reload)


def hub_reloader(path: Path, current: HubConfig) -> ConfigReloader[HubConfig]:
    return ConfigReloader(path, current, load=load_hub_config, plan=plan_hub_reload)
