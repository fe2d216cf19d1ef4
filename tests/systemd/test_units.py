"""The systemd units: systemd's own checker, the keys the daemons rely on, and their sandbox.

`systemd-analyze verify` insists that ExecStart= names an existing executable. The units name
/usr/local/bin/cunlink (where docs/operations.md installs it), which a development machine does
not have; so verify runs on a temporary copy whose ExecStart= points at this checkout's real
`cunlink` entry point, and a separate test pins down what verify says about the shipped file
(nothing, or only that one missing binary).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli.common import DEFAULT_STATION_CONFIG
from gateway.config.hub import HubKeysSettings, HubSettings
from gateway.config.station import KeysSettings, StationSettings
from gateway.station import SHUTDOWN_BOUND_SECONDS

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "systemd"
STATION = UNITS / "cunlink.service"
HUB = UNITS / "cunlink-hub.service"
INSTALLED_BINARY = "/usr/local/bin/cunlink"
ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
CLI = Path(sys.executable).with_name("cunlink")

needs_analyze = pytest.mark.skipif(not Path(ANALYZE).exists(),
                                   reason="systemd-analyze is not installed (apt install systemd)")

Unit = dict[str, list[tuple[str, str]]]


def parse_unit(text: str) -> Unit:
    """Sections -> (key, value) in order; keys may repeat (DeviceAllow=), as systemd allows."""
    out: Unit = {}
    section: str | None = None
    pending = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = pending + raw.strip()
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("["):
            assert line.endswith("]"), f"line {number}: bad section header {line!r}"
            section = line[1:-1]
            out.setdefault(section, [])
            continue
        assert section is not None, f"line {number}: setting before any [section]"
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", key.strip()), (
            f"line {number}: expected Key=value, got {line!r}")
        out[section].append((key.strip(), value.strip()))
    return out


def values(unit: Unit, section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def one(unit: Unit, section: str, key: str) -> str:
    found = values(unit, section, key)
    assert len(found) == 1, f"[{section}] {key}=: expected exactly one, got {found}"
    return found[0]


def seconds(span: str) -> float:
    """A systemd time span as these units write it ("30", "30s", "2min")."""
    match = re.fullmatch(r"(\d+)\s*(s|sec|min)?", span)
    assert match, f"unexpected time span {span!r}"
    return float(match.group(1)) * (60 if match.group(2) == "min" else 1)


def verify(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ANALYZE, "verify", "--man=no", "--generators=no", str(path)],
                          capture_output=True, text=True, timeout=120, check=False)


def runnable_copy(unit: Path, tmp_path: Path) -> Path:
    """The unit with ExecStart= pointing at this checkout's real `cunlink` executable."""
    assert CLI.exists(), f"{CLI} missing: install the project into the venv (./run.sh test)"
    copy = tmp_path / unit.name
    text = unit.read_text()
    assert text.count(INSTALLED_BINARY) == 1, "ExecStart= should be the only mention"
    copy.write_text(text.replace(INSTALLED_BINARY, str(CLI)))
    return copy


# --- systemd's own checks -------------------------------------------------------------------

@needs_analyze
@pytest.mark.parametrize("unit", [STATION, HUB], ids=lambda p: p.name)
def test_systemd_analyze_verify_is_clean(unit: Path, tmp_path: Path) -> None:
    result = verify(runnable_copy(unit, tmp_path))
    # verify exits 0 even for unknown keys (it only warns), so silence is the real check
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stderr


@needs_analyze
def test_verify_would_catch_a_mistake(tmp_path: Path) -> None:
    copy = runnable_copy(STATION, tmp_path)
    copy.write_text(copy.read_text().replace("ProtectHome=yes", "ProtectHomes=yes")
                    .replace("RestartSec=10", "RestartSec=ten"))
    result = verify(copy)
    assert "Unknown key 'ProtectHomes'" in result.stderr
    line = copy.read_text().splitlines().index("RestartSec=ten") + 1
    assert f"cunlink.service:{line}: Failed to parse sec value" in result.stderr


@needs_analyze
@pytest.mark.parametrize("unit", [STATION, HUB], ids=lambda p: p.name)
def test_verify_on_the_shipped_file_only_misses_the_installed_binary(unit: Path) -> None:
    result = verify(unit)
    if Path(INSTALLED_BINARY).exists():
        assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
    else:
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert lines == [f"{unit.name}: Command {INSTALLED_BINARY} is not executable: "
                         "No such file or directory"], lines


@needs_analyze
@pytest.mark.parametrize("unit", [STATION, HUB], ids=lambda p: p.name)
def test_security_exposure_stays_low(unit: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--no-pager",
         str(runnable_copy(unit, tmp_path))],
        capture_output=True, text=True, timeout=120, check=False)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    # 10 = no hardening at all; 1.6 / 1.4 when written (the rest: AF_INET, no PrivateNetwork)
    assert float(match.group(1)) <= 2.5, match.group(0)


# --- what the daemons rely on ---------------------------------------------------------------

def test_station_unit_has_the_required_settings() -> None:
    u = parse_unit(STATION.read_text())
    s = "Service"
    assert one(u, s, "Type") == "notify"  # systemd 252 (Debian 12) has no notify-reload
    assert one(u, s, "NotifyAccess") == "main"
    assert one(u, s, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one(u, s, "Restart") == "on-failure"
    assert seconds(one(u, s, "RestartSec")) >= 3  # never trips the default start limit
    assert one(u, "Unit", "StartLimitIntervalSec") == "0"
    # the daemon's own shutdown bound must fit inside systemd's, with room to close the store
    assert seconds(one(u, s, "TimeoutStopSec")) >= SHUTDOWN_BOUND_SECONDS + 5
    assert seconds(one(u, s, "WatchdogSec")) >= 30  # pinged every 15 s or more often
    assert one(u, s, "User") == one(u, s, "Group") == "cunlink"
    assert values(u, s, "DynamicUser") == []
    assert set(one(u, s, "SupplementaryGroups").split()) == {"dialout", "video", "lp"}
    # the directories systemd creates are the ones the configuration defaults point at
    state_dir = StationSettings(id="x").state_dir
    assert Path("/var/lib") / one(u, s, "StateDirectory") == state_dir
    assert (Path("/etc") / one(u, s, "ConfigurationDirectory")) in KeysSettings().dir.parents
    argv = shlex.split(one(u, s, "ExecStart"))
    assert argv == [INSTALLED_BINARY, "run", "--config", str(DEFAULT_STATION_CONFIG)]
    hardening = {
        "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
        "NoNewPrivileges": "yes", "DevicePolicy": "closed", "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes",
        "LockPersonality": "yes", "MemoryDenyWriteExecute": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "SystemCallArchitectures": "native",
    }
    for key, want in hardening.items():
        assert one(u, s, key) == want, key
    assert "@system-service" in values(u, s, "SystemCallFilter")
    allowed = {tuple(v.split()) for v in values(u, s, "DeviceAllow")}
    assert allowed == {("char-ttyUSB", "rw"), ("char-ttyACM", "rw"), ("char-ttyS", "rw"),
                       ("char-video4linux", "rw"), ("char-usb", "rw"), ("char-lp", "rw")}
    # the drivers behind those classes load before the device allow-list is computed
    wanted = set(" ".join(values(u, "Unit", "Wants")).split())
    after = set(" ".join(values(u, "Unit", "After")).split())
    modprobes = {"modprobe@usbserial.service", "modprobe@cdc_acm.service",
                 "modprobe@videodev.service"}
    assert modprobes <= wanted and modprobes <= after
    assert one(u, "Install", "WantedBy") == "multi-user.target"


def test_hub_unit_has_the_required_settings() -> None:
    u = parse_unit(HUB.read_text())
    s = "Service"
    assert one(u, s, "Type") == "notify"
    assert one(u, s, "NotifyAccess") == "main"
    assert one(u, s, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one(u, s, "Restart") == "on-failure"
    assert one(u, s, "User") == one(u, s, "Group") == "cunlink-hub"
    assert Path("/var/lib") / one(u, s, "StateDirectory") == HubSettings(id="x").state_dir
    assert (Path("/etc") / one(u, s, "ConfigurationDirectory")) in HubKeysSettings().dir.parents
    argv = shlex.split(one(u, s, "ExecStart"))
    assert argv[:4] == [INSTALLED_BINARY, "hub", "run", "--config"]
    assert argv[4] == "/etc/cunlink-hub/hub.toml"
    # a fixed worker name, so the MQTT client id survives restarts
    assert argv[5:] == ["--worker", "1"]
    assert one(u, s, "PrivateDevices") == "yes" and values(u, s, "DeviceAllow") == []
    assert values(u, s, "SupplementaryGroups") == []
    for key in ("ProtectSystem", "NoNewPrivileges", "MemoryDenyWriteExecute",
                "RestrictAddressFamilies", "SystemCallFilter", "WatchdogSec", "TimeoutStopSec"):
        assert values(u, s, key), key


@pytest.mark.parametrize("unit", [STATION, HUB], ids=lambda p: p.name)
def test_exec_start_arguments_are_accepted_by_the_cli(unit: Path, tmp_path: Path) -> None:
    """Run ExecStart= for real with a missing config: a config error, not a usage error."""
    argv = shlex.split(one(parse_unit(unit.read_text()), "Service", "ExecStart"))
    missing = tmp_path / "nowhere.toml"
    argv = [str(CLI)] + [str(missing) if a.endswith(".toml") else a for a in argv[1:]]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False,
                            env={**os.environ, "NOTIFY_SOCKET": ""})
    assert result.returncode == 1, result.stderr  # typer's usage errors exit 2
    assert "cannot read" in result.stderr and str(missing) in result.stderr, result.stderr


# --- the daemon's libraries inside the unit's sandbox ----------------------------------------
#
# No PID 1 here to start the unit for real, so the probe applies the same kernel mechanisms the
# unit asks systemd for, to itself: NoNewPrivileges= (PR_SET_NO_NEW_PRIVS),
# MemoryDenyWriteExecute= (the kernel's PR_SET_MDWE: no memory both writable and executable),
# and SystemCallFilter= (a libseccomp allow-list built from the unit's own filter lines and
# systemd-analyze's definition of each @group, refusing everything else with EPERM, as
# SystemCallErrorNumber=EPERM does). Then it imports the daemons and drives the native code
# they lean on: cryptography's Rust/OpenSSL, sqlite3 in WAL mode, threads, asyncio TCP and Unix
# sockets, a pseudo-terminal through pyserial, and a child process (the camera's ffmpeg).

PR_SET_NO_NEW_PRIVS = 38
PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_ACT_ERRNO_EPERM = 0x00050000 | errno.EPERM

SANDBOX_PROBE = f"""
import ctypes, json, mmap, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl({PR_SET_NO_NEW_PRIVS}, 1, 0, 0, 0) != 0:
    sys.exit("PR_SET_NO_NEW_PRIVS failed")
if libc.prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) != 0:
    sys.exit(77)
allowed = json.loads(sys.argv[1])
if allowed is not None:
    seccomp = ctypes.CDLL("libseccomp.so.2")
    seccomp.seccomp_init.restype = ctypes.c_void_p
    seccomp.seccomp_init.argtypes = [ctypes.c_uint32]
    seccomp.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                         ctypes.c_uint]
    seccomp.seccomp_load.argtypes = [ctypes.c_void_p]
    ctx = seccomp.seccomp_init({SCMP_ACT_ERRNO_EPERM})
    for name in allowed:
        nr = seccomp.seccomp_syscall_resolve_name(name.encode())
        if nr >= 0 and seccomp.seccomp_rule_add(ctx, {SCMP_ACT_ALLOW}, nr, 0) != 0:
            sys.exit("seccomp_rule_add failed for " + name)
    if seccomp.seccomp_load(ctx) != 0:
        sys.exit("seccomp_load failed")
    try:
        os.nice(1)  # setpriority is in @resources, which the unit takes away
    except PermissionError:
        pass
    else:
        sys.exit("the syscall filter is not in force: nice() was allowed")
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except PermissionError:
    pass
else:
    sys.exit("MDWE is not in force: a W+X mapping was allowed")

import asyncio, sqlite3, subprocess, tempfile, threading
import aiohttp, msgpack, serial, prometheus_client
import gateway.station, gateway.hubd, gateway.lifecycle, gateway.reload
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

k = Ed25519PrivateKey.generate()
k.public_key().verify(k.sign(b"case"), b"case")
a, b = X25519PrivateKey.generate(), X25519PrivateKey.generate()
assert a.exchange(b.public_key()) == b.exchange(a.public_key())
for aead in (AESGCM(bytes(32)), ChaCha20Poly1305(bytes(32))):
    assert aead.decrypt(bytes(12), aead.encrypt(bytes(12), b"page", None), None) == b"page"
with tempfile.TemporaryDirectory() as d:
    def write():
        db = sqlite3.connect(d + "/t.db")
        db.execute("pragma journal_mode=wal")
        db.execute("create table t (x)")
        db.executemany("insert into t values (?)", [(i,) for i in range(1000)])
        db.commit()
        db.close()
    t = threading.Thread(target=write)
    t.start(); t.join()
    db = sqlite3.connect(d + "/t.db")
    assert db.execute("select count(*) from t").fetchone() == (1000,)
    db.close()

    async def net():
        async def echo(reader, writer):
            writer.write(await reader.read(100)); await writer.drain(); writer.close()
        tcp = await asyncio.start_server(echo, "127.0.0.1", 0)
        unix = await asyncio.start_unix_server(echo, d + "/s.sock")
        port = tcp.sockets[0].getsockname()[1]
        for opener in (lambda: asyncio.open_connection("localhost", port),
                       lambda: asyncio.open_unix_connection(d + "/s.sock")):
            r, w = await opener()
            w.write(b"ping"); await w.drain()
            assert await r.read(100) == b"ping"
            w.close()
        tcp.close(); unix.close()
    asyncio.run(net())

master, slave = os.openpty()
port = serial.Serial(os.ttyname(slave), baudrate=115200, timeout=1)
os.write(master, bytes.fromhex("aaaaaa9669"))
assert port.read(5) == bytes.fromhex("aaaaaa9669")
port.close()
assert subprocess.run(["/bin/true"], timeout=30).returncode == 0
assert msgpack.unpackb(msgpack.packb([1, "x"])) == [1, "x"]
print("ok")
"""


def syscall_groups() -> dict[str, list[str]]:
    """Each @group's members as this machine's systemd defines them (may name other groups)."""
    text = subprocess.run([ANALYZE, "syscall-filter", "--no-pager"], capture_output=True,
                          text=True, timeout=60, check=True).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif line.startswith(" ") and current is not None:
            word = line.strip()
            if word and not word.startswith("#"):
                current.append(word)
        elif not line.strip():
            current = None
    return groups


def expand(names: list[str], groups: dict[str, list[str]]) -> set[str]:
    out: set[str] = set()
    for name in names:
        out |= expand(groups[name], groups) if name.startswith("@") else {name}
    return out


def unit_syscall_allow_list(unit: Path) -> list[str]:
    """What SystemCallFilter= lets through: allow lines, minus ~deny lines (systemd's rule)."""
    groups = syscall_groups()
    allowed: set[str] = set()
    denied: set[str] = set()
    for line in values(parse_unit(unit.read_text()), "Service", "SystemCallFilter"):
        negate = line.startswith("~")
        names = expand(line.lstrip("~").split(), groups)
        if negate:
            denied |= names
        else:
            allowed |= names
    assert allowed, "expected an allow-list (SystemCallFilter=@system-service)"
    return sorted((allowed | expand(["@default"], groups)) - denied)


@needs_analyze
@pytest.mark.parametrize("unit", [STATION, HUB], ids=lambda p: p.name)
def test_the_daemon_stack_runs_inside_the_units_sandbox(unit: Path) -> None:
    allowed: list[str] | None = unit_syscall_allow_list(unit)
    assert allowed is not None and "setpriority" not in allowed and "openat" in allowed
    try:
        ctypes.CDLL("libseccomp.so.2")
    except OSError:
        allowed = None  # MDWE and no_new_privs only; the filter is left to systemd
    result = subprocess.run([sys.executable, "-c", SANDBOX_PROBE, json.dumps(allowed)],
                            cwd=REPO, capture_output=True, text=True, timeout=180, check=False,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    if result.returncode == 77:
        pytest.skip(f"kernel {os.uname().release} has no PR_SET_MDWE (needs Linux 6.3)")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"
    if allowed is None:
        pytest.skip("libseccomp.so.2 missing: only MDWE and no_new_privs were checked")
