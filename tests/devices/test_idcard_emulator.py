"""The emulated ID-card reader at the byte level (a raw tty, no driver), and `cunlink sim idcard`
as a real process driven through its stdin."""

from __future__ import annotations

import asyncio
import os
import select
import sys
import termios
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from devices.emulators.idcard import EmulatorError, EmulatorSettings, IdCardEmulator
from devices.emulators.sample_cards import SAMPLE_CARDS
from devices.idcard import IdCardReader, NoCard, ReaderSettings
from protocols.idcard import (
    FIND_CARD,
    NEED_DATA,
    PREAMBLE,
    READ_ADDITIONAL_ADDRESS,
    READ_TEXT_PHOTO,
    RESET_SAM,
    SAM_ID,
    SAM_STATUS,
    SELECT_CARD,
    Command,
    FrameDecoder,
    Response,
    Status,
    decode_response,
    decode_sam_id,
    encode_command,
    parse_read,
    set_baud,
)

SPEEDS = {115200: termios.B115200, 9600: termios.B9600}


class RawPort:
    """The slave side opened by hand, as a minimal host."""

    def __init__(self, path: str, baud: int = 115200) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.fd)
        self.set_baud(baud)

    def set_baud(self, baud: int) -> None:
        attrs = termios.tcgetattr(self.fd)
        attrs[4] = attrs[5] = SPEEDS[baud]
        termios.tcsetattr(self.fd, termios.TCSANOW, attrs)

    def ask(self, wire: Command | bytes, within: float = 1.0) -> Response | None:
        os.write(self.fd, encode_command(wire) if isinstance(wire, Command) else wire)
        decoder = FrameDecoder()
        while select.select([self.fd], [], [], within)[0]:
            decoder.feed(os.read(self.fd, 4096))
            if (frame := decoder.next_frame()) is not NEED_DATA:
                return decode_response(frame)
        return None

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def emulator() -> Iterator[IdCardEmulator]:
    with IdCardEmulator(EmulatorSettings(card="resident")) as emu:
        yield emu


@pytest.fixture
def port(emulator: IdCardEmulator) -> Iterator[RawPort]:
    raw = RawPort(emulator.path)
    yield raw
    raw.close()


def test_answers_every_command_like_a_reader(emulator: IdCardEmulator, port: RawPort) -> None:
    assert port.ask(RESET_SAM) == Response(sw3=Status.OK)
    assert port.ask(SAM_STATUS) == Response(sw3=Status.OK)
    sam = port.ask(SAM_ID)
    assert sam is not None and decode_sam_id(sam.data).startswith("05.01-")
    assert port.ask(READ_TEXT_PHOTO) == Response(sw3=Status.READ_FAILED)  # not selected yet
    found = port.ask(FIND_CARD)
    assert found == Response(sw3=Status.CARD_FOUND, data=bytes(4))
    selected = port.ask(SELECT_CARD)
    assert selected is not None and selected.status is Status.OK and len(selected.data) == 8
    read = port.ask(READ_TEXT_PHOTO)
    assert read is not None and parse_read(read) == SAMPLE_CARDS["resident"].expected()
    assert port.ask(READ_ADDITIONAL_ADDRESS) == Response(sw3=Status.ITEM_EMPTY)
    assert port.ask(Command(cmd=0x77, para=0x01)) == Response(sw3=Status.BAD_COMMAND)
    emulator.remove()
    assert port.ask(FIND_CARD) == Response(sw3=Status.NO_CARD)
    assert port.ask(SELECT_CARD) == Response(sw3=Status.SELECT_FAILED)
    assert emulator.commands == 11


def test_bad_frames_from_the_host_get_the_readers_error_codes(port: RawPort) -> None:
    bad_checksum = encode_command(FIND_CARD)[:-1] + b"\x00"
    assert port.ask(bad_checksum) == Response(sw3=Status.CHECKSUM_ERROR)
    assert port.ask(PREAMBLE + b"\xff\xff") == Response(sw3=Status.LENGTH_ERROR)
    assert port.ask(FIND_CARD) == Response(sw3=Status.CARD_FOUND, data=bytes(4))


def test_set_baud_answers_at_the_old_speed_then_switches(
    emulator: IdCardEmulator, port: RawPort
) -> None:
    assert port.ask(set_baud(9600)) == Response(sw3=Status.OK)
    assert emulator.baud == 9600
    assert port.ask(SAM_STATUS, within=0.2) is None  # still at 115200: the reader hears noise
    assert emulator.ignored_bytes > 0
    port.set_baud(9600)
    assert port.ask(SAM_STATUS) == Response(sw3=Status.OK)


def test_link_follows_replug_and_is_removed_on_close(tmp_path: Path) -> None:
    link = tmp_path / "reader"
    with IdCardEmulator(EmulatorSettings(link=link)) as emu:
        assert emu.path == str(link) and os.readlink(link) == emu.tty_path
        emu.unplug()
        assert not link.exists() and not emu.plugged
        emu.replug()
        assert os.readlink(link) == emu.tty_path
        raw = RawPort(str(link))
        assert raw.ask(SAM_STATUS) == Response(sw3=Status.OK)
        raw.close()
    assert not link.exists()
    with pytest.raises(EmulatorError, match="closed"):
        emu.start()


def test_refuses_to_replace_a_real_file_with_its_link(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("not a link")
    with pytest.raises(EmulatorError, match="real file"):
        IdCardEmulator(EmulatorSettings(link=taken)).start()
    assert taken.read_text() == "not a link"


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="4800"):
        EmulatorSettings(baud=4800)
    with pytest.raises(ValueError, match="resident, hkmotw"):
        EmulatorSettings(card="passport")


async def _line_with(stream: asyncio.StreamReader, text: str) -> str:
    for _ in range(50):
        line = (await asyncio.wait_for(stream.readline(), 10.0)).decode()
        if text in line:
            return line
        assert line, f"the emulator exited before printing {text!r}"
    raise AssertionError(f"no line with {text!r}")


async def test_cli_emulator_serves_the_driver_and_obeys_stdin(tmp_path: Path) -> None:
    link = tmp_path / "sim-idcard"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from gateway.cli.main import main; main()",
        *("sim", "idcard", "--link", str(link), "--card", "none", "--no-pace"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert (await _line_with(proc.stdout, "port = ")).strip() == f'port = "{link}"'
        settings = ReaderSettings(reply_timeout=0.3, poll_interval=0.02)
        async with IdCardReader(str(link), settings) as reader:
            with pytest.raises(NoCard):
                await reader.read_once(0.1)
            proc.stdin.write(b"fault bogus\ninsert foreign2017\n")
            await proc.stdin.drain()
            assert "fault takes one of" in await _line_with(proc.stdout, "?")
            assert "card: foreign2017" in await _line_with(proc.stdout, "ok:")
            result = await reader.read_once(2.0)
            assert result == SAMPLE_CARDS["foreign2017"].expected()
        proc.stdin.write(b"quit\n")
        await proc.stdin.drain()
        assert await asyncio.wait_for(proc.wait(), 10.0) == 0
        assert not link.exists()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
