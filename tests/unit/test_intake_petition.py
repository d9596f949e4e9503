"""Petitions (信访) to canonical events: confidential petitioner, group and repeat flags; pure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from gridhub.kernel.errors import PermanentError
from schemas import Channel, ReportReceived, Urgency
from services.intake.channels import normalise
from services.intake.channels.petition import GROUP_PETITION_PEOPLE

EVENT_ID = "01KAFZ0M3DY89XFXAKDNGGSZDK"
CASE_NO = "XF-2026-1120-0088"


def petition(**overrides: Any) -> dict[str, Any]:
    """Villagers complaining that the township withholds land compensation."""
    return {
        "case_no": CASE_NO,
        "form": "来访",
        "registered_at": "2026-11-20T09:10:00+08:00",
        "petitioner": {"name": "李某某", "phone": "13903711234", "address": "河西乡王庄村三组"},
        "demands": "反映河西乡政府截留王庄村征地补偿款，要求足额发放。",
        "complained_unit": "河西乡人民政府",
        "people_count": 6,
        "repeat": True,
        "district": "河西乡",
        "grid_code": "PA-HX-02-001",
        **overrides,
    }


def raw(payload: dict[str, Any], source_id: str = CASE_NO) -> ReportReceived:
    """The raw report the petition adapter would publish."""
    return ReportReceived(
        source=Channel.PETITION,
        source_id=source_id,
        proposed_event_id=EVENT_ID,
        received_at=datetime(2026, 11, 20, 1, 11, tzinfo=UTC),
        adapter_version="test",
        payload=payload,
    )


def test_group_repeat_petition_is_urgent_flagged_and_its_petitioner_confidential() -> None:
    event = normalise(raw(petition()), EVENT_ID)
    assert event.type == "信访（来访）"
    assert event.title == "[信访·集体访·重复] 反映河西乡政府截留王庄村征地补偿款，要求足额发放。"
    assert event.urgency is Urgency.URGENT
    assert event.flags == ("repeat-petition", "group-petition")
    assert event.complained_unit == "河西乡人民政府"
    assert event.reporter.confidential is True
    assert (event.reporter.name, event.reporter.phone, event.reporter.address) == (
        "李某某",
        "13903711234",
        "河西乡王庄村三组",
    )
    assert set(event.reporter.personal_fields) == {"name", "phone", "address"}


@pytest.mark.parametrize(("people", "urgent"), [(GROUP_PETITION_PEOPLE - 1, False), (GROUP_PETITION_PEOPLE, True)])
def test_five_or_more_people_make_a_group_petition(people: int, urgent: bool) -> None:
    event = normalise(raw(petition(people_count=people, repeat=False)), EVENT_ID)
    assert (event.urgency is Urgency.URGENT) is urgent
    assert event.flags == (("group-petition",) if urgent else ())


def test_anonymous_letter_is_still_confidential() -> None:
    event = normalise(raw(petition(form="来信", petitioner={}, people_count=1, repeat=False)), EVENT_ID)
    assert event.reporter.anonymous is True
    assert event.reporter.confidential is True
    assert event.title.startswith("[信访] ")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"form": "电话"}, "form"),
        ({"demands": ""}, "demands"),
        ({"people_count": 0}, "people_count"),
        ({"registered_at": "2026-11-20"}, "registered_at"),
        ({"petitioner": {"phone": "李某某家"}}, "petitioner.phone"),
    ],
)
def test_invalid_petition_names_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(PermanentError) as info:
        normalise(raw(petition(**overrides)), EVENT_ID)
    assert info.value.reason == "invalid-payload"
    assert info.value.detail.startswith(f"{field}: ")


def test_case_number_must_match_the_source_id() -> None:
    with pytest.raises(PermanentError) as info:
        normalise(raw(petition(), source_id="XF-OTHER"), EVENT_ID)
    assert info.value.reason == "source-id-mismatch"
