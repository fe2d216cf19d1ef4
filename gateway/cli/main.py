"""The `cunlink` command: one typer app that mounts each command group from its own module.

Only this layer exits the process; everything below it raises.
"""

from __future__ import annotations

import typer

from gateway.cli import (
    cases_cmd,
    config_cmd,
    devices_cmd,
    hub_cmd,
    keys_cmd,
    outbox_cmd,
    pki_cmd,
    sim_cmd,
    station_cmd,
)

app = typer.Typer(
    name="cunlink",
    help="cunlink: village service station <-> county hub, over slow and broken links.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(keys_cmd.app, name="keys")
app.add_typer(config_cmd.app, name="config")
app.add_typer(cases_cmd.app, name="cases")
app.add_typer(outbox_cmd.app, name="outbox")
app.add_typer(hub_cmd.app, name="hub")
app.add_typer(pki_cmd.app, name="pki")
app.add_typer(devices_cmd.app, name="devices")
app.add_typer(sim_cmd.app, name="sim")
station_cmd.register(app)


def main() -> None:
    app()
