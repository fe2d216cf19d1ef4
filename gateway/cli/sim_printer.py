"""`cunlink sim printer`: an emulated ESC/POS receipt printer for tests and training."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from devices.emulators.printer import COMMANDS, PrinterEmulator
from devices.emulators.receipt_render import RenderError

HELP = (
    "Emulate a Chinese ESC/POS receipt printer on a pseudo-terminal and/or TCP. Each receipt "
    "is drawn to a PNG (text + QR code). Commands on stdin: "
    + ", ".join(COMMANDS) + ", unplug, replug, status, quit."
)


def register(app: typer.Typer) -> None:
    """Mount `sim printer` on the `sim` group."""

    @app.command("printer", help=HELP)
    def printer(
        pty: Annotated[bool, typer.Option("--pty", help="Serve on a pseudo-terminal.")] = False,
        tcp_port: Annotated[
            int | None,
            typer.Option("--tcp-port", help="Serve raw TCP on 127.0.0.1:N (9100 is the printer "
                         "default; 0 picks a free port)."),
        ] = None,
        link: Annotated[
            Path | None,
            typer.Option("--link", help="Stable symlink to the pseudo-terminal (it survives "
                         "unplug/replug, which gets a new /dev/pts path)."),
        ] = None,
        out: Annotated[
            Path, typer.Option("--out", help="Folder for the receipt PNGs and .txt sidecars.")
        ] = Path("sim-receipts"),
        encoding: Annotated[
            str, typer.Option("--encoding", help="The emulated firmware's Chinese encoding: "
                              "gb18030 or gb2312.")
        ] = "gb18030",
        width_chars: Annotated[
            int, typer.Option("--width-chars", help="Columns per line (58 mm: 32, 80 mm: 48).")
        ] = 32,
    ) -> None:
        if encoding not in ("gb18030", "gb2312"):
            raise typer.BadParameter(f"{encoding!r}: use gb18030 or gb2312",
                                     param_hint="--encoding")
        if tcp_port is not None and not 0 <= tcp_port < 65536:
            raise typer.BadParameter(f"{tcp_port} is not a TCP port", param_hint="--tcp-port")
        if not pty and tcp_port is None:
            pty, tcp_port = True, 9100  # nothing chosen: both, as a technician would want
        if link is not None and not pty:
            raise typer.BadParameter("--link needs --pty", param_hint="--link")
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        try:
            asyncio.run(_serve(pty=pty, tcp_port=tcp_port,
                               link=link.absolute() if link else None, out=out.absolute(),
                               encoding=encoding, width_chars=width_chars))
        except RenderError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        except OSError as exc:
            typer.echo(f"error: cannot start the printer emulator: {exc}", err=True)
            raise typer.Exit(1) from exc


def _stdin_lines(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
    # A daemon thread: a blocking readline must not hold the event loop or the exit.
    for line in sys.stdin:
        loop.call_soon_threadsafe(queue.put_nowait, line)
    loop.call_soon_threadsafe(queue.put_nowait, None)


async def _serve(*, pty: bool, tcp_port: int | None, link: Path | None, out: Path,
                 encoding: str, width_chars: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    async with PrinterEmulator(out_dir=out, encoding=encoding, width_chars=width_chars) as emu:
        if pty:
            path = await emu.serve_pty(link)
            typer.echo(f"serial printer on {path}; station config:\n"
                       f'  [devices.printer]\n  enabled = true\n  connection = "serial"\n'
                       f'  port = "{path}"\n  encoding = "{encoding}"')
        if tcp_port is not None:
            port = await emu.serve_tcp(tcp_port)
            typer.echo(f"TCP printer on 127.0.0.1:{port}; station config:\n"
                       f'  [devices.printer]\n  enabled = true\n  connection = "tcp"\n'
                       f'  host = "127.0.0.1"\n  tcp_port = {port}\n  encoding = "{encoding}"')
        typer.echo(f"receipts go to {out}; commands: {', '.join(COMMANDS)}, unplug, "
                   "replug, status, quit")
        threading.Thread(target=_stdin_lines, args=(loop, lines), daemon=True,
                         name="sim-printer-stdin").start()
        async with asyncio.TaskGroup() as group:
            tasks = (group.create_task(_announce(emu), name="sim-printer:announce"),
                     group.create_task(_commands(emu, lines, stop), name="sim-printer:commands"))
            await stop.wait()
            for task in tasks:
                task.cancel()


async def _announce(emu: PrinterEmulator) -> None:
    while True:
        receipt = await emu.next_receipt()
        typer.echo(f"receipt printed: {receipt.png}")


async def _commands(emu: PrinterEmulator, lines: asyncio.Queue[str | None],
                    stop: asyncio.Event) -> None:
    while (line := await lines.get()) is not None:
        word = line.strip().lower()
        if not word:
            continue
        if word == "quit":
            stop.set()
            return
        if word == "status":
            typer.echo(f"status: {', '.join(emu.status.problems) or 'ready'}; "
                       f"{len(emu.receipts)} printed, {emu.lost} lost")
        elif word == "unplug":
            await emu.unplug()
            typer.echo("unplugged")
        elif word == "replug":
            await emu.replug()
            typer.echo("plugged in again")
        else:
            with contextlib.suppress(ValueError):
                typer.echo(emu.command(word))
                continue
            typer.echo(f"unknown command {word!r}; try: {', '.join(COMMANDS)}, unplug, replug, "
                       "status, quit")
    # stdin closed (run in the background): keep printing until a signal arrives.
