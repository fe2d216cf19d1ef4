"""`cunlink sim idcard`: an emulated ID-card reader on a pseudo-terminal, for tests and training.

It prints the port to put in the station config, then takes one command a line on stdin
(``insert [type]``, ``remove``, ``fault NAME [COUNT]``, ``fault none``, ``unplug``, ``replug``,
``status``, ``help``, ``quit``) and runs until Ctrl-C or ``quit``. With stdin closed (run in the
background), it keeps serving until it is signalled.
"""

from __future__ import annotations

import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TextIO

import typer

from devices.emulators.idcard import EmulatorSettings, Fault, IdCardEmulator
from devices.emulators.sample_cards import SAMPLE_CARDS

DEFAULT_LINK = Path("/tmp/cunlink-sim-idcard")
_CARDS = ", ".join(SAMPLE_CARDS)
_FAULTS = ", ".join(f.value for f in Fault)
HELP = f"""commands (one a line):
  insert [CARD]        place a card ({_CARDS}; default resident)
  remove               take the card away
  fault NAME [COUNT]   inject a fault ({_FAULTS}) for COUNT replies, or until cleared
  fault none           clear every fault
  unplug / replug      pull the reader's cable out / put it back
  status               what is on the reader
  quit                 stop the emulator"""


class ConsoleError(ValueError):
    """A console line that is not a command; the message says what would be."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleCommand:
    verb: str
    card: str | None = None
    fault: Fault | None = None
    count: int | None = None


_VERBS = ("insert", "remove", "fault", "unplug", "replug", "status", "help", "quit")


def parse_console(line: str) -> ConsoleCommand | None:
    """One stdin line as a command; None for a blank line. Raises ConsoleError."""
    words = line.split()
    if not words:
        return None
    verb, args = words[0].lower(), words[1:]
    if verb not in _VERBS:
        raise ConsoleError(f"unknown command {verb!r}; type help")
    match verb, args:
        case "insert", []:
            return ConsoleCommand(verb=verb, card="resident")
        case "insert", [card] if card in SAMPLE_CARDS:
            return ConsoleCommand(verb=verb, card=card)
        case "insert", _:
            raise ConsoleError(f"insert takes one of: {_CARDS}")
        case "fault", ["none"]:
            return ConsoleCommand(verb=verb)
        case "fault", [name] | [name, _] if name in {f.value for f in Fault}:
            count = int(args[1]) if len(args) == 2 and args[1].isdigit() else None
            if len(args) == 2 and (count is None or count < 1):
                raise ConsoleError("a fault COUNT is a whole number >= 1")
            return ConsoleCommand(verb=verb, fault=Fault(name), count=count)
        case "fault", _:
            raise ConsoleError(f"fault takes one of: {_FAULTS}, none; then an optional count")
        case _, []:
            return ConsoleCommand(verb=verb)
        case _:
            raise ConsoleError(f"{verb} takes no arguments")


def _status(emu: IdCardEmulator) -> str:
    card = emu.card
    faults = ", ".join(
        f"{f.value}" + ("" if n is None else f" x{n}") for f, n in emu.faults.items()
    )
    return (
        f"{'plugged in' if emu.plugged else 'UNPLUGGED'} at {emu.path}"
        f"{f' (-> {emu.tty_path})' if emu.plugged and emu.tty_path != emu.path else ''}, "
        f"{emu.baud} baud; card: {card.key if card else 'none'}; faults: {faults or 'none'}; "
        f"{emu.commands} commands answered"
    )


def run_console(emu: IdCardEmulator, stdin: TextIO, out: TextIO) -> bool:
    """Apply stdin commands until quit (True) or end of input (False)."""
    for line in stdin:
        try:
            command = parse_console(line)
        except ConsoleError as exc:
            print(f"? {exc}", file=out, flush=True)
            continue
        if command is None:
            continue
        match command.verb:
            case "insert":
                emu.insert(command.card or "resident")
            case "remove":
                emu.remove()
            case "fault" if command.fault is None:
                emu.clear_faults()
            case "fault":
                assert command.fault is not None
                emu.set_fault(command.fault, command.count)
            case "unplug":
                emu.unplug()
            case "replug":
                emu.replug()
            case "help":
                print(HELP, file=out, flush=True)
                continue
            case "quit":
                return True
        print(f"ok: {_status(emu)}", file=out, flush=True)
    return False


def sim_idcard(
    card: Annotated[
        str, typer.Option(help=f"card on the reader at start: {_CARDS}, or none")
    ] = "resident",
    link: Annotated[
        Path, typer.Option(help="stable symlink to the pseudo-terminal (like a udev rule)")
    ] = DEFAULT_LINK,
    no_link: Annotated[bool, typer.Option("--no-link", help="do not create the symlink")] = False,
    baud: Annotated[int, typer.Option(help="the reader's line speed")] = 115200,
    fault: Annotated[
        list[Fault] | None, typer.Option(help="start with this fault on (repeatable)")
    ] = None,
    pace: Annotated[
        bool, typer.Option(help="send replies no faster than the baud rate allows (8N1)")
    ] = True,
) -> None:
    """Emulate an ID-card reader (SAM protocol) on a pseudo-terminal."""
    if card != "none" and card not in SAMPLE_CARDS:
        raise typer.BadParameter(f"choose one of {_CARDS}, or none", param_hint="--card")
    try:
        settings = EmulatorSettings(
            baud=baud,
            link=None if no_link else link,
            pace=pace,
            card=None if card == "none" else card,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    with IdCardEmulator(settings) as emu:
        for f in fault or ():
            emu.set_fault(f)
        print(f"ID-card reader emulator: {_status(emu)}; pacing {'on' if pace else 'off'}")
        print("Put this in the station config:")
        print("  [devices.idcard]")
        print(f'  port = "{emu.path}"')
        print("Type help for commands; Ctrl-C stops.", flush=True)
        # SIGTERM (systemd, a test harness) stops it like Ctrl-C, so the link is removed.
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            if not run_console(emu, sys.stdin, sys.stdout):
                threading.Event().wait()  # stdin closed: serve until signalled
        except KeyboardInterrupt:
            print("stopped", flush=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def register(app: typer.Typer) -> None:
    """Mount `sim idcard` on the `sim` group."""
    app.command("idcard")(sim_idcard)
