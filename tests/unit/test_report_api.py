"""The report view's store and GET /reports/summary, on a view filled directly (no broker)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from gridhub.kernel.batchserve import ops_app
from gridhub.kernel.health import Health
from gridhub.kernel.settings import CommonSettings
from schemas.dutylist import load_duty_list
from schemas.task import TaskRole
from services.sla.report_api import report_router
from services.sla.report_view import ReportStore, ReportView, summary_of, township_names
from services.sla.reports import ALL_ROLES, PRIMARY_ONLY, GroupBy, TaskFacts, parse_week, summarise
from tests.unit.report_data import dispatched, status, ulid_of
from tests.unit.test_sla_reports import AFTER, CAL, SH, W47, at, task, week_tasks

DUTY = load_duty_list()


def fill(store: ReportStore) -> None:
    """Statuses first, then the tasks, and one stale status after a newer one: the store joins them all."""
    tasks = week_tasks()
    for t in tasks:
        record = status(t)
        if record is not None:
            store.apply_value("tasks.status", record.task_id.encode(), record.to_bytes())
    for t in tasks:
        store.apply_value("tasks.dispatched", None, dispatched(t).to_bytes())
    # A replay brings an older status of a2 (still open) after its closing one: the newer one stands.
    older = status(task("a2", ("PA-CG", "城关镇综治中心"), at(16, 10), due=at(19, 0), changed=at(16, 11)))
    assert older is not None
    store.apply_value("tasks.status", None, older.to_bytes())


class FilledView(ReportView):
    """A ReportView that is not following a broker: filled by the test, ready when the test says so."""

    is_ready = True

    def ready(self) -> bool:
        return self.is_ready


@pytest.fixture
def view() -> Iterator[FilledView]:
    filled = FilledView(CommonSettings(), CollectorRegistry(), CAL, duty=DUTY, cache_s=0)
    fill(filled.store)
    yield filled
    filled.store.close()


def app_of(view: ReportView, now: datetime = AFTER) -> FastAPI:
    """The SLA worker's HTTP app as batch_service builds it, with the report routes mounted."""
    return ops_app("sla", CollectorRegistry(), Health("sla"), [report_router(view, clock=lambda: now)])


async def get(app: FastAPI, params: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sla.test") as c:
        return await c.get("/reports/summary", params=params)


@pytest.fixture
def client(view: FilledView) -> FastAPI:
    return app_of(view)


def test_store_gives_the_pure_figures() -> None:
    store = ReportStore()
    fill(store)
    assert len(store) == len(week_tasks())
    from_store = summary_of(store, W47, AFTER, CAL, by=GroupBy.UNIT, duty=DUTY).as_dict()
    pure = summarise(week_tasks(), W47, AFTER, CAL, county_name="平安县").as_dict()
    assert from_store == pure
    townships = summary_of(store, W47, AFTER, CAL, by=GroupBy.TOWNSHIP, duty=DUTY)
    assert [row.name for row in townships.rows] == ["河西乡", "城关镇", "未定位乡镇"]


def test_store_keeps_no_personal_data_and_forgets_tombstoned_statuses() -> None:
    store = ReportStore()
    fill(store)
    dump = "\n".join(store._db.iterdump())
    for personal in ("张先生", "13912345678", "幸福小区", "垃圾"):
        assert personal not in dump
    # A tombstone on tasks.status: b1's status is gone, so it is open with no known deadline.
    store.forget_status(ulid_of("b1"))
    b = {r.key: r for r in summary_of(store, W47, AFTER, CAL, by=GroupBy.UNIT, duty=DUTY).rows}["PA-ZJJ"]
    assert (b.resolved, b.due, b.open) == (0, 1, 2)


def backlog_tasks() -> list[TaskFacts]:
    """Tasks from before the week, open or not at its end: the store counts these in SQL, not one by one."""
    cg = ("PA-CG", "城关镇综治中心")
    return [
        dataclasses.replace(
            task("k1", cg, at(5, 9, month=10), due=at(20, 0, month=10), status="paused", changed=at(10, 9, month=10)),
            resolve_paused_since=at(10, 9, month=10),
        ),
        task("k2", cg, at(6, 9, month=10), due=at(15, 0, month=10), status="returned", changed=at(25, 9)),
        dataclasses.replace(task("k3", cg, at(7, 9, month=10)), status=None, changed_at=None),
        task("k4", cg, at(8, 9, month=10), due=at(15, 0, month=10), status="returned", changed=at(9, 9, month=10)),
        task("k5", cg, at(1, 9, month=10), due=at(10, 0, month=10), resolved=at(24, 9)),
        task("k6", cg, at(1, 9, month=10), due=at(30, 0), role=TaskRole.CO_OPERATING),
    ]


async def test_a_file_store_read_in_a_thread_counts_the_backlog_as_the_pure_function(tmp_path: Path) -> None:
    tasks = [*week_tasks(), *backlog_tasks()]
    view = FilledView(CommonSettings(), CollectorRegistry(), CAL, duty=DUTY, cache_s=0, directory=tmp_path)
    assert not view.store.in_memory
    for t in tasks:
        view.store.apply_value("tasks.dispatched", None, dispatched(t).to_bytes())
        record = status(t)
        if record is not None:
            view.store.apply_value("tasks.status", None, record.to_bytes())
    _, backlog = view.store.read(W47, W47.end)
    assert {b.unit_code: (b.open, b.overdue) for b in backlog if b.role is TaskRole.PRIMARY} == {
        "PA-CG": (4, 2),  # k1 paused, k2 returned only later, k3 without status, k5 resolved only later
        "PA-SCJGJ": (1, 1),  # d1
    }
    for by in GroupBy:
        for roles in (PRIMARY_ONLY, ALL_ROLES):
            got = (await view.summary(W47, by, roles=roles, now=AFTER)).as_dict()
            pure = summarise(
                tasks, W47, AFTER, CAL, by=by, roles=roles, county_name="平安县",
                township_names=township_names(DUTY), matter_names={m.code: m.name for m in DUTY.matters},
            ).as_dict()  # fmt: skip
            assert got == pure, (by, roles)
    cg = next(r for r in (await view.summary(W47, GroupBy.UNIT, now=AFTER)).rows if r.key == "PA-CG")
    assert (cg.open, cg.overdue) == (1 + 4, 0 + 2)
    view.store.close()
    assert not any(tmp_path.glob("*")), "the scratch files are gone"  # noqa: ASYNC240


def test_unreadable_records_are_skipped() -> None:
    store = ReportStore()
    assert store.apply_value("tasks.dispatched", None, b'{"task_id": "x"}') is False
    assert store.apply_value("tasks.status", None, b"not json") is False
    assert len(store) == 0


def test_prune_drops_old_finished_tasks_and_orphan_statuses_but_keeps_the_backlog() -> None:
    store = ReportStore()
    fill(store)
    orphan = status(task("o1", ("PA-CG", "城关镇综治中心"), at(1, 9, month=10), changed=at(1, 10, month=10)))
    assert orphan is not None
    store.apply_value("tasks.status", None, orphan.to_bytes())
    # Before 2026-11-10: e1 (received 11-02, finished) and the orphan go; d1 (received 10-01) is still open.
    assert store.prune(datetime(2026, 11, 10, tzinfo=SH)) == 2
    assert len(store) == len(week_tasks()) - 1


async def test_summary_endpoint_answers_the_bulletin(client: FastAPI) -> None:
    response = await get(client, {"period": "2026-W47", "by": "unit"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert "城关镇综治中心".encode() in response.content  # ensure_ascii=False: UTF-8, not \\u escapes
    body = response.json()
    expected = summarise(week_tasks(), W47, AFTER, CAL, county_name="平安县").as_dict()
    assert body == json.loads(json.dumps(expected))
    assert [(r["key"], r["rank"]) for r in body["rows"]] == [
        ("PA-CG", 1),
        ("PA-HX", 1),
        ("PA-ZJJ", 3),
        ("PA-SCJGJ", None),
    ]
    matters = (await get(client, {"period": "2026-W47", "by": "matter"})).json()
    assert [r["key"] for r in matters["rows"]] == ["M10", "M08", "M17"]
    with_all = (await get(client, {"period": "2026-W47", "roles": "all"})).json()
    assert {r["key"]: r["due"] for r in with_all["rows"]}["PA-ZJJ"] == 3


async def test_summary_defaults_to_the_running_week(view: FilledView) -> None:
    wednesday = at(18, 12)
    body = (await get(app_of(view, wednesday))).json()
    assert body["period"] == "2026-W47" and body["as_of"] == "2026-11-18T12:00:00+08:00"
    assert {r["key"]: r["due"] for r in body["rows"]}["PA-CG"] == 1


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"period": "2026-47"}, "period", "ISO 周"),
        ({"period": "2025-W53"}, "period", "2025 年没有第 53 周"),
        ({"period": "2026-W50"}, "period", "尚未开始"),
        ({"period": "2026-W47", "by": "grid"}, "by", "分组 'grid' 无效"),
        ({"period": "2026-W47", "roles": "co"}, "roles", "primary（仅主办）或 all"),
    ],
)
async def test_bad_parameters_are_422_problems_in_chinese(
    client: FastAPI, params: dict[str, str], field: str, words: str
) -> None:
    response = await get(client, params)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["title"] == "请求内容校验未通过" and problem["status"] == 422
    assert [e["field"] for e in problem["errors"]] == [field]
    assert words in problem["errors"][0]["message"] and words in problem["detail"]
    assert "\\u" not in response.text


async def test_a_view_still_loading_answers_503(view: FilledView, client: FastAPI) -> None:
    view.is_ready = False
    response = await get(client, {"period": "2026-W47"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "仍在" in response.json()["detail"]


async def test_summaries_are_cached_for_a_moment(view: FilledView) -> None:
    view.cache_s = 60
    first = await view.summary(W47, GroupBy.UNIT, now=AFTER)
    view.store.forget_status(ulid_of("a1"))
    assert await view.summary(W47, GroupBy.UNIT, now=AFTER) is first
    view.cache_s = 0
    assert await view.summary(W47, GroupBy.UNIT, now=AFTER) is not first


def test_township_names_come_from_the_duty_list() -> None:
    names = township_names(DUTY)
    assert names["PA-CG"] == "城关镇" and names["PA-HX"] == "河西乡"
    assert parse_week("2026-W47").end - parse_week("2026-W47").start == timedelta(days=7)


async def test_per_unit_gauges_follow_the_weeks_bulletin() -> None:
    registry = CollectorRegistry()
    sunday_evening = datetime(2026, 11, 22, 20, 0, tzinfo=SH)  # still in week 47: the week so far
    view = FilledView(CommonSettings(), registry, CAL, duty=DUTY, cache_s=0, clock=lambda: sunday_evening)
    try:
        fill(view.store)
        await view.refresh_unit_gauges()
        week = summary_of(view.store, W47, sunday_evening, CAL, by=GroupBy.UNIT, duty=DUTY)
        rows = {r.key: r for r in week.rows}

        def sample(name: str, unit: str) -> float | None:
            return registry.get_sample_value(name, {"unit": unit})

        for code, row in rows.items():
            assert sample("gridhub_sla_unit_open_tasks", code) == row.open
            assert sample("gridhub_sla_unit_overdue_tasks", code) == row.overdue
            rate = row.on_time_rate
            assert sample("gridhub_sla_unit_on_time_ratio", code) == (None if rate is None else float(rate))
        assert any(row.overdue for row in rows.values()) and any(row.on_time_rate for row in rows.values())
        # Every unit of the directory has its open/overdue gauges, zero where it holds nothing.
        idle = next(u.code for u in DUTY.units if u.code not in rows)
        assert sample("gridhub_sla_unit_open_tasks", idle) == 0
        assert sample("gridhub_sla_unit_on_time_ratio", idle) is None
    finally:
        view.store.close()
