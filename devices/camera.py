"""The document camera (高拍仪): one still per capture, completed, normalised, measured.

Two sources, chosen by ``[devices.camera] source``:

- ``v4l2``: a UVC camera at ``/dev/videoN``, through linuxpy (pinned at 0.25: its API changed
  in 0.24). Each capture opens the device, asks for MJPEG at the configured size, lets the
  sensor settle for a few frames, keeps one, and closes the device again: stills are taken a
  few times per case, and a streaming camera would hold USB bandwidth and its lamp on all day.
  UVC MJPEG frames usually lack Huffman tables; `protocols.mjpeg.complete_jpeg` adds them.
- ``http``: a camera (or its vendor service) that serves stills over HTTP on localhost; one
  GET per capture, through an aiohttp session held for the camera's lifetime.

Blocking work stays off the event loop: V4L2 calls run in the camera's one owner thread (so
two captures never touch the device at once), Pillow normalisation in a worker thread.
"""

from __future__ import annotations

import asyncio
import glob
import os
import select
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol, Self, TypeVar

import aiohttp

from devices.health import DeviceError
from devices.normalise import NormalisedPage, NormalisePolicy, normalise
from devices.supervisor import HealthRecorder
from protocols.mjpeg import MAX_FRAME_BYTES, MjpegError, complete_jpeg, inspect_frame

__all__ = [
    "Camera",
    "CameraError",
    "CameraSettings",
    "Capture",
    "HttpSnapshotSource",
    "SnapshotSource",
    "Still",
    "V4l2Source",
    "list_video_devices",
]

_T = TypeVar("_T")


class CameraError(DeviceError):
    """The camera could not deliver a still; the message names the device or URL and a fix."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CameraSettings:
    """Where the stills come from.

    source:          "v4l2" (a UVC device at `device`) or "http" (GET `url`).
    width, height:   the MJPEG mode asked of a V4L2 camera (its largest, usually).
    timeout_seconds: bound on one capture, connection and all frames included.
    warmup_frames:   V4L2 frames dropped while exposure settles (UVC cameras' first frames are
                     often dark or partial).
    max_bytes:       a still larger than this is refused before it is parsed.
    """

    source: Literal["v4l2", "http"]
    device: str = "/dev/video0"
    url: str = ""
    width: int = 3264
    height: int = 2448
    timeout_seconds: float = 10.0
    warmup_frames: int = 3
    max_bytes: int = MAX_FRAME_BYTES

    def __post_init__(self) -> None:
        if self.source == "http" and not self.url.startswith(("http://", "https://")):
            raise ValueError(
                f"camera source 'http' needs an http:// or https:// url, got {self.url!r}; "
                "set [devices.camera] url"
            )
        if self.source == "v4l2" and not self.device:
            raise ValueError("camera source 'v4l2' needs a device path such as /dev/video0")
        if self.source not in ("v4l2", "http"):
            raise ValueError(f"camera source must be 'v4l2' or 'http', got {self.source!r}")
        if not (1 <= self.width <= 20_000 and 1 <= self.height <= 20_000):
            raise ValueError(f"camera size {self.width}×{self.height} is out of range")
        if not 0 < self.timeout_seconds <= 300:
            raise ValueError(f"camera timeout {self.timeout_seconds} s is outside (0, 300]")
        if not 0 <= self.warmup_frames <= 60:
            raise ValueError(f"camera warm-up of {self.warmup_frames} frames is outside 0..60")
        if not 1024 <= self.max_bytes <= MAX_FRAME_BYTES:
            raise ValueError(f"camera max_bytes {self.max_bytes} is outside 1 KiB..64 MiB")

    @property
    def where(self) -> str:
        """The device path or URL, for messages."""
        return self.url if self.source == "http" else self.device


@dataclass(frozen=True, slots=True, kw_only=True)
class Still:
    """One captured frame as a self-contained JPEG file."""

    jpeg: bytes
    width: int
    height: int
    completed: bool  # Huffman tables were missing and have been inserted
    seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Capture:
    """A still and its normalised page."""

    still: Still
    page: NormalisedPage


class SnapshotSource(Protocol):
    """Where raw stills come from; an async context manager."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def grab(self) -> bytes:
        """One raw frame (JPEG, possibly without Huffman tables)."""
        ...

    async def probe(self) -> dict[str, str]:
        """Check the camera answers, without taking a still if it can; facts for display."""
        ...


class HttpSnapshotSource:
    """Stills over HTTP: one GET of `settings.url` per capture."""

    def __init__(self, settings: CameraSettings) -> None:
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        if self._session is not None:
            raise CameraError(f"the HTTP camera source for {self._settings.url} is already open")
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._settings.timeout_seconds),
            # Keep-alive would hide an unplugged camera behind a dead pooled socket for a
            # request; a fresh connection per still costs nothing on localhost.
            connector=aiohttp.TCPConnector(force_close=True),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise CameraError(f"the HTTP camera source for {self._settings.url} is not open")
        return self._session

    async def grab(self) -> bytes:
        s = self._settings
        session = self._open_session()
        try:
            async with session.get(s.url) as resp:
                self._check_status(resp)
                if resp.content_length is not None and resp.content_length > s.max_bytes:
                    raise CameraError(
                        f"camera at {s.url} offers a {resp.content_length:,}-byte still, over "
                        f"the {s.max_bytes:,}-byte bound; lower the camera's resolution"
                    )
                body = bytearray()
                async for chunk in resp.content.iter_chunked(256 * 1024):
                    body += chunk
                    if len(body) > s.max_bytes:
                        raise CameraError(
                            f"camera at {s.url} sent more than {s.max_bytes:,} bytes for one "
                            "still; lower the camera's resolution"
                        )
                return bytes(body)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise self._unreachable(exc) from exc

    async def probe(self) -> dict[str, str]:
        s = self._settings
        session = self._open_session()
        try:
            async with session.head(s.url) as resp:
                allows_head = resp.status != 405  # some camera services only answer GET
                if allows_head:
                    self._check_status(resp)
                length = resp.content_length
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise self._unreachable(exc) from exc
        if not allows_head:
            length = len(await self.grab())
        facts = {"source": "http", "url": s.url}
        if length is not None:
            facts["still_bytes"] = str(length)
        return facts

    def _check_status(self, resp: aiohttp.ClientResponse) -> None:
        if resp.status != 200:
            raise CameraError(
                f"camera at {self._settings.url} answered HTTP {resp.status} {resp.reason or ''}"
                "; check the camera service and [devices.camera] url"
            )

    def _unreachable(self, exc: BaseException) -> CameraError:
        what = "timed out" if isinstance(exc, TimeoutError) else f"is unreachable ({exc})"
        return CameraError(
            f"camera at {self._settings.url} {what}; check that the camera service is running "
            "and that [devices.camera] url is right"
        )


class V4l2Source:
    """Stills from a UVC camera: MJPEG at the configured size, via linuxpy, in one thread."""

    def __init__(self, settings: CameraSettings) -> None:
        self._settings = settings
        self._owner: ThreadPoolExecutor | None = None

    async def __aenter__(self) -> Self:
        if self._owner is not None:
            raise CameraError(f"the V4L2 camera source for {self._settings.device} is already open")
        self._owner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="camera-v4l2")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        owner, self._owner = self._owner, None
        if owner is not None:
            # A capture in flight ends by its own deadline (select timeout), so this is bounded.
            await asyncio.get_running_loop().run_in_executor(None, owner.shutdown)

    async def grab(self) -> bytes:
        return await self._in_owner(self._grab_blocking)

    async def probe(self) -> dict[str, str]:
        return await self._in_owner(self._probe_blocking)

    async def _in_owner(self, call: Callable[[], _T]) -> _T:
        if self._owner is None:
            raise CameraError(f"the V4L2 camera source for {self._settings.device} is not open")
        return await asyncio.get_running_loop().run_in_executor(self._owner, call)

    def _missing(self) -> CameraError:
        present = ", ".join(list_video_devices()) or "none"
        return CameraError(
            f"video device {self._settings.device} does not exist (present: {present}); "
            "plug the camera in, or set [devices.camera] device"
        )

    def _failed(self, exc: BaseException) -> CameraError:
        return CameraError(
            f"video device {self._settings.device} failed: {exc}; unplug and replug the camera, "
            "and check that no other program is using it"
        )

    def _probe_blocking(self) -> dict[str, str]:
        # Imported on first use: linuxpy's ctypes tables take ~0.2 s to load, which stations
        # with an HTTP camera (and every `cunlink` command) would otherwise pay for nothing.
        from linuxpy.video.device import Device, V4L2Error

        s = self._settings
        if not os.path.exists(s.device):
            raise self._missing()
        try:
            with Device(s.device) as dev:
                info = dev.info
                return {
                    "source": "v4l2",
                    "device": s.device,
                    "card": str(info.card),
                    "driver": str(info.driver),
                }
        except (OSError, V4L2Error) as exc:
            raise self._failed(exc) from exc

    def _grab_blocking(self) -> bytes:
        from linuxpy.video.device import Device, PixelFormat, V4L2Error, VideoCapture

        s = self._settings
        if not os.path.exists(s.device):
            raise self._missing()
        deadline = time.monotonic() + s.timeout_seconds
        try:
            with Device(s.device) as dev:
                capture = VideoCapture(dev)
                capture.set_format(s.width, s.height, "MJPG")
                fmt = capture.get_format()
                if fmt.pixel_format != PixelFormat.MJPEG:
                    raise CameraError(
                        f"video device {s.device} offers no MJPEG mode (it chose "
                        f"{fmt.pixel_format.name}); this camera cannot take stills here"
                    )
                with capture:
                    return self._read_still(dev, capture, deadline)
        except (OSError, V4L2Error) as exc:
            raise self._failed(exc) from exc

    def _read_still(self, dev: Any, capture: Any, deadline: float) -> bytes:
        s = self._settings
        # Drop the warm-up frames, then keep the first frame whose header parses: a UVC camera
        # can hand over an empty or cut buffer when the USB bus is busy.
        for index in range(s.warmup_frames + 5):
            remaining = deadline - time.monotonic()
            # Our own select with a deadline: linuxpy 0.25's non-blocking read path waits
            # without one (and calls the `select` module itself), so a stalled camera would hang.
            if remaining <= 0 or not select.select([dev], [], [], remaining)[0]:
                raise CameraError(
                    f"video device {s.device} delivered no frame within "
                    f"{s.timeout_seconds:g} s; replug the camera"
                )
            frame = bytes(capture.buffer.raw_read().data)
            if index < s.warmup_frames:
                continue
            if len(frame) > s.max_bytes:
                raise CameraError(f"video device {s.device} sent a {len(frame):,}-byte frame")
            try:
                inspect_frame(frame)
            except MjpegError:
                continue
            return frame
        raise CameraError(f"video device {s.device} sent only unreadable frames; replug the camera")


def list_video_devices() -> list[str]:
    """The /dev/video* device nodes present (a UVC camera often adds two: video and metadata)."""
    return sorted(glob.glob("/dev/video[0-9]*"), key=lambda p: (len(p), p))


class Camera:
    """A configured document camera: capture a still, normalise it, report what it cost.

    An async context manager around its source. `watch` is the supervisor's device task.
    """

    def __init__(self, settings: CameraSettings, policy: NormalisePolicy) -> None:
        self.settings = settings
        self.policy = policy
        self._source: SnapshotSource = (
            HttpSnapshotSource(settings) if settings.source == "http" else V4l2Source(settings)
        )

    async def __aenter__(self) -> Self:
        await self._source.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._source.__aexit__(exc_type, exc, tb)

    async def still(self) -> Still:
        """One still as a valid JPEG file (Huffman tables added if the frame lacked them)."""
        started = time.perf_counter()
        raw = await self._source.grab()
        try:
            info = inspect_frame(raw)
            jpeg = complete_jpeg(raw)
        except MjpegError as exc:
            raise CameraError(
                f"camera at {self.settings.where} sent {len(raw):,} bytes that are not a JPEG "
                f"still: {exc}"
            ) from exc
        return Still(
            jpeg=jpeg,
            width=info.width,
            height=info.height,
            completed=not info.has_dht,
            seconds=time.perf_counter() - started,
        )

    async def capture(self) -> Capture:
        """A still and its page normalised per policy (Pillow in a worker thread)."""
        still = await self.still()
        page = await asyncio.to_thread(normalise, still.jpeg, self.policy)
        return Capture(still=still, page=page)

    async def probe(self) -> dict[str, str]:
        return await self._source.probe()

    async def watch(self, health: HealthRecorder, *, interval: float = 30.0) -> None:
        """Supervisor task: probe every `interval` s; a failed probe raises to the supervisor."""
        while True:
            health.success(**await self.probe())
            await asyncio.sleep(interval)
