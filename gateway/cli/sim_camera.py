"""`cunlink sim camera`: an emulated document camera serving stills over HTTP.

It prints the URL to put in the station config, then takes one command a line on stdin
(``unplug``, ``replug``, ``fail [N]``, ``status``, ``quit``) and runs until Ctrl-C or ``quit``.
With stdin closed (run in the background), it keeps serving until it is signalled.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from typing import Annotated

import typer

from devices.emulators.camera import CameraEmulator, PageSpec

DEFAULT_PORT = 19180
COMMANDS = "page, unplug, replug, fail [N], status, quit"


def register(app: typer.Typer) -> None:
    """Mount `sim camera` on the `sim` group."""

    @app.command(
        "camera",
        help="Emulate a document camera (高拍仪) that serves A4 page stills over HTTP. "
        f"Commands on stdin: {COMMANDS}.",
    )
    def camera(
        port: Annotated[
            int, typer.Option("--port", help="TCP port on --host; 0 picks a free one.")
        ] = DEFAULT_PORT,
        host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
        width: Annotated[int, typer.Option("--width", help="Still width in pixels.")] = 3264,
        height: Annotated[int, typer.Option("--height", help="Still height in pixels.")] = 2448,
        orientation: Annotated[
            int,
            typer.Option("--orientation", help="EXIF orientation tag 1..8 (6: stored turned 90°)."),
        ] = 1,
        mjpeg: Annotated[
            bool,
            typer.Option("--mjpeg", help="Serve frames without Huffman tables, as UVC MJPEG."),
        ] = False,
        quality: Annotated[int, typer.Option("--quality", help="The camera's JPEG quality.")] = 92,
    ) -> None:
        if not 0 <= port < 65536:
            raise typer.BadParameter(f"{port} is not a TCP port", param_hint="--port")
        try:
            spec = PageSpec(
                width=width, height=height, orientation=orientation, quality=quality, mjpeg=mjpeg
            )
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
        try:
            asyncio.run(_serve(CameraEmulator(spec, host=host, port=port)))
        except OSError as exc:
            typer.echo(f"error: cannot start the camera emulator on {host}:{port}: {exc}", err=True)
            raise typer.Exit(1) from exc


def _stdin_lines(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
    # A daemon thread: a blocking readline must not hold the event loop or the exit.
    for line in sys.stdin:
        loop.call_soon_threadsafe(queue.put_nowait, line)
    loop.call_soon_threadsafe(queue.put_nowait, None)


async def _serve(emu: CameraEmulator) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    async with emu:
        s = emu.spec
        kind = "MJPEG frames without Huffman tables" if s.mjpeg else "JPEG stills"
        typer.echo(
            f"camera on {emu.url}: {s.width}x{s.height} {kind}, {len(emu.jpeg):,} bytes, "
            f"EXIF orientation {s.orientation}; station config:\n"
            f'  [devices.camera]\n  enabled = true\n  source = "http"\n  url = "{emu.url}"\n'
            f"commands: {COMMANDS}"
        )
        threading.Thread(
            target=_stdin_lines, args=(loop, lines), daemon=True, name="sim-camera-stdin"
        ).start()
        async with asyncio.TaskGroup() as group:
            commands = group.create_task(_commands(emu, lines, stop), name="sim-camera:commands")
            await stop.wait()
            commands.cancel()


async def _commands(
    emu: CameraEmulator, lines: asyncio.Queue[str | None], stop: asyncio.Event
) -> None:
    while (line := await lines.get()) is not None:
        words = line.split()
        match [w.lower() for w in words]:
            case []:
                continue
            case ["quit"]:
                stop.set()
                return
            case ["page"]:
                seed = await emu.turn_page()
                typer.echo(f"a new page is under the camera (page seed {seed})")
            case ["unplug"]:
                await emu.stop()
                typer.echo("unplugged: requests are refused until replug")
            case ["replug"]:
                await emu.start()
                typer.echo(f"plugged in again on {emu.url}")
            case ["fail"] | ["fail", _] if len(words) == 1 or words[1].isdigit():
                count = int(words[1]) if len(words) == 2 else 1
                emu.fail_next(count)
                typer.echo(f"the next {count} snapshot request(s) get HTTP 503")
            case ["status"]:
                state = "serving" if emu.running else "unplugged"
                typer.echo(f"status: {state}; {emu.requests} snapshot request(s) so far")
            case _:
                typer.echo(f"unknown command {line.strip()!r}; try: {COMMANDS}")
    # stdin closed (run in the background): keep serving until a signal arrives.
