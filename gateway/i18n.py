"""The technician's CLI in Simplified Chinese or English: choosing the language, and the texts.

The language is, in order: `--lang`; `$CUNLINK_LANG`; the locale (the first set of LC_ALL,
LC_MESSAGES, LANG, as POSIX orders them: `zh*` gives zh-CN, anything else English); and when
the locale says nothing (unset, `C`, `POSIX` - usual under ssh and on minimal Debian) the
caller's fallback, the configuration's [station] language where one is loaded.

Every text is a key with an English and a Chinese form using the same `{placeholders}`;
tests check both forms of every key. Lines that lower layers produce (the configuration
loader's, the key files') stay English and are passed in as `{error}`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final, Literal

Lang = Literal["zh-CN", "en"]
LANGS: tuple[Lang, ...] = ("zh-CN", "en")
OVERRIDE_ENV = "CUNLINK_LANG"
LOCALE_ENVS = ("LC_ALL", "LC_MESSAGES", "LANG")


def parse_lang(value: str) -> Lang | None:
    """'zh', 'zh-CN', 'zh_CN.UTF-8' -> zh-CN; 'en', 'en_US' -> en; anything else None."""
    v = value.strip().lower().replace("_", "-")
    if v.startswith("zh"):
        return "zh-CN"
    if v == "en" or v.startswith(("en-", "en.")):
        return "en"
    return None


def locale_lang(value: str) -> Lang | None:
    """A locale variable's language: None for C/POSIX (which say nothing), zh-CN for zh_*,
    English for every other language (the CLI has no third one)."""
    v = value.strip()
    if not v or v.split(".")[0] in ("C", "POSIX"):
        return None
    return "zh-CN" if v.lower().startswith("zh") else "en"


def choose_lang(
    explicit: str | None = None, *, env: Mapping[str, str] | None = None, fallback: Lang = "en"
) -> Lang:
    env = os.environ if env is None else env
    for given in (explicit, env.get(OVERRIDE_ENV)):
        if given and (lang := parse_lang(given)) is not None:
            return lang
    for var in LOCALE_ENVS:
        value = env.get(var, "")
        if value:
            return locale_lang(value) or fallback  # the first one set decides
    return fallback


#: Case statuses as the operator and the technician read them in Chinese (the receipt too).
STATUS_ZH: Final = {
    "draft": "草稿", "submitted": "已提交", "withdrawn": "已撤回", "received": "县级已接收",
    "in_review": "审核中", "needs_supplement": "需补正材料", "approved": "已批准",
    "rejected": "不予受理", "completed": "已办结",
}


class Messages:
    """`t(key, **args)`: the text of `key` in one language, formatted."""

    def __init__(self, lang: Lang) -> None:
        self.lang: Lang = lang
        self._index = 1 if lang == "zh-CN" else 0

    def __call__(self, key: str, /, **args: object) -> str:
        return CATALOGUE[key][self._index].format(**args)

    def status(self, status: str) -> str:
        """A case status in this language (unknown ones as they are)."""
        return STATUS_ZH.get(status, status) if self.lang == "zh-CN" else status

    def has(self, key: str) -> bool:
        return key in CATALOGUE

    def check_label(self, check: str) -> str:
        """A doctor check's name: 'keys' -> 'keys' / '密钥'; 'device:idcard' -> the device."""
        if check.startswith("device:"):
            return self("check.device", device=check.split(":", 1)[1])
        key = f"check.{check}"
        return self(key) if key in CATALOGUE else check


english = Messages("en")

# key -> (English, 简体中文)
CATALOGUE: dict[str, tuple[str, str]] = {
    # -- shared ---------------------------------------------------------------------------------
    "cli.error": ("error: {message}", "错误：{message}"),
    "cli.config_missing": (
        "configuration {path} not found; create one with `cunlink init --config {path}`, or "
        "pass --config PATH",
        "找不到配置文件 {path}；请用 `cunlink init --config {path}` 创建，或用 --config 指定路径"),
    "cli.config_invalid": (
        "configuration {path} has problems (fix them, then `cunlink config check {path}`):\n"
        "{error}",
        "配置文件 {path} 有问题（请修改后运行 `cunlink config check {path}`）：\n{error}"),
    "cli.config_unreadable": ("cannot read {path}: {error}", "无法读取 {path}：{error}"),
    "unit.dh": ("{d}d {h}h", "{d}天{h}小时"),
    "unit.hm": ("{h}h {m:02d}m", "{h}小时{m:02d}分"),
    "unit.ms": ("{m}m {s:02d}s", "{m}分{s:02d}秒"),
    "unit.s": ("{s}s", "{s}秒"),
    "class.control": ("control", "控制"),
    "class.events": ("events", "事件"),
    "class.materials": ("materials", "材料"),
    "state.ok": ("ok", "正常"),
    "state.up": ("up", "正常"),
    "state.down": ("down", "故障"),
    "state.degraded": ("degraded", "降级"),
    "state.starting": ("starting", "启动中"),
    "state.stopped": ("stopped", "已停止"),
    "state.disabled": ("disabled", "未启用"),
    # -- status ---------------------------------------------------------------------------------
    "status.header": (
        "Station {station} - {software}, running for {uptime} (since {started})",
        "站点 {station} - {software}，已运行 {uptime}（自 {started}）"),
    "status.link": ("Link:", "链路："),
    "status.link_up": (
        "UP since {since}; round trip {rtt}; hub clock offset {offset}",
        "已连接，自 {since}；往返时间 {rtt}；与县级中心时钟偏差 {offset}"),
    "status.link_down": ("DOWN (reconnecting by itself)", "未连接（正在自动重连）"),
    "status.link_counters": (
        "connects {connects}, disconnects {disconnects}, stalls {stalls}; sent {up}, "
        "received {down}",
        "连接 {connects} 次，断开 {disconnects} 次，停滞 {stalls} 次；发送 {up}，接收 {down}"),
    "status.link_delivery": (
        "chunks {chunks} ({resent} re-sent, {resent_bytes}); delivered {delivered}, "
        "rejected {rejected}",
        "分块 {chunks} 个（重发 {resent} 个，{resent_bytes}）；已送达 {delivered}，"
        "被拒收 {rejected}"),
    "status.last_error": ("last error: {error}", "最近错误：{error}"),
    "status.backlog": ("Backlog:", "待发送："),
    "status.backlog_empty": ("empty: everything was delivered", "无：全部已送达"),
    "status.backlog_line": (
        "{count} packages ({classes}), {bytes} to send, oldest {oldest}; held {held}",
        "{count} 个包（{classes}），待发 {bytes}，最早的已等待 {oldest}；暂停 {held} 个"),
    "status.held_hint": (
        "held packages wait for a person: `cunlink outbox list --held`, then "
        "`cunlink outbox retry ID`",
        "暂停的包需要人工处理：`cunlink outbox list --held`，然后 `cunlink outbox retry ID`"),
    "status.devices": ("Devices:", "设备："),
    "status.devices_none": ("none enabled", "未启用任何设备"),
    "status.disk": ("Disk:", "磁盘："),
    "status.disk_line": ("{free} free (floor {floor})", "可用 {free}（下限 {floor}）"),
    "status.cases": ("Cases:", "案件："),
    "status.cases_line": ("{statuses}; conflicts {conflicts}",
                          "{statuses}；冲突 {conflicts}"),
    "status.errors": ("Errors:", "错误："),
    "status.errors_none": ("none recently", "近期无"),
    "status.errors_title": ("Recent errors (newest last):", "近期错误（最新的在最后）："),
    "status.not_running": (
        "The station daemon is not running: nothing answers on {socket} ({detail}).",
        "站点服务未运行：{socket} 无应答（{detail}）。"),
    "status.denied": (
        "Cannot ask the daemon: permission denied on {socket}. Run as root or as a member of "
        "the daemon's group.",
        "无法询问站点服务：没有 {socket} 的访问权限。请以 root 或服务所属组的成员身份运行。"),
    "status.timeout": (
        "The daemon did not answer on {socket} in time ({detail}); it may be overloaded or "
        "stuck: `journalctl -u cunlink -n 50`.",
        "站点服务未及时应答（{socket}，{detail}）；可能负载过高或卡住："
        "`journalctl -u cunlink -n 50`。"),
    "status.error": ("The daemon's answer on {socket} was not usable: {detail}",
                     "站点服务在 {socket} 的应答无法使用：{detail}"),
    "status.start_hint": (
        "Start it with `systemctl start cunlink`; see why it stopped with "
        "`journalctl -u cunlink -n 50`.",
        "启动：`systemctl start cunlink`；查看停止原因：`journalctl -u cunlink -n 50`。"),
    "status.from_store": ("From the store {db} (read-only):", "来自数据库 {db}（只读）："),
    "status.no_store": ("No backlog figures: {error}", "无法读取待发送数据：{error}"),
    # -- doctor: frame --------------------------------------------------------------------------
    "outcome.ok": ("  ok", "通过"),
    "outcome.warn": ("warn", "警告"),
    "outcome.fail": ("FAIL", "失败"),
    "outcome.skip": ("skip", "跳过"),
    "outcome.info": ("info", "信息"),
    "check.config": ("configuration", "配置"),
    "check.keys": ("keys", "密钥"),
    "check.hub_enrollment": ("hub enrollment", "县级中心登记文件"),
    "check.state_dir": ("state directory", "数据目录"),
    "check.disk": ("disk space", "磁盘空间"),
    "check.clock": ("clock", "时钟"),
    "check.devices": ("devices", "设备"),
    "check.device": ("device {device}", "设备 {device}"),
    "check.ca_cert": ("county CA certificate", "县级 CA 证书"),
    "check.client_cert": ("station certificate", "站点证书"),
    "check.client_key": ("station TLS key", "站点 TLS 私钥"),
    "check.daemon": ("daemon", "站点服务"),
    "check.dns": ("broker DNS", "服务器域名解析"),
    "check.tcp": ("broker TCP", "服务器 TCP 连接"),
    "check.tls": ("broker TLS", "服务器 TLS 握手"),
    "check.mqtt": ("broker MQTT login", "服务器 MQTT 登录"),
    "doctor.line": ("[{outcome}] {check}: {text}", "[{outcome}] {check}：{text}"),
    "doctor.fix_line": ("       -> {text}", "       -> {text}"),
    "doctor.skipped": ("not checked: needs {because} first", "未检查：需先通过“{because}”"),
    "doctor.summary.failed": (
        "{failed} check(s) FAILED, {warned} warning(s): fix the lines marked FAIL, then run "
        "`cunlink doctor` again.",
        "{failed} 项检查失败，{warned} 项警告：请按“失败”行的提示处理后，"
        "再次运行 `cunlink doctor`。"),
    "doctor.summary.warned": (
        "No failures; {warned} warning(s) to look at.", "没有失败项；有 {warned} 项警告需要注意。"),
    "doctor.summary.ok": ("Everything checked is fine.", "所有检查均通过。"),
    # -- doctor: configuration and files --------------------------------------------------------
    "doctor.config.ok": ("{path} loads (station {station})", "{path} 加载成功（站点 {station}）"),
    "doctor.config.missing": ("{path} does not exist", "{path} 不存在"),
    "doctor.config.missing.fix": (
        "create it with `cunlink init --config {path}`, or pass --config PATH",
        "用 `cunlink init --config {path}` 创建，或用 --config 指定路径"),
    "doctor.config.invalid": ("{path} has problems:\n{error}", "{path} 有问题：\n{error}"),
    "doctor.config.invalid.fix": (
        "correct the keys named above, then `cunlink config check {path}`",
        "按上面列出的项修改，然后运行 `cunlink config check {path}`"),
    "doctor.config.unreadable": ("cannot read {path}: {error}", "无法读取 {path}：{error}"),
    "doctor.config.unreadable.fix": (
        "run as root or as the daemon's user", "请以 root 或站点服务的用户身份运行"),
    "doctor.config.bad_id": ("{path}: {error}", "{path}：{error}"),
    "doctor.config.bad_id.fix": (
        "use the station id the county gave, without '-' (e.g. ST001)",
        "使用县里分配的站点编号，不能含“-”（例如 ST001）"),
    "doctor.keys.ok": ("{dir} is private and the keys load; enrollment file {enrollment}",
                       "{dir} 权限正确，密钥可以加载；登记文件 {enrollment}"),
    "doctor.keys.missing_dir": ("{dir} does not exist", "{dir} 不存在"),
    "doctor.keys.missing_dir.fix": (
        "create the keys: `cunlink keys init --role station --id {id} --dir {dir}` (or "
        "`cunlink init`), then send the enrollment file to the county",
        "创建密钥：`cunlink keys init --role station --id {id} --dir {dir}`（或 `cunlink init`），"
        "再把登记文件交给县里"),
    "doctor.keys.dir_mode": ("{dir} is open to group or others (mode {mode})",
                             "{dir} 对组或其他用户开放（权限 {mode}）"),
    "doctor.keys.dir_mode.fix": ("run `chmod 700 {dir}`", "运行 `chmod 700 {dir}`"),
    "doctor.keys.missing_file": ("{path} is missing", "缺少 {path}"),
    "doctor.keys.missing_file.fix": (
        "restore it from the backup, or create new keys (`cunlink keys init --role station "
        "--id {id} --dir {dir} --force`) and enroll again at the county",
        "从备份恢复，或重新创建密钥（`cunlink keys init --role station --id {id} --dir {dir} "
        "--force`）并到县里重新登记"),
    "doctor.keys.file_mode": ("{path} is readable by group or others (mode {mode})",
                              "{path} 可被组或其他用户读取（权限 {mode}）"),
    "doctor.keys.file_mode.fix": (
        "run `chmod 600 {path}`; if others could have copied it, create new keys and enroll "
        "again",
        "运行 `chmod 600 {path}`；如果可能已被他人复制，请重新创建密钥并重新登记"),
    "doctor.keys.unusable": ("the keys in {dir} cannot be used: {error}",
                             "{dir} 中的密钥无法使用：{error}"),
    "doctor.keys.unusable.fix": ("do what the message above says", "按上面的提示处理"),
    "doctor.hub.ok": ("{path} names hub {hub}", "{path} 为县级中心 {hub} 的登记文件"),
    "doctor.hub.missing": ("{path} does not exist", "{path} 不存在"),
    "doctor.hub.missing.fix": (
        "get the hub's enrollment file from the county and put it at {path} "
        "([keys] hub_enrollment)",
        "向县里索取县级中心的登记文件，放到 {path}（[keys] hub_enrollment）"),
    "doctor.hub.invalid": ("{path} is not usable: {error}", "{path} 无法使用：{error}"),
    "doctor.hub.invalid.fix": ("ask the county for the file again; do not edit it",
                               "请向县里重新索取该文件，不要手工修改"),
    "doctor.hub.not_hub": ("{path} is the enrollment of {role} {id}, not of the hub",
                           "{path} 是{role} {id} 的登记文件，不是县级中心的"),
    "doctor.hub.not_hub.fix": (
        "put the HUB's enrollment file there (this station's own one stays in the keys "
        "directory)",
        "请放置县级中心的登记文件（本站自己的登记文件留在密钥目录中）"),
    "doctor.state.ok": ("{dir} is writable", "{dir} 可写"),
    "doctor.state.missing": ("{dir} does not exist yet", "{dir} 尚不存在"),
    "doctor.state.missing.fix": (
        "the service creates it at first start (systemd StateDirectory=); to create it now: "
        "`mkdir -p {dir}`",
        "服务首次启动时会自动创建（systemd StateDirectory=）；如需现在创建：`mkdir -p {dir}`"),
    "doctor.state.not_dir": ("{dir} is not a directory", "{dir} 不是目录"),
    "doctor.state.not_dir.fix": ("move the file away or set [station] state_dir",
                                 "移走该文件，或修改 [station] state_dir"),
    "doctor.state.not_writable": ("cannot create files in {dir}: {error}",
                                  "无法在 {dir} 中创建文件：{error}"),
    "doctor.state.not_writable.fix": (
        "give it to the daemon's user (`chown -R cunlink: {dir}`), or run doctor as that user",
        "把目录交给服务用户（`chown -R cunlink: {dir}`），或以该用户身份运行 doctor"),
    "doctor.disk.ok": ("{free_mb} MB free in {dir} (floor {floor_mb} MB)",
                       "{dir} 可用 {free_mb} MB（下限 {floor_mb} MB）"),
    "doctor.disk.low": ("only {free_mb} MB free in {dir}, close to the floor of {floor_mb} MB",
                        "{dir} 仅剩 {free_mb} MB，接近下限 {floor_mb} MB"),
    "doctor.disk.low.fix": (
        "free space (old logs: `journalctl --vacuum-size=50M`); below the floor new scans are "
        "refused",
        "请清理空间（旧日志：`journalctl --vacuum-size=50M`）；低于下限时将拒绝新的扫描件"),
    "doctor.disk.below_floor": ("{free_mb} MB free in {dir}, below the floor of {floor_mb} MB",
                                "{dir} 仅剩 {free_mb} MB，低于下限 {floor_mb} MB"),
    "doctor.disk.below_floor.fix": (
        "new scans are refused until space is freed: remove old logs and files, or use a "
        "bigger card",
        "在释放空间之前将拒绝新的扫描件：请删除旧日志和文件，或更换更大的存储卡"),
    "doctor.clock.ok": (
        "{now}; checked: not before this release, not behind the store's timestamps (the hub's "
        "clock is compared once the daemon is connected)",
        "{now}；已检查：不早于本版本发布日期，不落后于数据库中的时间（服务连上县级中心后还会与其时钟比较）"),
    "doctor.clock.ok_hub": ("{now}; {offset_s} s from the hub's clock",
                            "{now}；与县级中心时钟相差 {offset_s} 秒"),
    "doctor.clock.before_release": ("the clock says {now}, before this software's release "
                                    "({earliest})",
                                    "系统时间为 {now}，早于本软件的发布日期（{earliest}）"),
    "doctor.clock.before_release.fix": (
        "set the time: `timedatectl set-ntp true`, or `date -s 'YYYY-MM-DD HH:MM'`; replace "
        "the clock battery if it resets at every boot",
        "请校准时间：`timedatectl set-ntp true`，或 `date -s 'YYYY-MM-DD HH:MM'`；"
        "如果每次开机都被重置，请更换时钟电池"),
    "doctor.clock.behind_store": ("the clock says {now}, but the store already holds times up "
                                  "to {seen}: the clock went back",
                                  "系统时间为 {now}，但数据库中已有 {seen} 的记录：时钟被调回了"),
    "doctor.clock.behind_store.fix": (
        "set the correct time (`timedatectl set-ntp true`); cases stay correctly ordered, but "
        "their times look wrong until then",
        "请校准时间（`timedatectl set-ntp true`）；案件顺序不受影响，但在校准前时间显示会不正确"),
    "doctor.clock.hub_offset": ("{now}; {offset_s} s away from the hub's clock",
                                "{now}；与县级中心时钟相差 {offset_s} 秒"),
    "doctor.clock.hub_offset.fix": (
        "turn on time sync: `timedatectl set-ntp true` (and allow NTP through the network)",
        "请开启时间同步：`timedatectl set-ntp true`（并确保网络允许 NTP）"),
    # -- doctor: devices ------------------------------------------------------------------------
    "doctor.device.ok": ("{path} is present", "{path} 已连接"),
    "doctor.device.missing": ("{path} does not exist", "{path} 不存在"),
    "doctor.device.missing.fix": (
        "plug the {device} in and check its cable and power; `ls -l /dev/cunlink-*` shows the "
        "names the udev rules give; or set enabled = false in [devices.{device}]",
        "请接好{device}的数据线和电源；`ls -l /dev/cunlink-*` 显示 udev 规则分配的名称；"
        "或在 [devices.{device}] 中设置 enabled = false"),
    "doctor.device.not_char": ("{path} is not a device node", "{path} 不是设备文件"),
    "doctor.device.not_char.fix": ("check the path in [devices.{device}]",
                                   "请检查 [devices.{device}] 中的路径"),
    "doctor.device.no_access": ("{path} is not readable and writable by this account",
                                "当前账户无法读写 {path}"),
    "doctor.device.no_access.fix": (
        "the daemon's user needs the device's group (dialout for serial, video for cameras, "
        "lp for printers)",
        "服务用户需要加入设备所属的组（串口为 dialout，摄像头为 video，打印机为 lp）"),
    "doctor.device.tcp_ok": ("{host}:{port} answers", "{host}:{port} 有应答"),
    "doctor.device.tcp_failed": ("{host}:{port} does not answer: {error}",
                                 "{host}:{port} 无应答：{error}"),
    "doctor.device.tcp_failed.fix": (
        "check that the printer is on and its network address ([devices.printer] host)",
        "请检查打印机是否开机，以及其网络地址（[devices.printer] host）"),
    "doctor.device.http_camera": ("network camera {url}: not checked here; try "
                                  "`cunlink devices capture`",
                                  "网络摄像头 {url}：此处不检查；请试 `cunlink devices capture`"),
    "doctor.device.none": ("no device enabled in [devices]", "[devices] 中未启用任何设备"),
    # -- doctor: certificates -------------------------------------------------------------------
    "doctor.cert.ok": ("{path} valid until {not_after} ({days} days left)",
                       "{path} 有效期至 {not_after}（还剩 {days} 天）"),
    "doctor.cert.missing_ca": ("{path} does not exist", "{path} 不存在"),
    "doctor.cert.missing_ca.fix": (
        "put the county's CA certificate (ca.crt from the county) at {path} ([mqtt] ca_file)",
        "请把县里的 CA 证书（ca.crt）放到 {path}（[mqtt] ca_file）"),
    "doctor.cert.missing_client": ("{path} does not exist", "{path} 不存在"),
    "doctor.cert.missing_client.fix": (
        "the county issues it (`cunlink pki issue --dir PKI --station {id}`); put it at {path} "
        "([mqtt] cert_file)",
        "证书由县里签发（`cunlink pki issue --dir PKI --station {id}`）；请放到 {path}"
        "（[mqtt] cert_file）"),
    "doctor.cert.unreadable": ("{path} is not a PEM certificate: {error}",
                               "{path} 不是 PEM 格式证书：{error}"),
    "doctor.cert.unreadable.fix": ("copy the file again from what the county sent",
                                   "请重新复制县里发来的文件"),
    "doctor.cert.not_yet_valid": ("{path} is valid only from {not_before}; the clock says {now}",
                                  "{path} 自 {not_before} 起才有效；系统时间为 {now}"),
    "doctor.cert.not_yet_valid.fix": (
        "the clock is most likely wrong: set it (`timedatectl set-ntp true`)",
        "很可能是系统时间不对：请校准（`timedatectl set-ntp true`）"),
    "doctor.cert.expired_client": ("{path} expired on {not_after}", "{path} 已于 {not_after} 过期"),
    "doctor.cert.expired_client.fix": (
        "ask the county for a new certificate (`cunlink pki issue --dir PKI --station ID "
        "--force`) and replace {path}",
        "请向县里申请新证书（`cunlink pki issue --dir PKI --station ID --force`）并替换 {path}"),
    "doctor.cert.expired_ca": ("{path} expired on {not_after}", "{path} 已于 {not_after} 过期"),
    "doctor.cert.expired_ca.fix": (
        "the county's CA has expired: the county must create a new one and re-issue every "
        "certificate",
        "县里的 CA 已过期：需由县里重建 CA 并重新签发所有证书"),
    "doctor.cert.expires_soon_client": ("{path} expires on {not_after}, in {days} days",
                                        "{path} 将于 {not_after} 过期，还剩 {days} 天"),
    "doctor.cert.expires_soon_client.fix": (
        "ask the county for a new certificate now; the station cannot connect once it expires",
        "请尽快向县里申请新证书；过期后站点将无法连接"),
    "doctor.cert.expires_soon_ca": ("{path} expires on {not_after}, in {days} days",
                                    "{path} 将于 {not_after} 过期，还剩 {days} 天"),
    "doctor.cert.expires_soon_ca.fix": (
        "tell the county: their CA must be renewed before then",
        "请通知县里：需在此之前更新 CA"),
    "doctor.cert.wrong_cn": ("{path} is for {cn!r}, but this station is {id!r}",
                             "{path} 属于 {cn!r}，而本站是 {id!r}"),
    "doctor.cert.wrong_cn.fix": (
        "use this station's own certificate (the broker only lets a station use its own "
        "topics), or correct [station] id",
        "请使用本站自己的证书（服务器只允许站点使用自己的主题），或改正 [station] id"),
    "doctor.cert.other_ca": ("{path} was not signed by the CA in {ca}",
                             "{path} 不是由 {ca} 中的 CA 签发的"),
    "doctor.cert.other_ca.fix": (
        "the certificate and the CA file come from different counties or PKIs: get both again "
        "from the county",
        "证书与 CA 文件来自不同的县或 PKI：请向县里重新获取这两个文件"),
    "doctor.tlskey.ok": ("{path} is private and belongs to the certificate",
                         "{path} 权限正确，且与证书匹配"),
    "doctor.tlskey.missing": ("{path} does not exist", "{path} 不存在"),
    "doctor.tlskey.missing.fix": (
        "put the station's TLS key from the county at {path} ([mqtt] key_file), mode 0600",
        "请把县里发来的站点 TLS 私钥放到 {path}（[mqtt] key_file），权限 0600"),
    "doctor.tlskey.mode": ("{path} is readable by group or others (mode {mode})",
                           "{path} 可被组或其他用户读取（权限 {mode}）"),
    "doctor.tlskey.mode.fix": ("run `chmod 600 {path}`", "运行 `chmod 600 {path}`"),
    "doctor.tlskey.unreadable": ("{path} is not an unencrypted PEM private key: {error}",
                                 "{path} 不是未加密的 PEM 私钥：{error}"),
    "doctor.tlskey.unreadable.fix": ("copy the key again from what the county sent",
                                     "请重新复制县里发来的私钥"),
    "doctor.tlskey.mismatch": ("{path} is not the key of {cert}", "{path} 与证书 {cert} 不匹配"),
    "doctor.tlskey.mismatch.fix": (
        "put the key that came with the certificate (same name, .key) in place",
        "请放置与证书一同发来的私钥（同名 .key 文件）"),
    # -- doctor: broker -------------------------------------------------------------------------
    "doctor.dns.ok": ("{host} -> {addresses}", "{host} -> {addresses}"),
    "doctor.dns.failed": ("cannot resolve {host}: {error}", "无法解析 {host}：{error}"),
    "doctor.dns.failed.fix": (
        "check [mqtt] host, that the mobile link is up, and /etc/resolv.conf; an IP address "
        "needs no DNS",
        "请检查 [mqtt] host、移动网络是否连通以及 /etc/resolv.conf；使用 IP 地址则无需域名解析"),
    "doctor.tcp.ok": ("{host}:{port} accepts connections ({ms} ms)",
                      "{host}:{port} 可以连接（{ms} 毫秒）"),
    "doctor.tcp.refused": ("{host}:{port} refused the connection",
                           "{host}:{port} 拒绝连接"),
    "doctor.tcp.refused.fix": (
        "check [mqtt] port (usually 8883) and that the county's broker is running",
        "请检查 [mqtt] port（通常为 8883），以及县里的服务器是否在运行"),
    "doctor.tcp.timeout": ("no answer from {host}:{port} within {seconds} s",
                           "{host}:{port} 在 {seconds} 秒内无应答"),
    "doctor.tcp.timeout.fix": (
        "check the mobile signal and data plan, and that a firewall lets port {port} out",
        "请检查移动信号和流量套餐，以及防火墙是否放行端口 {port}"),
    "doctor.tcp.failed": ("cannot connect to {host}:{port}: {error}",
                          "无法连接 {host}:{port}：{error}"),
    "doctor.tcp.failed.fix": ("check the network link (`ip route`, the modem)",
                              "请检查网络连接（`ip route`、调制解调器）"),
    "doctor.tls.ok": ("{host}: {version}, broker certificate verified (valid until {not_after})",
                      "{host}：{version}，服务器证书验证通过（有效期至 {not_after}）"),
    "doctor.tls.off": ("TLS is off ([mqtt] tls = false)", "未启用 TLS（[mqtt] tls = false）"),
    "doctor.tls.off.fix": ("only for a test broker: a county broker requires TLS",
                           "仅限测试服务器：县里的服务器要求 TLS"),
    "doctor.tls.files": ("the TLS files do not load: {error}", "TLS 文件无法加载：{error}"),
    "doctor.tls.files.fix": ("see the certificate and key lines above",
                             "请参考上面证书和私钥的检查结果"),
    "doctor.tls.wrong_ca": ("{host}: the broker's certificate is not signed by the CA in {ca} "
                            "({error})",
                            "{host}：服务器证书不是由 {ca} 中的 CA 签发的（{error}）"),
    "doctor.tls.wrong_ca.fix": (
        "put the county's ca.crt at [mqtt] ca_file; check [mqtt] host is the county's broker",
        "请把县里的 ca.crt 放到 [mqtt] ca_file；并确认 [mqtt] host 是县里的服务器"),
    "doctor.tls.hostname": ("{host}: the broker's certificate is not for this name ({error})",
                            "{host}：服务器证书不包含这个名称（{error}）"),
    "doctor.tls.hostname.fix": (
        "use the broker name the county gave in [mqtt] host (the certificate lists it)",
        "请在 [mqtt] host 中使用县里提供的服务器名称（证书中列出的名称）"),
    "doctor.tls.server_time": ("{host}: the broker's certificate is {error} at {now}",
                               "{host}：按本机时间 {now}，服务器证书 {error}"),
    "doctor.tls.server_time.fix": (
        "check this box's clock first (`timedatectl`); if it is right, tell the county",
        "请先检查本机时间（`timedatectl`）；如果时间正确，请通知县里"),
    "doctor.tls.verify": ("{host}: the broker's certificate was not accepted: {error}",
                          "{host}：服务器证书未通过验证：{error}"),
    "doctor.tls.verify.fix": ("check [mqtt] ca_file and [mqtt] host",
                              "请检查 [mqtt] ca_file 和 [mqtt] host"),
    "doctor.tls.refused": ("{host} refused the TLS handshake: {error}",
                           "{host} 拒绝了 TLS 握手：{error}"),
    "doctor.tls.refused.fix": (
        "the broker did not accept this station's certificate (revoked, expired, or from "
        "another CA): ask the county",
        "服务器不接受本站证书（已吊销、已过期或来自其他 CA）：请联系县里"),
    "doctor.tls.timeout": ("{host}: no TLS handshake within {seconds} s",
                           "{host}：{seconds} 秒内未完成 TLS 握手"),
    "doctor.tls.timeout.fix": ("the link is very slow or something in between blocks TLS",
                               "链路非常慢，或中间有设备拦截了 TLS"),
    "doctor.tls.failed": ("{host}: TLS failed: {error}", "{host}：TLS 失败：{error}"),
    "doctor.tls.failed.fix": ("try again; if it persists, check the network",
                              "请重试；如果一直失败，请检查网络"),
    "doctor.tls.server_expires_soon": (
        "{host}: the broker's certificate expires on {not_after}, in {days} days",
        "{host}：服务器证书将于 {not_after} 过期，还剩 {days} 天"),
    "doctor.tls.server_expires_soon.fix": ("tell the county to renew the broker's certificate",
                                           "请通知县里更新服务器证书"),
    "doctor.mqtt.ok": ("the broker accepted station {id}", "服务器接受了站点 {id} 的登录"),
    "doctor.mqtt.daemon_running": (
        "not tried while the daemon runs (it would cut the daemon's own connection off); see "
        "the daemon line",
        "服务运行期间不做此测试（会挤掉服务自己的连接）；请看“站点服务”一行"),
    "doctor.mqtt.cert_refused": ("the broker closed the connection: {error}",
                                 "服务器关闭了连接：{error}"),
    "doctor.mqtt.cert_refused.fix": (
        "the broker did not accept this station's certificate (revoked, or issued by another "
        "CA): ask the county",
        "服务器不接受本站证书（已吊销或由其他 CA 签发）：请联系县里"),
    "doctor.mqtt.closed": ("{host} closed the connection without answering",
                           "{host} 未应答就关闭了连接"),
    "doctor.mqtt.closed.fix": (
        "the broker refused this station (certificate revoked or not allowed): ask the county",
        "服务器拒绝了本站（证书被吊销或不被允许）：请联系县里"),
    "doctor.mqtt.timeout": ("{host}: no answer to the login within {seconds} s",
                            "{host}：{seconds} 秒内登录无应答"),
    "doctor.mqtt.timeout.fix": ("the link is very slow; try again", "链路非常慢；请重试"),
    "doctor.mqtt.failed": ("MQTT login failed: {error}", "MQTT 登录失败：{error}"),
    "doctor.mqtt.failed.fix": ("try again; if it persists, check the network",
                               "请重试；如果一直失败，请检查网络"),
    "doctor.mqtt.refused": ("the broker refused the login: {rc} {reason}",
                            "服务器拒绝登录：{rc} {reason}"),
    "doctor.mqtt.refused.fix": ("tell the county the code above", "请把上面的代码告诉县里"),
    "doctor.daemon.not_running": ("not running (nothing on {socket})",
                                  "未运行（{socket} 无应答）"),
    "doctor.daemon.unreachable": ("cannot ask it on {socket}: {error}",
                                  "无法通过 {socket} 询问：{error}"),
    "doctor.daemon.unreachable.fix": ("run as root; if it hangs: `journalctl -u cunlink -n 50`",
                                      "请以 root 运行；如果服务卡住："
                                      "`journalctl -u cunlink -n 50`"),
    "doctor.daemon.link_up": ("running, connected to the county since {since}",
                              "正在运行，自 {since} 起已连接县级中心"),
    "doctor.daemon.link_down": ("running, but not connected to the county (last error: {error})",
                                "正在运行，但未连接县级中心（最近错误：{error}）"),
    "doctor.daemon.link_down.fix": (
        "see the broker lines below; the daemon keeps retrying by itself",
        "请看下面服务器相关的检查；服务会自动重试"),
    # -- outbox hold / retry --------------------------------------------------------------------
    "outbox.bad_id": (
        "{id!r} is neither a package id (hex, at least {min} characters) nor a case number "
        "like ST001-20261122-0007",
        "{id!r} 既不是包编号（十六进制，至少 {min} 位），也不是案件编号（如 ST001-20261122-0007）"),
    "outbox.unreadable": ("cannot read the store: {error}", "无法读取数据库：{error}"),
    "outbox.no_store": ("no store at {db} yet: nothing is waiting to be sent",
                        "{db} 尚无数据库：没有待发送的内容"),
    "outbox.unknown": (
        "no undelivered package has an id starting with {id}; `cunlink outbox list` shows "
        "them (a delivered package has left the outbox)",
        "没有以 {id} 开头的待发送包；`cunlink outbox list` 可查看（已送达的包不在其中）"),
    "outbox.unknown_case": (
        "case {id} has no undelivered package (all delivered, or no such case here)",
        "案件 {id} 没有待发送的包（已全部送达，或本站没有此案件）"),
    "outbox.ambiguous": ("{n} packages start with {id} ({ids}); give more characters",
                         "有 {n} 个包以 {id} 开头（{ids}）；请输入更多位"),
    "outbox.hold.changed": ("held {id} ({kind}, case {case}, {size} bytes)",
                            "已暂停 {id}（{kind}，案件 {case}，{size} 字节）"),
    "outbox.hold.unchanged": ("{id} was already held", "{id} 已处于暂停状态"),
    "outbox.hold.gone": ("{id} was delivered meanwhile", "{id} 在此期间已送达"),
    "outbox.hold.note": (
        "A held package is not started until `cunlink outbox retry ID`.",
        "暂停的包在执行 `cunlink outbox retry ID` 之前不会开始发送。"),
    "outbox.retry.changed": ("queued {id} again ({kind}, case {case}, {size} bytes)",
                             "已重新排队 {id}（{kind}，案件 {case}，{size} 字节）"),
    "outbox.retry.unchanged": ("{id} is already queued; it goes when the link allows",
                               "{id} 已在队列中；链路可用时会发送"),
    "outbox.retry.gone": ("{id} was delivered meanwhile", "{id} 在此期间已送达"),
    "outbox.retry.note": (
        "It is sent when the link allows. If the hub had rejected it, it will be rejected "
        "again unless the cause was fixed at the county.",
        "链路可用时将发送。如果之前被县级中心拒收，除非县里已解决原因，否则仍会被拒收。"),
    # -- shared by the station-side commands ----------------------------------------------------
    "cli.warning": ("warning: {message}", "警告：{message}"),
    "cli.masked": ("(personal data masked; --reveal shows it in full)",
                   "（个人信息已隐去；加 --reveal 可完整显示）"),
    "cli.sep": (", ", "，"),
    "cli.none": ("none", "无"),
    "role.station": ("station", "站点"),
    "role.hub": ("hub", "县级中心"),
    "side.station": ("station", "站点"),
    "side.hub": ("hub", "县级中心"),
    "class.blobs": ("blobs", "材料"),
    "age.m": ("{m}m", "{m}分钟"),
    "age.h": ("{h}h", "{h}小时"),
    "age.d": ("{d}d", "{d}天"),
    "store.quarantine_note": ("(remove {file} once dealt with to silence this)",
                              "（处理完毕后删除 {file}，此提示即不再出现）"),
    "store.none": ("no store yet at {db} (the daemon or `cunlink cases submit` creates it)",
                   "{db} 尚无数据库（站点服务或 `cunlink cases submit` 会创建）"),
    # -- cases ----------------------------------------------------------------------------------
    "cases.none": ("no cases", "没有案件"),
    "cases.none_in_status": ("no cases in status {status}", "没有状态为“{status}”的案件"),
    "cases.col.case": ("case", "案件编号"),
    "cases.col.status": ("status", "状态"),
    "cases.col.service": ("service", "事项"),
    "cases.col.materials": ("mat", "材料"),
    "cases.col.conflicts": ("conf", "冲突"),
    "cases.col.updated": ("updated", "更新时间"),
    "cases.count": ("{n} case(s)", "共 {n} 件"),
    "cases.no_case_empty": ("no case {case!r}: the store is empty",
                            "没有案件 {case!r}：数据库为空"),
    "cases.no_case": ("no case {case!r} in {db}; `cunlink cases list` shows the cases held",
                      "{db} 中没有案件 {case!r}；`cunlink cases list` 可查看本站的案件"),
    "cases.head": ("case {case}  status {status}  service {service}",
                   "案件 {case}  状态 {status}  事项 {service}"),
    "cases.applicant": ("applicant: {values}", "申请人：{values}"),
    "cases.fields": ("fields: {values}", "表单字段：{values}"),
    "cases.material": ("material {sha}…  {kind} {mime} {size} B{superseded}",
                       "材料 {sha}…  {kind} {mime} {size} B{superseded}"),
    "cases.superseded": ("  (superseded)", "（已被替换）"),
    "cases.transition": ("status {old} -> {new} by {side} at {at}",
                         "状态 {old} -> {new}，由{side}于 {at} 变更"),
    "cases.conflict": ("CONFLICT event {event}: {reason}", "冲突 事件 {event}：{reason}"),
    "cases.events": ("events ({n}):", "事件（{n} 条）："),
    "cases.unreadable_file": ("cannot read {path}: {error}", "无法读取 {path}：{error}"),
    "cases.bad_json": ("{path} is not valid JSON: {error}", "{path} 不是有效的 JSON：{error}"),
    "cases.not_object": ("{path} must hold a JSON object (the applicant), got {type}",
                         "{path} 应为 JSON 对象（申请人信息），实际为 {type}"),
    "cases.bad_parts": ("{path}: 'applicant' and 'fields' must be JSON objects",
                        "{path}：'applicant' 和 'fields' 都必须是 JSON 对象"),
    # -- outbox list / stats --------------------------------------------------------------------
    "outbox.empty": ("outbox empty: everything was delivered", "发件箱为空：全部已送达"),
    "outbox.no_held": ("no held packages", "没有暂停的包"),
    "outbox.col.package": ("package", "包编号"),
    "outbox.col.kind": ("kind", "类型"),
    "outbox.col.class": ("class", "类别"),
    "outbox.col.case": ("case", "案件编号"),
    "outbox.col.size": ("size", "大小"),
    "outbox.col.acked": ("acked", "已确认"),
    "outbox.col.tries": ("tries", "次数"),
    "outbox.col.state": ("state", "状态"),
    "outbox.col.age": ("age", "已等待"),
    "outbox.state.queued": ("queued", "排队"),
    "outbox.state.held": ("held", "暂停"),
    "outbox.rejected": ("    rejected by the hub: {reason}", "    县级中心拒收：{reason}"),
    "outbox.stats.count": ("undelivered: {count} ({classes}); held: {held}",
                           "待送达：{count}（{classes}）；暂停：{held}"),
    "outbox.stats.bytes": ("bytes to send: {bytes}", "待发送字节数：{bytes}"),
    "outbox.stats.oldest": ("oldest: {age}", "最早的已等待：{age}"),
    # -- devices --------------------------------------------------------------------------------
    "devices.bad_timeout": ("--timeout must be a positive number of seconds, got {value}",
                            "--timeout 应为正数（秒），实际为 {value}"),
    "devices.daemon_holds": (
        "the station daemon (cunlink run) is running and holds the devices, so {what} cannot "
        "open them now: use the terminal API, or stop the daemon first (systemctl stop "
        "cunlink); `cunlink status` shows the devices' health meanwhile",
        "站点服务（cunlink run）正在运行并占用着设备，{what} 现在无法打开它们：请通过终端 API "
        "操作，或先停止站点服务（systemctl stop cunlink）；其间可用 `cunlink status` "
        "查看设备状况"),
    "devices.disabled": (
        "the {device} is disabled in {config}: set [devices.{device}] enabled = true (and its "
        "port, address or URL) first",
        "{config} 中未启用 {device}：请先设置 [devices.{device}] enabled = true"
        "（以及端口、地址或 URL）"),
    "devices.no_answer": ("the device did not answer in time", "设备未及时应答"),
    "devices.os_error": ("{what}: {error}", "{what}：{error}"),
    "devices.device": ("device", "设备"),
    "devices.probe_timeout": ("no answer before the probe's deadline (--timeout)",
                              "检测时限内无应答（--timeout）"),
    "devices.configured": ("devices configured in {config}:", "{config} 中配置的设备："),
    "devices.failed": ("FAILED", "失败"),
    "devices.probe_ms": (" ({ms} ms)", "（{ms} 毫秒）"),
    "devices.serial_ports": ("serial ports present:", "本机串口："),
    "devices.video": ("video devices present: {devices}", "本机视频设备：{devices}"),
    "devices.list_failed": ("{n} enabled device(s) failed their probe: {devices}",
                            "{n} 个已启用的设备检测失败：{devices}"),
    "devices.daemon_view": ("the station daemon is running and holds the devices; its view:",
                            "站点服务正在运行并占用着设备；以下为它报告的状况："),
    "devices.none_enabled": ("  no device enabled", "  未启用任何设备"),
    "devices.no_card": ("{error}; place the card flat on the reader and run again",
                        "{error}；请把证件平放在阅读器上，再运行一次"),
    "devices.card_read": ("card read on {reader} at {baud} baud in {ms} ms:",
                          "已在 {reader} 上读卡（{baud} 波特，用时 {ms} 毫秒）："),
    "devices.photo": ("{bytes} bytes WLT (kept raw; not decoded here)",
                      "{bytes} 字节 WLT（保留原始数据；此处不解码）"),
    "card.photo": ("photo", "照片"),
    "card.photo_sha256": ("photo sha256", "照片 sha256"),
    "card.card_type": ("card_type", "证件类型"),
    "card.name": ("name", "姓名"),
    "card.number": ("number", "证件号码"),
    "card.sex": ("sex", "性别"),
    "card.birth_date": ("birth_date", "出生日期"),
    "card.nation": ("nation", "民族"),
    "card.address": ("address", "住址"),
    "card.issuing_authority": ("issuing_authority", "签发机关"),
    "card.issue_count": ("issue_count", "签发次数"),
    "card.english_name": ("english_name", "英文姓名"),
    "card.nationality": ("nationality", "国籍"),
    "card.renewal_count": ("renewal_count", "换证次数"),
    "card.valid_from": ("valid_from", "有效期起"),
    "card.valid_to": ("valid_to", "有效期至"),
    "card.sex.male": ("male", "男"),
    "card.sex.female": ("female", "女"),
    "card.sex.unknown": ("unknown", "未知"),
    "card.sex.unstated": ("unstated", "未说明"),
    "devices.printer.paper_out": ("is out of paper: load a roll", "缺纸：请装入纸卷"),
    "devices.printer.cover_open": ("has its cover open: close it", "纸仓盖打开：请盖好"),
    "devices.printer.offline": ("is offline: check its power and its button/panel",
                                "离线：请检查电源和面板按键"),
    "devices.printer.error": (
        "reports an error (cutter jam or a fault): clear it and switch it off/on",
        "报告故障（切刀卡纸或其他故障）：请排除后关机再开机"),
    "devices.printer.problem": (
        "printer at {where} {problem}; the test receipt was not printed, run print-test again",
        "打印机 {where} {problem}；测试回执未打印，请再次运行 print-test"),
    "devices.printer.unreachable": ("printer at {where} is unreachable",
                                    "无法连接打印机 {where}"),
    "devices.printer.gone": ("{error}; the test receipt was not printed",
                             "{error}；测试回执未打印"),
    "devices.printer.timeout": (
        "printer at {where} did not confirm the test receipt within {seconds} s (state "
        "{state}); check it and run again",
        "打印机 {where} 在 {seconds} 秒内未确认测试回执（状态 {state}）；请检查后再试"),
    "devices.printed": (
        "test receipt printed on {address}: {bytes} bytes ({encoding}), QR {payload}, "
        "confirmed by the printer after {seconds} s (attempt {attempts})",
        "测试回执已在 {address} 打印：{bytes} 字节（{encoding}），二维码 {payload}，"
        "打印机于 {seconds} 秒后确认（第 {attempts} 次尝试）"),
    "devices.write_failed": ("cannot write {path}: {error}; choose another place",
                             "无法写入 {path}：{error}；请换一个位置"),
    "devices.captured": ("captured from {where} in {ms} ms{note}",
                         "已从 {where} 拍摄，用时 {ms} 毫秒{note}"),
    "devices.huffman": (" (Huffman tables added to the MJPEG frame)",
                        "（已为 MJPEG 帧补上 Huffman 表）"),
    "devices.wrote": ("wrote {path}: {summary}", "已写入 {path}：{summary}"),
    # -- config check ---------------------------------------------------------------------------
    "config.effective": ("# effective {role} configuration from {path}",
                         "# {path} 的实际生效配置（{role}）"),
    "config.effective_note": (
        "# (defaults filled in, relative paths resolved, secrets shown as ***)",
        "# （已填入默认值，相对路径已解析，机密显示为 ***）"),
    "config.problems.one": (
        "{count} problem found in {path}; fix it and run `cunlink config check` again",
        "{path} 中发现 {count} 个问题；请修改后再次运行 `cunlink config check`"),
    "config.problems.many": (
        "{count} problems found in {path}; fix them and run `cunlink config check` again",
        "{path} 中发现 {count} 个问题；请修改后再次运行 `cunlink config check`"),
    # -- keys -----------------------------------------------------------------------------------
    "keys.created": ("created {role} identity {id!r} in {dir}",
                     "已在 {dir} 中创建{role} {id!r} 的密钥"),
    "keys.signing": ("  signing key     Ed25519  key id {key_id}",
                     "  签名密钥        Ed25519  密钥编号 {key_id}"),
    "keys.encryption": ("  encryption key  X25519   key id {key_id}",
                        "  加密密钥        X25519   密钥编号 {key_id}"),
    "keys.enrollment.station": ("enrollment file: {path}  (give it to the hub to import)",
                                "登记文件：{path}（请交给县级中心导入）"),
    "keys.enrollment.hub": ("enrollment file: {path}  (give it to the stations to import)",
                            "登记文件：{path}（请交给各站点导入）"),
    "keys.identity": ("{role} {id!r}, created {created} ({file})",
                      "{role} {id!r}，创建于 {created}（{file}）"),
    "keys.private": ("private keys: {status}", "私钥：{status}"),
    "keys.key_missing": ("{name} missing", "{name} 缺失"),
    "keys.key_unreadable": ("{name} unreadable ({error})", "{name} 无法读取（{error}）"),
    "keys.key_ok": ("{name} mode {mode} ok", "{name} 权限 {mode} 正常"),
    "keys.key_unsafe": ("{name} mode {mode} UNSAFE: run `chmod 600 {path}`",
                        "{name} 权限 {mode} 不安全：请运行 `chmod 600 {path}`"),
    "keys.no_dir": ("{dir}: no such directory; create keys with `cunlink keys init`",
                    "{dir}：目录不存在；请用 `cunlink keys init` 创建密钥"),
    "keys.no_enrollment": ("{dir}: no *{suffix} file; create keys with `cunlink keys init`",
                           "{dir}：没有 *{suffix} 文件；请用 `cunlink keys init` 创建密钥"),
    # -- init -----------------------------------------------------------------------------------
    "init.missing": (
        "missing {flags}; give them as options (or run `cunlink init` in a terminal to be "
        "asked); nothing was written",
        "缺少 {flags}；请以选项给出（或在终端中运行 `cunlink init` 按提示输入）；未写入任何文件"),
    "init.ask.station_id": ("Station id (from the county, e.g. ST001)",
                            "站点编号（县里分配，例如 ST001）"),
    "init.ask.broker_host": ("County MQTT broker (host name or IP address)",
                             "县里的 MQTT 服务器（域名或 IP 地址）"),
    "init.ask.broker_port": ("Broker port", "服务器端口"),
    "init.ask.state_dir": ("Data directory (cases and scans)", "数据目录（案件和扫描件）"),
    "init.ask.idcard": ("Is an ID-card reader connected?", "是否连接了身份证阅读器？"),
    "init.ask.printer": ("Is a receipt printer connected (serial/USB)?",
                         "是否连接了回执打印机（串口/USB）？"),
    "init.ask.camera": ("Is a document camera connected (USB)?", "是否连接了高拍仪（USB）？"),
    "init.ask.device_path": ("  its device", "  设备路径"),
    "init.ask.again": ("not a valid answer; try again", "输入无效，请重新输入"),
    "init.ask.gave_up": ("no valid answer after several tries; nothing was written",
                         "多次输入无效；未写入任何文件"),
    "init.bad_station_id": (
        "station id {id!r}: use 1-32 of A-Z a-z 0-9 _ (no '-': it separates the parts of "
        "case numbers)",
        "站点编号 {id!r}：只能使用 1 到 32 个 A-Z a-z 0-9 _（不能含“-”，它用于分隔案件编号）"),
    "init.bad_host": ("broker host {host!r}: expected a host name or IP address, without "
                      "scheme or port (e.g. mqtt.county.example)",
                      "服务器地址 {host!r}：应为域名或 IP 地址，不带协议和端口"
                      "（例如 mqtt.county.example）"),
    "init.bad_terminal": ("--terminal {name!r}: use 1-64 of A-Z a-z 0-9 _ . -",
                          "--terminal {name!r}：只能使用 1 到 64 个 A-Z a-z 0-9 _ . -"),
    "init.bad_language": ("--station-language {value!r}: expected zh-CN or en",
                          "--station-language {value!r}：应为 zh-CN 或 en"),
    "init.no_such_user": ("--owner {user}: no such account; create it first (e.g. `useradd "
                          "--system cunlink`)",
                          "--owner {user}：没有这个账户；"
                          "请先创建（例如 `useradd --system cunlink`）"),
    "init.owner_needs_root": ("--owner {user}: giving files to another account needs root",
                              "--owner {user}：把文件交给其他账户需要 root 权限"),
    "init.exists": ("already there: {paths}; pass --force to replace them (new keys must be "
                    "enrolled at the county again); nothing was written",
                    "已存在：{paths}；如需替换请加 --force（新密钥须到县里重新登记）；"
                    "未写入任何文件"),
    "init.copy_unreadable": ("cannot read {path}: {error}", "无法读取 {path}：{error}"),
    "init.copy_invalid": ("{path} is not usable: {error}", "{path} 无法使用：{error}"),
    "init.copy_not_hub": ("{path} is the enrollment of {role} {id}, not of the hub",
                          "{path} 是{role} {id} 的登记文件，不是县级中心的"),
    "init.config_rejected": ("the configuration would not load:\n{error}",
                             "生成的配置无法加载：\n{error}"),
    "init.config_mismatch": (
        "the written configuration {path} does not read back the same (a bug: please report "
        "it); nothing was kept",
        "写入的配置 {path} 读回后不一致（程序错误，请报告）；未保留任何文件"),
    "init.keys_failed": ("keys: {error}", "密钥：{error}"),
    "init.write_failed": ("cannot write {path}: {error}", "无法写入 {path}：{error}"),
    "init.done": ("Station {id} is set up:", "站点 {id} 已设置："),
    "init.done.config": ("  configuration    {path}", "  配置文件         {path}"),
    "init.done.keys": ("  keys (private)   {path}", "  密钥（私密）     {path}"),
    "init.done.enrollment": ("  enrollment file  {path}", "  登记文件         {path}"),
    "init.done.state": ("  data             {path}", "  数据目录         {path}"),
    "init.token": (
        "API token of terminal {name!r} (shown only now; enter it in the terminal's settings; "
        "it is also in the configuration file):",
        "终端 {name!r} 的 API 令牌（仅显示这一次；请填入终端的设置中；配置文件中也有保存）："),
    "init.next": ("Next steps:", "后续步骤："),
    "init.next.enroll": (
        "  1. Give {file} to the county (USB stick or e-mail; it holds no secret). There they "
        "run:",
        "  1. 把 {file} 交给县里（U 盘或邮件均可，文件不含机密）。县里执行："),
    "init.next.place": (
        "  2. The county gives back the hub's enrollment file and three TLS files; put them "
        "here:",
        "  2. 县里会返回县级中心的登记文件和三个 TLS 文件；请放到："),
    "init.next.placed": ("       {path} (already copied)", "       {path}（已复制）"),
    "init.next.doctor": ("  3. Check the whole setup:", "  3. 检查整体设置："),
    "init.next.start": ("  4. Start the service, now and at every boot:",
                        "  4. 启动服务（并设置开机自启）："),
    "init.next.status": ("  5. Then watch it work:", "  5. 然后查看运行状态："),
    "init.next.unit_config": (
        "     (the shipped unit reads {unit}: for {config}, add a drop-in with "
        "`systemctl edit cunlink` that sets ExecStart= to `cunlink run --config {config}`)",
        "     （随附的服务单元读取 {unit}：如使用 {config}，请用 `systemctl edit cunlink` "
        "添加覆盖配置，把 ExecStart= 改为 `cunlink run --config {config}`）"),
    "init.next.no_systemd": (
        "     (no systemd here: run `cunlink run --config {config}` under your own supervisor)",
        "     （本机没有 systemd：请用其他进程管理工具运行 `cunlink run --config {config}`）"),
}
