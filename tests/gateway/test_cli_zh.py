"""The station-side technician commands in Simplified Chinese: `cases list/show`, `outbox
list/stats`, `devices list` (and the errors of read-card/print-test/capture), `config check`,
`keys init/show`. The language comes from the locale, `--lang` or `$CUNLINK_LANG`, and, with a
C locale, from the configuration's [station] language; --json never changes with it.

In-process (typer's CliRunner) on a real configuration, real keys and a real store; the
device commands against the emulators are in test_devices_cli.py."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from devices.emulators.sample_cards import SAMPLE_CARDS
from gateway.cli.main import app
from gateway.i18n import CATALOGUE
from gateway.keys import enrollment_path, init_keys
from protocols.idcard import describe
from sync.store import OutboxPut, Store, StoreLayout
from sync.workflow import Status

runner = CliRunner()
CLEAN = {"CUNLINK_LANG": None, "LC_ALL": None, "LC_MESSAGES": None}
ZH = {**CLEAN, "LANG": "zh_CN.UTF-8"}
EN = {**CLEAN, "LANG": "en_US.UTF-8"}
C = {**CLEAN, "LANG": "C.UTF-8"}  # says nothing: the configuration's language decides
APPLICANT = {"id_type": "resident_id", "id_number": "110101199003077777", "name": "张三丰",
             "sex": "男", "address": "北京市东城区某某街道某某社区"}


def invoke(args: list[str], env: dict[str, str | None]) -> Result:
    return runner.invoke(app, args, env=env)


def _write_config(path: Path, tmp: Path, state: Path, *, extra: str = "") -> Path:
    path.write_text(f"""
[station]
id = "ST001"
state_dir = "{state}"
{extra}
[keys]
dir = "{tmp / 'keys'}"
hub_enrollment = "{enrollment_path(tmp / 'hub-keys', 'HUB01')}"

[mqtt]
host = "127.0.0.1"
tls = false

[store]
disk_floor_mb = 0
""", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A station with keys, a hub enrollment and one submitted case (two packages queued)."""
    tmp = tmp_path_factory.mktemp("zh")
    now = datetime.now(UTC)
    init_keys("station", "ST001", tmp / "keys", force=False, now=now)
    init_keys("hub", "HUB01", tmp / "hub-keys", force=False, now=now)
    config = _write_config(tmp / "station.toml", tmp, tmp / "state")
    (tmp / "applicant.json").write_text(json.dumps(
        {"applicant": APPLICANT, "fields": {"phone": "13812345678", "purpose": "低保申请"}},
        ensure_ascii=False), encoding="utf-8")
    (tmp / "scan.jpg").write_bytes(b"\xff\xd8" + bytes(range(256)) * 40)
    submitted = invoke(["cases", "submit", "--service", "SVC-DB-01", "--applicant",
                        str(tmp / "applicant.json"), "--material", str(tmp / "scan.jpg"),
                        "--config", str(config)], ZH)
    assert submitted.exit_code == 0, submitted.output
    return config


def _case(station: Path) -> str:
    rows = json.loads(invoke(["cases", "list", "--json", "--config", str(station)], EN).stdout)
    return str(rows["cases"][0]["case"])


# -- cases ------------------------------------------------------------------------------------


def test_cases_list_in_chinese(station: Path) -> None:
    result = invoke(["cases", "list", "--config", str(station)], ZH)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    case = _case(station)
    assert lines[0].split() == ["案件编号", "状态", "事项", "材料", "冲突", "更新时间"]
    assert lines[1].split()[:5] == [case, "已提交", "SVC-DB-01", "1", "0"]
    assert lines[-1] == "共 1 件"
    none = invoke(["cases", "list", "--status", "approved", "--config", str(station)], ZH)
    assert none.stdout == "没有状态为“已批准”的案件\n"


def test_cases_list_columns_line_up_with_chinese_statuses(station: Path) -> None:
    lines = invoke(["cases", "list", "--config", str(station)], ZH).stdout.splitlines()
    # The service column starts at the same terminal column in the header and the rows
    # (a Chinese character takes two columns).
    def col(line: str, text: str) -> int:
        before = line[: line.index(text)]
        return sum(2 if ord(c) >= 0x2E80 else 1 for c in before)

    assert col(lines[0], "事项") == col(lines[1], "SVC-DB-01")


def test_cases_show_in_chinese(station: Path) -> None:
    case = _case(station)
    result = invoke(["cases", "show", case, "--config", str(station)], ZH)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith(f"案件 {case}  状态 已提交  事项 SVC-DB-01\n")
    assert "申请人：" in out and "name=张**" in out and "张三丰" not in out
    assert "表单字段：phone=138****5678，purpose=低保申请" in out
    assert "\n材料 " in out
    assert "状态 草稿 -> 已提交，由站点于 " in out
    assert "事件（3 条）：" in out
    assert out.endswith("（个人信息已隐去；加 --reveal 可完整显示）\n")


def test_cases_errors_in_chinese(station: Path, tmp_path: Path) -> None:
    missing = invoke(["cases", "show", "ST001-20000101-0001", "--config", str(station)], ZH)
    assert missing.exit_code == 1
    db = StoreLayout.station(station.parent / "state").db
    assert missing.stderr == (f"错误：{db} 中没有案件 'ST001-20000101-0001'；"
                              "`cunlink cases list` 可查看本站的案件\n")
    empty = _write_config(tmp_path / "empty.toml", station.parent, tmp_path / "state")
    listed = invoke(["cases", "list", "--config", str(empty)], ZH)
    assert listed.exit_code == 0
    assert listed.stdout == "没有案件\n"
    assert listed.stderr == (f"{tmp_path / 'state' / 'station.db'} 尚无数据库"
                             "（站点服务或 `cunlink cases submit` 会创建）\n")
    shown = invoke(["cases", "show", "X", "--config", str(empty)], ZH)
    assert shown.exit_code == 1 and "错误：没有案件 'X'：数据库为空" in shown.stderr
    gone = invoke(["cases", "list", "--config", str(tmp_path / "nope.toml")], ZH)
    assert gone.exit_code == 1 and gone.stderr.startswith(
        f"错误：找不到配置文件 {tmp_path / 'nope.toml'}；")


def test_cases_json_and_english_do_not_change(station: Path) -> None:
    case = _case(station)
    for args in (["cases", "list", "--json"], ["cases", "show", case, "--json"]):
        zh = invoke([*args, "--config", str(station)], ZH)
        en = invoke([*args, "--config", str(station)], EN)
        assert zh.exit_code == en.exit_code == 0
        assert zh.stdout == en.stdout
    en = invoke(["cases", "list", "--config", str(station)], EN).stdout
    assert en.splitlines()[0] == (f"{'case':<24} {'status':<17} {'service':<16} {'mat':>3} "
                                  f"{'conf':>4}  updated")
    assert en.splitlines()[-1] == "1 case(s)"


# -- outbox -----------------------------------------------------------------------------------


def test_outbox_list_and_stats_in_chinese(station: Path) -> None:
    listed = invoke(["outbox", "list", "--config", str(station)], ZH)
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["包编号", "类型", "类别", "案件编号", "大小", "已确认", "次数",
                                "状态", "已等待"]
    assert [line.split()[1:3] for line in lines[1:]] == [["batch", "事件"], ["blob", "材料"]]
    assert all(line.split()[-2] == "排队" and line.endswith("秒") for line in lines[1:])
    held = invoke(["outbox", "list", "--held", "--config", str(station)], ZH)
    assert held.stdout == "没有暂停的包\n"
    stats = invoke(["outbox", "stats", "--config", str(station)], ZH)
    assert stats.exit_code == 0, stats.output
    out = stats.stdout.splitlines()
    assert out[0] == "待送达：2（事件 1，材料 1）；暂停：0"
    assert out[1].startswith("待发送字节数：") and out[2].startswith("最早的已等待：")


def test_outbox_stats_of_an_empty_station_and_json(station: Path, tmp_path: Path) -> None:
    empty = _write_config(tmp_path / "empty.toml", station.parent, tmp_path / "state")
    stats = invoke(["outbox", "stats", "--config", str(empty)], ZH)
    assert stats.stdout.splitlines() == ["待送达：0（无）；暂停：0", "待发送字节数：0",
                                         "最早的已等待：-"]
    listed = invoke(["outbox", "list", "--config", str(empty)], ZH)
    assert listed.stdout == "发件箱为空：全部已送达\n"
    for args in (["outbox", "list", "--json"], ["outbox", "stats", "--json"]):
        zh = invoke([*args, "--config", str(station)], ZH)
        en = invoke([*args, "--config", str(station)], EN)
        assert zh.exit_code == en.exit_code == 0
        zh_rows, en_rows = json.loads(zh.stdout), json.loads(en.stdout)
        for rows in (zh_rows, en_rows):  # the age moves on between the two runs
            for entry in rows.get("entries", []):
                entry.pop("age_ms")
            rows.pop("oldest_age_ms", None)
        assert zh_rows == en_rows


def test_outbox_list_shows_a_rejection_in_chinese(tmp_path: Path, station: Path) -> None:
    state = tmp_path / "state"
    config = _write_config(tmp_path / "s.toml", station.parent, state)
    pid = bytes.fromhex("c3" * 16)

    async def fill() -> None:
        layout = StoreLayout.station(state)
        async with await Store.open(layout.db, blob_dir=layout.blobs) as store:
            await store.append_local("ST001", [], outbox=[OutboxPut(
                package_id=pid, kind="batch", priority=0, destination="HUB01",
                payload=b"x" * 10, size=10, case=None)])
            await store.outbox_hold(pid)
            await store.kv_put(f"reject:{pid.hex()}", b"UNKNOWN_STATION: not enrolled")

    asyncio.run(fill())
    out = invoke(["outbox", "list", "--held", "--config", str(config)], ZH).stdout.splitlines()
    assert out[1].split()[1:3] == ["batch", "控制"] and out[1].split()[-2] == "暂停"
    assert out[2] == "    县级中心拒收：UNKNOWN_STATION: not enrolled"


# -- the language rules -----------------------------------------------------------------------


def test_lang_option_override_and_the_configured_language(station: Path, tmp_path: Path) -> None:
    args = ["outbox", "stats", "--config", str(station)]
    assert invoke([*args, "--lang", "en"], ZH).stdout.startswith("undelivered: 2 (")
    assert invoke([*args, "--lang", "zh-CN"], EN).stdout.startswith("待送达：2（")
    assert invoke(args, {**EN, "CUNLINK_LANG": "zh-CN"}).stdout.startswith("待送达：")
    # A C locale says nothing: [station] language decides (zh-CN by default).
    assert invoke(args, C).stdout.startswith("待送达：")
    english = _write_config(tmp_path / "en.toml", station.parent, station.parent / "state",
                            extra='language = "en"')
    assert invoke(["outbox", "stats", "--config", str(english)], C).stdout.startswith(
        "undelivered: ")
    bad = invoke([*args, "--lang", "fr"], ZH)
    assert bad.exit_code == 2 and "--lang: expected zh-CN or en, got 'fr'" in bad.stderr


# -- devices ----------------------------------------------------------------------------------


def _devices_config(path: Path, tmp: Path) -> Path:
    path.write_text(f"""
[station]
id = "ST001"
state_dir = "{tmp / 'dstate'}"
[mqtt]
host = "127.0.0.1"
tls = false
[devices.idcard]
enabled = false
port = "/dev/cunlink-test-none"
[devices.printer]
enabled = false
[devices.camera]
enabled = false
""", encoding="utf-8")
    return path


def test_devices_list_and_refusals_in_chinese(tmp_path: Path) -> None:
    config = _devices_config(tmp_path / "devices.toml", tmp_path)
    listed = invoke(["devices", "list", "--config", str(config)], ZH)
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0] == f"{config} 中配置的设备："
    assert lines[1] == "  idcard   未启用   /dev/cunlink-test-none"
    assert lines[2].startswith("  printer  未启用   ")
    assert lines[3].startswith("  camera   未启用   ")
    assert "本机串口：" in lines and lines[-1].startswith("本机视频设备：")
    as_json = [json.loads(invoke(["devices", "list", "--config", str(config), "--json"],
                                 env).stdout) for env in (ZH, EN)]
    assert as_json[0] == as_json[1]
    card = invoke(["devices", "read-card", "--config", str(config)], ZH)
    assert card.exit_code == 1
    assert card.stderr == (f"错误：{config} 中未启用 idcard：请先设置 [devices.idcard] "
                           "enabled = true（以及端口、地址或 URL）\n")
    for args in (["print-test"], ["capture", str(tmp_path / "x.jpg")]):
        result = invoke(["devices", *args, "--config", str(config)], ZH)
        assert result.exit_code == 1 and result.stderr.startswith("错误：")
        assert "中未启用" in result.stderr
    timeout = invoke(["devices", "list", "--timeout", "0", "--config", str(config)], ZH)
    assert timeout.exit_code == 1
    assert timeout.stderr == "错误：--timeout 应为正数（秒），实际为 0.0\n"


def test_every_card_field_has_a_chinese_label() -> None:
    for sample in SAMPLE_CARDS.values():
        for key, value in describe(sample.text).items():
            assert f"card.{key}" in CATALOGUE, key
            if key == "sex":
                assert f"card.sex.{value}" in CATALOGUE, value


# -- config check -----------------------------------------------------------------------------

BAD = """
[station]
id = "v001"

[mqtt]
host = "broker.example"
keepalive = "abc"
"""


def test_config_check_in_chinese(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "station.toml").write_text(
        '[station]\nid = "v001"\n[mqtt]\nhost = "b"\ntls = false\n', encoding="utf-8")
    ok = invoke(["config", "check", "station.toml"], ZH)
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.startswith("# station.toml 的实际生效配置（站点）\n"
                                "# （已填入默认值，相对路径已解析，机密显示为 ***）\n[station]\n")
    (tmp_path / "bad.toml").write_text(BAD, encoding="utf-8")
    bad = invoke(["config", "check", "bad.toml"], ZH)
    assert bad.exit_code == 1
    assert bad.stderr.splitlines() == [  # the loader's lines as they are, the frame in Chinese
        'bad.toml: [mqtt] keepalive: expected an integer from 5 to 600, got "abc"',
        "bad.toml: [mqtt] ca_file: required when tls = true; expected a path to the county "
        "CA certificate (PEM), got nothing; set it, or set tls = false (only for a test broker)",
        "bad.toml: [mqtt] cert_file: required when tls = true; expected a path to this "
        "machine's client certificate (PEM), got nothing; set it, or set tls = false (only for "
        "a test broker)",
        "bad.toml: [mqtt] key_file: required when tls = true; expected a path to this "
        "machine's TLS private key (PEM), got nothing; set it, or set tls = false (only for a "
        "test broker)",
        "bad.toml 中发现 4 个问题；请修改后再次运行 `cunlink config check`",
    ]
    as_json = [invoke(["config", "check", "bad.toml", "--json"], env).stdout for env in (ZH, EN)]
    assert as_json[0] == as_json[1]
    # A C locale: the checked file's own language once it loads; --lang wins over everything.
    assert invoke(["config", "check", "station.toml"], C).stdout.startswith("# station.toml 的")
    assert invoke(["config", "check", "station.toml", "--lang", "en"], ZH).stdout.startswith(
        "# effective station configuration from station.toml\n")


# -- keys -------------------------------------------------------------------------------------


def test_keys_init_and_show_in_chinese(tmp_path: Path) -> None:
    d = tmp_path / "keys"
    created = invoke(["keys", "init", "--role", "station", "--id", "ST001", "--dir", str(d)], ZH)
    assert created.exit_code == 0, created.output
    lines = created.stdout.splitlines()
    assert lines[0] == f"已在 {d} 中创建站点 'ST001' 的密钥"
    assert lines[1].startswith("  签名密钥        Ed25519  密钥编号 ")
    assert lines[2].startswith("  加密密钥        X25519   密钥编号 ")
    assert lines[3] == f"登记文件：{d / 'ST001.enrollment.json'}（请交给县级中心导入）"
    hub = invoke(["keys", "init", "--role", "hub", "--id", "HUB01", "--dir",
                  str(tmp_path / "hub")], ZH)
    assert hub.stdout.splitlines()[-1].endswith("（请交给各站点导入）")

    (d / "signing.key").chmod(0o644)
    shown = invoke(["keys", "show", "--dir", str(d)], ZH)
    assert shown.exit_code == 0, shown.output
    out = shown.stdout.splitlines()
    assert out[0].startswith("站点 'ST001'，创建于 ")
    assert out[0].endswith("（ST001.enrollment.json）")
    assert out[-1] == ("私钥：signing.key 权限 0644 不安全："
                       f"请运行 `chmod 600 {d / 'signing.key'}`，encryption.key 权限 0600 正常")


def test_keys_errors_in_chinese(tmp_path: Path) -> None:
    args = ["keys", "init", "--role", "station", "--id", "ST001", "--dir", str(tmp_path / "k")]
    assert invoke(args, ZH).exit_code == 0
    again = invoke(args, ZH)
    assert again.exit_code == 1 and again.stdout == ""
    # The key files' own line, framed in Chinese.
    assert again.stderr.startswith("错误：") and "--force" in again.stderr
    assert again.stderr.count("\n") == 1
    empty = invoke(["keys", "show", "--dir", str(tmp_path)], ZH)
    assert empty.exit_code == 1
    assert empty.stderr == (f"错误：{tmp_path}：没有 *.enrollment.json 文件；"
                            "请用 `cunlink keys init` 创建密钥\n")
    nodir = invoke(["keys", "show", "--dir", str(tmp_path / "none")], ZH)
    assert nodir.stderr == (f"错误：{tmp_path / 'none'}：目录不存在；"
                            "请用 `cunlink keys init` 创建密钥\n")


def test_every_case_status_has_a_chinese_name() -> None:
    from gateway.i18n import STATUS_ZH

    assert set(STATUS_ZH) == {s.value for s in Status}
