"""Validation errors as text a Chinese operator can act on."""

from __future__ import annotations

from pydantic import ValidationError

# pydantic error type -> what to tell the operator
MESSAGES_ZH = {
    "missing": "必填字段缺失",
    "string_type": "应为文本",
    "string_too_short": "内容过短",
    "string_too_long": "内容过长",
    "enum": "取值不在允许范围内",
    "datetime_parsing": "时间格式错误，应为 ISO 8601（如 2026-11-20T09:30:00+08:00）",
    "datetime_type": "时间格式错误，应为 ISO 8601（如 2026-11-20T09:30:00+08:00）",
    "datetime_from_date_parsing": "时间格式错误，应为 ISO 8601（如 2026-11-20T09:30:00+08:00）",
    "datetime_object_invalid": "时间格式错误，应为 ISO 8601（如 2026-11-20T09:30:00+08:00）",
    "timezone_aware": "时间须带时区（如 +08:00）",
    "float_parsing": "应为数字",
    "greater_than_equal": "数值过小",
    "less_than_equal": "数值过大",
    "value_error": "取值无效",
    "model_type": "应为 JSON 对象",
}


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """One {field, message} per error, message in Chinese with pydantic's English kept after it."""
    errors = []
    for error in exc.errors(include_url=False):
        field = ".".join(str(part) for part in error["loc"]) or "(body)"
        zh = MESSAGES_ZH.get(error["type"], "取值无效")
        errors.append({"field": field, "message": f"{zh}（{error['msg']}）"})
    return errors


def describe_validation_error(exc: ValidationError) -> str:
    """All field errors of a ValidationError on one line."""
    return "; ".join(f"{e['field']}: {e['message']}" for e in field_errors(exc))
