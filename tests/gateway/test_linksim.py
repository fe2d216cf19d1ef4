"""The link simulator against loopback servers: rates, latency, cuts, stalls, schedule."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from gateway.testbed.linksim import LinkProfile, LinkSimulator, failure_schedule


@dataclass
class Server:
    """Loopback server. A connection that starts with b"SINK" is only counted, one that sends
    b"DL<n>" gets n bytes, any other is echoed. Remembers how each connection ended."""

    port: int = 0
    received: int = 0
    endings: list[str] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        mode = b""
        try:
            while data := await reader.read(65536):
                self.received += len(data)
                mode = mode or data[:2]
                if mode == b"DL":
                    writer.write(b"d" * int(data[2:]))
                elif mode != b"SI":
                    writer.write(data)
                await writer.drain()
            self.endings.append("eof")
        except ConnectionResetError:
            self.endings.append("reset")
        finally:
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server()
    listener = await asyncio.start_server(srv.handle, "127.0.0.1", 0)
    srv.port = listener.sockets[0].getsockname()[1]
    yield srv
    listener.close()


async def open_via(link: LinkSimulator) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", link.port)


async def read_some(reader: asyncio.StreamReader, within: float) -> bytes | None:
    """Bytes that arrive within `within` s, or None if nothing does."""
    try:
        async with asyncio.timeout(within):
            return await reader.read(65536)
    except TimeoutError:
        return None


async def test_rate_limits_each_direction(server: Server) -> None:
    up, down, n = 100_000, 200_000, 150_000
    profile = LinkProfile(up_rate=up, down_rate=down)
    async with LinkSimulator("127.0.0.1", server.port, profile) as link:
        _, w_up = await open_via(link)
        r_dn, w_dn = await open_via(link)
        start = time.monotonic()
        w_up.write(b"SINK" + b"u" * (n - 4))
        w_dn.write(f"DL{n}".encode())

        async def upload_done() -> float:
            for _ in range(1000):  # polls the server's counter, at most 10 s
                if server.received >= n + len(f"DL{n}"):
                    break
                await asyncio.sleep(0.01)
            return time.monotonic() - start

        async def download_done() -> float:
            await r_dn.readexactly(n)
            return time.monotonic() - start

        t_up, t_down = await asyncio.wait_for(asyncio.gather(upload_done(), download_done()), 10)
        stats = link.stats
        for w in (w_up, w_dn):
            w.close()
    assert n / t_up == pytest.approx(up, rel=0.15)
    assert n / t_down == pytest.approx(down, rel=0.15)
    assert stats.bytes_up == n + len(f"DL{n}") and stats.bytes_down == n
    assert stats.connections == 2


async def test_latency_is_one_way(server: Server) -> None:
    async with LinkSimulator("127.0.0.1", server.port, LinkProfile(latency=0.1)) as link:
        reader, writer = await open_via(link)
        rtts = []
        for _ in range(3):
            start = time.monotonic()
            writer.write(b"ping")
            await asyncio.wait_for(reader.readexactly(4), 5)
            rtts.append(time.monotonic() - start)
        writer.close()
    assert min(rtts) > 0.19 and max(rtts) < 0.3, rtts


async def test_cut_resets_both_sides_and_the_link_carries_on(server: Server) -> None:
    async with LinkSimulator("127.0.0.1", server.port, LinkProfile()) as link:
        reader, writer = await open_via(link)
        writer.write(b"hello")
        assert await asyncio.wait_for(reader.readexactly(5), 5) == b"hello"
        link.cut_now()
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(100), 5)
        writer.close()
        reader2, writer2 = await open_via(link)
        writer2.write(b"again")
        assert await asyncio.wait_for(reader2.readexactly(5), 5) == b"again"
        writer2.close()
        stats = link.stats
    assert server.endings[0] == "reset"
    assert (stats.cuts, stats.resets, stats.connections) == (1, 1, 2)


async def test_stall_stops_bytes_silently_then_drops(server: Server) -> None:
    async with LinkSimulator("127.0.0.1", server.port, LinkProfile()) as link:
        reader, writer = await open_via(link)
        writer.write(b"a")
        assert await asyncio.wait_for(reader.readexactly(1), 5) == b"a"
        up_before = link.stats.link_up_seconds
        stall = asyncio.create_task(link.stall_now(0.8))
        await asyncio.sleep(0.05)
        writer.write(b"during stall")
        late_reader, late_writer = await open_via(link)  # opened during the stall
        late_writer.write(b"late")
        assert await read_some(reader, 0.6) is None  # no bytes, and no FIN or RST either
        assert server.received == 1
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(100), 5)
        await stall
        # The connection opened during the stall was held, not dropped: it flows now.
        assert await asyncio.wait_for(late_reader.readexactly(4), 5) == b"late"
        stats = link.stats
        for w in (writer, late_writer):
            w.close()
    assert (stats.stalls, stats.resets, stats.cuts) == (1, 1, 0)
    assert stats.link_up_seconds - up_before < 0.3  # the stall is not counted as link up


async def test_scheduled_failures_follow_the_profile(server: Server) -> None:
    profile = LinkProfile(cut_every=0.3)
    async with LinkSimulator("127.0.0.1", server.port, profile, seed=7) as link:
        reader, writer = await open_via(link)
        start = time.monotonic()
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(100), 5)
        elapsed = time.monotonic() - start
        writer.close()
    assert 0.25 < elapsed < 0.6
    assert link.stats.cuts >= 1 and link.stats.stalls == 0


def test_schedule_is_deterministic_with_a_seed() -> None:
    profile = LinkProfile.gprs_2g()

    def plan(seed: int) -> list[tuple[float, str]]:
        schedule = failure_schedule(profile, random.Random(seed))
        return [next(schedule) for _ in range(200)]

    assert plan(1) == plan(1)
    assert plan(1) != plan(2)
    ups = [up for up, _ in plan(1)]
    assert min(ups) >= 4.5 * 0.7 and max(ups) <= 4.5 * 1.3
    stalls = sum(kind == "stall" for _, kind in plan(1))
    assert 40 < stalls < 100  # a third of 200, give or take
    assert list(failure_schedule(LinkProfile(), random.Random(1))) == []


def test_profiles_are_checked() -> None:
    gprs = LinkProfile.gprs_2g()
    assert gprs.up_rate is not None and gprs.cut_every is not None
    assert gprs.up_rate * gprs.cut_every == pytest.approx(270_000)
    with pytest.raises(ValueError, match="up_rate"):
        LinkProfile(up_rate=0)
    with pytest.raises(ValueError, match="stall_share"):
        LinkProfile(stall_share=1.5)
