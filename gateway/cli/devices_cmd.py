"""`cunlink devices ...`: check and exercise the station's peripherals from the configuration.

    cunlink devices list        configured devices with a live probe each; ports present
    cunlink devices read-card   one card read (personal data masked unless --reveal)
    cunlink devices print-test  a test receipt with Chinese text and a QR code
    cunlink devices capture OUT.jpg   a still, normalised per the configuration

Each maps `[devices.*]` to the driver's own settings and uses the same driver the daemon uses.
Every device problem ends in one line on stderr and exit status 1; no traceback.

Human output and the CLI's own messages follow the language rules of gateway.i18n (--lang,
$CUNLINK_LANG, the locale, [station] language); the drivers' own lines stay as they are, framed
in that language. --json is the same in every language (probe errors in it are the English
texts).
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

from devices.camera import Camera, list_video_devices
from devices.health import DeviceError
from devices.idcard import IdCardReader, NoCard
from devices.printer import Printer as PrinterDriver
from devices.printer import PrinterError, PrinterState, PrintResult
from gateway import logs, wiring
from gateway.cli.common import (
    LangOption,
    fail_t,
    fail_with,
    ljust,
    station_messages,
)
from gateway.config import StationConfig
from gateway.i18n import Messages, english
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
JsonOption = Annotated[bool, typer.Option(
    "--json", help="Print the result as JSON on stdout (the same in every language).")]
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


# The printer states in which a receipt cannot come out: the operator must act (message keys).
_PRINTER_PROBLEMS = {
    PrinterState.PAPER_OUT: "devices.printer.paper_out",
    PrinterState.COVER_OPEN: "devices.printer.cover_open",
    PrinterState.OFFLINE: "devices.printer.offline",
    PrinterState.ERROR: "devices.printer.error",
}


def _run(work: Coroutine[Any, Any, _T], t: Messages = english) -> _T:
    """Run `work`; any device or settings error becomes one line and exit status 1."""
    try:
        return asyncio.run(work)
    except (DeviceError, EscposError, ValueError) as exc:
        fail_with(t, str(exc))
    except TimeoutError as exc:
        fail_with(t, str(exc) or t("devices.no_answer"))
    except OSError as exc:
        fail_t(t, "devices.os_error", what=exc.filename or t("devices.device"),
               error=exc.strerror or exc)


# --- configuration → driver settings ---------------------------------------------------------


def _camera(cfg: StationConfig) -> Camera:
    return Camera(wiring.camera_settings(cfg), wiring.camera_policy(cfg))


def _reader(cfg: StationConfig) -> IdCardReader:
    return IdCardReader(str(cfg.devices.idcard.port), wiring.reader_settings(cfg))


def _daemon_status(t: Messages, cfg: StationConfig) -> dict[str, Any] | None:
    """The running station daemon's status, or None when it is not running. While it runs it
    holds the serial ports (exclusive locks) and the camera, so probing them here would only
    report "busy" and blame another program."""
    from gateway.probe import DaemonUnavailable, fetch_status, socket_path

    sock = socket_path(cfg.station.state_dir)
    if not sock.exists():
        return None
    try:
        return _run(fetch_status(sock, wait_s=3.0), t)
    except DaemonUnavailable:
        return None


def _refuse_while_daemon_runs(t: Messages, cfg: StationConfig, what: str) -> None:
    if _daemon_status(t, cfg) is not None:
        fail_t(t, "devices.daemon_holds", what=what)


def _require(t: Messages, cfg: StationConfig, config: Path, device: str) -> None:
    if not getattr(cfg.devices, device).enabled:
        fail_t(t, "devices.disabled", device=device, config=config)


def _check_timeout(t: Messages, timeout: float) -> None:
    if timeout <= 0:
        fail_t(t, "devices.bad_timeout", value=timeout)


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
    config = wiring.printer_config(cfg)
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
            return wiring.printer_config(cfg).address
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
    except TimeoutError:  # English here: the entry is also the --json output
        return entry | {"ok": False, "error": english("devices.probe_timeout")}
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
    lang: LangOption = None,
) -> None:
    """Configured devices with a live probe each, and the serial ports and cameras present.

    Exit status 1 if an enabled device fails its probe.
    """
    cfg, t = station_messages(config, lang)
    _check_timeout(t, timeout)
    if (status := _daemon_status(t, cfg)) is not None:
        _show_daemon_devices(t, status, as_json)
        return
    devices = _run(_probe_all(cfg, timeout), t)
    ports, videos = _serial_ports(), list_video_devices()
    if as_json:
        out = {"config": str(config), "devices": devices, "serial_ports": ports}
        typer.echo(json.dumps(out | {"video_devices": videos}, ensure_ascii=False, indent=2))
        if any(d["enabled"] and not d["ok"] for d in devices):
            raise typer.Exit(1)  # the JSON says which; scripts can test the status
        return
    typer.echo(t("devices.configured", config=config))
    for d in devices:
        if not d["enabled"]:
            state, text = t("state.disabled"), ""
        elif d["ok"]:
            state = t("state.ok")
            text = ", ".join(f"{k} {v}" for k, v in d["detail"].items())  # the driver's facts
            text += t("devices.probe_ms", ms=d["probe_ms"])
        else:
            state = t("devices.failed")
            text = (t("devices.probe_timeout") if d["error"] == english("devices.probe_timeout")
                    else d["error"])
        typer.echo(f"  {d['device']:<8} {ljust(state, 8)} {d['where']}  {text}".rstrip())
    typer.echo(t("devices.serial_ports"))
    for p in ports:
        typer.echo(f"  {p['device']}  {p['description']}  {p['hwid']}")
    if not ports:
        typer.echo("  " + t("cli.none"))
    typer.echo(t("devices.video", devices=", ".join(videos) or t("cli.none")))
    failed = [d["device"] for d in devices if d["enabled"] and not d["ok"]]
    if failed:
        fail_t(t, "devices.list_failed", n=len(failed), devices=", ".join(failed))


def _show_daemon_devices(t: Messages, status: dict[str, Any], as_json: bool) -> None:
    """`devices list` while the daemon runs: its supervisor's view instead of a probe."""
    devices = status.get("devices", [])
    if as_json:
        typer.echo(json.dumps({"daemon": True, "devices": devices}, ensure_ascii=False,
                              indent=2))
    else:
        typer.echo(t("devices.daemon_view"))
        for d in devices:
            text = d.get("last_error") or d.get("message") or ""
            state = str(d.get("state", "?"))
            shown = t(f"state.{state}") if t.has(f"state.{state}") else state
            typer.echo(f"  {d.get('name', '?'):<8} {ljust(shown, 8)} {text}".rstrip())
        if not devices:
            typer.echo(t("devices.none_enabled"))
    if any(d.get("state") == "down" for d in devices):
        raise typer.Exit(1)


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
    lang: LangOption = None,
) -> None:
    """Read one ID card; personal data is masked unless --reveal."""
    cfg, t = station_messages(config, lang)
    _require(t, cfg, config, "idcard")
    _refuse_while_daemon_runs(t, cfg, "`cunlink devices read-card`")
    _check_timeout(t, timeout)

    async def read() -> dict[str, Any]:
        started = time.perf_counter()
        async with _reader(cfg) as reader:
            try:
                result = await reader.read_once(timeout)
            except NoCard as exc:
                raise NoCard(t("devices.no_card", error=exc)) from exc
            baud = reader.info.baud
        card = describe(result.text, reveal=reveal)
        photo = {"format": "WLT", "bytes": len(result.photo_wlt)}
        if reveal:  # the hash identifies the photo, so it is shown only with the rest
            photo["sha256"] = result.photo_sha256
        ms = round((time.perf_counter() - started) * 1000)
        return {"reader": reader.path, "baud": baud, "ms": ms, "card": card, "photo": photo}

    out = _run(read(), t)
    if as_json:
        typer.echo(json.dumps(out | {"masked": not reveal}, ensure_ascii=False, indent=2))
        return
    typer.echo(t("devices.card_read", reader=out["reader"], baud=out["baud"], ms=out["ms"]))
    for key, value in out["card"].items():
        if key == "sex" and t.has(f"card.sex.{value}"):
            value = t(f"card.sex.{value}")
        label = t(f"card.{key}") if t.has(f"card.{key}") else key
        typer.echo(f"  {ljust(label, 18)} {value}")
    photo = out["photo"]
    typer.echo(f"  {ljust(t('card.photo'), 18)} {t('devices.photo', bytes=photo['bytes'])}")
    if reveal:
        typer.echo(f"  {ljust(t('card.photo_sha256'), 18)} {photo['sha256']}")
    else:
        typer.echo(t("cli.masked"))


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


async def _print_watching(t: Messages, printer: PrinterDriver, data: bytes) -> PrintResult:
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
                raise PrinterError(t("devices.printer.problem", where=where,
                                     problem=t(_PRINTER_PROBLEMS[state])))
            if state is PrinterState.DISCONNECTED:
                error = (printer.health().last_error
                         or t("devices.printer.unreachable", where=where))
                raise PrinterError(t("devices.printer.gone", error=error))


@app.command("print-test")
def print_test(
    config: ConfigOption = DEFAULT_CONFIG,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds the printer may take to confirm.")
    ] = 20.0,
    lang: LangOption = None,
) -> None:
    """Print a test receipt (Chinese text, full-width punctuation, a QR code)."""
    cfg, t = station_messages(config, lang)
    _require(t, cfg, config, "printer")
    _refuse_while_daemon_runs(t, cfg, "`cunlink devices print-test`")
    payload = f"CUNLINK-TEST-{cfg.station.id}-{int(time.time())}"
    data = _test_receipt(cfg, payload)

    async def run() -> tuple[PrintResult, float]:
        started = time.perf_counter()
        async with PrinterDriver(wiring.printer_config(cfg)) as printer:
            try:
                async with asyncio.timeout(timeout):
                    result = await _print_watching(t, printer, data)
            except TimeoutError:
                raise PrinterError(t(
                    "devices.printer.timeout", where=printer.config.address,
                    seconds=f"{timeout:g}", state=printer.state.value)) from None
        return result, time.perf_counter() - started

    result, seconds = _run(run(), t)
    typer.echo(t("devices.printed", address=wiring.printer_config(cfg).address, bytes=len(data),
                 encoding=cfg.devices.printer.encoding, payload=payload,
                 seconds=f"{seconds:.1f}", attempts=result.attempts))


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
    lang: LangOption = None,
) -> None:
    """Capture one page, normalise it per the camera settings, write OUT and report sizes."""
    cfg, t = station_messages(config, lang)
    _require(t, cfg, config, "camera")
    _refuse_while_daemon_runs(t, cfg, "`cunlink devices capture`")
    camera = _camera(cfg)

    async def take() -> Any:
        async with camera:
            return await camera.capture()

    result = _run(take(), t)
    for path, data in ((out, result.page.jpeg), (raw, result.still.jpeg)):
        if path is None:
            continue
        try:
            _write_atomically(path, data)
        except OSError as exc:
            fail_t(t, "devices.write_failed", path=path, error=exc.strerror or exc)
    still, page = result.still, result.page
    note = t("devices.huffman") if still.completed else ""
    typer.echo(t("devices.captured", where=camera.settings.where,
                 ms=f"{still.seconds * 1000:.0f}", note=note))
    typer.echo(t("devices.wrote", path=out, summary=page.summary()))  # the summary: as it is
