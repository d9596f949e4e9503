"""乡镇吹哨、部门报到: a township centre summons departments onto its task; each gets a task of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from gridhub.kernel.settings import CommonSettings
from schemas import Channel, SummonDepartments, TaskRole
from schemas.dutylist import DutyList, load_duty_list
from schemas.task import WITHHELD_FROM_ACCUSED
from services.adapters.settings import AdaptersSettings
from services.router.flows import Summoned
from services.router.tasks import task_id_for
from tests.unit.adapter_harness import FakePublisher, api_with, served
from tests.unit.router_cases import EVENT_ID, PETITIONER, report, routed, step

ILLEGAL_BUILDING = "锦绣花园小区顶楼业主私自加盖两层阳光房，楼下渗水，物业劝阻无效"
TASK_ID = "01KAFZ0M3DY89XFXAKDNGGSZDK"


@pytest.fixture(scope="module")
def duty() -> DutyList:
    return load_duty_list()


def summons(task_id: str, unit: str, *departments: str, command_id: str = "01KAFZ0M3DB3XG7M2Q4J8K6S01") -> Summoned:
    return Summoned(
        task_id=task_id,
        unit_code=unit,
        departments=departments,
        note="违建涉及规划和执法，请到场",
        command_id=command_id,
    )


def test_summoned_departments_get_tasks_of_their_own_for_the_same_event(duty: DutyList) -> None:
    state, first = routed(report(ILLEGAL_BUILDING, grid_code="PA-CG-02-001"), duty)
    township = first[0]
    assert (township.unit_code, township.matter_code) == ("PA-CG", "M11")
    assert {t.unit_code for t in first} == {"PA-CG", "PA-ZHZF", "PA-ZRZYJ"}
    out = step(state, summons(township.task_id, "PA-CG", "PA-ZJJ", "PA-ZHZF"), duty)
    # PA-ZHZF already holds a co-operating copy of M11: it is not summoned twice.
    assert [(t.unit_code, t.role) for t in out.tasks] == [("PA-ZJJ", TaskRole.SUMMONED)]
    held = {t.unit_code for t in first}
    assert all(t.unit_code not in held for t in out.tasks)
    for task in out.tasks:
        assert task.event_id == EVENT_ID and task.decision.rule == "summons"
        assert task.decision.summoned_by == "PA-CG" and task.decision.round == 0
        assert task.task_id == task_id_for(EVENT_ID, task.unit_code, TaskRole.SUMMONED, 0)
        assert task.decision.reason.startswith(f"乡镇吹哨、部门报到：城关镇综治中心 就任务 {township.task_id} 吹哨")
        assert "说明：违建涉及规划和执法，请到场" in task.decision.reason
    assert step(out.state, summons(township.task_id, "PA-CG", "PA-ZJJ"), duty).tasks == []  # replay


def test_only_the_township_centre_holding_the_task_may_summon(duty: DutyList) -> None:
    state, first = routed(report(ILLEGAL_BUILDING, grid_code="PA-CG-02-001"), duty)
    co_op = next(t for t in first if t.unit_code == "PA-ZHZF")
    not_township = step(state, summons(co_op.task_id, "PA-ZHZF", "PA-ZJJ"), duty)
    assert not_township.tasks == [] and not_township.refused == "只有乡镇综治中心可以吹哨召集部门，PA-ZHZF 不是"
    not_holder = step(state, summons(first[0].task_id, "PA-HX", "PA-ZJJ"), duty)
    assert not_holder.refused is not None and "PA-HX 未持有" in not_holder.refused
    not_department = step(state, summons(first[0].task_id, "PA-CG", "PA-CG-02", "PA-XX"), duty)
    assert not_department.refused == "不是县直部门：PA-CG-02、PA-XX"


def test_a_summoned_department_complained_about_gets_the_redacted_copy(duty: DutyList) -> None:
    event = report(
        "反映锦绣花园顶楼违建渗水无人管",
        "锦绣花园顶楼违建，楼下渗水，向住建局反映多次无人查处。信访人王秀兰，电话13837124567。",
        source=Channel.PETITION,
        reporter=PETITIONER,
        complained_unit="县住建局",
        grid_code="PA-CG-02-001",
    )
    state, first = routed(event, duty)
    assert "PA-ZJJ" not in {t.unit_code for t in first}
    township = next(t for t in first if t.unit_code == "PA-CG")
    [accused] = step(state, summons(township.task_id, "PA-CG", "PA-ZJJ"), duty).tasks
    assert accused.reporter is not None and accused.reporter.notice == WITHHELD_FROM_ACCUSED
    assert b"13837124567" not in accused.to_bytes() and "王秀兰".encode() not in accused.to_bytes()


# --- the adapters' route --------------------------------------------------------------------------------


@pytest.fixture()
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture()
def app(publisher: FakePublisher, monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    for name in ("GRIDHUB_MODE", "GRIDHUB_ADAPTERS_UNIT_KEYS", "GRIDHUB_ADAPTERS_SOURCE_KEYS"):
        monkeypatch.delenv(name, raising=False)
    settings = AdaptersSettings(common=CommonSettings(mode="dev", topic_prefix="gridhub."), unit_keys={})

    return api_with(settings, publisher)


@pytest.fixture()
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with served(app) as c:
        yield c


async def post(client: httpx.AsyncClient, unit: str | None, body: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer dev-{unit}"} if unit else {}
    return await client.post(f"/v1/tasks/{TASK_ID}/summons", json=body, headers=headers)


async def test_a_township_summons_departments_onto_its_task(
    app: FastAPI, client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    app.state.report_index.owners.apply([(TASK_ID, "PA-CG")])
    response = await post(client, "PA-CG", {"departments": ["PA-ZJJ", "PA-ZHZF", "PA-ZJJ"], "note": "请到场"})
    assert response.status_code == 202, response.text
    assert response.json()["departments"] == ["PA-ZJJ", "PA-ZHZF"]
    [(topic, key, value)] = publisher.records
    assert (topic, key) == ("gridhub.tasks.summons", TASK_ID.encode())
    command = SummonDepartments.model_validate_json(value)
    assert (command.unit_code, command.departments, command.note) == ("PA-CG", ("PA-ZJJ", "PA-ZHZF"), "请到场")


async def test_summons_refusals_are_problems_and_publish_nothing(
    app: FastAPI, client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    app.state.report_index.owners.apply([(TASK_ID, "PA-CG")])
    cases = [
        (None, {"departments": ["PA-ZJJ"]}, 401, "缺少或错误的单位密钥"),
        ("PA-ZJJ", {"departments": ["PA-ZHZF"]}, 403, "只有乡镇综治中心可以吹哨召集部门"),
        ("PA-HX", {"departments": ["PA-ZJJ"]}, 403, f"任务 {TASK_ID} 不属于单位 PA-HX"),
        ("PA-CG", {"departments": ["PA-CG-01", "PA-NOPE"]}, 422, "被召集的单位须是权责清单中的县直部门"),
        ("PA-CG", {"departments": []}, 422, "请求中有字段不符合要求"),
    ]
    for unit, body, status, detail in cases:
        response = await post(client, unit, body)
        assert response.status_code == status, (unit, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["detail"].startswith(detail), response.json()
    assert publisher.records == []


async def test_a_task_this_replica_does_not_know_yet_is_accepted(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    response = await post(client, "PA-HX", {"departments": ["PA-SLJ"]})
    assert response.status_code == 202 and len(publisher.records) == 1
