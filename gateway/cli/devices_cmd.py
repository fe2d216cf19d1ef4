"""`cunlink devices ...`: check and exercise the station's peripherals from the configuration.

    cunlink devices list        configured devices with a live probe each; ports present
    cunlink devices read-card   one card read (personal data masked unless --reveal)
    cunlink devices print-test  a test receipt with Chinese text and a QR code
    cunlink devices capture OUT.jpg   a still, normalised per the configuration

Each maps `[devices.*]` to the driver's own settings and uses the same driver the daemon uses.
Every device problem ends in one line on stderr and exit status 1; no traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Coroutine
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from serial.tools import list_ports

from devices.camera import Camera, CameraSettings, list_video_devices
from devices.health import DeviceError
from devices.idcard import IdCardReader, NoCard, ReaderSettings
from devices.normalise import NormalisePolicy
from devices.printer import Printer as PrinterDriver
from devices.printer import PrinterConfig, PrinterError, PrinterState, PrintResult
from gateway import logs
from gateway.cli.common import fail, load_station
from gateway.config import StationConfig
from protocols.escpos import Align, EscposError, QrErrorLevel, Receipt
from protocols.idcard import describe

app = typer.Typer(
    no_args_is_help=True,
    help="Check and exercise the ID-card reader, receipt printer and document camera.",
)

DEFAULT_CONFIG = Path("/etc/cunlink/station.toml")
ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="The station.toml that describes the devices.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
_T = TypeVar("_T")


@app.callback()
def _options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show the drivers' log lines on stderr.")
    ] = False,
) -> None:
    # Without -v the drivers' warnings (retries, a job failed at close) would repeat, less
    # clearly, what the command's one result line says.
    logs.setup("info" if verbose else "critical")


# The printer states in which a receipt cannot come out: the operator must act.
_PRINTER_PROBLEMS = {
    PrinterState.PAPER_OUT: "is out of paper: load a roll",
    PrinterState.COVER_OPEN: "has its cover open: close it",
    PrinterState.OFFLINE: "is offline: check its power and its button/panel",
    PrinterState.ERROR: "reports an error (cutter jam or a fault): clear it and switch it off/on",
}


def _run(work: Coroutine[Any, Any, _T]) -> _T:
    """Run `work`; any device or settings error becomes one line and exit status 1."""
    try:
        return asyncio.run(work)
    except (DeviceError, EscposError, ValueError) as exc:
        fail(str(exc))
    except TimeoutError as exc:
        fail(str(exc) or "the device did not answer in time")
    except OSError as exc:
        fail(f"{exc.filename or 'device'}: {exc.strerror or exc}")


# --- configuration → driver settings ---------------------------------------------------------


def _camera(cfg: StationConfig) -> Camera:
    c = cfg.devices.camera
    settings = CameraSettings(
        source="http" if c.source == "http" else "v4l2",
        device=str(c.device),
        url=c.url,
        width=c.width,
        height=c.height,
    )
    policy = NormalisePolicy(
        max_pixels=c.max_pixels,
        dpi=c.dpi or None,  # 0 = no dpi target in the config
        page_width_mm=float(c.page_width_mm),
        greyscale=c.greyscale,
        jpeg_quality=c.jpeg_quality,
    )
    return Camera(settings, policy)


def _reader(cfg: StationConfig) -> IdCardReader:
    c = cfg.devices.idcard
    settings = ReaderSettings(
        bauds=(115200, 9600) if c.baud == 0 else (c.baud,),  # 0 = probe, fastest first
        reply_timeout=c.timeout_seconds,
        probe_timeout=c.timeout_seconds,  # the config has one answer time for every command
        poll_interval=c.poll_interval_seconds,
    )
    return IdCardReader(str(c.port), settings)


def _printer_config(cfg: StationConfig) -> PrinterConfig:
    c = cfg.devices.printer
    return PrinterConfig(
        connection="tcp" if c.connection == "tcp" else "serial",
        port=str(c.port),
        baudrate=c.baud,
        host=c.host,
        tcp_port=c.tcp_port,
        status_poll_seconds=c.status_poll_seconds,
    )


def _require(cfg: StationConfig, config: Path, device: str) -> None:
    if not getattr(cfg.devices, device).enabled:
        fail(
            f"the {device} is disabled in {config}: set [devices.{device}] enabled = true "
            "(and its port, address or URL) first"
        )


# --- list --------------------------------------------------------------------------------------


async def _probe_idcard(cfg: StationConfig) -> tuple[str, dict[str, str]]:
    async with _reader(cfg) as reader:
        info = reader.info
    return info.path, {
        "baud": str(info.baud),
        "sam_id": info.sam_id,
        "sam_status": "ok" if info.sam_ok else "not ok",
    }


async def _printer_state(printer: PrinterDriver) -> PrinterState:
    """The first settled state of a freshly started driver (ready, paper out …)."""
    async with printer.subscribe() as events:
        async for event in events:
            if event.state is PrinterState.DISCONNECTED:
                raise PrinterError(printer.health().last_error or event.message)
            if event.state is not PrinterState.CONNECTING:
                return event.state
    raise PrinterError(f"printer at {printer.config.address} closed while being probed")


async def _probe_printer(cfg: StationConfig) -> tuple[str, dict[str, str]]:
    config = _printer_config(cfg)
    async with PrinterDriver(config) as printer:
        state = await _printer_state(printer)
    return config.address, {"status": state.value}


async def _probe_camera(cfg: StationConfig) -> tuple[str, dict[str, str]]:
    camera = _camera(cfg)
    async with camera:
        facts = await camera.probe()
    return camera.settings.where, {k: v for k, v in facts.items() if k not in ("url", "device")}


def _where(cfg: StationConfig, device: str) -> str:
    d = cfg.devices
    match device:
        case "idcard":
            return str(d.idcard.port)
        case "printer":
            return _printer_config(cfg).address
        case _:
            return d.camera.url if d.camera.source == "http" else str(d.camera.device)


async def _probe(cfg: StationConfig, device: str, deadline: float) -> dict[str, Any]:
    """Probe one device, by `deadline` (event-loop time); never raises for device faults."""
    entry: dict[str, Any] = {"device": device, "enabled": getattr(cfg.devices, device).enabled}
    entry["where"] = _where(cfg, device)
    if not entry["enabled"]:
        return entry | {"ok": None}
    started = time.perf_counter()
    try:
        async with asyncio.timeout_at(deadline):
            match device:
                case "idcard":
                    where, detail = await _probe_idcard(cfg)
                case "printer":
                    where, detail = await _probe_printer(cfg)
                case _:
                    where, detail = await _probe_camera(cfg)
    except (DeviceError, ValueError, OSError) as exc:
        return entry | {"ok": False, "error": str(exc)}
    except TimeoutError:
        return entry | {"ok": False, "error": "no answer before the probe's deadline (--timeout)"}
    ms = round((time.perf_counter() - started) * 1000)
    return entry | {"ok": True, "where": where, "detail": detail, "probe_ms": ms}


async def _probe_all(cfg: StationConfig, seconds: float) -> list[dict[str, Any]]:
    # One deadline for all: the probes run side by side, so `list` takes at most `seconds`.
    deadline = asyncio.get_running_loop().time() + seconds
    devices = ("idcard", "printer", "camera")
    return list(await asyncio.gather(*(_probe(cfg, d, deadline) for d in devices)))


def _serial_ports() -> list[dict[str, str]]:
    return [
        {"device": p.device, "description": p.description, "hwid": p.hwid}
        for p in sorted(list_ports.comports(), key=lambda p: p.device)
    ]


@app.command("list")
def list_devices(
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds each device may take to answer its probe.")
    ] = 10.0,
) -> None:
    """Configured devices with a live probe each, and the serial ports and cameras present.

    Exit status 1 if an enabled device fails its probe.
    """
    cfg = load_station(config)
    if timeout <= 0:
        fail(f"--timeout must be a positive number of seconds, got {timeout}")
    devices = _run(_probe_all(cfg, timeout))
    ports, videos = _serial_ports(), list_video_devices()
    if as_json:
        out = {"config": str(config), "devices": devices, "serial_ports": ports}
        typer.echo(json.dumps(out | {"video_devices": videos}, ensure_ascii=False, indent=2))
        if any(d["enabled"] and not d["ok"] for d in devices):
            raise typer.Exit(1)  # the JSON says which; scripts can test the status
        return
    typer.echo(f"devices configured in {config}:")
    for d in devices:
        if not d["enabled"]:
            state, text = "disabled", ""
        elif d["ok"]:
            state = "ok"
            text = ", ".join(f"{k} {v}" for k, v in d["detail"].items())
            text += f" ({d['probe_ms']} ms)"
        else:
            state, text = "FAILED", d["error"]
        typer.echo(f"  {d['device']:<8} {state:<8} {d['where']}  {text}".rstrip())
    typer.echo("serial ports present:")
    for p in ports:
        typer.echo(f"  {p['device']}  {p['description']}  {p['hwid']}")
    if not ports:
        typer.echo("  none")
    typer.echo("video devices present: " + (", ".join(videos) or "none"))
    failed = [d["device"] for d in devices if d["enabled"] and not d["ok"]]
    if failed:
        fail(f"{len(failed)} enabled device(s) failed their probe: {', '.join(failed)}")


# --- read-card --------------------------------------------------------------------------------


@app.command("read-card")
def read_card(
    config: ConfigOption = DEFAULT_CONFIG,
    reveal: Annotated[
        bool, typer.Option("--reveal", help="Show names, numbers and addresses in full.")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for a card to be placed.")
    ] = 10.0,
    as_json: JsonOption = False,
) -> None:
    """Read one ID card; personal data is masked unless --reveal."""
    cfg = load_station(config)
    _require(cfg, config, "idcard")
    if timeout <= 0:
        fail(f"--timeout must be a positive number of seconds, got {timeout}")

    async def read() -> dict[str, Any]:
        started = time.perf_counter()
        async with _reader(cfg) as reader:
            try:
                result = await reader.read_once(timeout)
            except NoCard as exc:
                raise NoCard(f"{exc}; place the card flat on the reader and run again") from exc
            baud = reader.info.baud
        card = describe(result.text, reveal=reveal)
        photo = {"format": "WLT", "bytes": len(result.photo_wlt)}
        if reveal:  # the hash identifies the photo, so it is shown only with the rest
            photo["sha256"] = result.photo_sha256
        ms = round((time.perf_counter() - started) * 1000)
        return {"reader": reader.path, "baud": baud, "ms": ms, "card": card, "photo": photo}

    out = _run(read())
    if as_json:
        typer.echo(json.dumps(out | {"masked": not reveal}, ensure_ascii=False, indent=2))
        return
    typer.echo(f"card read on {out['reader']} at {out['baud']} baud in {out['ms']} ms:")
    for key, value in out["card"].items():
        typer.echo(f"  {key:<18} {value}")
    photo = out["photo"]
    typer.echo(f"  {'photo':<18} {photo['bytes']} bytes WLT (kept raw; not decoded here)")
    if reveal:
        typer.echo(f"  {'photo sha256':<18} {photo['sha256']}")
    else:
        typer.echo("(personal data masked; --reveal shows it in full)")


# --- print-test -------------------------------------------------------------------------------


def _test_receipt(cfg: StationConfig, payload: str) -> bytes:
    p = cfg.devices.printer
    receipt = Receipt(p.width_chars, p.encoding)
    receipt.text("打印测试", bold=True, width=2, height=2, align=Align.CENTER)
    receipt.text("cunlink 村级便民服务站", align=Align.CENTER)
    receipt.separator()
    receipt.key_value("站点：", cfg.station.id)
    receipt.key_value("编码：", p.encoding)
    receipt.key_value("时间：", datetime.now().strftime("%Y-%m-%d %H:%M:%S"))
    receipt.text("中文与全角标点：，。：；（）“”！？")
    receipt.separator()
    receipt.qr(payload, module_size=6, level=QrErrorLevel.M, align=Align.CENTER)
    receipt.text(payload, align=Align.CENTER)
    return receipt.cut(feed=4).to_bytes()


async def _print_watching(printer: PrinterDriver, data: bytes) -> PrintResult:
    """Submit `data`; fail at once if the printer reports it cannot print."""
    where = printer.config.address
    async with printer.subscribe() as events:
        job = printer.submit(data, label="test receipt")
        while True:
            event = asyncio.ensure_future(anext(events))
            waiting: set[asyncio.Future[Any]] = {job.future, event}
            done, _ = await asyncio.wait(waiting, return_when="FIRST_COMPLETED")
            if job.future in done:
                event.cancel()
                return job.future.result()
            state = event.result().state
            if state in _PRINTER_PROBLEMS:
                raise PrinterError(
                    f"printer at {where} {_PRINTER_PROBLEMS[state]}; the test receipt was not "
                    "printed, run print-test again"
                )
            if state is PrinterState.DISCONNECTED:
                raise PrinterError(
                    f"{printer.health().last_error or 'printer at ' + where + ' is unreachable'}"
                    "; the test receipt was not printed"
                )


@app.command("print-test")
def print_test(
    config: ConfigOption = DEFAULT_CONFIG,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds the printer may take to confirm.")
    ] = 20.0,
) -> None:
    """Print a test receipt (Chinese text, full-width punctuation, a QR code)."""
    cfg = load_station(config)
    _require(cfg, config, "printer")
    payload = f"CUNLINK-TEST-{cfg.station.id}-{int(time.time())}"
    data = _test_receipt(cfg, payload)

    async def run() -> tuple[PrintResult, float]:
        started = time.perf_counter()
        async with PrinterDriver(_printer_config(cfg)) as printer:
            try:
                async with asyncio.timeout(timeout):
                    result = await _print_watching(printer, data)
            except TimeoutError:
                raise PrinterError(
                    f"printer at {printer.config.address} did not confirm the test receipt "
                    f"within {timeout:g} s (state {printer.state.value}); check it and run again"
                ) from None
        return result, time.perf_counter() - started

    result, seconds = _run(run())
    address = _printer_config(cfg).address
    typer.echo(
        f"test receipt printed on {address}: {len(data)} bytes ({cfg.devices.printer.encoding}), "
        f"QR {payload}, confirmed by the printer after {seconds:.1f} s "
        f"(attempt {result.attempts})"
    )


# --- capture ----------------------------------------------------------------------------------


def _write_atomically(path: Path, data: bytes) -> None:
    # Written beside the target and renamed, so OUT.jpg is never a half-written file.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@app.command("capture")
def capture(
    out: Annotated[Path, typer.Argument(help="Where to write the normalised page (JPEG).")],
    config: ConfigOption = DEFAULT_CONFIG,
    raw: Annotated[
        Path | None, typer.Option("--raw", help="Also write the raw still (as captured) here.")
    ] = None,
) -> None:
    """Capture one page, normalise it per the camera settings, write OUT and report sizes."""
    cfg = load_station(config)
    _require(cfg, config, "camera")
    camera = _camera(cfg)

    async def take() -> Any:
        async with camera:
            return await camera.capture()

    result = _run(take())
    for path, data in ((out, result.page.jpeg), (raw, result.still.jpeg)):
        if path is None:
            continue
        try:
            _write_atomically(path, data)
        except OSError as exc:
            fail(f"cannot write {path}: {exc.strerror or exc}; choose another place")
    still, page = result.still, result.page
    note = " (Huffman tables added to the MJPEG frame)" if still.completed else ""
    typer.echo(f"captured from {camera.settings.where} in {still.seconds * 1000:.0f} ms{note}")
    typer.echo(f"wrote {out}: {page.summary()}")
