"""The `cunlink` command: one typer app that mounts each command group from its own module.

Groups are imported only when they are used: a technician's `cunlink outbox stats` must not
pay for importing the emulators, the hub and the PKI code (about a second on a station box).
Only this layer exits the process; everything below it raises.
"""

from __future__ import annotations

import functools
import importlib
import sys

import typer

#: command group -> module exposing `app` (a group) or `register(app)` (top-level commands)
GROUPS = {
    "keys": "gateway.cli.keys_cmd",
    "config": "gateway.cli.config_cmd",
    "cases": "gateway.cli.cases_cmd",
    "outbox": "gateway.cli.outbox_cmd",
    "hub": "gateway.cli.hub_cmd",
    "pki": "gateway.cli.pki_cmd",
    "devices": "gateway.cli.devices_cmd",
    "sim": "gateway.cli.sim_cmd",
}
#: top-level command -> module exposing `register(app)`
COMMANDS = {
    "init": "gateway.cli.init_cmd",
    "status": "gateway.cli.status_cmd",
    "doctor": "gateway.cli.doctor_cmd",
}
TOP_LEVEL = "gateway.cli.station_cmd"  # run, demo


def build_app(wanted: str | None = None) -> typer.Typer:
    app = typer.Typer(
        name="cunlink",
        help="cunlink: village service station <-> county hub, over slow and broken links.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    # A callback keeps typer from collapsing an app of one command into that command, which
    # would make `cunlink status --json` read "status" as an extra argument.
    app.callback()(_root)
    for name, module in GROUPS.items():
        if wanted in (None, name):
            app.add_typer(importlib.import_module(module).app, name=name)
    for name, module in COMMANDS.items():
        if wanted in (None, name):
            importlib.import_module(module).register(app)
    if wanted is None or (wanted not in GROUPS and wanted not in COMMANDS):
        importlib.import_module(TOP_LEVEL).register(app)
    return app


def _root() -> None:
    """cunlink: village service station <-> county hub, over slow and broken links."""


def main() -> None:
    first = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    build_app(first if first in GROUPS or first in COMMANDS else None)()
@functools.cache
def _full_app() -> typer.Typer:
    return build_app()


def __getattr__(name: str) -> typer.Typer:
    """`from gateway.cli.main import app`: the full app (tests' CliRunner), built on first use
    so that `cunlink status` does not import every group just by importing this module."""
    if name == "app":
        return _full_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
