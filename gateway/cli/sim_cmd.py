"""`cunlink sim ...`: device emulators for tests and for technicians' training."""

from __future__ import annotations

import typer

from gateway.cli import sim_camera, sim_idcard, sim_printer

app = typer.Typer(no_args_is_help=True, help="Emulated devices speaking the real protocols.")
sim_idcard.register(app)
sim_printer.register(app)
sim_camera.register(app)
