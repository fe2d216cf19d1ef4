"""A bad link in user space (kernel netem is not available): an asyncio TCP proxy with
per-direction rate limits, one-way latency, abrupt cuts and silent stalls.

    async with LinkSimulator("127.0.0.1", broker.port, LinkProfile.gprs_2g(), seed=1) as link:
        connect the station to ("127.0.0.1", link.port) ...
        print(link.stats)

The link is one shared medium: the rate limits apply to all connections through it together,
and a failure hits every open connection. Failures follow a schedule drawn from `seed` (the
same seed gives the same sequence of up-periods and failure kinds):

- a cut resets both sides at once (RST: SO_LINGER 0), like a radio link that drops;
- a stall stops every byte in both directions, with no FIN or RST, for `stall_for` seconds;
  then the connections that were open when it began are reset. Connections opened during a
  stall wait (as a SYN would) and flow once the link is back.

"up" is client -> target (station -> hub), "down" the other way.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Self

from gateway.testbed.ports import LOOPBACK


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkProfile:
    up_rate: float | None = None  # bytes/s client -> target; None = unlimited
    down_rate: float | None = None  # bytes/s target -> client
    latency: float = 0.0  # one-way delay, seconds
    cut_every: float | None = None  # mean seconds the link stays up between failures
    cut_jitter: float = 0.0  # up-periods vary uniformly by ± this fraction of cut_every
    stall_share: float = 0.0  # share of failures that are silent stalls rather than cuts
    stall_for: float = 2.0  # seconds a stall lasts before its connections are reset
    down_for: float = 0.0  # seconds after a failure before the link carries bytes again

    def __post_init__(self) -> None:
        for name in ("up_rate", "down_rate", "cut_every"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"LinkProfile.{name}={value}: must be > 0, or None for 'off'")
        if not 0 <= self.cut_jitter < 1 or not 0 <= self.stall_share <= 1:
            raise ValueError("LinkProfile: cut_jitter must be in [0, 1), stall_share in [0, 1]")
        if min(self.latency, self.stall_for, self.down_for) < 0:
            raise ValueError("LinkProfile: latency, stall_for and down_for must be >= 0")

    @classmethod
    def gprs_2g(cls) -> LinkProfile:
        """A village 2G link, sped up ~12x in bandwidth so tests and benchmarks take seconds:
        60 000 B/s each way (~270 KB between failures), 100 ms one way (a reconnect's TCP + TLS +
        MQTT handshakes still cost about a second), a failure every 4.5 s ± 30 %, a third of them
        silent stalls of 2 s, and 0.3 s of dead air after each failure."""
        return cls(
            up_rate=60_000, down_rate=60_000, latency=0.1, cut_every=4.5, cut_jitter=0.3,
            stall_share=0.33, stall_for=2.0, down_for=0.3,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkStats:
    bytes_up: int  # bytes that crossed the link client -> target
    bytes_down: int
    cuts: int  # cut events (each resets every open connection)
    stalls: int  # stall events
    resets: int  # connections reset by cuts and stalls
    connections: int  # connections accepted
    link_up_seconds: float  # time the link carried bytes, since the first connection


class _Bucket:
    """Token bucket shared by every connection in one direction."""

    def __init__(self, rate: float | None, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = float(burst), time.monotonic()
        self.lock = asyncio.Lock()  # FIFO among waiters: one sender at a time on the medium

    async def take(self, n: int) -> None:
        if self.rate is None:
            return
        async with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= n:
                    self.tokens -= n
                    return
                await asyncio.sleep((n - self.tokens) / self.rate)


@dataclass(slots=True, eq=False)
class _Conn:
    client: asyncio.StreamWriter
    target: asyncio.StreamWriter
    pumps: list[asyncio.Task[None]] = field(default_factory=list)

    def reset(self) -> None:
        for writer in (self.client, self.target):
            _reset(writer)
        for task in self.pumps:
            task.cancel()


class LinkSimulator:
    def __init__(
        self, target_host: str, target_port: int, profile: LinkProfile, *, seed: int = 0,
        host: str = LOOPBACK,
    ) -> None:
        self.target = (target_host, target_port)
        self.profile = profile
        self.host = host
        self.port = 0  # set when started
        self._rng = random.Random(seed)
        self._server: asyncio.Server | None = None
        self._schedule: asyncio.Task[None] | None = None
        self._conns: set[_Conn] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._up = asyncio.Event()
        self._up.set()
        self._up_since: float | None = None  # None until the first connection
        self._up_total = 0.0
        self._counts = {"up": 0, "down": 0, "cuts": 0, "stalls": 0, "resets": 0, "conns": 0}
        self._buckets = {
            "up": _Bucket(profile.up_rate, _piece(profile.up_rate)),
            "down": _Bucket(profile.down_rate, _piece(profile.down_rate)),
        }

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.close()
        if self._schedule is not None:
            self._schedule.cancel()
        for conn in list(self._conns):
            conn.reset()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    @property
    def stats(self) -> LinkStats:
        c = self._counts
        up = self._up_total
        if self._up_since is not None and self._up.is_set():
            up += time.monotonic() - self._up_since
        return LinkStats(
            bytes_up=c["up"], bytes_down=c["down"], cuts=c["cuts"], stalls=c["stalls"],
            resets=c["resets"], connections=c["conns"], link_up_seconds=up,
        )

    def cut_now(self) -> None:
        """Reset every open connection (RST both ways) now."""
        self._counts["cuts"] += 1
        self._reset_all(set(self._conns))

    async def stall_now(self, duration: float) -> None:
        """Stop all bytes for `duration` s, then reset the connections open when it began."""
        self._counts["stalls"] += 1
        stalled = set(self._conns)
        self._set_up(False)
        await asyncio.sleep(duration)
        self._reset_all(stalled)
        self._set_up(True)

    # --- internals -----------------------------------------------------------------------------

    async def _run_schedule(self) -> None:
        for up_for, kind in failure_schedule(self.profile, self._rng):
            await asyncio.sleep(up_for)
            if kind == "stall":
                await self.stall_now(self.profile.stall_for)
            else:
                self.cut_now()
            if self.profile.down_for > 0:
                self._set_up(False)
                await asyncio.sleep(self.profile.down_for)
                self._set_up(True)

    def _set_up(self, up: bool) -> None:
        now = time.monotonic()
        if self._up.is_set() and self._up_since is not None:
            self._up_total += now - self._up_since
        self._up_since = now
        self._up.set() if up else self._up.clear()

    def _reset_all(self, conns: set[_Conn]) -> None:
        for conn in conns & self._conns:
            self._counts["resets"] += 1
            conn.reset()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._carry(reader, writer)
        except asyncio.CancelledError:
            # Only our own shutdown cancels a handler. Python 3.11's stream server logs a
            # cancelled handler task as an error, so end it normally (the link is gone anyway).
            _reset(writer)
        finally:
            self._handlers.discard(task)

    async def _carry(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._counts["conns"] += 1
        if self._schedule is None:  # the link's clock starts with its first connection
            self._up_since = time.monotonic()
            self._schedule = asyncio.create_task(self._run_schedule())
        try:
            t_reader, t_writer = await asyncio.wait_for(asyncio.open_connection(*self.target), 10)
        except (OSError, TimeoutError):
            _reset(writer)  # like the far end refusing: the client sees a reset
            return
        conn = _Conn(client=writer, target=t_writer)
        conn.pumps = [
            asyncio.create_task(self._pump(reader, t_writer, "up")),
            asyncio.create_task(self._pump(t_reader, writer, "down")),
        ]
        self._conns.add(conn)
        try:
            done, _ = await asyncio.wait(conn.pumps, return_when=asyncio.FIRST_EXCEPTION)
            if any(not t.cancelled() and t.exception() is not None for t in done):
                conn.reset()  # one side reset or failed: pass the reset on to the other
            else:
                for w in (writer, t_writer):
                    w.close()
        finally:
            self._conns.discard(conn)
            for t in conn.pumps:
                t.cancel()
            await asyncio.gather(*conn.pumps, return_exceptions=True)

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, direction: str
    ) -> None:
        """Carry one direction: read, wait for the link and its rate, deliver after latency."""
        rate = self.profile.up_rate if direction == "up" else self.profile.down_rate
        piece, latency = _piece(rate), self.profile.latency
        # Bound what sits "in the air" (about the bandwidth-delay product, at least 8 pieces):
        # beyond it the reader stops and TCP pushes back on the sender, as a real modem would.
        depth = 8 + int((rate or 1e6) * latency / piece)
        air: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(maxsize=depth)

        async def transmit() -> None:
            while data := await src.read(piece):
                await self._up.wait()
                await self._buckets[direction].take(len(data))
                self._counts[direction] += len(data)
                await air.put((time.monotonic() + latency, data))
            await air.put(None)

        async def deliver() -> None:
            while (item := await air.get()) is not None:
                await asyncio.sleep(max(0.0, item[0] - time.monotonic()))
                await self._up.wait()  # a stall freezes the bytes already in the air too
                dst.write(item[1])
                await dst.drain()
            if dst.can_write_eof():
                dst.write_eof()  # pass a half-close on

        async with asyncio.TaskGroup() as group:
            group.create_task(transmit())
            group.create_task(deliver())


def failure_schedule(
    profile: LinkProfile, rng: random.Random
) -> Iterator[tuple[float, Literal["cut", "stall"]]]:
    """The link's failures: (seconds up before it, kind), drawn only from `rng`."""
    while profile.cut_every is not None:
        up_for = profile.cut_every * (1 + rng.uniform(-profile.cut_jitter, profile.cut_jitter))
        yield up_for, "stall" if rng.random() < profile.stall_share else "cut"


def _piece(rate: float | None) -> int:
    # ~50 ms of transfer per read keeps the rate smooth; unlimited links read 64 KiB at a time.
    return 65536 if rate is None else max(256, min(16384, int(rate / 20)))


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER on, timeout 0) instead of FIN, as a dropped link looks."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
