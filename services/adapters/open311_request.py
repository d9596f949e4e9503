"""An Open311 GeoReport v2 service request: its fields checked, its id, and the 12345 work order it becomes; pure.

The checks are exactly what the OpenAPI body schema (request_schema) says and what intake's 12345 normaliser
accepts, so a request answered 202 is not dead-lettered later. Text fields are trimmed; a blank optional field
counts as absent. Every error is one {field, message (Chinese), code, description (English)} item.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from services.adapters.request_view import OPEN311_ID_PREFIX

# 12345 has no "appeal type" in GeoReport: an Open311 report asks for something to be dealt with (求助).
APPEAL_TYPE = "求助"
URGENCY = "一般"
DESCRIPTION_MIN, DESCRIPTION_MAX = 2, 4000  # intake needs 2 characters; GeoReport allows 4,000

PHONE = r"[+-]*[0-9][0-9+-]*"
# Whitespace is Unicode's White_Space, as intake's pydantic trims it and JSON Schema's \s means it; Python's own
# str.strip() and re's \s also take \x1c-\x1f, so neither is used on request text.
WS_CLASS = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
WHITE_SPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
)
EMAIL = rf"[^@{WS_CLASS}]+@[^@{WS_CLASS}]+"
MEDIA_URL = rf"https?://[^{WS_CLASS}]+"
NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")  # JSON's number grammar
MAX_FORM_FIELDS = 200
IDEMPOTENCY_KEY = re.compile(r"^[!-~]{1,255}$")
RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$"
)
STATUS_LIST = re.compile(r"^(open|closed)(,(open|closed))*$")


# name -> (longest raw length, pattern the trimmed text must match in full, Chinese label)
TEXT_FIELDS: dict[str, tuple[int, str | None, str]] = {
    "address_string": (300, None, "地址"),
    "address_id": (128, None, "地址编号"),
    "email": (254, EMAIL, "电子邮箱"),
    "device_id": (128, None, "设备编号"),
    "account_id": (128, None, "账号"),
    "first_name": (24, None, "名"),
    "last_name": (24, None, "姓"),
    "phone": (30, PHONE, "电话"),
    "media_url": (2000, MEDIA_URL, "图片链接"),
}
PATTERN_ZH = {PHONE: "只能包含数字、+ 和 -", EMAIL: "应为电子邮箱地址", MEDIA_URL: "应为 http(s) 链接"}
LOCATION_ZH = "须提供位置：lat 与 long，或 address_string，或 address_id"


def error(field: str, message_zh: str, description: str, code: int = 422) -> dict[str, Any]:
    """One error item: the project's {field, message} plus GeoReport's {code, description}."""
    return {"field": field, "message": message_zh, "code": code, "description": description}


class InvalidRequest(Exception):
    """A request that cannot become a work order; `errors` says why, field by field."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['description']}" for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class ServiceRequestIn:
    """A checked Open311 service request (personal fields included: they go to the hotline only)."""

    service_code: str
    description: str
    lat: float | None = None
    long: float | None = None
    address_string: str | None = None
    address_id: str | None = None
    email: str | None = None
    device_id: str | None = None
    account_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    media_url: str | None = None


def form_fields(body: bytes) -> dict[str, Any]:
    """An application/x-www-form-urlencoded body as {name: text}; a repeated field stays a list (and is refused)."""
    try:
        pairs = parse_qs(body.decode("utf-8"), keep_blank_values=True, errors="strict", max_num_fields=MAX_FORM_FIELDS)
    except UnicodeDecodeError as exc:
        raise ValueError(f"表单不是有效的 UTF-8：{exc}") from None
    except ValueError:  # parse_qs: too many fields
        raise ValueError(f"表单字段超过 {MAX_FORM_FIELDS} 个。") from None
    return {name: values[0] if len(values) == 1 else values for name, values in pairs.items()}


def _text(fields: dict[str, Any], name: str, max_len: int, errors: list[dict[str, Any]]) -> str | None:
    if name not in fields:
        return None
    value = fields[name]  # a JSON null is not "absent": the schema has no nulls
    if not isinstance(value, str):
        errors.append(error(name, "应为文本（且只能出现一次）", f"{name} must be one text value"))
        return None
    if len(value) > max_len:
        errors.append(error(name, f"内容过长（最多 {max_len} 个字符）", f"{name} is longer than {max_len}"))
        return None
    return value.strip(WHITE_SPACE) or None


def _coordinate(
    fields: dict[str, Any], name: str, limit: float, from_form: bool, errors: list[dict[str, Any]]
) -> float | None:
    if name not in fields:
        return None
    value = fields[name]  # a JSON null is not "absent": the schema has no nulls
    number: float | None = None
    if isinstance(value, str) and from_form:  # form fields are text; a JSON body must send a number
        text = value.strip(WHITE_SPACE)
        number = float(text) if NUMBER.fullmatch(text) else None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    if number is None or not math.isfinite(number) or not -limit <= number <= limit:
        errors.append(
            error(
                name, f"应为 -{limit:g} 到 {limit:g} 之间的数字（WGS-84）", f"{name} must be a number within ±{limit:g}"
            )
        )
        return None
    return number


def check_request(fields: dict[str, Any], service_codes: frozenset[str], *, from_form: bool) -> ServiceRequestIn:
    """The checked request (from a form body, or JSON); InvalidRequest lists every field that is wrong."""
    errors: list[dict[str, Any]] = []
    code = _text(fields, "service_code", 64, errors)
    if code is None and "service_code" not in {e["field"] for e in errors}:
        errors.append(error("service_code", "必填：服务代码（见 services.json）", "service_code was not provided"))
    elif code is not None and fields["service_code"] not in service_codes:  # exactly a code: no trimming
        errors.append(error("service_code", f"没有服务代码 {code}（见 services.json）", "service_code was not found"))
    description = _text(fields, "description", DESCRIPTION_MAX, errors)
    if (description is None or len(description) < DESCRIPTION_MIN) and "description" not in {
        e["field"] for e in errors
    }:
        errors.append(
            error("description", f"必填：诉求内容，至少 {DESCRIPTION_MIN} 个字", "description was not provided")
        )
    _text(fields, "api_key", 1 << 20, errors)  # checked by the caller; here only that it is one text value
    lat = _coordinate(fields, "lat", 90, from_form, errors)
    long = _coordinate(fields, "long", 180, from_form, errors)
    texts: dict[str, str | None] = {}
    for name, (max_len, pattern, label) in TEXT_FIELDS.items():
        value = _text(fields, name, max_len, errors)
        if value is not None and pattern is not None and not re.fullmatch(pattern, value):
            errors.append(error(name, f"{label}{PATTERN_ZH[pattern]}", f"{name} is not valid"))
            value = None
        texts[name] = value
    lone = [
        name for name, value, other in (("lat", lat, long), ("long", long, lat)) if value is not None and other is None
    ]
    for name in lone:
        other = "long" if name == "lat" else "lat"
        errors.append(error(other, f"给了 {name} 也须给 {other}", f"{name} needs {other}"))
    bad = {e["field"] for e in errors}
    has_place = (lat is not None and long is not None) or texts["address_string"] or texts["address_id"]
    if not has_place and not bad & {"lat", "long", "address_string", "address_id"}:
        errors.append(error("location", LOCATION_ZH, "lat and long, address_string or address_id is required"))
    if errors:
        raise InvalidRequest(errors)
    assert code is not None and description is not None
    return ServiceRequestIn(service_code=code, description=description, lat=lat, long=long, **texts)


def service_request_id(
    fresh_ulid: str, idempotency_key: str | None, device_id: str | None, account_id: str | None
) -> str:
    """The 12345 order number of an Open311 request: O311-<ULID>, or derived from the client's idempotency key.

    The same Idempotency-Key from the same device_id and account_id always gives the same id, so a retried
    POST lands on the same raw key and intake's dedupe absorbs it.
    """
    if idempotency_key is None:
        return f"{OPEN311_ID_PREFIX}{fresh_ulid}"
    scope = "\x1f".join((device_id or "", account_id or "", idempotency_key))
    return f"{OPEN311_ID_PREFIX}{hashlib.sha256(scope.encode()).hexdigest()[:32]}"


def _is_cjk(text: str) -> bool:
    return all("\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" for ch in text)


def caller_name(first_name: str | None, last_name: str | None) -> str | None:
    """The caller's name as the hotline writes it: 姓+名 for Chinese names, "first last" otherwise."""
    parts = [p for p in (first_name, last_name) if p]
    if not parts:
        return None
    if first_name and last_name and _is_cjk(first_name + last_name):
        return last_name + first_name
    return " ".join(parts)


def work_order(request: ServiceRequestIn, order_no: str, now: datetime) -> dict[str, Any]:
    """The 12345 work order an Open311 request becomes; what the 12345 order has no field for goes under "open311"."""
    order: dict[str, Any] = {
        "order_no": order_no,
        "appeal_type": APPEAL_TYPE,
        "content": request.description,
        "call_time": now.isoformat(),
        "category": request.service_code,
        "urgency": URGENCY,
        "caller_name": caller_name(request.first_name, request.last_name),
        "caller_phone": request.phone,
        "address": request.address_string,
        "lat": request.lat,
        "lon": request.long,
    }
    extra = {
        "service_code": request.service_code,
        "address_id": request.address_id,
        "email": request.email,
        "device_id": request.device_id,
        "account_id": request.account_id,
        "media_url": request.media_url,
    }
    order = {k: v for k, v in order.items() if v is not None}
    order["open311"] = {k: v for k, v in extra.items() if v is not None}
    return order


def _trimmed(pattern: str) -> str:
    return rf"^[{WS_CLASS}]*({pattern})?[{WS_CLASS}]*$"


def request_schema(codes: list[str]) -> dict[str, Any]:
    """The POST body schema, the same for form and JSON bodies; open311_request.check_request enforces it."""
    text = {"type": "string"}
    nonblank = {"pattern": rf"[^{WS_CLASS}]"}
    return {
        "type": "object",
        "required": ["service_code", "description"],
        "properties": {
            "api_key": {**text, "description": "The 12345 channel's API key (or the X-Api-Key header)."},
            "service_code": {**text, "enum": codes, "description": "A service_code of services.json."},
            "description": {
                **text,
                "maxLength": DESCRIPTION_MAX,
                "pattern": rf"^[{WS_CLASS}]*[^{WS_CLASS}][\s\S]*[^{WS_CLASS}][{WS_CLASS}]*$",
            },
            "lat": {"type": "number", "minimum": -90, "maximum": 90, "description": "WGS-84 latitude."},
            "long": {"type": "number", "minimum": -180, "maximum": 180, "description": "WGS-84 longitude."},
            "address_string": {**text, "maxLength": 300},
            "address_id": {**text, "maxLength": 128},
            "email": {**text, "maxLength": 254, "pattern": _trimmed(EMAIL)},
            "device_id": {**text, "maxLength": 128},
            "account_id": {**text, "maxLength": 128},
            "first_name": {**text, "maxLength": 24},
            "last_name": {**text, "maxLength": 24},
            "phone": {**text, "maxLength": 30, "pattern": _trimmed(PHONE)},
            "media_url": {**text, "maxLength": 2000, "pattern": _trimmed(MEDIA_URL)},
        },
        # A place: both coordinates, or an address (string or id) without a lone coordinate.
        "anyOf": [
            {"required": ["lat", "long"]},
            *(
                {
                    "required": [name],
                    "properties": {name: nonblank},
                    "not": {"anyOf": [{"required": ["lat"]}, {"required": ["long"]}]},
                }
                for name in ("address_string", "address_id")
            ),
        ],
        "additionalProperties": True,
    }


def parse_time(text: str) -> datetime | None:
    """An RFC 3339 date-time (the offset required) in UTC, or None; out-of-range years are clamped."""
    found = RFC3339.fullmatch(text.strip())
    if found is None:
        return None
    y, mo, d, h, mi, s, frac, z, sign, oh, om = found.groups()
    try:
        local = datetime(
            int(y), int(mo), int(d), int(h), int(mi), min(int(s), 59), int((frac or "0")[:6].ljust(6, "0"))
        )
    except ValueError:
        return None
    if int(oh or 0) > 23 or int(om or 0) > 59:
        return None
    offset = timedelta(0) if z else (1 if sign == "+" else -1) * timedelta(hours=int(oh), minutes=int(om))
    try:
        return (local - offset).replace(tzinfo=UTC)
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC) if local.year < 2 else datetime.max.replace(tzinfo=UTC)
