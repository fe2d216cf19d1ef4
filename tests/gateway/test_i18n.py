"""The CLI's language choice and its message catalogue."""

from __future__ import annotations

import re
import string

import pytest

from gateway.i18n import CATALOGUE, Messages, choose_lang, locale_lang, parse_lang

_FIELDS = string.Formatter()


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in _FIELDS.parse(text) if name}


@pytest.mark.parametrize("key", sorted(CATALOGUE))
def test_every_message_has_both_languages_with_the_same_placeholders(key: str) -> None:
    en, zh = CATALOGUE[key]
    assert en.strip() and zh.strip()
    assert _placeholders(en) == _placeholders(zh), key
    # The Chinese text is Chinese (unit words and pure code lines excepted).
    if len(re.sub(r"\{[^}]*\}|`[^`]*`|[\W\d_]", "", en)) > 12:
        assert re.search(r"[\u4e00-\u9fff]", zh), f"{key}: {zh!r} has no Chinese"


def test_every_fix_belongs_to_a_message() -> None:
    for key in CATALOGUE:
        if key.endswith(".fix"):
            assert key.removesuffix(".fix") in CATALOGUE, key


@pytest.mark.parametrize(("value", "lang"), [
    ("zh_CN.UTF-8", "zh-CN"), ("zh_TW.UTF-8", "zh-CN"), ("zh", "zh-CN"),
    ("en_US.UTF-8", "en"), ("de_DE.UTF-8", "en"), ("C", None), ("C.UTF-8", None),
    ("POSIX", None), ("", None),
])
def test_locale_values(value: str, lang: str | None) -> None:
    assert locale_lang(value) == lang


@pytest.mark.parametrize(("value", "lang"), [
    ("zh-CN", "zh-CN"), ("zh_CN", "zh-CN"), ("ZH", "zh-CN"), ("en", "en"), ("en-GB", "en"),
    ("fr", None), ("", None), ("english", None),
])
def test_explicit_values(value: str, lang: str | None) -> None:
    assert parse_lang(value) == lang


def test_precedence_flag_then_override_then_locale_then_fallback() -> None:
    env = {"LANG": "zh_CN.UTF-8"}
    assert choose_lang(env=env) == "zh-CN"
    assert choose_lang("en", env=env) == "en"
    assert choose_lang(env={**env, "CUNLINK_LANG": "en"}) == "en"
    assert choose_lang("zh-CN", env={**env, "CUNLINK_LANG": "en"}) == "zh-CN"
    # POSIX order: LC_ALL beats LC_MESSAGES beats LANG; the first one set decides.
    assert choose_lang(env={"LC_ALL": "en_US.UTF-8", "LC_MESSAGES": "zh_CN.UTF-8"}) == "en"
    assert choose_lang(env={"LC_MESSAGES": "zh_CN.UTF-8", "LANG": "en_US.UTF-8"}) == "zh-CN"
    assert choose_lang(env={"LC_ALL": "", "LANG": "zh_CN.UTF-8"}) == "zh-CN"
    # A C locale or none says nothing: the fallback (the config's language) decides.
    assert choose_lang(env={"LANG": "C.UTF-8"}, fallback="zh-CN") == "zh-CN"
    assert choose_lang(env={}, fallback="zh-CN") == "zh-CN"
    assert choose_lang(env={}) == "en"
    # An unusable override is ignored rather than turning the CLI into a third language.
    assert choose_lang(env={"CUNLINK_LANG": "fr", "LANG": "zh_CN.UTF-8"}) == "zh-CN"


def test_messages_format_and_label_checks() -> None:
    zh, en = Messages("zh-CN"), Messages("en")
    assert en("doctor.keys.dir_mode", dir="/k", mode="0755") == (
        "/k is open to group or others (mode 0755)")
    assert zh("doctor.keys.dir_mode", dir="/k", mode="0755") == "/k 对组或其他用户开放（权限 0755）"
    assert zh.check_label("device:idcard") == "设备 idcard"
    assert en.check_label("client_cert") == "station certificate"
    assert en.check_label("something-new") == "something-new"
    with pytest.raises(KeyError):
        en("no.such.message")


def test_every_code_the_doctor_and_cli_use_exists(pytestconfig: pytest.Config) -> None:
    """Codes are strings in the source: a typo would only show when that check fails."""
    root = pytestconfig.rootpath
    sources = [root / "gateway" / "doctor.py", *sorted((root / "gateway" / "cli").glob("*.py"))]
    used: set[str] = set()
    prefixes = ("doctor|init|status|outbox|cli|cases|devices|config|keys|store|card|role|side|"
                "class|state|unit|age")
    for path in sources:
        found = re.findall(rf"""(["'])((?:{prefixes})\.[a-z_.]+[a-z])\1""",
                           path.read_text(encoding="utf-8"))
        used |= {code for _, code in found}
    used -= {"outbox.state"}  # a prefix: _word(t, "outbox.state", state) adds the state
    # Built with f-strings in the doctor (expired_{what}, expires_soon_{what}).
    used |= {f"doctor.cert.{k}_{w}" for k in ("expired", "expires_soon") for w in ("ca", "client")}
    used |= {f"outbox.{v}.{o}" for v in ("hold", "retry")
             for o in ("changed", "unchanged", "gone", "note")}
    assert len(used) > 200
    assert sorted(used - set(CATALOGUE)) == []
    doctor_src = (root / "gateway" / "doctor.py").read_text(encoding="utf-8")
    for code in re.findall(r'_(?:fail|warn)\(\s*"[a-z_:]+",\s*f?"(doctor\.[a-z_.]+)"', doctor_src):
        assert f"{code}.fix" in CATALOGUE, code


@pytest.mark.parametrize("key", sorted(CATALOGUE))
def test_both_forms_format_with_the_same_arguments(key: str) -> None:
    """Same names is not enough: a conversion or format spec ({id!r}, {m:02d}) must also
    accept what the English form accepts."""
    args = {name: 7 for name in _placeholders(CATALOGUE[key][0])}
    assert Messages("en")(key, **args) and Messages("zh-CN")(key, **args)


def test_case_statuses_in_chinese() -> None:
    zh, en = Messages("zh-CN"), Messages("en")
    assert zh.status("submitted") == "已提交" and zh.status("needs_supplement") == "需补正材料"
    assert en.status("submitted") == "submitted"
    assert zh.status("some_future_status") == "some_future_status"
