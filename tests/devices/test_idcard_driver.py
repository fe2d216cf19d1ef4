"""The ID-card driver against the emulator, through real pseudo-terminals opened by path."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devices.emulators.idcard import EmulatorSettings, Fault, IdCardEmulator
from devices.emulators.sample_cards import SAMPLE_CARDS
from devices.health import DeviceError
from devices.idcard import (
    CardInserted,
    CardReadFailed,
    CardRemoved,
    EventStream,
    IdCardReader,
    IdCardReaderError,
    NoCard,
    ReaderDisconnected,
    ReaderError,
    ReaderEvent,
    ReaderNotResponding,
    ReaderSettings,
    ReaderUnavailable,
)
from protocols.idcard import ResidentCard, Status

FAST = ReaderSettings(
    reply_timeout=0.25,
    probe_timeout=0.2,
    poll_interval=0.02,
    insert_after=2,
    remove_after=3,
    read_attempts=2,
    retries=1,
)

MakeEmulator = Callable[..., IdCardEmulator]


@pytest.fixture
def make_emulator() -> Iterator[MakeEmulator]:
    made: list[IdCardEmulator] = []

    def make(**settings: Any) -> IdCardEmulator:
        emulator = IdCardEmulator(EmulatorSettings(**settings))
        emulator.start()
        made.append(emulator)
        return emulator

    yield make
    for emulator in made:
        emulator.close()


async def next_event(stream: EventStream, within: float = 3.0) -> ReaderEvent:
    return await asyncio.wait_for(anext(stream), within)


async def assert_quiet(stream: EventStream, seconds: float) -> None:
    with pytest.raises(TimeoutError):
        event = await asyncio.wait_for(anext(stream), seconds)
        pytest.fail(f"expected no event, got {event!r}")


@pytest.mark.parametrize("key", list(SAMPLE_CARDS))
async def test_reads_each_card_type(make_emulator: MakeEmulator, key: str) -> None:
    emulator = make_emulator(card=key)
    async with IdCardReader(emulator.path, FAST) as reader:
        assert reader.info.baud == 115200
        assert reader.info.sam_id == "05.01-20240101-1234567890-0000000042"
        assert reader.info.sam_ok
        result = await reader.read_once(2.0)
    assert result == SAMPLE_CARDS[key].expected()
    assert result.text.card_type.value == key


@pytest.mark.parametrize("key", ["resident", "foreign2017"])
async def test_read_with_fingerprint(make_emulator: MakeEmulator, key: str) -> None:
    emulator = make_emulator(card=key)
    settings = ReaderSettings(**{**_fields(FAST), "with_fingerprint": True})
    async with IdCardReader(emulator.path, settings) as reader:
        result = await reader.read_once(2.0)
    assert result == SAMPLE_CARDS[key].expected(with_fingerprint=True)
    assert len(result.fingerprint or b"") == (1024 if key == "resident" else 0)


async def test_one_read_per_insertion_then_removal_then_the_next(
    make_emulator: MakeEmulator,
) -> None:
    emulator = make_emulator(card=None)
    async with IdCardReader(emulator.path, FAST) as reader:
        stream = reader.events()
        await assert_quiet(stream, 0.2)
        emulator.insert("resident")
        event = await next_event(stream)
        assert isinstance(event, CardInserted)
        assert isinstance(event.result.text, ResidentCard)
        polled = emulator.commands
        await assert_quiet(stream, 0.5)  # the card stays: polling goes on, no second read
        assert emulator.commands - polled >= 5
        emulator.set_fault(Fault.NO_CARD, count=2)  # two flaky finds: fewer than remove_after
        for _ in range(30):
            await assert_quiet(stream, 0.1)
            if Fault.NO_CARD not in emulator.faults:  # both misses really happened
                break
        else:
            pytest.fail("the driver stopped polling")
        await assert_quiet(stream, 0.2)
        emulator.remove()
        assert isinstance(await next_event(stream), CardRemoved)
        emulator.insert("hkmotw")
        event = await next_event(stream)
        assert isinstance(event, CardInserted)
        assert event.result == SAMPLE_CARDS["hkmotw"].expected()
        assert reader.stats()["reads"] == 2


async def test_two_subscribers_see_the_same_events_and_streams_end_on_close(
    make_emulator: MakeEmulator,
) -> None:
    emulator = make_emulator(card="foreign2023")
    async with IdCardReader(emulator.path, FAST) as reader:
        first, second = reader.events(), reader.events()
        a, b = await next_event(first), await next_event(second)
        assert isinstance(a, CardInserted) and a == b
    with pytest.raises(StopAsyncIteration):
        await next_event(first)


async def test_read_once_waits_for_a_card(make_emulator: MakeEmulator) -> None:
    emulator = make_emulator(card=None)
    async with IdCardReader(emulator.path, FAST) as reader:
        pending = asyncio.create_task(reader.read_once(3.0))
        await asyncio.sleep(0.1)
        assert not pending.done()
        emulator.insert("foreign2017")
        result = await asyncio.wait_for(pending, 3.0)
    assert result == SAMPLE_CARDS["foreign2017"].expected()


async def test_no_card_fault(make_emulator: MakeEmulator) -> None:
    emulator = make_emulator(card="resident")
    emulator.set_fault(Fault.NO_CARD)
    async with IdCardReader(emulator.path, FAST) as reader:
        started = time.monotonic()
        with pytest.raises(NoCard, match=r"within 0\.3 s"):
            await reader.read_once(0.3)
        assert time.monotonic() - started < 1.0
        stream = reader.events()
        await assert_quiet(stream, 0.3)
        emulator.clear_faults()
        assert isinstance(await next_event(stream), CardInserted)


async def test_read_failed_fault_reports_once_per_insertion(make_emulator: MakeEmulator) -> None:
    emulator = make_emulator(card=None)
    emulator.set_fault(Fault.READ_FAILED)
    async with IdCardReader(emulator.path, FAST) as reader:
        with pytest.raises(NoCard):
            await reader.read_once(0.1)
        stream = reader.events()
        emulator.insert("resident")
        event = await next_event(stream)
        assert isinstance(event, ReaderError)
        assert event.status is Status.READ_FAILED
        assert "0x41" in event.message and "place it again" in event.message
        await assert_quiet(stream, 0.4)  # no retry storm while the card lies there
        emulator.clear_faults()
        emulator.remove()
        assert isinstance(await next_event(stream), CardRemoved)
        emulator.insert("resident")
        assert isinstance(await next_event(stream), CardInserted)
        assert reader.stats()["read_failures"] == 1


async def test_read_failed_once_is_retried_and_persistent_raises(
    make_emulator: MakeEmulator,
) -> None:
    emulator = make_emulator(card="resident")
    async with IdCardReader(emulator.path, FAST) as reader:
        emulator.set_fault(Fault.READ_FAILED, count=1)
        assert (await reader.read_once(1.0)) == SAMPLE_CARDS["resident"].expected()
        emulator.set_fault(Fault.READ_FAILED)
        with pytest.raises(CardReadFailed) as caught:
            await reader.read_once(1.0)
        assert caught.value.status is Status.READ_FAILED


async def test_bad_checksum_once_is_resent(make_emulator: MakeEmulator) -> None:
    emulator = make_emulator(card="hkmotw")
    async with IdCardReader(emulator.path, FAST) as reader:
        emulator.set_fault(Fault.BAD_CHECKSUM, count=1)
        assert (await reader.read_once(1.0)) == SAMPLE_CARDS["hkmotw"].expected()
        assert reader.stats()["frames_rejected"] == 1


async def test_persistent_bad_checksum_ends_the_stream(make_emulator: MakeEmulator) -> None:
    emulator = make_emulator(card=None)
    async with IdCardReader(emulator.path, FAST) as reader:
        stream = reader.events()
        await assert_quiet(stream, 0.1)
        emulator.set_fault(Fault.BAD_CHECKSUM)
        with pytest.raises(ReaderNotResponding, match="corrupt replies"):
            await next_event(stream)
        assert reader.stats()["frames_rejected"] >= 2


async def test_garbage_before_every_reply_is_skipped(make_emulator: MakeEmulator) -> None:
    emulator = make_emulator(card="foreign2023")
    emulator.set_fault(Fault.GARBAGE)
    async with IdCardReader(emulator.path, FAST) as reader:
        stream = reader.events()
        event = await next_event(stream)
        assert isinstance(event, CardInserted)
        assert event.result == SAMPLE_CARDS["foreign2023"].expected()
        assert reader.stats()["garbage_bytes"] > 0
        assert reader.stats()["frames_rejected"] == 0


async def test_silence_ends_the_stream_with_a_clear_error(make_emulator: MakeEmulator) -> None:
    emulator = make_emulator(card="resident")
    async with IdCardReader(emulator.path, FAST) as reader:
        stream = reader.events()
        assert isinstance(await next_event(stream), CardInserted)
        emulator.set_fault(Fault.SILENCE)
        started = time.monotonic()
        with pytest.raises(ReaderNotResponding, match="find card in 2 tries: no reply"):
            await next_event(stream)
        assert time.monotonic() - started < 2.0
        with pytest.raises(ReaderNotResponding):  # a late subscriber hears it too
            await next_event(reader.events())


async def test_a_silent_reader_fails_the_probe_at_both_speeds(make_emulator: MakeEmulator) -> None:
    emulator = make_emulator()
    emulator.set_fault(Fault.SILENCE)
    with pytest.raises(ReaderNotResponding, match="at 115200 or 9600 baud") as caught:
        async with IdCardReader(emulator.path, FAST):
            pass
    assert isinstance(caught.value, DeviceError)  # what the supervisor catches


async def test_probe_falls_back_to_9600_and_reads_at_wire_speed(
    make_emulator: MakeEmulator,
) -> None:
    emulator = make_emulator(card="resident", baud=9600, pace=True)
    async with IdCardReader(emulator.path, FAST) as reader:
        assert reader.info.baud == 9600
        assert emulator.ignored_bytes > 0  # the 115200 probe reached it, garbled
        started = time.monotonic()
        result = await reader.read_once(5.0)
        took = time.monotonic() - started
    assert result == SAMPLE_CARDS["resident"].expected()
    assert took >= 1295 * 10 / 9600  # 1.35 s: the emulator really paces 8N1 at 9600


async def test_paced_read_at_115200_takes_its_wire_time(make_emulator: MakeEmulator) -> None:
    emulator = make_emulator(card="resident", pace=True)
    async with IdCardReader(emulator.path, FAST) as reader:
        started = time.monotonic()
        await reader.read_once(2.0)
        took = time.monotonic() - started
    assert 1295 * 10 / 115200 <= took < 1.0


async def test_unplug_raises_and_replug_recovers(
    make_emulator: MakeEmulator, tmp_path: Path
) -> None:
    link = tmp_path / "idcard"
    emulator = make_emulator(card="resident", link=link)
    async with IdCardReader(str(link), FAST) as reader:
        stream = reader.events()
        assert isinstance(await next_event(stream), CardInserted)
        emulator.unplug()
        with pytest.raises(ReaderDisconnected, match=r"went away.*USB cable"):
            await next_event(stream)
    assert not link.exists()
    with pytest.raises(ReaderUnavailable, match="does not exist"):
        async with IdCardReader(str(link), FAST):
            pass
    emulator.replug()
    async with IdCardReader(str(link), FAST) as reader:  # what the supervisor does next
        assert isinstance(await next_event(reader.events()), CardInserted)


async def test_port_held_by_another_reader_is_refused(make_emulator: MakeEmulator) -> None:
    emulator = make_emulator()
    async with IdCardReader(emulator.path, FAST) as reader:
        with pytest.raises(ReaderUnavailable, match="held by another program"):
            async with IdCardReader(emulator.path, FAST):
                pass
        with pytest.raises(IdCardReaderError, match="already open"):
            async with reader:
                pass


async def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="bauds"):
        ReaderSettings(bauds=(4800,))
    with pytest.raises(ValueError, match="insert_after"):
        ReaderSettings(insert_after=0)
    with pytest.raises(IdCardReaderError, match="not open"):
        IdCardReader("/dev/null").events()


def _fields(settings: ReaderSettings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in settings.__dataclass_fields__}
