"""API errors: a stable code, an HTTP status, and a message in the caller's language.

Every error body is ``{"error": {"code": "...", "message": "...", ...details}}``. The code is
for programs (it never changes); the message is for the operator, in Simplified Chinese or
English chosen by ``Accept-Language`` (the station's `[station] language` when the header
names neither). Messages never carry personal data: they name fields, never their values.
"""

from __future__ import annotations

import json
from typing import Any, Final

from aiohttp import web

LANGUAGES: Final = ("zh-CN", "en")

#: code -> (HTTP status, zh-CN template, en template). Templates use str.format fields.
CATALOG: Final[dict[str, tuple[int, str, str]]] = {
    "unauthorized": (
        401, "需要有效的终端令牌（Authorization: Bearer <令牌>）",
        "a valid terminal token is required (Authorization: Bearer <token>)"),
    "origin_not_allowed": (
        403, "来源 {origin} 未获准访问本接口；请在 [api] cors_origins 中加入它",
        "origin {origin} may not call this API; add it to [api] cors_origins"),
    "not_found": (404, "没有这个接口：{path}", "no such endpoint: {path}"),
    "case_not_found": (
        404, "本站没有办件 {case}；请核对回执上的编号", "no case {case} at this station; "
        "check the number on the receipt"),
    "method_not_allowed": (405, "{path} 不支持 {method} 方法", "{method} is not allowed on {path}"),
    "body_too_large": (
        413, "请求体超过上限 {limit} 字节；请降低扫描分辨率或分开上传",
        "the request body exceeds the {limit}-byte limit; scan at a lower resolution or "
        "upload the pages one by one"),
    "unsupported_media_type": (
        415, "不支持的内容类型 {type}；应为 {expected}",
        "content type {type} is not accepted; expected {expected}"),
    "bad_request": (400, "请求无效：{detail}", "bad request: {detail}"),
    "invalid_json": (400, "请求体不是有效的 JSON：{detail}", "the request body is not valid JSON: "
                     "{detail}"),
    "invalid_field": (400, "字段 {field} 无效：{expected_zh}", "field {field} is invalid: "
                      "{expected_en}"),
    "missing_field": (400, "缺少字段 {field}", "field {field} is missing"),
    "unknown_field": (400, "未知字段 {field}；允许的字段：{allowed}",
                      "unknown field {field}; allowed: {allowed}"),
    "invalid_material": (
        400, "材料无法识别：{detail}", "the material could not be read: {detail}"),
    "card_timeout": (
        408, "{seconds} 秒内读卡器上没有身份证；请将证件平放在读卡器上后重试",
        "no ID card was placed on the reader within {seconds} s; place it flat on the "
        "reader and try again"),
    "card_mismatch": (
        409, "读卡器上的证件不属于本办件的申请人；请放上申请人本人的证件",
        "the card on the reader is not the applicant's of this case; place the applicant's "
        "own card"),
    "invalid_transition": (
        409, "办件当前状态为 {status}，不能{action_zh}", "the case is {status}; it cannot be "
        "{action_en}"),
    "device_disabled": (
        503, "设备 {device} 未启用（配置中 [devices.{device}] enabled = false）",
        "device {device} is not enabled ([devices.{device}] enabled = false)"),
    "device_unavailable": (
        503, "设备 {device} 当前不可用：{detail}；请检查连接和电源",
        "device {device} is not available: {detail}; check its cable and power"),
    "device_failed": (
        503, "设备 {device} 操作失败：{detail}", "device {device} failed: {detail}"),
    "printer_busy": (
        503, "打印队列已满；请先处理打印机（缺纸、开盖）", "the print queue is full; see to the "
        "printer (paper, cover) first"),
    "too_many_subscribers": (
        503, "事件订阅过多；请关闭闲置的终端",
        "too many event subscribers; close an idle terminal"),
    "disk_full": (
        507, "磁盘空间不足，暂不能接收新材料；已受理的办件不受影响",
        "the disk is nearly full, so new materials are refused for now; accepted cases are "
        "safe"),
    "internal": (500, "站点内部错误；已记录，请联系技术员", "internal error in the station; it was "
                 "logged, call the technician"),
}

#: What a field was expected to be, in both languages (for `invalid_field`).
EXPECTED: Final[dict[str, tuple[str, str]]] = {
    "object": ("应为 JSON 对象", "expected a JSON object"),
    "string": ("应为字符串", "expected a string"),
    "nonempty_string": ("应为非空字符串", "expected a non-empty string"),
    "name": ("应为 1 到 64 个字符的字符串", "expected a string of 1 to 64 characters"),
    "text": ("应为不超过 4000 个字符的字符串", "expected a string of at most 4000 characters"),
    "scalar": ("应为字符串或整数", "expected a string or an integer"),
    "number": ("应为数字", "expected a number"),
    "boolean": ("应为 true 或 false", "expected true or false"),
    "range": ("超出允许范围 {lo} 到 {hi}", "expected a value from {lo} to {hi}"),
    "too_many": ("条目过多，最多 {max} 个", "too many entries, at most {max}"),
    "status": ("应为办件状态之一：{allowed}", "expected one of the case statuses: {allowed}"),
    "applicant": ("应为申请人对象，或字符串 \"idcard\"（从读卡器读取）",
                  "expected an applicant object, or the string \"idcard\" (read the card)"),
    "source": ("应为 \"camera\"", "expected \"camera\""),
}

#: Words for `invalid_transition`.
ACTIONS: Final[dict[str, tuple[str, str]]] = {
    "submit": ("提交", "submitted"),
    "add_material": ("添加材料", "given new materials"),
}


class ApiError(Exception):
    """Raised by handlers; turned into the JSON error body by the error middleware."""

    def __init__(self, code: str, *, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None, **params: Any) -> None:
        if code not in CATALOG:
            raise ValueError(f"API error code {code!r} is not in the catalog")
        super().__init__(code)
        self.code = code
        self.status = CATALOG[code][0]
        self.params = params
        self.details = details or {}
        self.headers = headers or {}


def invalid(field: str, expected: str, **params: Any) -> ApiError:
    """`invalid_field` for `field`, with the expectation `expected` (a key of EXPECTED)."""
    zh, en = EXPECTED[expected]
    return ApiError("invalid_field", field=field, expected_zh=zh.format(**params),
                    expected_en=en.format(**params), details={"field": field})


def pick_language(header: str | None, default: str) -> str:
    """zh-CN or en from an Accept-Language header (q-values honoured), else `default`."""
    best: tuple[float, str] | None = None
    for part in (header or "").split(","):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip().lower()
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q <= 0 or not tag:
            continue
        lang = "zh-CN" if tag.startswith("zh") else "en" if tag.startswith("en") else None
        # ties keep the earlier tag: the header's order is the client's preference
        if lang is not None and (best is None or q > best[0]):
            best = (q, lang)
    if best is not None:
        return best[1]
    return default if default in LANGUAGES else "zh-CN"


def message(code: str, lang: str, params: dict[str, Any]) -> str:
    _, zh, en = CATALOG[code]
    template = zh if lang == "zh-CN" else en
    try:
        return template.format(**params)
    except (KeyError, IndexError):  # a missing parameter must not turn into a 500
        return template


def error_body(code: str, lang: str, params: dict[str, Any],
               details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message(code, lang, params), **(details or {})}}


def error_response(request: web.Request, err: ApiError) -> web.Response:
    lang = pick_language(request.headers.get("Accept-Language"),
                         request.app.get(LANGUAGE_KEY, "zh-CN"))
    response = web.json_response(error_body(err.code, lang, err.params, err.details),
                                 status=err.status, headers=err.headers,
                                 dumps=dumps)
    response.headers["Content-Language"] = lang
    return response


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


LANGUAGE_KEY: Final = web.AppKey("language", str)
