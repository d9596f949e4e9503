"""Petitions (信访: letters, visits, online) to canonical events; the petitioner is confidential."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas import EventNormalised, ReportReceived, Urgency
from schemas.base import AwareDatetime
from services.intake.channels.common import (
    PERSONAL_FIELDS,
    RawReport,
    check_phone,
    envelope,
    event,
    first_line,
    parse_payload,
)

# 集体访: five or more people petitioning together is a group petition, handled as urgent.
GROUP_PETITION_PEOPLE = 5


class PetitionForm(StrEnum):
    """信访形式."""

    LETTER = "来信"
    VISIT = "来访"
    ONLINE = "网上信访"


class Petitioner(BaseModel):
    """信访人: every field is personal and confidential."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    name: str | None = Field(None, max_length=50, description="姓名")
    phone: str | None = Field(None, max_length=30, description="联系电话")
    address: str | None = Field(None, max_length=300, description="住址")

    _phone = field_validator("phone")(check_phone)


class Petition(BaseModel):
    """A petition case as the 信访 system registers it."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    case_no: str = Field(min_length=1, max_length=64, description="信访件编号")
    form: PetitionForm = Field(description="信访形式：来信/来访/网上信访")
    registered_at: AwareDatetime = Field(description="登记时间，带时区")
    petitioner: Petitioner = Field(default_factory=Petitioner, description="信访人（保密）")
    demands: str = Field(min_length=2, max_length=10_000, description="诉求内容")
    complained_unit: str | None = Field(None, max_length=100, description="被投诉单位")
    people_count: int = Field(1, ge=1, le=10_000, description="人数")
    repeat: bool = Field(False, description="重复信访")
    address: str | None = Field(None, max_length=300, description="问题发生地")
    district: str | None = Field(None, max_length=50, description="所属乡镇/街道")
    grid_code: str | None = Field(None, max_length=40, description="网格编码（如有）")
    category: str | None = Field(None, max_length=40, description="信访系统已选的事项分类（如有）")


def fields_petition(raw: RawReport, event_id: str, petition: Petition) -> dict[str, Any]:
    """The canonical event of a valid petition as data, every field: petitioner confidential, a group petition
    urgent."""
    group = petition.people_count >= GROUP_PETITION_PEOPLE
    flags = tuple(flag for flag, on in (("repeat-petition", petition.repeat), ("group-petition", group)) if on)
    person = petition.petitioner
    headline = first_line(petition.demands)
    return {
        **envelope(raw, event_id),
        "type": f"信访（{petition.form.value}）",
        "title": f"[信访{'·集体访' if group else ''}{'·重复' if petition.repeat else ''}] {headline[:60]}",
        "description": petition.demands,
        "location": {
            "address": petition.address,
            "district": petition.district,
            "grid_code": petition.grid_code,
            "lat": None,
            "lon": None,
        },
        "reporter": {
            "name": person.name,
            "phone": person.phone,
            "address": person.address,
            "anonymous": person.name is None,
            "confidential": True,
            "personal_fields": PERSONAL_FIELDS,
        },
        "occurred_at": None,
        "reported_at": petition.registered_at,
        "received_at": raw.received_at,
        "attachments": (),
        "urgency": Urgency.URGENT if group else Urgency.NORMAL,
        "declared_category": petition.category,
        "complained_unit": petition.complained_unit,
        "flags": flags,
    }


def normalise_petition(raw: ReportReceived, event_id: str) -> EventNormalised:
    """Validate a petition; the petitioner is marked confidential, a group petition is urgent."""
    return event(**fields_petition(raw, event_id, parse_payload(Petition, raw)))
