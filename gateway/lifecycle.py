"""Signals, readiness and the watchdog for both daemons, as one async context manager.

    async with ServiceLifecycle("station", on_stop=uplink.stop, on_reload=reload,
                                health=engine_alive) as life:
        ...start things...
        life.ready("running; link down")
        await engine_finished

- SIGTERM / SIGINT: STOPPING=1 goes out at once, then `on_stop()` is called (once; a repeated
  signal is logged, the daemon's own shutdown bound still applies).
- SIGHUP: RELOADING=1, then `await on_reload()`, then READY=1 with a STATUS line saying how the
  reload went. Reloads never overlap: a SIGHUP during one runs another right after it, so the
  last edit of the file always gets read.
- Watchdog: when systemd asks for one, WATCHDOG=1 every half period, but only while `health()`
  returns true. A wedged event loop cannot run the ping task, and a dead engine makes health()
  false, so either way the pings stop and systemd restarts the service.
- On exit: STOPPING=1 if not yet sent, tasks cancelled, previous signal handlers restored.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from types import FrameType, TracebackType
from typing import Any

from gateway.sdnotify import Notifier

log = logging.getLogger("cunlink.lifecycle")

StopCallback = Callable[[], None]
ReloadCallback = Callable[[], Awaitable[str | None]]
HealthCheck = Callable[[], bool]
_Handler = Callable[[int, FrameType | None], Any] | int | None

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class LifecycleError(RuntimeError):
    """The lifecycle was used in a way that cannot work (entered twice, no running loop)."""


class ServiceLifecycle:
    """One per daemon process. `name` appears in logs and in the STATUS line."""

    def __init__(
        self,
        name: str,
        *,
        on_stop: StopCallback,
        on_reload: ReloadCallback | None = None,
        health: HealthCheck | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.name = name
        self._on_stop = on_stop
        self._on_reload = on_reload
        self._health = health
        self.notifier = Notifier.from_environ() if notifier is None else notifier
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: dict[signal.Signals, _Handler] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._reload_task: asyncio.Task[None] | None = None
        self._reload_again = False
        self._stopping_sent = False
        self._was_healthy = True
        self.stop_requested = asyncio.Event()
        self.reloads = 0  # completed reload attempts, successful or not

    # --- context manager -------------------------------------------------------------------

    async def __aenter__(self) -> ServiceLifecycle:
        if self._loop is not None:
            raise LifecycleError(
                f"ServiceLifecycle({self.name!r}) was already entered; make a new one per run")
        loop = asyncio.get_running_loop()
        self._loop = loop
        for sig in STOP_SIGNALS:
            self._install(sig, self._stop_signalled, sig)
        # Always taken: SIGHUP's default action would kill the daemon, and a technician who
        # sends it to a daemon without reload support should see a log line, not an outage.
        self._install(signal.SIGHUP, self._reload_signalled)
        interval = self.notifier.watchdog_interval
        if interval is not None:
            log.info("systemd watchdog on: pinging every %.1f s while healthy", interval)
            self._spawn(self._watchdog(interval), "watchdog")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        loop = self._loop
        assert loop is not None
        if exc is not None and not isinstance(exc, asyncio.CancelledError):
            self._send_stopping(f"failed: {type(exc).__name__}: {exc}")
        else:
            self._send_stopping("stopped")
        for sig in list(self._previous):
            loop.remove_signal_handler(sig)
            # remove_signal_handler leaves SIG_DFL; put back what was there before us (pytest,
            # an embedding program, or Python's own KeyboardInterrupt handler for SIGINT)
            signal.signal(sig, self._previous.pop(sig))
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.notifier.close()

    # --- what the daemon calls -------------------------------------------------------------

    def ready(self, status: str = "") -> None:
        """Start-up finished: systemd now considers the service active."""
        self.notifier.ready(status or f"{self.name} running")
        log.info("%s ready", self.name)

    def status(self, text: str) -> None:
        self.notifier.status(text)

    @property
    def stopping(self) -> bool:
        return self.stop_requested.is_set()

    def request_stop(self, reason: str) -> None:
        """Begin shutdown as a signal would (also used when the daemon decides to stop)."""
        if self.stop_requested.is_set():
            log.info("%s: %s, already stopping", self.name, reason)
            return
        log.info("%s: %s, stopping", self.name, reason)
        self.stop_requested.set()
        # Tell systemd first: on_stop may take a while to return, and STOPPING=1 makes
        # `systemctl status` say so instead of showing a healthy service that ignores SIGTERM.
        self._send_stopping("stopping")
        try:
            self._on_stop()
        except Exception:
            log.exception("%s: the stop callback failed", self.name)

    # --- signal handlers (run in the event loop, via add_signal_handler) -------------------

    def _install(self, sig: signal.Signals, callback: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        self._previous[sig] = signal.getsignal(sig)
        self._loop.add_signal_handler(sig, callback, *args)

    def _stop_signalled(self, sig: signal.Signals) -> None:
        self.request_stop(f"got {sig.name}")

    def _reload_signalled(self) -> None:
        if self._on_reload is None:
            log.warning("%s: got SIGHUP, but this daemon has nothing to reload; "
                        "restart it to apply a new configuration", self.name)
            return
        if self.stop_requested.is_set():
            log.info("%s: got SIGHUP while stopping; not reloading", self.name)
            return
        if self._reload_task is not None and not self._reload_task.done():
            self._reload_again = True  # the file may have changed again since the read began
            return
        self._reload_task = self._spawn(self._reload(), "reload")

    async def _reload(self) -> None:
        assert self._on_reload is not None
        again = True
        while again and not self.stop_requested.is_set():
            self._reload_again = False
            self.notifier.reloading()
            log.info("%s: got SIGHUP, reloading the configuration", self.name)
            try:
                outcome = await self._on_reload() or "configuration reloaded"
            except Exception as exc:
                # The callback should leave the old config running and say why; if it raises
                # instead, the old config is still running, so the daemon carries on.
                log.exception("%s: reload failed", self.name)
                outcome = f"reload failed: {type(exc).__name__}: {exc}"
            self.reloads += 1
            if not self.stop_requested.is_set():
                self.notifier.ready(f"{self.name} running; {outcome}")
            again = self._reload_again

    # --- watchdog ---------------------------------------------------------------------------

    async def _watchdog(self, interval: float) -> None:
        while True:
            if self._healthy():
                self.notifier.watchdog()
            await asyncio.sleep(interval)

    def _healthy(self) -> bool:
        if self._health is None:
            return True
        try:
            healthy = bool(self._health())
        except Exception:
            log.exception("%s: health check raised; treating as unhealthy", self.name)
            healthy = False
        if healthy != self._was_healthy:
            if healthy:
                log.warning("%s: healthy again; watchdog pings resume", self.name)
            else:
                log.error("%s: unhealthy; watchdog pings paused (systemd restarts the service "
                          "when WatchdogSec= runs out)", self.name)
            self._was_healthy = healthy
        return healthy

    # --- helpers ----------------------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work, name=f"{self.name}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _send_stopping(self, status: str) -> None:
        if not self._stopping_sent:
            self._stopping_sent = True
            self.notifier.stopping(f"{self.name} {status}")
        else:
            self.notifier.status(f"{self.name} {status}")
