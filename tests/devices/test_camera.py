"""The document camera against the HTTP emulator over real loopback sockets, and V4L2 errors."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from PIL import Image

from devices.camera import Camera, CameraError, CameraSettings, list_video_devices
from devices.emulators.camera import CameraEmulator, PageSpec
from devices.normalise import NormalisePolicy
from protocols.mjpeg import inspect_frame

SMALL = PageSpec(width=800, height=600, seed=5)


@pytest.fixture
async def emulator() -> AsyncIterator[CameraEmulator]:
    async with CameraEmulator(SMALL) as emu:
        yield emu


def _http(url: str, **kwargs: object) -> CameraSettings:
    return CameraSettings(source="http", url=url, timeout_seconds=5.0, **kwargs)  # type: ignore[arg-type]


async def test_http_still_is_the_cameras_jpeg(emulator: CameraEmulator) -> None:
    async with Camera(_http(emulator.url), NormalisePolicy()) as camera:
        still = await camera.still()
    assert still.jpeg == emulator.jpeg
    assert (still.width, still.height, still.completed) == (800, 600, False)
    assert emulator.requests == 1


async def test_mjpeg_frames_without_tables_come_out_complete() -> None:
    async with (
        CameraEmulator(PageSpec(width=640, height=480, mjpeg=True)) as emu,
        Camera(_http(emu.url), NormalisePolicy()) as camera,
    ):
        assert not inspect_frame(emu.jpeg).has_dht
        still = await camera.still()
    assert still.completed
    assert inspect_frame(still.jpeg).has_dht
    with Image.open(io.BytesIO(still.jpeg)) as image:
        image.load()
        assert image.size == (640, 480)


async def test_capture_normalises_per_policy(emulator: CameraEmulator) -> None:
    policy = NormalisePolicy(dpi=None, max_pixels=120_000, greyscale=True, jpeg_quality=50)
    async with Camera(_http(emulator.url), policy) as camera:
        capture = await camera.capture()
    page = capture.page
    assert page.bytes_in == len(capture.still.jpeg) == len(emulator.jpeg)
    assert page.width * page.height <= 120_000
    assert page.bytes_out < page.bytes_in
    with Image.open(io.BytesIO(page.jpeg)) as image:
        assert image.mode == "L"


async def test_probe_uses_head_and_reports_the_still_size(emulator: CameraEmulator) -> None:
    async with Camera(_http(emulator.url), NormalisePolicy()) as camera:
        facts = await camera.probe()
    assert facts == {"source": "http", "url": emulator.url, "still_bytes": str(len(emulator.jpeg))}


async def test_unplugged_camera_gives_a_clean_error_then_recovers(emulator: CameraEmulator) -> None:
    async with Camera(_http(emulator.url), NormalisePolicy()) as camera:
        assert (await camera.still()).jpeg == emulator.jpeg
        await emulator.stop()
        with pytest.raises(CameraError, match="unreachable") as failed:
            await camera.still()
        assert emulator.url in str(failed.value)
        assert "[devices.camera] url" in str(failed.value)
        with pytest.raises(CameraError, match="unreachable"):
            await camera.probe()
        await emulator.start()
        assert (await camera.still()).jpeg == emulator.jpeg


async def test_http_errors_name_the_status(emulator: CameraEmulator) -> None:
    emulator.fail_next(1, status=503)
    async with Camera(_http(emulator.url), NormalisePolicy()) as camera:
        with pytest.raises(CameraError, match="HTTP 503"):
            await camera.still()
        assert (await camera.still()).jpeg == emulator.jpeg


async def test_stills_over_the_byte_bound_are_refused(emulator: CameraEmulator) -> None:
    async with Camera(_http(emulator.url, max_bytes=4096), NormalisePolicy()) as camera:
        with pytest.raises(CameraError, match="4,096-byte bound"):
            await camera.still()


async def _serve(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_get("/snapshot.jpg", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/snapshot.jpg"


async def test_a_service_that_sends_no_jpeg_is_reported() -> None:
    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html>login required</html>", content_type="text/html")

    runner, url = await _serve(html)
    try:
        async with Camera(_http(url), NormalisePolicy()) as camera:
            with pytest.raises(CameraError, match="not a JPEG still"):
                await camera.still()
    finally:
        await runner.cleanup()


async def test_a_streamed_still_over_the_bound_is_cut_off() -> None:
    # No Content-Length (chunked), so the bound has to be enforced while reading.
    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(64):
            await resp.write(b"\xff" * 1024)
        return resp

    runner, url = await _serve(endless)
    try:
        async with Camera(_http(url, max_bytes=8192), NormalisePolicy()) as camera:
            with pytest.raises(CameraError, match="more than 8,192 bytes"):
                await camera.still()
    finally:
        await runner.cleanup()


async def test_a_camera_that_does_not_answer_in_time_times_out() -> None:
    never = asyncio.Event()

    async def stall(request: web.Request) -> web.Response:
        await never.wait()
        return web.Response()

    app_runner, url = await _serve(stall)
    try:
        settings = CameraSettings(source="http", url=url, timeout_seconds=0.3)
        async with Camera(settings, NormalisePolicy()) as camera:
            with pytest.raises(CameraError, match="timed out"):
                await camera.still()
    finally:
        never.set()  # let the handler finish, or cleanup waits out aiohttp's shutdown timeout
        await app_runner.cleanup()


async def test_source_must_be_entered_and_not_twice(emulator: CameraEmulator) -> None:
    camera = Camera(_http(emulator.url), NormalisePolicy())
    with pytest.raises(CameraError, match="not open"):
        await camera.still()
    async with camera:
        with pytest.raises(CameraError, match="already open"):
            await camera.__aenter__()


# V4L2: no video device exists on the build machines, so only what needs no hardware is tested
# here: the missing-device path and a device node that is not a camera.


async def test_v4l2_missing_device_says_what_is_present() -> None:
    settings = CameraSettings(source="v4l2", device="/dev/video-cunlink-test-missing")
    async with Camera(settings, NormalisePolicy()) as camera:
        with pytest.raises(CameraError, match="does not exist") as failed:
            await camera.still()
        assert "/dev/video-cunlink-test-missing" in str(failed.value)
        assert "present:" in str(failed.value)
        with pytest.raises(CameraError, match="does not exist"):
            await camera.probe()


async def test_v4l2_on_a_node_that_is_not_a_camera_fails_cleanly() -> None:
    settings = CameraSettings(source="v4l2", device="/dev/null", timeout_seconds=2.0)
    async with Camera(settings, NormalisePolicy()) as camera:
        with pytest.raises(CameraError, match="/dev/null failed"):
            await camera.still()
        with pytest.raises(CameraError, match="/dev/null failed"):
            await camera.probe()


async def test_v4l2_source_must_be_open() -> None:
    camera = Camera(CameraSettings(source="v4l2", device="/dev/video0"), NormalisePolicy())
    with pytest.raises(CameraError, match="not open"):
        await camera.still()


def test_list_video_devices_lists_only_video_nodes() -> None:
    devices = list_video_devices()
    assert all(d.startswith("/dev/video") for d in devices)
    assert devices == sorted(devices, key=lambda p: (len(p), p))


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"source": "http", "url": "ftp://x"}, "needs an http"),
        ({"source": "v4l2", "device": ""}, "device path"),
        ({"source": "usb"}, "must be 'v4l2' or 'http'"),
        ({"source": "v4l2", "width": 0}, "out of range"),
        ({"source": "v4l2", "timeout_seconds": 0}, "timeout"),
        ({"source": "v4l2", "max_bytes": 10}, "max_bytes"),
    ],
)
def test_settings_refuse_what_cannot_work(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        CameraSettings(**kwargs)  # type: ignore[arg-type]
