"""Redaction: the unit a petition complains about never receives the petitioner's identity, to the last byte."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from gridhub.broker import free_port
from schemas import Channel, Reporter, TaskDispatched
from schemas.dutylist import DutyList, load_duty_list
from schemas.task import WITHHELD_CONFIDENTIAL, WITHHELD_FROM_ACCUSED
from services.notifier.delivery import deliver, new_session
from services.notifier.signing import secret_bytes
from services.router.decide import decide
from services.router.redaction import MASK, complained_unit_code, reporter_for, scrub
from services.router.tasks import build_tasks
from tests.unit.router_cases import CALLER, NOW, PETITIONER, report

# Every way the petitioner's personal data could show: as stored, as written in the letter, JSON-escaped.
PERSONAL = (
    "王秀兰",
    "13837124567",
    "138-3712-4567",
    "138 3712 4567",
    "城关镇东街社区幸福小区3号楼2单元501",
    "3号楼2单元501",
    "2单元501",
)


def personal_bytes() -> list[bytes]:
    forms = [p.encode() for p in PERSONAL]
    forms += [json.dumps(p).strip('"').encode() for p in PERSONAL]  # \\u738b\\u79c0\\u5170...
    return forms


@pytest.fixture(scope="module")
def duty() -> DutyList:
    return load_duty_list()


def petition_against_township() -> object:
    return report(
        "反映城关镇综治中心推诿宅基地纠纷",
        "本人王秀兰（电话138-3712-4567，住城关镇东街社区幸福小区3号楼2单元501），邻居盖房占了我家宅基地半米，"
        "找城关镇综治中心三次，工作人员推诿扯皮、态度恶劣，至今未调解。联系我请打 138 3712 4567，"
        "或到 3号楼2单元501 找我。",
        source=Channel.PETITION,
        reporter=PETITIONER,
        complained_unit="城关镇综治中心",
        grid_code="PA-CG-01-001",
        address="城关镇东街社区幸福小区",
    )


def tasks_of(event: object, duty: DutyList) -> dict[str, TaskDispatched]:
    tasks = build_tasks(event, decide(event, duty), duty, NOW)  # type: ignore[arg-type]
    return {t.unit_code: t for t in tasks}


def test_complained_unit_is_found_by_code_name_alias_or_words_inside(duty: DutyList) -> None:
    for said, code in (
        ("PA-CG", "PA-CG"),
        ("pa-zjj", "PA-ZJJ"),
        ("城关镇综治中心", "PA-CG"),
        ("住建局", "PA-ZJJ"),
        ("县住建局", "PA-ZJJ"),
        ("城关镇人民政府", "PA-CG"),
        ("城关镇东街社区居委会", "PA-CG-01"),  # the longer name inside wins over the township
        ("县人民医院", None),
    ):
        event = report("反映", source=Channel.PETITION, reporter=PETITIONER, complained_unit=said)
        assert complained_unit_code(event, duty) == code, said


def test_the_accused_township_gets_a_redacted_copy_and_no_byte_of_the_petitioner(duty: DutyList) -> None:
    tasks = tasks_of(petition_against_township(), duty)
    accused = tasks["PA-CG"]  # the township handles the dispute (M35) and is the one complained about
    assert accused.reporter is not None
    assert accused.reporter.withheld is True
    assert accused.reporter.notice == WITHHELD_FROM_ACCUSED == "（信访人信息依规不向被投诉单位提供）"
    assert (accused.reporter.name, accused.reporter.phone, accused.reporter.address) == (None, None, None)
    wire = accused.to_bytes()
    for form in personal_bytes():
        assert form not in wire, form.decode()
    assert WITHHELD_FROM_ACCUSED.encode() in wire
    # What the unit needs to act stays: the place, the grid, the matter, the complaint itself.
    assert "邻居盖房占了我家宅基地半米" in accused.description
    assert accused.location.address == "城关镇东街社区幸福小区"
    assert accused.location.grid_code == "PA-CG-01-001"
    assert accused.matter_code == "M35"
    assert accused.description.count(MASK) == 5


def test_other_units_see_a_confidential_petitioner_only_through_the_petition_office(duty: DutyList) -> None:
    event = report(
        "反映县住建局对幸福小区下水道反流问题不作为",
        "幸福小区下水道反流半年，多次找住建局无人处理。信访人王秀兰，电话13837124567。",
        source=Channel.PETITION,
        reporter=PETITIONER,
        complained_unit="县住建局",
        category="M37",
        address="城关镇东街社区幸福小区",
    )
    tasks = tasks_of(event, duty)
    assert set(tasks) == {"PA-XFJ", "PA-CG", "PA-GAJ"}
    office = tasks["PA-XFJ"].reporter
    assert office is not None and (office.name, office.phone, office.withheld) == ("王秀兰", "13837124567", False)
    for unit in ("PA-CG", "PA-GAJ"):
        seen = tasks[unit]
        assert seen.reporter is not None and seen.reporter.notice == WITHHELD_CONFIDENTIAL
        assert b"13837124567" not in seen.to_bytes() and "王秀兰".encode() not in seen.to_bytes()
    # The accused department, were it to get a copy (a township summoning it), gets the accused's notice.
    accused = reporter_for(event, "PA-ZJJ", duty)
    assert (accused.withheld, accused.notice) == (True, WITHHELD_FROM_ACCUSED)


def test_petition_office_complained_about_is_refused_the_identity_too(duty: DutyList) -> None:
    event = report("反映信访局接访人员态度差", source=Channel.PETITION, reporter=PETITIONER, complained_unit="信访局")
    seen = reporter_for(event, "PA-XFJ", duty)
    assert (seen.name, seen.notice) == (None, WITHHELD_FROM_ACCUSED)


def test_an_accused_the_list_cannot_name_keeps_the_identity_with_the_petition_office_only(duty: DutyList) -> None:
    event = report("反映某物业公司", source=Channel.PETITION, reporter=PETITIONER, complained_unit="幸福小区物业公司")
    assert reporter_for(event, "PA-XFJ", duty).name == "王秀兰"
    for unit in ("PA-CG", "PA-ZJJ", "PA-CG-01"):
        assert reporter_for(event, unit, duty).notice == WITHHELD_FROM_ACCUSED


def test_a_hotline_caller_is_passed_to_every_unit_so_they_can_call_within_the_hour(duty: DutyList) -> None:
    event = report(
        "小区下水道反流", "幸福小区3号楼下水道反流，污水漫到一楼楼道", grid_code="PA-CG-01-001", reporter=CALLER
    )
    tasks = tasks_of(event, duty)
    assert set(tasks) == {"PA-CG", "PA-ZJJ"}
    for task in tasks.values():
        assert task.reporter is not None
        assert (task.reporter.name, task.reporter.phone, task.reporter.withheld) == ("张建国", "13912345678", False)
        assert task.description == event.description  # nothing masked for a unit allowed to see the caller


def test_scrub_masks_phone_forms_and_dwelling_but_not_the_neighbourhood() -> None:
    event = report("x", reporter=Reporter(name="李四", phone="+86 139-1234-5678", address="石桥镇前屯村5组12号"))
    text = "李四家住前屯村5组12号，电话 139 1234 5678，也可拨13912345678；前屯村村口路灯坏了。"
    assert scrub(text, event) == f"{MASK}家住{MASK}，电话 {MASK}，也可拨{MASK}；前屯村村口路灯坏了。"


@pytest.fixture()
async def webhook() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A unit's webhook receiver that keeps every body it is POSTed."""
    received: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/hook", received
    finally:
        await runner.cleanup()


async def test_what_the_notifier_posts_to_the_accused_unit_has_no_personal_byte(
    duty: DutyList, webhook: tuple[str, list[bytes]]
) -> None:
    url, received = webhook
    accused = tasks_of(petition_against_township(), duty)["PA-CG"]
    # The notifier posts the record's bytes exactly as the router put them on tasks.dispatched.
    async with new_session(concurrency=1, timeout_s=5) as session:
        key = secret_bytes("whsec_" + "ZGV2LWdyaWRodWItc2lnbmluZy1zZWNyZXQtMzJieXRlcyE=")
        result = await deliver(session, url, key, f"task_{accused.task_id}", accused.to_bytes(), (0.1,))
    assert result.delivered
    [body] = received
    for form in personal_bytes():
        assert form not in body, form.decode()
    posted = TaskDispatched.model_validate_json(body)
    assert posted.reporter is not None and posted.reporter.notice == WITHHELD_FROM_ACCUSED
