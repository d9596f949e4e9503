"""Open311 GeoReport v2 on the 12345 channel: services, filing (form and JSON), rejections, status life cycle."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from aiokafka.errors import KafkaTimeoutError
from fastapi import FastAPI

from gridhub.kernel.settings import CommonSettings
from schemas import (
    Channel,
    ClockKind,
    EventNormalised,
    IndexOutcome,
    ReportIndexed,
    ReportReceived,
    TaskDispatched,
    TaskRole,
    TaskStatus,
    TaskStatusChanged,
    TaskUpdated,
    UpdateKind,
    new_id,
)
from schemas.dutylist import load_duty_list
from services.adapters.open311_request import caller_name, parse_time, service_request_id
from services.adapters.request_feed import apply_record
from services.adapters.request_status import Stage, TaskProgress, deciding_task, life_cycle, task_stage
from services.adapters.request_view import RequestView
from services.adapters.settings import AdaptersSettings
from services.intake.channels import process
from services.router.decide import decide
from services.router.tasks import build_tasks
from services.sla.calendar import WorkingCalendar
from services.sla.clocks import TaskClockState, apply_update, start_clocks, status_event
from tests.unit.adapter_harness import FakePublisher, api_with, served

KEY = "test-12345-key"
PROBLEM = "application/problem+json"
DUTY = load_duty_list()
CAL = WorkingCalendar.default()
T0 = datetime(2026, 11, 20, 1, 30, tzinfo=UTC)
NAME, SURNAME, PHONE, EMAIL = "秀兰", "王", "13837124567", "wang.xiulan@example.cn"
FORM = {
    "api_key": KEY,
    "service_code": "M08",
    "description": "幸福里小区3号楼下水道反流，污水漫到单元门口。",
    "lat": "35.1013",
    "long": "114.2033",
    "address_string": "平安县城关镇东街幸福里小区3号楼",
    "first_name": NAME,
    "last_name": SURNAME,
    "phone": PHONE,
    "email": EMAIL,
    "device_id": "phone-7f3a",
    "media_url": "https://img.example.cn/a.jpg",
}


@pytest.fixture()
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture()
def app(publisher: FakePublisher) -> FastAPI:
    settings = AdaptersSettings(
        common=CommonSettings(mode="dev", topic_prefix="gridhub."),
        source_keys={"12345": KEY, "110": "test-110-key"},
        unit_keys={},
        max_body_bytes=8192,
        duty_list=None,
    )

    return api_with(settings, publisher)


@pytest.fixture()
def view(app: FastAPI) -> RequestView:
    found: RequestView = app.state.open311_view
    return found


@pytest.fixture()
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with served(app) as c:
        yield c


def problem_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"]
    for item in body["errors"]:  # the project's {field, message} and GeoReport's {code, description}
        assert set(item) == {"field", "message", "code", "description"}
    return body


def raw_of(publisher: FakePublisher, index: int = -1) -> ReportReceived:
    return ReportReceived.model_validate_json(publisher.records[index][2])


# --- services ---------------------------------------------------------------------------------------------


async def test_service_list_is_the_duty_list(client: httpx.AsyncClient) -> None:
    response = await client.get("/open311/v2/services.json")
    assert response.status_code == 200
    services = response.json()
    assert [s["service_code"] for s in services] == [m.code for m in DUTY.matters]
    sewer = next(s for s in services if s["service_code"] == "M08")
    m08 = DUTY.matter("M08")
    assert m08 is not None
    assert sewer == {
        "service_code": "M08",
        "service_name": m08.name,
        "description": m08.description,
        "metadata": False,
        "type": "realtime",
        # weight first, then the word
        "keywords": "管道破裂,下水道,供水,供水管,停水,冒水,化粪池,反流,排水管,水压,水质,污水井,爆管,管网,"
        "自来水,堵塞,水管,污水,没水,漏水",
        "group": "乡镇（街道）属地办理",
    }
    assert {s["group"] for s in services} == {"乡镇（街道）属地办理", "县直部门办理"}


async def test_service_definition_and_unknown_service(client: httpx.AsyncClient) -> None:
    response = await client.get("/open311/v2/services/M40.json")
    assert response.json() == {"service_code": "M40", "attributes": []}
    body = problem_of(await client.get("/open311/v2/services/M99.json"), 404)
    assert "M99" in body["detail"]


# --- filing -----------------------------------------------------------------------------------------------


async def test_form_request_becomes_a_12345_work_order_intake_accepts(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    response = await client.post("/open311/v2/requests.json", data=FORM)
    assert response.status_code == 202
    [answer] = response.json()
    assert answer["service_request_id"].startswith("O311-")
    assert answer["service_notice"] == "受理后派单至责任单位，2 个工作日内办结"
    assert answer["account_id"] is None

    [(topic, key, _)] = publisher.records
    assert topic == "gridhub.raw.12345"
    assert key == f"12345:{answer['service_request_id']}".encode()
    raw = raw_of(publisher)
    assert raw.source is Channel.HOTLINE_12345 and raw.source_id == answer["service_request_id"]
    assert raw.payload["open311"] == {
        "service_code": "M08",
        "email": EMAIL,
        "device_id": "phone-7f3a",
        "media_url": "https://img.example.cn/a.jpg",
    }
    event = process(raw, raw.proposed_event_id)
    assert isinstance(event, EventNormalised)
    assert event.declared_category == "M08"
    assert event.description == FORM["description"]
    assert (event.location.lat, event.location.lon, event.location.address) == (
        35.1013,
        114.2033,
        FORM["address_string"],
    )
    assert (event.reporter.name, event.reporter.phone) == ("王秀兰", PHONE)
    assert event.type == "求助"


async def test_json_request_is_accepted_too(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    body = {"service_code": "M21", "description": "夜里工地噪声扰民", "address_string": "河西乡政府东侧工地"}
    response = await client.post("/open311/v2/requests.json", json=body, headers={"X-Api-Key": KEY})
    assert response.status_code == 202
    raw = raw_of(publisher)
    event = process(raw, raw.proposed_event_id)
    assert isinstance(event, EventNormalised)
    assert event.declared_category == "M21"
    assert event.reporter.anonymous and event.location.lat is None
    assert raw.payload["open311"] == {"service_code": "M21"}


async def test_idempotency_key_gives_the_same_id_and_one_report(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    headers = {"Idempotency-Key": "5b1f0c9e-retry-me"}
    first = await client.post("/open311/v2/requests.json", data=FORM, headers=headers)
    again = await client.post("/open311/v2/requests.json", data=FORM, headers=headers)
    other_device = await client.post("/open311/v2/requests.json", data={**FORM, "device_id": "x"}, headers=headers)
    assert first.status_code == 202 and again.status_code == 200
    assert first.json()[0]["service_request_id"] == again.json()[0]["service_request_id"]
    assert other_device.json()[0]["service_request_id"] != first.json()[0]["service_request_id"]
    assert len({key for _, key, _ in publisher.records}) == 2


def test_ids_are_open311_ids_of_the_12345_id_rule() -> None:
    assert service_request_id("01KAFZ0M3DB3XG7M2Q4J8K6P1Z", None, None, None) == "O311-01KAFZ0M3DB3XG7M2Q4J8K6P1Z"
    keyed = service_request_id("ignored", "k", "device", None)
    assert keyed == service_request_id("other", "k", "device", None) and len(keyed) == 37
    assert keyed != service_request_id("ignored", "k", "device", "account")


def test_caller_name_in_chinese_order() -> None:
    assert caller_name("秀兰", "王") == "王秀兰"
    assert caller_name("Ann", "Lee") == "Ann Lee"
    assert caller_name(None, "王") == "王"
    assert caller_name(None, None) is None


REJECTIONS: list[tuple[str, dict[str, Any], str]] = [
    ("unknown service_code", {"service_code": "M99"}, "service_code"),
    ("no service_code", {"service_code": None}, "service_code"),
    ("no description", {"description": None}, "description"),
    ("blank description", {"description": "   "}, "description"),
    ("one-character description", {"description": " 水 "}, "description"),
    ("no location", {"lat": None, "long": None, "address_string": None}, "location"),
    ("lat without long", {"long": None, "address_string": None}, "long"),
    ("lat not a number", {"lat": "北纬35度"}, "lat"),
    ("lat out of range", {"lat": "95"}, "lat"),
    ("lat NaN", {"lat": "NaN"}, "lat"),
    ("long out of range", {"long": "-181"}, "long"),
    ("long with underscores", {"long": "1_14"}, "long"),
    ("phone with letters", {"phone": "138-call-me"}, "phone"),
    ("email without @", {"email": "wang.example.cn"}, "email"),
    ("media_url not http", {"media_url": "ftp://x/y.jpg"}, "media_url"),
    ("name too long", {"first_name": "名" * 25}, "first_name"),
    ("address too long", {"address_string": "路" * 301}, "address_string"),
]


@pytest.mark.parametrize(("changes", "field"), [(c, f) for _, c, f in REJECTIONS], ids=[n for n, _, _ in REJECTIONS])
async def test_invalid_form_is_a_422_problem_naming_the_field(
    client: httpx.AsyncClient, publisher: FakePublisher, changes: dict[str, Any], field: str
) -> None:
    form = {k: v for k, v in {**FORM, **changes}.items() if v is not None}
    body = problem_of(await client.post("/open311/v2/requests.json", data=form), 422)
    assert field in {e["field"] for e in body["errors"]}
    assert all(e["code"] == 422 for e in body["errors"])
    assert publisher.records == []


async def test_json_types_are_checked(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    body = {"service_code": "M08", "description": 12345, "lat": True, "long": "114.2"}
    answer = problem_of(await client.post("/open311/v2/requests.json", json=body, headers={"X-Api-Key": KEY}), 422)
    assert {e["field"] for e in answer["errors"]} == {"description", "lat", "long"}
    assert publisher.records == []


async def test_repeated_form_field_is_refused(client: httpx.AsyncClient) -> None:
    content = urlencode({**FORM, "service_code": ["M08", "M12"]}, doseq=True)
    response = await client.post(
        "/open311/v2/requests.json", content=content, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert "service_code" in {e["field"] for e in problem_of(response, 422)["errors"]}


@pytest.mark.parametrize(
    ("api_key", "header"), [(None, None), ("wrong", None), (None, "wrong"), ("test-110-key", None)]
)
async def test_wrong_or_missing_api_key_is_401(
    client: httpx.AsyncClient, publisher: FakePublisher, api_key: str | None, header: str | None
) -> None:
    form = {k: v for k, v in FORM.items() if k != "api_key"} | ({"api_key": api_key} if api_key else {})
    response = await client.post(
        "/open311/v2/requests.json", data=form, headers={"X-Api-Key": header} if header else {}
    )
    body = problem_of(response, 401)
    assert body["errors"][0]["field"] == "api_key" and response.headers["www-authenticate"] == "ApiKey"
    assert publisher.records == []


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"[1, 2]", "application/json", 422),
        (b"service_code=M08&description=%FF%FE", "application/x-www-form-urlencoded", 400),
        (b"<request/>", "text/xml", 415),
        (b"a=" + b"x" * 9000, "application/x-www-form-urlencoded", 413),
    ],
    ids=["broken JSON", "JSON array", "form not UTF-8", "XML", "too large"],
)
async def test_unreadable_bodies(
    client: httpx.AsyncClient, publisher: FakePublisher, content: bytes, content_type: str, status: int
) -> None:
    response = await client.post(
        "/open311/v2/requests.json", content=content, headers={"content-type": content_type, "X-Api-Key": KEY}
    )
    problem_of(response, status)
    assert publisher.records == []


async def test_bad_idempotency_key_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/open311/v2/requests.json", data=FORM, headers={"Idempotency-Key": "with space"})
    assert problem_of(response, 422)["errors"][0]["field"] == "Idempotency-Key"


async def test_bus_down_is_503_with_retry_after(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    publisher.error = KafkaTimeoutError()
    response = await client.post("/open311/v2/requests.json", data=FORM)
    assert problem_of(response, 503)["errors"][0]["code"] == 503
    assert response.headers["retry-after"] == "5"


# --- life cycle (pure) ------------------------------------------------------------------------------------


def progress(role: TaskRole = TaskRole.PRIMARY, minutes: int = 1, **facts: Any) -> TaskProgress:
    return TaskProgress(
        task_id=facts.pop("task_id", new_id()),
        unit_name=facts.pop("unit_name", "城关镇综治中心"),
        role=role,
        dispatched_at=T0 + timedelta(minutes=minutes),
        **facts,
    )


AT = T0 + timedelta(hours=1)
STAGES = [
    ({}, Stage.DISPATCHED, "派单"),
    ({"status": TaskStatus.OPEN}, Stage.DISPATCHED, "派单"),
    ({"status": TaskStatus.ACCEPTED, "accepted_at": AT}, Stage.ACKNOWLEDGED, "签收"),
    ({"status": TaskStatus.IN_PROGRESS, "accepted_at": AT, "contacted_at": AT}, Stage.IN_PROGRESS, "办理"),
    ({"status": TaskStatus.PAUSED, "accepted_at": AT}, Stage.IN_PROGRESS, "办理"),
    ({"status": TaskStatus.IN_PROGRESS, "replied_at": AT}, Stage.REPLIED, "回复"),
    ({"status": TaskStatus.CLOSED, "resolved_at": AT}, Stage.CLOSED, "办结"),
    ({"status": TaskStatus.CLOSED, "resolved_at": AT, "replied_at": AT}, Stage.CLOSED, "办结"),
    ({"status": TaskStatus.CLOSED, "resolved_at": AT, "satisfaction": 5}, Stage.REVIEWED, "回访"),
]


@pytest.mark.parametrize(("facts", "stage", "zh"), STAGES, ids=[f"{s.value}-{i}" for i, (_, s, _) in enumerate(STAGES)])
def test_every_stage_of_the_life_cycle(facts: dict[str, Any], stage: Stage, zh: str) -> None:
    task = progress(**facts)
    assert task_stage(task) is stage
    life = life_cycle(T0, [task])
    assert (life.stage, life.stage_zh, life.agency) == (stage, zh, "城关镇综治中心")
    assert life.open311_status == ("closed" if stage in (Stage.CLOSED, Stage.REVIEWED) else "open")
    assert life.notes.startswith(f"{zh}：主办单位 城关镇综治中心")


def test_received_paused_returned_and_co_operating_notes() -> None:
    received = life_cycle(T0, [])
    assert (received.stage, received.open311_status, received.notes, received.agency) == (
        Stage.RECEIVED,
        "open",
        "已受理，等待派单",
        None,
    )
    paused = life_cycle(T0, [progress(status=TaskStatus.PAUSED)])
    assert paused.paused and paused.notes.endswith("（办理暂停中）")
    returned = life_cycle(T0, [progress(status=TaskStatus.RETURNED)])
    assert (returned.stage, returned.returned, returned.notes) == (Stage.RECEIVED, True, "主办单位已退回，等待重新派单")
    co = progress(TaskRole.CO_OPERATING, unit_name="平安县住房和城乡建设局", status=TaskStatus.ACCEPTED)
    gone = progress(TaskRole.CO_OPERATING, unit_name="平安县司法局", minutes=2, status=TaskStatus.RETURNED)
    life = life_cycle(T0, [progress(), co, gone])
    assert (
        life.notes == "派单：主办单位 城关镇综治中心；配合单位：平安县住房和城乡建设局（签收），平安县司法局（已退回）"
    )


def test_primary_decides_latest_not_returned_and_times() -> None:
    due = T0 + timedelta(days=3)
    old = progress(minutes=1, status=TaskStatus.RETURNED, unit_name="城关镇综治中心")
    new = progress(minutes=5, unit_name="平安县住房和城乡建设局", resolve_due=due, changed_at=T0 + timedelta(hours=2))
    co = progress(TaskRole.CO_OPERATING, minutes=9, status=TaskStatus.CLOSED)
    assert deciding_task([old, new, co]) is new
    life = life_cycle(T0, [old, new, co])
    assert (life.agency, life.expected_at, life.updated_at, life.stage) == (
        "平安县住房和城乡建设局",
        due,
        T0 + timedelta(hours=2),
        Stage.DISPATCHED,
    )
    assert deciding_task([co]) is None


# --- the whole path, pure: POST -> intake -> router -> SLA -> view -> GET ------------------------------


def routed(raw: ReportReceived) -> tuple[ReportIndexed, list[TaskDispatched]]:
    event = process(raw, raw.proposed_event_id)
    assert isinstance(event, EventNormalised)
    index = ReportIndexed(
        source=raw.source,
        source_id=raw.source_id,
        event_id=event.event_id,
        outcome=IndexOutcome.EVENT,
        indexed_at=raw.received_at,
    )
    return index, build_tasks(event, decide(event, DUTY), DUTY, raw.received_at + timedelta(seconds=1))


def updated(state: TaskClockState, kind: UpdateKind, minutes: int, **extra: Any) -> TaskClockState:
    update = TaskUpdated(
        update_id=new_id(),
        task_id=state.task_id,
        unit_code=state.unit_code,
        kind=kind,
        occurred_at=state.received_at + timedelta(minutes=minutes),
        **extra,
    )
    return apply_update(state, update)


def published(state: TaskClockState, minutes: int) -> TaskStatusChanged:
    return status_event(state, state.received_at + timedelta(minutes=minutes, seconds=1), None)


async def test_status_follows_the_life_cycle_and_never_shows_personal_data(
    client: httpx.AsyncClient, publisher: FakePublisher, view: RequestView
) -> None:
    [answer] = (await client.post("/open311/v2/requests.json", data=FORM)).json()
    request_id = answer["service_request_id"]
    url = f"/open311/v2/requests/{request_id}.json"
    assert (await client.get(url)).status_code == 404  # not indexed by intake yet

    index, tasks = routed(raw_of(publisher))
    view.indexed(index)
    [shown] = (await client.get(url)).json()
    assert (shown["status"], shown["detailed_status"], shown["detailed_status_code"]) == ("open", "受理", "received")

    for task in tasks:
        view.dispatched(task)
    primary = next(t for t in tasks if t.role is TaskRole.PRIMARY)
    assert (primary.unit_name, primary.matter_code) == ("城关镇综治中心", "M08")
    state = start_clocks(primary, CAL)
    view.status_changed(published(state, 0))
    [shown] = (await client.get(url)).json()
    assert shown["detailed_status"] == "派单" and shown["agency_responsible"] == "城关镇综治中心"
    assert shown["status_notes"] == "派单：主办单位 城关镇综治中心；配合单位：平安县住房和城乡建设局（派单）"
    assert datetime.fromisoformat(shown["expected_datetime"]) == state.due(ClockKind.RESOLVE)
    assert shown["expected_datetime"].endswith("+08:00")

    steps = [
        (UpdateKind.ACCEPTED, {}, "签收", "open"),
        (UpdateKind.CONTACTED, {}, "办理", "open"),
        (UpdateKind.REPLIED, {}, "回复", "open"),  # the unit answered the citizen (TaskStatusChanged.replied_at)
        (UpdateKind.RESOLVED, {}, "办结", "closed"),
        (UpdateKind.FEEDBACK, {"satisfaction": 5}, "回访", "closed"),
    ]
    for minutes, (kind, extra, zh, status) in enumerate(steps, start=10):
        state = updated(state, kind, minutes, **extra)
        view.status_changed(published(state, minutes))
        [shown] = (await client.get(url)).json()
        assert (shown["detailed_status"], shown["status"]) == (zh, status), kind

    assert shown["service_request_id"] == request_id and shown["event_id"] == index.event_id
    assert (shown["service_code"], shown["service_name"]) == ("M08", DUTY.matter("M08").name)  # type: ignore[union-attr]
    assert shown["description"] == FORM["description"] and shown["address"] == FORM["address_string"]
    assert (shown["lat"], shown["long"]) == (35.1013, 114.2033)
    assert shown["service_notice"] == "受理后派单至责任单位，2 个工作日内办结"
    listed = await client.get("/open311/v2/requests.json")
    for text in ((await client.get(url)).text, listed.text):
        for personal in (NAME, SURNAME + NAME, PHONE, EMAIL, "phone-7f3a"):
            assert personal not in text
    assert [r["service_request_id"] for r in listed.json()] == [request_id]


async def test_requests_search_by_id_status_service_and_dates(client: httpx.AsyncClient, view: RequestView) -> None:
    now = datetime.now(UTC)
    ids = []
    for n, (code, closed) in enumerate([("M08", False), ("M21", True), ("M08", True)]):
        event_id, task_id = new_id(), new_id()
        ids.append(f"O311-{event_id}")
        view.indexed(
            ReportIndexed(
                source=Channel.HOTLINE_12345,
                source_id=ids[-1],
                event_id=event_id,
                outcome=IndexOutcome.EVENT,
                indexed_at=now - timedelta(days=n * 50),
            )
        )
        if closed:
            view.status_changed(status_of(task_id, TaskStatus.CLOSED, now))
        view.dispatched(dispatched_of(task_id, event_id, code, now - timedelta(days=n * 50)))
    view.indexed(
        ReportIndexed(
            source=Channel.HOTLINE_12345,
            source_id="GD-2026-1",
            event_id=new_id(),
            outcome=IndexOutcome.EVENT,
            indexed_at=now,
        )
    )  # a phoned-in order: never shown

    async def found(**params: str) -> list[str]:
        response = await client.get("/open311/v2/requests.json", params=params)
        assert response.status_code == 200, response.text
        return [r["service_request_id"] for r in response.json()]

    assert await found() == ids[:2]  # the last 90 days, newest first
    assert await found(status="closed") == [ids[1]]
    assert await found(status="open,closed", service_code="M08", start_date="2020-01-01T00:00:00Z") == [ids[0], ids[2]]
    old = (now - timedelta(days=60)).isoformat()
    assert await found(start_date="2000-01-01T00:00:00+08:00", end_date=old) == [ids[2]]
    assert await found(service_request_id=f"{ids[2]},nope,{ids[0]}", status="closed") == [ids[2], ids[0]]
    for params in ({"status": "pending"}, {"start_date": "yesterday"}, {"end_date": "2026-02-30T00:00:00Z"}):
        problem_of(await client.get("/open311/v2/requests.json", params=params), 422)
    assert "GD-2026-1" not in (await client.get("/open311/v2/requests.json")).text
    problem_of(await client.get("/open311/v2/requests/GD-2026-1.json"), 404)


async def test_unknown_id_while_loading_is_503(client: httpx.AsyncClient, view: RequestView) -> None:
    view.catching_up = True
    response = await client.get("/open311/v2/requests/O311-unknown.json")
    problem_of(response, 503)
    assert response.headers["retry-after"] == "5"


def test_parse_time_reads_rfc3339() -> None:
    assert parse_time("2026-11-20T09:30:00+08:00") == datetime(2026, 11, 20, 1, 30, tzinfo=UTC)
    assert parse_time("2026-11-20t01:30:00.5z") == datetime(2026, 11, 20, 1, 30, 0, 500000, tzinfo=UTC)
    assert parse_time("0001-01-01T00:00:00+01:00") == datetime.min.replace(tzinfo=UTC)
    assert parse_time("2026-11-20T09:30:00") is None  # no offset
    assert parse_time("2026-11-20") is None


# --- the view, fed out of order -----------------------------------------------------------------------------


def dispatched_of(
    task_id: str, event_id: str, code: str | None, at: datetime, role: TaskRole = TaskRole.PRIMARY
) -> TaskDispatched:
    matter = DUTY.matter(code) if code else None
    return TaskDispatched(
        task_id=task_id,
        event_id=event_id,
        unit_code="PA-CG",
        unit_name="城关镇综治中心",
        role=role,
        matter_code=code,
        tier="township",
        deadline_class=matter.deadline_class if matter else "standard",
        urgency="normal",
        title="[求助] 下水道反流",
        description="下水道反流",
        location={"address": "东街"},
        received_at=at,
        dispatched_at=at + timedelta(seconds=1),
        deadlines=[{"kind": "resolve", "amount": 2, "unit": "working-days"}],
        decision={
            "matter_code": code,
            "matter_name": None,
            "rule": "explicit-category",
            "confidence": 1.0,
            "reason": "报送时已指定事项",
            "duty_list_version": DUTY.version,
        },
    )


def status_of(task_id: str, status: TaskStatus, at: datetime, **facts: Any) -> TaskStatusChanged:
    due = at + timedelta(days=2)
    return TaskStatusChanged(
        task_id=task_id,
        unit_code="PA-CG",
        status=status,
        clocks=[{"kind": "resolve", "due_at": due, "explanation": "2 个工作日"}],
        changed_at=at,
        **facts,
    )


def index_of(source_id: str, event_id: str, source: Channel = Channel.HOTLINE_12345) -> ReportIndexed:
    return ReportIndexed(
        source=source, source_id=source_id, event_id=event_id, outcome=IndexOutcome.EVENT, indexed_at=T0
    )


def test_view_joins_records_in_any_order_and_keeps_only_open311() -> None:
    view = RequestView()
    event_id, task_id = new_id(), new_id()
    view.status_changed(status_of(task_id, TaskStatus.ACCEPTED, T0 + timedelta(hours=1), accepted_at=T0))
    view.dispatched(dispatched_of(task_id, event_id, "M08", T0))
    assert view.get("O311-a") is None and view.pending == 2
    view.indexed(index_of("O311-a", event_id))
    snapshot = view.get("O311-a")
    assert snapshot is not None and snapshot.life.stage is Stage.ACKNOWLEDGED and view.pending == 0
    assert snapshot.life.expected_at == T0 + timedelta(hours=1, days=2)
    # an older status arriving late changes nothing
    view.status_changed(status_of(task_id, TaskStatus.OPEN, T0 + timedelta(minutes=5)))
    assert view.get("O311-a").life.stage is Stage.ACKNOWLEDGED  # type: ignore[union-attr]
    # other channels' and phoned-in reports are never kept
    view.indexed(index_of("GD-1", new_id()))
    view.indexed(index_of("O311-b", new_id(), Channel.POLICE_110))
    assert len(view) == 1
    view.forget("O311-a")
    assert view.get("O311-a") is None and len(view) == 0


def test_view_drops_requests_older_than_the_task_retention() -> None:
    view = RequestView()
    view.indexed(index_of("O311-old", new_id()))
    assert view.forget_before(T0 + timedelta(days=1)) == 1 and len(view) == 0
    view.indexed(index_of("O311-old", new_id()))  # replayed after the cutoff: still left out
    assert view.get("O311-old") is None


def test_view_buffers_are_bounded() -> None:
    view = RequestView(max_pending=3)
    for _ in range(5):
        view.dispatched(dispatched_of(new_id(), new_id(), "M08", T0))
        view.status_changed(status_of(new_id(), TaskStatus.OPEN, T0))
    assert view.pending == 6 and view.dropped == 4


def test_feed_applies_records_tombstones_and_skips_malformed(caplog: pytest.LogCaptureFixture) -> None:
    view = RequestView()
    event_id = new_id()
    apply_record(view, "reports.index", b"12345:O311-a", index_of("O311-a", event_id).to_bytes())
    assert view.get("O311-a") is not None
    with caplog.at_level(logging.WARNING):
        apply_record(view, "tasks.dispatched", b"x", b'{"task_id": 1}')
    assert "malformed" in caplog.text
    apply_record(view, "tasks.status", b"x", None)
    apply_record(view, "reports.index", b"12345:O311-a", None)
    assert view.get("O311-a") is None


def test_openapi_documents_the_form_body(app: FastAPI) -> None:
    operation = app.openapi()["paths"]["/open311/v2/requests.json"]["post"]
    content = operation["requestBody"]["content"]
    assert set(content) == {"application/x-www-form-urlencoded", "application/json"}
    schema = content["application/x-www-form-urlencoded"]["schema"]
    assert schema["properties"]["service_code"]["enum"] == sorted(m.code for m in DUTY.matters)
    assert json.dumps(schema, ensure_ascii=False).count("address_string") >= 2
