"""Error codes and their messages in zh-CN and en; language negotiation."""

from __future__ import annotations

import re
import string

import pytest

from gateway.api.errors import CATALOG, EXPECTED, ApiError, invalid, message, pick_language


@pytest.mark.parametrize(("header", "default", "expected"), [
    (None, "zh-CN", "zh-CN"),
    (None, "en", "en"),
    ("en", "zh-CN", "en"),
    ("en-US,en;q=0.9", "zh-CN", "en"),
    ("zh-CN,zh;q=0.9,en;q=0.8", "en", "zh-CN"),
    ("zh-TW", "en", "zh-CN"),
    ("fr-FR,en;q=0.5", "zh-CN", "en"),
    ("en;q=0.3,zh;q=0.7", "en", "zh-CN"),
    ("fr, de", "en", "en"),
    ("en;q=0", "zh-CN", "zh-CN"),
    ("en;q=bogus,zh", "en", "zh-CN"),
])
def test_language_follows_accept_language(header: str | None, default: str,
                                          expected: str) -> None:
    assert pick_language(header, default) == expected


def test_every_code_has_both_languages_with_the_same_fields() -> None:
    for code, (status, zh, en) in CATALOG.items():
        assert re.fullmatch(r"[a-z_]+", code)
        assert 400 <= status <= 599
        assert re.search(r"[\u4e00-\u9fff]", zh), code  # Chinese text
        assert not re.search(r"[\u4e00-\u9fff]", en), code
        fields = {f for _, f, _, _ in string.Formatter().parse(zh) if f}
        en_fields = {f for _, f, _, _ in string.Formatter().parse(en) if f}
        # the per-language words (action_zh / expected_en) differ; the rest must match
        assert {f.removesuffix("_zh") for f in fields} == \
            {f.removesuffix("_en") for f in en_fields}, code


def test_invalid_field_names_the_field_in_both_languages() -> None:
    err = invalid("applicant.name", "nonempty_string")
    assert err.status == 400 and err.details == {"field": "applicant.name"}
    assert message(err.code, "en", err.params) == \
        "field applicant.name is invalid: expected a non-empty string"
    assert message(err.code, "zh-CN", err.params) == "字段 applicant.name 无效：应为非空字符串"
    assert set(EXPECTED) >= {"object", "string", "range"}


def test_unknown_codes_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="not in the catalog"):
        ApiError("no_such_code")
