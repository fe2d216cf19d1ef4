"""`cunlink init`: set up a fresh station box in one go.

    cunlink init --station-id ST001 --broker-host mqtt.county.example [options]

Writes the configuration (mode 0640, checked by loading it back), creates the station's keys
(directory 0700, private files 0600) and its enrollment file, creates the state directory,
puts one API token for the first terminal into the configuration and prints it once, and
prints the next steps. Nothing is replaced without --force.

Values not given as options are asked for when the station id or the broker host is missing
and standard input is a terminal; otherwise every missing required option is named and
nothing is written. Relative paths are made absolute, so the file does not depend on the
directory `init` ran in.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.cli.common import DEFAULT_STATION_CONFIG, LangOption, fail_t, messages
from gateway.config import (
    ApiSettings,
    ApiToken,
    CameraSettings,
    ConfigError,
    DevicesSettings,
    IdCardSettings,
    KeysSettings,
    MetricsSettings,
    MqttSettings,
    PrinterSettings,
    StationConfig,
    StationSettings,
    effective_dict,
    load_station_config,
)
from gateway.config.common import HOST
from gateway.config.render import render_toml
from gateway.i18n import Messages
from gateway.keys import (
    ENCRYPTION_KEY,
    ENCRYPTION_PUB,
    SIGNING_KEY,
    SIGNING_PUB,
    KeyFileError,
    enrollment_path,
    init_keys,
    load_enrollment,
)
from sync.durable import fsync_dir, write_private
from sync.ids import IdError, check_station_id

T = TypeVar("T")
#: The configuration systemd/cunlink.service starts the daemon with.
UNIT_CONFIG = Path("/etc/cunlink/station.toml")
CONFIG_MODE = 0o640  # holds the terminals' tokens: not for everyone
STATE_MODE = 0o750
PROMPT_ATTEMPTS = 5
TOKEN_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")

def register(app: typer.Typer) -> None:
    app.command("init")(init)


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """Everything init will write, decided before anything is written."""

    config: Path
    station_id: str
    broker_host: str
    broker_port: int
    ca_file: Path
    cert_file: Path
    key_file: Path
    hub_enrollment: Path
    keys_dir: Path
    state_dir: Path
    idcard: bool
    idcard_port: Path
    printer: bool
    printer_port: Path
    camera: bool
    camera_device: Path
    camera_url: str  # "" = a V4L2 device; else an HTTP snapshot URL
    api_listen: str
    api_port: int
    metrics_port: int
    terminal: str
    language: str
    copies: tuple[tuple[Path, Path, int], ...]  # (source, destination, mode)
    owner: tuple[int, int] | None  # uid, gid to hand the files to


def init(
    config: Annotated[Path, typer.Option(
        "--config", "-c", help="Where to write the configuration.")] = DEFAULT_STATION_CONFIG,
    station_id: Annotated[str | None, typer.Option(
        "--station-id", "--id", help="Station id from the county, e.g. ST001 (no '-').")] = None,
    broker_host: Annotated[str | None, typer.Option(
        "--broker-host", help="The county's MQTT broker: host name or IP address.")] = None,
    broker_port: Annotated[int | None, typer.Option(
        "--broker-port", min=1, max=65535, help="Broker port (default 8883).")] = None,
    ca_file: Annotated[Path | None, typer.Option(
        "--ca-file", help="Path of the county CA certificate (default <config dir>/tls/ca.pem).",
    )] = None,
    cert_file: Annotated[Path | None, typer.Option(
        "--cert-file", help="Path of this station's certificate (default <config dir>/tls/"
        "station.pem).")] = None,
    key_file: Annotated[Path | None, typer.Option(
        "--key-file", help="Path of this station's TLS key (default <config dir>/tls/"
        "station.key).")] = None,
    copy_ca: Annotated[Path | None, typer.Option(
        "--copy-ca", help="Copy this CA certificate (from the county) to --ca-file now.")] = None,
    copy_cert: Annotated[Path | None, typer.Option(
        "--copy-cert", help="Copy this certificate (from the county) to --cert-file now.")] = None,
    copy_key: Annotated[Path | None, typer.Option(
        "--copy-key", help="Copy this TLS key (from the county) to --key-file now (0600).")] = None,
    hub_enrollment: Annotated[Path | None, typer.Option(
        "--hub-enrollment", help="Path of the hub's enrollment file (default <config dir>/"
        "hub.enrollment.json).")] = None,
    copy_hub_enrollment: Annotated[Path | None, typer.Option(
        "--copy-hub-enrollment", help="Copy this hub enrollment file (from the county) to "
        "--hub-enrollment now.")] = None,
    keys_dir: Annotated[Path | None, typer.Option(
        "--keys-dir", help="Directory for this station's keys (default <config dir>/keys).")
    ] = None,
    state_dir: Annotated[Path | None, typer.Option(
        "--state-dir", help="Where cases and scans are kept (default /var/lib/cunlink).")] = None,
    idcard: Annotated[bool | None, typer.Option(
        "--idcard/--no-idcard", help="Use an ID-card reader.")] = None,
    idcard_port: Annotated[Path | None, typer.Option(
        "--idcard-port", help="Its serial device (default /dev/cunlink-idcard).")] = None,
    printer: Annotated[bool | None, typer.Option(
        "--printer/--no-printer", help="Use a serial receipt printer.")] = None,
    printer_port: Annotated[Path | None, typer.Option(
        "--printer-port", help="Its serial device (default /dev/cunlink-printer).")] = None,
    camera: Annotated[bool | None, typer.Option(
        "--camera/--no-camera", help="Use a USB document camera.")] = None,
    camera_device: Annotated[Path | None, typer.Option(
        "--camera-device", help="Its video device (default /dev/cunlink-camera).")] = None,
    camera_url: Annotated[str | None, typer.Option(
        "--camera-url", help="A camera that serves stills over HTTP: its snapshot URL "
        "(implies --camera).")] = None,
    api_listen: Annotated[str, typer.Option(
        "--api-listen", help="Address of the terminal API: 127.0.0.1 (this box only) or the "
        "box's LAN address when the terminal is another computer.")] = "127.0.0.1",
    api_port: Annotated[int, typer.Option(
        "--api-port", min=1, max=65535, help="Port of the terminal API.")] = 8470,
    metrics_port: Annotated[int, typer.Option(
        "--metrics-port", min=0, max=65535, help="Port of the Prometheus endpoint (0 = off).",
    )] = 9470,
    station_language: Annotated[str, typer.Option(
        "--station-language",
        help="The language operators read (zh-CN or en); written to the configuration.",
    )] = "zh-CN",
    terminal: Annotated[str, typer.Option(
        "--terminal", help="Name of the first terminal, for its API token.")] = "terminal-1",
    owner: Annotated[str | None, typer.Option(
        "--owner", help="Give keys, TLS files, state directory and configuration to this "
        "account (the one the service runs as); needs root.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace an existing configuration, keys and copied files.")] = False,
    lang: LangOption = None,
) -> None:
    """Set up this station: configuration, keys, enrollment file, first terminal token."""
    t = messages(lang)
    interactive = sys.stdin.isatty() and (station_id is None or broker_host is None)
    if not interactive:
        missing = [flag for flag, value in (("--station-id", station_id),
                                            ("--broker-host", broker_host)) if value is None]
        if missing:
            fail_t(t, "init.missing", flags=", ".join(missing), code=2)
    ask = _Asker(t, interactive)
    base = config.absolute().parent
    sid = ask.text("init.ask.station_id", station_id, None, _station_id_problem)
    host = ask.text("init.ask.broker_host", broker_host, None, _host_problem)
    port = ask.number("init.ask.broker_port", broker_port, 8883)
    state = ask.path("init.ask.state_dir", state_dir, Path("/var/lib/cunlink"))
    use_idcard, idcard_at = ask.device("init.ask.idcard", idcard, idcard_port,
                                       Path("/dev/cunlink-idcard"))
    use_printer, printer_at = ask.device("init.ask.printer", printer, printer_port,
                                         Path("/dev/cunlink-printer"))
    use_camera, camera_at = ask.device("init.ask.camera", True if camera_url else camera,
                                       camera_device, Path("/dev/cunlink-camera"))
    # Checked again for values given as options (the prompts already checked their answers).
    for problem in (_station_id_problem(sid), _host_problem(host), _host_problem(api_listen)):
        if problem:
            fail_t(t, problem[0], code=2, **problem[1])
    if station_language not in ("zh-CN", "en"):
        fail_t(t, "init.bad_language", value=station_language, code=2)
    if not TOKEN_NAME_RE.fullmatch(terminal):
        fail_t(t, "init.bad_terminal", name=terminal, code=2)
    tls_dir = base / "tls"
    ca = _abs(ca_file) or tls_dir / "ca.pem"
    cert = _abs(cert_file) or tls_dir / "station.pem"
    key = _abs(key_file) or tls_dir / "station.key"
    hub = _abs(hub_enrollment) or base / "hub.enrollment.json"
    copies = tuple((src.absolute(), dst, mode) for src, dst, mode in (
        (copy_ca, ca, 0o644), (copy_cert, cert, 0o644), (copy_key, key, 0o600),
        (copy_hub_enrollment, hub, 0o644)) if src is not None)
    plan = Plan(
        config=config.absolute(), station_id=sid, broker_host=host, broker_port=port,
        ca_file=ca, cert_file=cert, key_file=key, hub_enrollment=hub,
        keys_dir=_abs(keys_dir) or base / "keys", state_dir=state.absolute(),
        idcard=use_idcard, idcard_port=idcard_at, printer=use_printer, printer_port=printer_at,
        camera=use_camera, camera_device=camera_at, camera_url=camera_url or "",
        api_listen=api_listen, api_port=api_port, metrics_port=metrics_port, terminal=terminal,
        language=station_language,
        copies=copies, owner=_owner(t, owner),
    )
    _refuse_overwrites(t, plan, force)
    _check_sources(t, plan)
    token = secrets.token_urlsafe(24)
    execute(t, plan, token, force=force)
    for line in next_steps(t, plan, token):
        typer.echo(line)


# -- asking --------------------------------------------------------------------------------------

Problem = tuple[str, dict[str, object]] | None


def _station_id_problem(value: str) -> Problem:
    try:
        check_station_id(value)
    except IdError:
        return "init.bad_station_id", {"id": value}
    return None


def _host_problem(value: str) -> Problem:
    if HOST.pattern is None or not re.fullmatch(HOST.pattern, value):
        return "init.bad_host", {"host": value}
    return None


class _Asker:
    """Use the option's value; else, interactively, ask (with a default); else the default."""

    def __init__(self, t: Messages, interactive: bool) -> None:
        self.t, self.interactive = t, interactive

    def _prompt(self, key: str, default: T | None, kind: Callable[[str], T],
                check: Callable[[T], Problem] | None = None) -> T:
        for _ in range(PROMPT_ATTEMPTS):
            raw = typer.prompt(self.t(key), default=None if default is None else str(default))
            try:
                value = kind(str(raw).strip())
            except ValueError:
                typer.echo(self.t("init.ask.again"), err=True)
                continue
            problem = check(value) if check else None
            if problem is None:
                return value
            typer.echo(self.t(problem[0], **problem[1]), err=True)
        fail_t(self.t, "init.ask.gave_up", code=2)

    def text(self, key: str, given: str | None, default: str | None,
             check: Callable[[str], Problem]) -> str:
        if given is not None:
            return given
        if not self.interactive:
            assert default is not None  # required values are checked before asking
            return default
        return self._prompt(key, default, _non_empty, check)

    def number(self, key: str, given: int | None, default: int) -> int:
        if given is not None:
            return given
        if not self.interactive:
            return default
        return self._prompt(key, default, _port)

    def path(self, key: str, given: Path | None, default: Path) -> Path:
        if given is not None:
            return given
        if not self.interactive:
            return default
        return self._prompt(key, default, _path)

    def device(self, key: str, use: bool | None, given: Path | None,
               default: Path) -> tuple[bool, Path]:
        if use is None:
            use = self.interactive and typer.confirm(self.t(key), default=False)
        if given is None and use and self.interactive:
            given = self._prompt("init.ask.device_path", default, _path)
        return use, (given or default).absolute()


def _non_empty(raw: str) -> str:
    if not raw:
        raise ValueError("empty")
    return raw


def _port(raw: str) -> int:
    value = int(raw)
    if not 1 <= value <= 65535:
        raise ValueError(raw)
    return value


def _path(raw: str) -> Path:
    if not raw or "\0" in raw:
        raise ValueError(raw)
    return Path(raw)


def _abs(path: Path | None) -> Path | None:
    return None if path is None else path.absolute()


def _owner(t: Messages, name: str | None) -> tuple[int, int] | None:
    if name is None:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        fail_t(t, "init.no_such_user", user=name, code=2)
    if os.geteuid() != 0 and entry.pw_uid != os.geteuid():
        fail_t(t, "init.owner_needs_root", user=name, code=2)
    return entry.pw_uid, entry.pw_gid


# -- checks before writing -----------------------------------------------------------------------


def _refuse_overwrites(t: Messages, plan: Plan, force: bool) -> None:
    if force:
        return
    existing = [plan.config] if plan.config.exists() else []
    existing += [plan.keys_dir / n for n in (SIGNING_KEY, ENCRYPTION_KEY, SIGNING_PUB,
                                             ENCRYPTION_PUB) if (plan.keys_dir / n).exists()]
    existing += [dst for _, dst, _ in plan.copies if dst.exists()]
    if existing:
        fail_t(t, "init.exists", paths=", ".join(str(p) for p in existing))


def _check_sources(t: Messages, plan: Plan) -> None:
    """Every file to copy is what it claims to be, before anything is written."""
    for src, dst, _ in plan.copies:
        try:
            data = src.read_bytes()
        except OSError as exc:
            fail_t(t, "init.copy_unreadable", path=src, error=exc.strerror or str(exc))
        try:
            if dst == plan.key_file:
                serialization.load_pem_private_key(data, password=None)
            elif dst == plan.hub_enrollment:
                enrollment = load_enrollment(src)
                if enrollment.role != "hub":
                    fail_t(t, "init.copy_not_hub", path=src, role=enrollment.role,
                           id=enrollment.id)
            else:
                x509.load_pem_x509_certificates(data)
        except (ValueError, TypeError, KeyFileError) as exc:
            fail_t(t, "init.copy_invalid", path=src, error=str(exc))


# -- writing -------------------------------------------------------------------------------------


def station_config(plan: Plan, token: str) -> StationConfig:
    return StationConfig(
        station=StationSettings(id=plan.station_id, state_dir=plan.state_dir,
                                language=plan.language),
        keys=KeysSettings(dir=plan.keys_dir, hub_enrollment=plan.hub_enrollment),
        mqtt=MqttSettings(host=plan.broker_host, port=plan.broker_port, ca_file=plan.ca_file,
                          cert_file=plan.cert_file, key_file=plan.key_file),
        api=ApiSettings(listen=plan.api_listen, port=plan.api_port,
                        tokens=(ApiToken(name=plan.terminal, token=token),)),
        metrics=MetricsSettings(port=plan.metrics_port),
        devices=DevicesSettings(
            idcard=IdCardSettings(enabled=plan.idcard, port=plan.idcard_port),
            printer=PrinterSettings(enabled=plan.printer, port=plan.printer_port),
            camera=CameraSettings(enabled=plan.camera, device=plan.camera_device,
                                  source="http" if plan.camera_url else "v4l2",
                                  url=plan.camera_url),
        ),
    )


#: The keys init writes; every other key takes its default (and follows future defaults).
WRITTEN: dict[str, tuple[str, ...]] = {
    "station": ("id", "state_dir", "language"),
    "keys": ("dir", "hub_enrollment"),
    "mqtt": ("host", "port", "ca_file", "cert_file", "key_file"),
    "api": ("listen", "port", "tokens"),
    "metrics": ("port",),
    "devices": ("idcard", "printer", "camera"),
}
DEVICE_KEYS = {"idcard": ("enabled", "port"), "printer": ("enabled", "port"),
               "camera": ("enabled", "source", "device", "url")}


def render_config(cfg: StationConfig, *, now: datetime) -> str:
    full = effective_dict(cfg, redact=False)
    table: dict[str, Any] = {}
    for section, keys in WRITTEN.items():
        table[section] = {k: full[section][k] for k in keys}
    for device, keys in DEVICE_KEYS.items():
        table["devices"][device] = {k: full["devices"][device][k] for k in keys}
    header = (
        f"# cunlink station configuration, written by `cunlink init` on "
        f"{now.astimezone(UTC):%Y-%m-%d}.\n"
        "# Only what init asked is here; every other key takes its default. All keys are\n"
        "# described in config/station.example.toml and docs/configuration.md.\n"
        "# `cunlink config check FILE` prints the effective configuration; then\n"
        "# `cunlink doctor --config FILE` checks the whole setup.\n\n"
    )
    return header + render_toml(table)


def execute(t: Messages, plan: Plan, token: str, *, force: bool) -> StationConfig:
    """Write everything; the configuration goes in place last, once all else succeeded."""
    now = datetime.now(UTC)
    cfg = station_config(plan, token)
    tmp = plan.config.with_name(plan.config.name + ".init-tmp")
    try:
        plan.config.parent.mkdir(parents=True, exist_ok=True)
        write_private(tmp, render_config(cfg, now=now).encode("utf-8"), CONFIG_MODE)
        try:
            loaded = load_station_config(tmp, env={})
        except ConfigError as exc:
            fail_t(t, "init.config_rejected", error=str(exc))
        if loaded != cfg:  # a writer bug, not a user error: never leave such a file behind
            fail_t(t, "init.config_mismatch", path=tmp)
        init_keys("station", plan.station_id, plan.keys_dir, force=force, now=now)
        for src, dst, mode in plan.copies:
            dst.parent.mkdir(parents=True, exist_ok=True)
            write_private(dst, src.read_bytes(), mode)
        created_state = not plan.state_dir.exists()
        if created_state:
            plan.state_dir.mkdir(parents=True, mode=STATE_MODE)
            os.chmod(plan.state_dir, STATE_MODE)  # mkdir's mode is masked by umask
        if plan.owner is not None:
            _hand_over(plan, tmp, created_state=created_state)
        os.replace(tmp, plan.config)
        fsync_dir(plan.config.parent)
    except KeyFileError as exc:
        fail_t(t, "init.keys_failed", error=str(exc))
    except OSError as exc:
        fail_t(t, "init.write_failed", path=exc.filename or plan.config,
               error=exc.strerror or str(exc))
    finally:
        tmp.unlink(missing_ok=True)
    return cfg


def _hand_over(plan: Plan, config_tmp: Path, *, created_state: bool) -> None:
    """Give the service's account what it must read or write (root runs init)."""
    assert plan.owner is not None
    uid, gid = plan.owner
    paths = [plan.keys_dir, *sorted(plan.keys_dir.iterdir()),
             *(dst for _, dst, _ in plan.copies)]
    if created_state:  # an existing directory is not ours to give away
        paths.append(plan.state_dir)
    for path in paths:
        os.chown(path, uid, gid)
    os.chown(config_tmp, 0 if os.geteuid() == 0 else uid, gid)  # root:cunlink 0640


# -- the report ----------------------------------------------------------------------------------


def next_steps(t: Messages, plan: Plan, token: str) -> list[str]:
    sid = plan.station_id
    copied = {dst for _, dst, _ in plan.copies}
    enrollment = enrollment_path(plan.keys_dir, sid)
    lines = [
        t("init.done", id=sid),
        t("init.done.config", path=plan.config),
        t("init.done.keys", path=plan.keys_dir),
        t("init.done.enrollment", path=enrollment),
        t("init.done.state", path=plan.state_dir),
        "",
        t("init.token", name=plan.terminal),
        f"    {token}",
        "",
        t("init.next"),
        t("init.next.enroll", file=enrollment.name, id=sid),
        f"       cunlink hub enroll {enrollment.name} --config hub.toml",
        f"       cunlink pki issue --dir PKI --station {sid}",
        t("init.next.place"),
    ]
    wanted = ((plan.hub_enrollment, "hub.enrollment.json"), (plan.ca_file, "PKI/ca.crt"),
              (plan.cert_file, f"PKI/clients/{sid}.crt"), (plan.key_file, f"PKI/clients/{sid}.key"))
    for dst, src in wanted:
        if dst in copied:
            lines.append(t("init.next.placed", path=dst))
        else:
            tail = "   (chmod 600)" if dst == plan.key_file else ""
            lines.append(f"       {src} -> {dst}{tail}")
    lines += [
        t("init.next.doctor"),
        f"       cunlink doctor --config {plan.config}",
        t("init.next.start"),
        "       systemctl enable --now cunlink",
        t("init.next.status"),
        f"       cunlink status --config {plan.config}",
    ]
    if shutil.which("systemctl") is None:
        lines.append(t("init.next.no_systemd", config=plan.config))
    elif plan.config != UNIT_CONFIG:
        lines.append(t("init.next.unit_config", config=plan.config, unit=UNIT_CONFIG))
    return lines
