"""The udev rules, checked line by line (`udevadm verify` needs systemd 254; Debian 12 has 252).

The parser follows udev(7): a rule is one logical line of comma-separated items, each
KEY or KEY{attr}, an operator, and a double-quoted value. What it checks beyond syntax is what
makes the rules do their job: names added with SYMLINK+=, the groups and mode the daemon's
unit relies on, lower-case hex ids (sysfs spells them so), and the names station.toml expects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.config.station import load_station_config
from tests.systemd.test_units import STATION, one, parse_unit

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "config" / "udev" / "99-cunlink.rules"
LOCAL_EXAMPLE = REPO / "config" / "udev" / "98-cunlink-local.rules.example"

MATCH_ONLY = {"ACTION", "DEVPATH", "KERNEL", "KERNELS", "SUBSYSTEM", "SUBSYSTEMS", "DRIVER",
              "DRIVERS", "ATTRS", "TAGS", "TEST", "PROGRAM", "RESULT", "CONST"}
ASSIGN_ONLY = {"OWNER", "GROUP", "MODE", "SECLABEL", "RUN", "LABEL", "GOTO", "IMPORT",
               "OPTIONS"}
BOTH = {"NAME", "SYMLINK", "ATTR", "SYSCTL", "ENV", "TAG"}
WITH_ATTR = {"ATTR", "ATTRS", "SYSCTL", "ENV", "CONST", "TEST", "IMPORT", "RUN", "SECLABEL"}
MATCH_OPS = {"==", "!="}
ASSIGN_OPS = {"=", "+=", "-=", ":="}

ITEM = re.compile(r'\s*(?P<key>[A-Z_]+)(?:\{(?P<attr>[^{}]+)\})?\s*(?P<op>==|!=|\+=|-=|:=|=)'
                  r'\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*')


@dataclass(frozen=True, slots=True)
class Item:
    key: str
    attr: str | None
    op: str
    value: str

    @property
    def is_match(self) -> bool:
        return self.op in MATCH_OPS


class RuleError(ValueError):
    pass


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, rule text) with comments and blank lines dropped, \\ joined."""
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        out.append((start, pending + line))
        pending = ""
    if pending:
        raise RuleError(f"line {start}: file ends inside a continued line")
    return out


def parse_rule(text: str, where: str) -> list[Item]:
    items: list[Item] = []
    pos = 0
    while pos < len(text):
        m = ITEM.match(text, pos)
        if m is None:
            raise RuleError(f"{where}: cannot parse from {text[pos:pos + 40]!r}")
        key, attr, op = m.group("key"), m.group("attr"), m.group("op")
        if key not in MATCH_ONLY | ASSIGN_ONLY | BOTH:
            raise RuleError(f"{where}: unknown key {key}")
        if (attr is not None) != (key in WITH_ATTR) and key not in {"IMPORT", "RUN", "TEST"}:
            raise RuleError(f"{where}: {key} {'needs' if attr is None else 'takes no'} {{attr}}")
        if key in MATCH_ONLY and op not in MATCH_OPS:
            raise RuleError(f"{where}: {key} can only be compared (== or !=), got {op}")
        if key in ASSIGN_ONLY and op not in ASSIGN_OPS:
            raise RuleError(f"{where}: {key} can only be assigned, got {op}")
        items.append(Item(key, attr, op, m.group("value")))
        pos = m.end()
        if text.startswith(",", pos):
            pos += 1
        elif pos < len(text):
            raise RuleError(f"{where}: missing comma before {text[pos:pos + 40]!r}")
    if not any(i.is_match for i in items):
        raise RuleError(f"{where}: no match key; this rule would apply to every device")
    if not any(not i.is_match for i in items):
        raise RuleError(f"{where}: nothing assigned; the rule does nothing")
    for item in items:
        if item.key == "SYMLINK" and item.op in {"=", ":="}:
            raise RuleError(f"{where}: SYMLINK{item.op} drops other rules' names; use +=")
        if (item.key == "ATTRS" and item.attr in {"idVendor", "idProduct"}
                and not re.fullmatch(r"[0-9a-f]{4}", item.value)):
            raise RuleError(f"{where}: {item.attr} must be 4 lower-case hex digits "
                            f"(as in sysfs), got {item.value!r}")
    return items


def parse_file(path: Path) -> list[list[Item]]:
    return [parse_rule(text, f"{path.name}:{n}")
            for n, text in logical_lines(path.read_text(encoding="utf-8"))]


def test_every_rule_line_parses() -> None:
    assert len(parse_file(RULES)) == 9
    assert len(parse_file(LOCAL_EXAMPLE)) == 6
    # rules shipped commented out, for the technician to enable, must work when uncommented
    commented = [line[1:] for line in RULES.read_text().splitlines()
                 if line.startswith("#SUBSYSTEM")]
    assert len(commented) == 1
    for text in commented:
        parse_rule(text, "commented example")


@pytest.mark.parametrize("bad, why", [
    ('SUBSYSTEM=="tty", SYMLINK="cunlink-idcard"', "use +="),
    ('SUBSYSTEM=="tty" SYMLINK+="x"', "missing comma"),
    ('SUBSYSTEM=="tty", SYMLNK+="x"', "unknown key SYMLNK"),
    ('SUBSYSTEM=="tty", GROUP=="dialout"', "GROUP can only be assigned"),
    ('SUBSYSTEM="tty", GROUP="dialout"', "SUBSYSTEM can only be compared"),
    ('SUBSYSTEM=="tty", ATTRS{idVendor}=="1A86", GROUP="dialout"', "lower-case hex"),
    ("SUBSYSTEM=='tty', GROUP=\"dialout\"", "cannot parse"),
    ('GROUP="dialout"', "no match key"),
    ('SUBSYSTEM=="tty", ENV=="x", GROUP="dialout"', "ENV needs {attr}"),
    ('SUBSYSTEM=="tty", KERNEL=="ttyS0"', "nothing assigned"),
])
def test_the_parser_rejects_broken_rules(bad: str, why: str) -> None:
    with pytest.raises(RuleError, match=re.escape(why)):
        parse_rule(bad, "t")


def test_continued_lines_are_joined() -> None:
    text = '# c\nSUBSYSTEM=="tty", \\\n  GROUP="dialout"\n'
    assert logical_lines(text) == [(2, 'SUBSYSTEM=="tty", GROUP="dialout"')]
    with pytest.raises(RuleError, match="continued"):
        logical_lines('SUBSYSTEM=="tty", \\\n')


def symlink_rules(rules: list[list[Item]]) -> dict[str, list[Item]]:
    out: dict[str, list[Item]] = {}
    for rule in rules:
        for item in rule:
            if item.key == "SYMLINK":
                out.setdefault(item.value, []).extend(rule)
    return out


def test_names_groups_and_modes_are_what_the_station_expects(tmp_path: Path) -> None:
    rules = parse_file(RULES)
    by_name = symlink_rules(rules)
    assert set(by_name) == {"cunlink-idcard", "cunlink-printer", "cunlink-camera"}
    # the names are the defaults in the example configuration
    example = (REPO / "config" / "station.example.toml").read_text(encoding="utf-8")
    (tmp_path / "station.toml").write_text(example, encoding="utf-8")
    cfg = load_station_config(tmp_path / "station.toml", env={})
    devices = cfg.devices
    assert {devices.idcard.port, devices.printer.port, devices.camera.device} == {
        Path("/dev") / name for name in by_name}
    # the groups are exactly the unit's supplementary groups, and never world access
    unit_groups = set(one(parse_unit(STATION.read_text()), "Service",
                          "SupplementaryGroups").split())
    groups = {i.value for rule in rules for i in rule if i.key == "GROUP"}
    assert groups == unit_groups
    for rule in rules:
        if any(i.key == "SYMLINK" for i in rule):
            assert {i.value for i in rule if i.key == "MODE"} == {"0660"}
            assert len([i for i in rule if i.key == "GROUP"]) == 1
    serial = {i.value for i in by_name["cunlink-idcard"] if i.key == "GROUP"}
    camera = {i.value for i in by_name["cunlink-camera"] if i.key == "GROUP"}
    assert serial == {"dialout"} and camera == {"video"}


def test_roles_are_only_given_to_devices_without_one() -> None:
    # a role set in 98-cunlink-local.rules must win: every default role assignment checks first
    for rule in parse_file(RULES):
        sets_role = [i for i in rule if i.key == "ENV" and i.attr == "CUNLINK_ROLE"
                     and not i.is_match]
        if sets_role:
            assert Item("ENV", "CUNLINK_ROLE", "==", "") in rule, rule
            assert sets_role[0].value in {"idcard", "printer", "camera"}


def test_default_reader_ids_are_the_common_usb_serial_bridges() -> None:
    ids = set()
    for rule in parse_file(RULES):
        attrs = {i.attr: i.value for i in rule if i.key == "ATTRS"}
        if "idVendor" in attrs:
            ids.add((attrs["idVendor"], attrs["idProduct"]))
    assert ids == {("1a86", "7523"), ("1a86", "5523"), ("067b", "2303"), ("10c4", "ea60")}
