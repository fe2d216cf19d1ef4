"""The printer driver against the emulator, over a real pseudo-terminal and real loopback TCP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from devices.emulators.printer import PrinterEmulator
from devices.health import DeviceState
from devices.printer import (
    Printer,
    PrinterClosed,
    PrinterConfig,
    PrinterQueueFull,
    PrinterState,
    PrintJobTooLarge,
    Subscription,
)
from devices.supervisor import Supervisor, SupervisorPolicy
from protocols.escpos import compose_case_receipt

CASE_NUMBER = "ST001-20261122-0007"
JOB = compose_case_receipt(
    station="东坡村便民服务站", case_number=CASE_NUMBER, service="医保参保登记",
    applicant_name="张三丰", id_number="11010519491231002X", materials=3,
    accepted_at=datetime(2026, 11, 22, 10, 30),
).to_bytes()
FAST = dict(status_poll_seconds=0.05, io_timeout=1.0, backoff_base=0.05, backoff_cap=0.2)
WAIT = 10.0  # generous upper bound for any one step; the steps take well under a second


@pytest.fixture
async def emulator(tmp_path: Path) -> AsyncIterator[PrinterEmulator]:
    async with PrinterEmulator(out_dir=tmp_path / "receipts") as emu:
        yield emu


@pytest.fixture(params=["pty", "tcp"])
async def config(request: pytest.FixtureRequest, emulator: PrinterEmulator,
                 tmp_path: Path) -> PrinterConfig:
    if request.param == "pty":
        link = await emulator.serve_pty(tmp_path / "printer")
        return PrinterConfig(connection="serial", port=str(link), **FAST)  # type: ignore[arg-type]
    port = await emulator.serve_tcp(0)
    return PrinterConfig(connection="tcp", host="127.0.0.1", tcp_port=port,
                         **FAST)  # type: ignore[arg-type]


async def wait_state(events: Subscription, state: PrinterState) -> None:
    async with asyncio.timeout(WAIT):
        async for event in events:
            if event.state is state:
                return


async def test_print_succeeds(emulator: PrinterEmulator, config: PrinterConfig) -> None:
    async with Printer(config) as printer:
        async with asyncio.timeout(WAIT):
            result = await printer.print(JOB, label="case receipt")
            rendered = await emulator.next_receipt()
        health = printer.health()
    assert result.attempts == 1
    assert CASE_NUMBER in rendered.text and "受理回执" in rendered.text
    assert rendered.qr_payloads == (CASE_NUMBER.encode(),)
    assert health.jobs_printed == 1 and health.jobs_submitted == 1 and health.queue_depth == 0
    assert health.last_success_at is not None and health.connects == 1
    assert emulator.lost == 0


async def test_paper_out_is_reported_and_the_job_printed_when_paper_returns(
    emulator: PrinterEmulator, config: PrinterConfig
) -> None:
    emulator.command("paper-out")
    async with Printer(config) as printer, printer.subscribe() as events:
        job = printer.submit(JOB)
        await wait_state(events, PrinterState.PAPER_OUT)
        polls = emulator.status_requests
        async with asyncio.timeout(WAIT):  # several polls go by: the job waits, is not sent
            while emulator.status_requests < polls + 5 * 4:
                await asyncio.sleep(0.02)
        assert not job.done() and emulator.printed == 0 and emulator.lost == 0
        assert printer.health().queue_depth == 1
        assert printer.health().last_error == "paper out, offline"
        emulator.command("paper-ok")
        async with asyncio.timeout(WAIT):
            result = await job
            await wait_state(events, PrinterState.READY)
    assert result.attempts == 1
    assert emulator.printed == 1 and emulator.lost == 0


async def test_cover_open_then_closed(emulator: PrinterEmulator, config: PrinterConfig) -> None:
    async with Printer(config) as printer, printer.subscribe() as events:
        await wait_state(events, PrinterState.READY)
        emulator.command("cover-open")
        await wait_state(events, PrinterState.COVER_OPEN)
        job = printer.submit(JOB)
        await asyncio.sleep(0.2)
        assert not job.done()
        emulator.command("cover-close")
        async with asyncio.timeout(WAIT):
            await job
    assert emulator.printed == 1


async def test_offline_is_reported(emulator: PrinterEmulator, config: PrinterConfig) -> None:
    emulator.command("offline")
    async with Printer(config) as printer, printer.subscribe() as events:
        await wait_state(events, PrinterState.OFFLINE)
        status = printer.health().status
        assert status is not None and not status.online and not status.ready


async def test_unplug_and_replug(emulator: PrinterEmulator, config: PrinterConfig) -> None:
    async with Printer(config) as printer, printer.subscribe() as events:
        async with asyncio.timeout(WAIT):
            await printer.print(JOB)
        await emulator.unplug()
        await wait_state(events, PrinterState.DISCONNECTED)
        job = printer.submit(JOB)  # queued while the printer is gone
        await asyncio.sleep(0.3)  # several reconnect attempts fail meanwhile
        assert not job.done()
        await emulator.replug()
        async with asyncio.timeout(WAIT):
            result = await job
        health = printer.health()
    assert result.attempts == 1
    assert health.connects >= 2 and health.jobs_printed == 2
    assert health.last_error is not None and config.address in health.last_error
    assert emulator.printed == 2


async def test_full_queue_refuses_and_nothing_queued_is_dropped(
    emulator: PrinterEmulator, config: PrinterConfig
) -> None:
    emulator.command("paper-out")
    bounded = replace(config, queue_size=2)
    async with Printer(bounded) as printer:
        first, second = printer.submit(JOB, label="a"), printer.submit(JOB, label="b")
        with pytest.raises(PrinterQueueFull, match="queue of printer 'printer'.*is full"):
            printer.submit(JOB)
        assert printer.health().jobs_refused == 1
        emulator.command("paper-ok")
        async with asyncio.timeout(WAIT):
            results = [await first, await second]
    assert [r.job_id for r in results] == [first.id, second.id]
    assert emulator.printed == 2


async def test_close_fails_pending_jobs_and_ends_subscriptions(
    emulator: PrinterEmulator, config: PrinterConfig
) -> None:
    emulator.command("cover-open")
    printer = Printer(config)
    async with printer.subscribe() as events:
        async with printer:
            job = printer.submit(JOB)
            await wait_state(events, PrinterState.COVER_OPEN)
            async with printer.subscribe() as early:
                pass
            with pytest.raises(PrinterClosed, match="subscription has ended"):
                async with asyncio.timeout(WAIT):
                    async for _ in early:
                        pass
        with pytest.raises(PrinterClosed, match=f"print job {job.id}.*was not printed"):
            await job
        seen = []
        with pytest.raises(PrinterClosed, match="driver was closed"):
            async with asyncio.timeout(WAIT):
                async for event in events:
                    seen.append(event.state)
        assert seen[-1] is PrinterState.CLOSED
    async with printer.subscribe() as late:  # subscribing after the close: told at once
        assert (await anext(late)).state is PrinterState.CLOSED
        with pytest.raises(PrinterClosed, match="driver was closed"):
            await anext(late)
    with pytest.raises(PrinterClosed, match="closed"):
        printer.submit(JOB)
    assert printer.health().jobs_failed == 1 and emulator.printed == 0


async def test_under_the_supervisor(emulator: PrinterEmulator, config: PrinterConfig) -> None:
    printer = Printer(config)
    policy = SupervisorPolicy(backoff_base=0.05, backoff_cap=0.2)
    try:
        async with Supervisor(policy=policy) as sup:
            sup.start("printer", "printer", printer.run_session)
            async with asyncio.timeout(WAIT):
                await printer.print(JOB)
                await sup.wait_for("printer", lambda h: h.state is DeviceState.OK)
                emulator.command("paper-out")
                health = await sup.wait_for("printer", lambda h: h.state is DeviceState.DEGRADED)
            assert health.last_error is not None and "paper out" in health.last_error
            await emulator.unplug()
            async with asyncio.timeout(WAIT):
                health = await sup.wait_for("printer", lambda h: h.failures >= 1)
                await emulator.replug()
                emulator.command("paper-ok")
                await printer.print(JOB)
                await sup.wait_for("printer", lambda h: h.state is DeviceState.OK)
    finally:
        await printer.close()
    assert emulator.printed == 2


async def test_garbage_status_reply_is_counted_and_reconnected(tmp_path: Path) -> None:
    # A real peer on a real socket that answers status queries with non-status bytes.
    async def not_a_printer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(12)
        writer.write(b"\xff\xff\xff\xff")
        await writer.drain()
        await reader.read()
        writer.close()

    server = await asyncio.start_server(not_a_printer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = PrinterConfig(connection="tcp", host="127.0.0.1", tcp_port=port,
                           **FAST)  # type: ignore[arg-type]
    async with server, Printer(config) as printer:
        async with asyncio.timeout(WAIT):
            while printer.health().status_errors < 2:  # and it keeps trying
                await asyncio.sleep(0.02)
        health = printer.health()
    assert "malformed status reply ffffffff" in (health.last_error or "")
    assert health.connects == 0


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="needs a host"):
        PrinterConfig(connection="tcp")
    with pytest.raises(ValueError, match="queue_size 0"):
        PrinterConfig(queue_size=0)


async def test_a_large_job_goes_through(emulator: PrinterEmulator, config: PrinterConfig) -> None:
    # A 48 KB raster logo (as some stations print above the title), then the receipt.
    logo = b"\x1d\x76\x30\x00" + bytes((48, 0, 0, 4)) + bytes(range(256)) * 192
    async with Printer(config) as printer, asyncio.timeout(WAIT):
        await printer.print(JOB[:4] + logo + JOB[4:])
        rendered = await emulator.next_receipt()
    assert rendered.text.startswith("受理回执") and emulator.printed == 1


async def test_refuses_empty_jobs_and_sessions_after_close(config: PrinterConfig) -> None:
    printer = Printer(config)
    with pytest.raises(PrintJobTooLarge, match="must hold 1.."):
        printer.submit(b"")
    await printer.close()
    with pytest.raises(PrinterClosed, match="stop its supervisor"):
        await printer.run_session()
