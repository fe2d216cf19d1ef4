"""docs/openapi.yaml and the aiohttp router describe the same API, and the same error codes.

Read line by line (no YAML library in the project): the file keeps paths at two spaces of
indentation under `paths:`, methods at four, and the ErrorCode enum as a block list.
"""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

from gateway.api import create_app
from gateway.api.errors import CATALOG
from gateway.config.station import StationConfig
from gateway.runtime import StationRuntime
from tests.gateway.api.conftest import runtime_for

SPEC = Path(__file__).resolve().parents[3] / "docs" / "openapi.yaml"
METHODS = ("get", "post", "put", "patch", "delete")


def spec_routes(text: str) -> set[tuple[str, str]]:
    routes: set[tuple[str, str]] = set()
    in_paths, path = False, ""
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):
            in_paths = line.rstrip() == "paths:"
            continue
        if not in_paths:
            continue
        if m := re.fullmatch(r"  (/\S*):", line.rstrip()):
            path = m.group(1)
        elif (m := re.fullmatch(r"    ([a-z]+):", line.rstrip())) and m.group(1) in METHODS:
            routes.add((m.group(1).upper(), "/api/v1" + path))
    return routes


def app_routes(app: web.Application) -> set[tuple[str, str]]:
    out = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter", "")
        out.add((route.method, path))
    return out


def spec_error_codes(text: str) -> set[str]:
    block = text.split("    ErrorCode:", 1)[1].split("enum:", 1)[1]
    codes = set()
    for line in block.splitlines()[1:]:
        if m := re.fullmatch(r"        - ([a-z_]+)", line):
            codes.add(m.group(1))
        elif line.strip():
            break
    return codes


def test_every_route_is_documented_and_every_documented_route_exists(
        cfg: StationConfig) -> None:
    runtime: StationRuntime = runtime_for(cfg)  # not entered: the router needs no store
    app = create_app(runtime, cfg.api)
    text = SPEC.read_text(encoding="utf-8")
    documented = spec_routes(text)
    served = app_routes(app)
    assert len(served) == 10
    assert served == documented


def test_every_error_code_is_documented() -> None:
    assert spec_error_codes(SPEC.read_text(encoding="utf-8")) == set(CATALOG)


def test_the_spec_is_openapi_3_1() -> None:
    text = SPEC.read_text(encoding="utf-8")
    assert text.startswith("openapi: 3.1.0\n")
    # every $ref points at a component that exists
    for ref in set(re.findall(r'\$ref: "#/components/(\w+)/(\w+)"', text)):
        section, name = ref
        assert re.search(rf"^  {section}:\n(?:.*\n)*?^    {name}:", text, re.M), ref
