"""The shipped example files are valid and complete, and the docs describe every key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from gateway.config import HubConfig, StationConfig, load_hub_config, load_station_config
from gateway.config.fields import meta_of, walk

ROOT = Path(__file__).resolve().parents[2]
STATION_EXAMPLE = ROOT / "config" / "station.example.toml"
HUB_EXAMPLE = ROOT / "config" / "hub.example.toml"
DOCS = ROOT / "docs" / "configuration.md"


def test_station_example_is_valid() -> None:
    cfg = load_station_config(STATION_EXAMPLE, env={})
    assert cfg.mqtt.tls is True
    assert cfg == load_station_config(STATION_EXAMPLE, env={})


def test_hub_example_is_valid() -> None:
    cfg = load_hub_config(HUB_EXAMPLE, env={})
    assert cfg.store.backend == "sqlite"


@pytest.mark.parametrize(
    ("path", "schema"), [(STATION_EXAMPLE, StationConfig), (HUB_EXAMPLE, HubConfig)]
)
def test_example_sets_every_key_with_a_comment(path: Path, schema: type) -> None:
    text = path.read_text(encoding="utf-8")
    data = tomllib.loads(text)
    lines = text.splitlines()
    for table, f in walk(schema):
        section = data
        for part in table:
            section = section[part]
        if meta_of(f).kind == "tables":
            # Tokens are secrets: the example shows a commented block instead of a real one.
            assert f"# [[{'.'.join((*table, f.name))}]]" in text
            continue
        assert f.name in section, f"{path.name}: [{'.'.join(table)}] {f.name} is not set"
        # The line that sets it follows a comment explaining it.
        index = next(i for i, line in enumerate(lines) if _sets(line, f.name, table, lines, i))
        assert lines[index - 1].startswith("#"), f"{f.name} has no comment above it"


def _sets(line: str, key: str, table: tuple[str, ...], lines: list[str], index: int) -> bool:
    if not re.match(rf"{re.escape(key)}\s*=", line):
        return False
    header = next(h for h in reversed(lines[:index]) if re.match(r"\[[a-z.]+\]$", h))
    return header == f"[{'.'.join(table)}]"


def _doc_section(title: str) -> str:
    text = DOCS.read_text(encoding="utf-8")
    start = text.index(f"### {title}\n")
    end = text.find("\n### ", start + 1)
    return text[start:] if end == -1 else text[start:end]


@pytest.mark.parametrize(("schema", "role"), [(StationConfig, "Station"), (HubConfig, "Hub")])
def test_docs_describe_every_key(schema: type, role: str) -> None:
    for table, f in walk(schema):
        body = _doc_section(f"{role}: `[{'.'.join(table)}]`")
        assert f"`{f.name}`" in body, f"docs: {role} [{'.'.join(table)}] {f.name} missing"


def test_docs_state_the_env_rule_and_the_error_format() -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert "CUNLINK__<SECTION>__<KEY>" in text
    assert 'station.toml: [mqtt] keepalive: expected an integer from 5 to 600, got "abc"' in text
