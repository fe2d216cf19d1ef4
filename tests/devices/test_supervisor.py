"""The device supervisor: health transitions, backoff, and reconnecting a real HTTP camera."""

from __future__ import annotations

import asyncio
import functools
import itertools
import random
import time

import pytest

from devices.camera import Camera, CameraSettings
from devices.emulators.camera import CameraEmulator, PageSpec
from devices.health import (
    DeviceError,
    DeviceHealth,
    DeviceState,
    HealthEvent,
    backoff_delay,
    next_state,
)
from devices.normalise import NormalisePolicy
from devices.supervisor import HealthRecorder, Supervisor, SupervisorError, SupervisorPolicy

FAST = SupervisorPolicy(backoff_base=0.02, backoff_cap=0.1, down_after=3)


def _in(*states: DeviceState) -> functools.partial[bool]:
    return functools.partial(lambda wanted, h: h.state in wanted, states)


# --- the pure parts -------------------------------------------------------------------------


def test_every_state_has_a_transition_for_every_event() -> None:
    for state, event in itertools.product(DeviceState, HealthEvent):
        assert next_state(state, event) in DeviceState


@pytest.mark.parametrize(
    ("state", "event", "after"),
    [
        (DeviceState.STARTING, HealthEvent.FAILURE, DeviceState.STARTING),
        (DeviceState.STARTING, HealthEvent.FAILURE_LIMIT, DeviceState.DOWN),
        (DeviceState.OK, HealthEvent.FAILURE, DeviceState.DEGRADED),
        (DeviceState.OK, HealthEvent.PROBLEM, DeviceState.DEGRADED),
        (DeviceState.DOWN, HealthEvent.FAILURE, DeviceState.DOWN),
        (DeviceState.DOWN, HealthEvent.SUCCESS, DeviceState.OK),
        (DeviceState.DEGRADED, HealthEvent.SUCCESS, DeviceState.OK),
    ],
)
def test_transitions(state: DeviceState, event: HealthEvent, after: DeviceState) -> None:
    assert next_state(state, event) is after


def test_backoff_grows_exponentially_up_to_the_cap_with_full_jitter() -> None:
    rng = random.Random(1)
    for failures in range(1, 12):
        ceiling = min(8.0, 0.5 * 2 ** (failures - 1))
        samples = [backoff_delay(failures, base=0.5, cap=8.0, rng=rng) for _ in range(300)]
        assert all(0 <= s <= ceiling for s in samples)
        # Full jitter: samples spread over the whole window, not bunched at its top.
        assert min(samples) < ceiling * 0.1 and max(samples) > ceiling * 0.9
    assert backoff_delay(10_000, base=0.5, cap=8.0, rng=rng) <= 8.0  # no overflow


def test_backoff_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="at least one failure"):
        backoff_delay(0, base=1, cap=2)
    with pytest.raises(ValueError, match="base <= cap"):
        backoff_delay(1, base=3, cap=2)
    with pytest.raises(ValueError, match="backoff_base"):
        SupervisorPolicy(backoff_base=0)
    with pytest.raises(ValueError, match="down_after"):
        SupervisorPolicy(down_after=0)


def test_health_records_validate_and_serialise() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        DeviceHealth(name="", kind="camera", state=DeviceState.OK)
    with pytest.raises(ValueError, match="negative"):
        DeviceHealth(name="x", kind="camera", state=DeviceState.OK, failures=-1)
    health = DeviceHealth(name="x", kind="printer", state=DeviceState.OK, detail=(("a", "b"),))
    assert health.as_dict()["state"] == "ok" and health.as_dict()["detail"] == {"a": "b"}


def test_recorder_walks_ok_degraded_down_ok() -> None:
    now = iter(range(100, 200))
    changes: list[DeviceState] = []
    rec: HealthRecorder

    def changed() -> None:
        changes.append(rec.snapshot().state)

    rec = HealthRecorder(name="camera", kind="camera", changed=changed, clock=lambda: next(now))
    rec.failure("camera at http://127.0.0.1:1/ is unreachable", down_after=3)
    assert rec.snapshot().state is DeviceState.STARTING  # not up yet: no alarm on one miss
    rec.success(url="http://127.0.0.1:1/")
    for _ in range(3):
        rec.failure("camera at http://127.0.0.1:1/ is unreachable", down_after=3)
    rec.restarted()
    rec.success()
    h = rec.snapshot()
    assert changes == [
        DeviceState.STARTING,
        DeviceState.OK,
        DeviceState.DEGRADED,
        DeviceState.DEGRADED,
        DeviceState.DOWN,
        DeviceState.DOWN,
        DeviceState.OK,
    ]
    assert (h.failures, h.consecutive_failures, h.successes, h.reconnects) == (4, 0, 2, 1)
    assert h.last_success_at == 105 and h.last_error_at == 104
    assert h.detail == (("url", "http://127.0.0.1:1/"),)  # kept when a success brings none


# --- the supervisor with real tasks ---------------------------------------------------------


async def test_a_real_http_camera_goes_down_and_comes_back() -> None:
    async with CameraEmulator(PageSpec(width=320, height=240)) as emu:
        settings = CameraSettings(source="http", url=emu.url, timeout_seconds=2.0)
        async with Camera(settings, NormalisePolicy()) as camera, Supervisor(policy=FAST) as sup:
            sup.start("camera", "camera", functools.partial(camera.watch, interval=0.02))
            assert sup.health("camera").state in (DeviceState.STARTING, DeviceState.OK)
            async with asyncio.timeout(10):
                ok = await sup.wait_for("camera", _in(DeviceState.OK))
            assert ok.detail == (
                ("source", "http"),
                ("still_bytes", str(len(emu.jpeg))),
                ("url", emu.url),
            )
            first_success = ok.last_success_at

            await emu.stop()  # unplugged
            async with asyncio.timeout(10):
                # It passes through "degraded" (see the recorder test), perhaps too fast to see.
                failing = await sup.wait_for("camera", _in(DeviceState.DEGRADED, DeviceState.DOWN))
                down = await sup.wait_for("camera", _in(DeviceState.DOWN))
            assert failing.consecutive_failures >= 1
            assert down.consecutive_failures >= 3
            assert down.last_error is not None and emu.url in down.last_error
            assert "unreachable" in down.last_error

            await emu.start()  # replugged
            async with asyncio.timeout(10):
                back = await sup.wait_for("camera", _in(DeviceState.OK))
            assert back.consecutive_failures == 0
            assert back.reconnects >= 3 and back.failures >= 3
            assert back.last_success_at is not None and first_success is not None
            assert back.last_success_at >= first_success
            assert back.successes > ok.successes


async def test_backoff_is_waited_between_attempts() -> None:
    attempts: list[float] = []

    async def always_fails(health: HealthRecorder) -> None:
        attempts.append(time.monotonic())
        raise DeviceError("port /dev/ttyUSB9 is gone")

    policy = SupervisorPolicy(backoff_base=0.05, backoff_cap=0.4, down_after=2)
    async with Supervisor(policy=policy, rng=random.Random(7)) as sup:
        sup.start("reader", "idcard", always_fails)
        async with asyncio.timeout(10):
            await sup.wait_for("reader", lambda h: h.failures >= 6)
    expected = random.Random(7)
    waits = [backoff_delay(n, base=0.05, cap=0.4, rng=expected) for n in range(1, 6)]
    gaps = [b - a for a, b in itertools.pairwise(attempts[:6])]
    assert len(gaps) == 5
    for gap, wait in zip(gaps, waits, strict=True):
        assert gap >= wait - 0.005  # the loop's clock granularity


async def test_one_crashing_device_does_not_disturb_another() -> None:
    async def crashes(health: HealthRecorder) -> None:
        raise KeyError("bug in a driver")

    async def healthy(health: HealthRecorder) -> None:
        while True:
            health.success(sam_id="05.01-20180101-0000000001-0000000002")
            await asyncio.sleep(0.01)

    async with Supervisor(policy=FAST) as sup:
        sup.start("printer", "printer", crashes)
        sup.start("reader", "idcard", healthy)
        async with asyncio.timeout(10):
            crashed = await sup.wait_for("printer", _in(DeviceState.DOWN))
            reader = await sup.wait_for("reader", lambda h: h.successes >= 20)
    assert crashed.last_error == "KeyError: 'bug in a driver'"
    assert reader.state is DeviceState.OK and reader.failures == 0
    assert [h.name for h in sup.snapshot()] == ["printer", "reader"]


async def test_a_device_problem_degrades_without_counting_a_failure() -> None:
    async def paper_out(health: HealthRecorder) -> None:
        health.success(status="ready")
        health.problem("printer at /dev/ttyS0 reports paper out; load paper", status="paper out")
        await asyncio.Event().wait()

    async with Supervisor(policy=FAST) as sup:
        sup.start("printer", "printer", paper_out)
        async with asyncio.timeout(5):
            health = await sup.wait_for("printer", _in(DeviceState.DEGRADED))
    assert health.failures == 0 and health.successes == 1
    assert health.last_error is not None and "paper out" in health.last_error
    assert health.detail == (("status", "paper out"),)


async def test_a_task_that_returns_is_restarted() -> None:
    runs = 0

    async def returns(health: HealthRecorder) -> None:
        nonlocal runs
        runs += 1
        health.success()

    async with Supervisor(policy=FAST) as sup:
        sup.start("camera", "camera", returns)
        async with asyncio.timeout(5):
            health = await sup.wait_for("camera", lambda h: h.reconnects >= 2)
    assert runs >= 3
    assert health.last_error is not None and "stopped without an error" in health.last_error


async def test_leaving_the_supervisor_cancels_tasks_and_lets_them_close() -> None:
    closed = asyncio.Event()

    async def holds_a_port(health: HealthRecorder) -> None:
        try:
            health.success()
            await asyncio.Event().wait()
        finally:
            closed.set()

    async with Supervisor(policy=FAST) as sup:
        sup.start("reader", "idcard", holds_a_port)
        async with asyncio.timeout(5):
            await sup.wait_for("reader", _in(DeviceState.OK))
    assert closed.is_set()
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "device:reader"]


async def test_misuse_is_refused_with_a_clear_error() -> None:
    async def idle(health: HealthRecorder) -> None:
        await asyncio.Event().wait()

    sup = Supervisor(policy=FAST)
    with pytest.raises(SupervisorError, match="not running"):
        sup.start("camera", "camera", idle)
    async with sup:
        sup.start("camera", "camera", idle)
        with pytest.raises(SupervisorError, match="already supervised"):
            sup.start("camera", "camera", idle)
        with pytest.raises(SupervisorError, match="no supervised device named 'scanner'"):
            sup.health("scanner")
        with pytest.raises(SupervisorError, match="already running"):
            await sup.__aenter__()
