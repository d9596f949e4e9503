"""Delivery alerts for the command centre (投递告警), endpoint health across restarts, limits across replicas, and
the outbox's retention."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from schemas import DeliveryAlertKind, DeliveryAlertRaised, EndpointChannel, NotificationType
from services.notifier.channels import render
from services.notifier.delivery_alerts import DELIVERY_ALERT_JOB, delivery_alert, delivery_alert_id
from services.notifier.endpoint_health import EndpointHealth
from services.notifier.endpoints import Endpoint
from services.notifier.outbox import Attempt, JobUpdate, Outbox
from services.notifier.scheduler import Limits, Scheduler
from tests.unit.test_notifier_engine import job, run_engine

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def alerts_of(producer: object) -> list[DeliveryAlertRaised]:
    sent = producer.sent  # type: ignore[attr-defined]
    return [DeliveryAlertRaised.model_validate_json(v) for t, v, _ in sent if t == "t.deliveries.alerts"]


# --- what an alert says ----------------------------------------------------------------------------


def test_alert_names_the_unit_endpoint_and_last_answer_and_its_id_is_stable() -> None:
    failed = job(1, url="http://dept.example/hook")
    failed.attempts = 8
    alert = delivery_alert(
        DeliveryAlertKind.EXHAUSTED,
        failed,
        command_centre="PA-ZZZX",
        last_status=503,
        last_error="HTTP 503 busy",
        disable_after_s=3 * 86400,
        now=NOW,
    )
    assert (alert.unit_code, alert.endpoint_unit_code, alert.task_id) == ("PA-ZZZX", "PA-CG", "T1")
    assert "8 次尝试均失败" in alert.message and "503" in alert.message and "http://dept.example/hook" in alert.message
    assert alert.alert_id == delivery_alert_id(DeliveryAlertKind.EXHAUSTED, "d1.E1", 8)
    assert alert.alert_id != delivery_alert_id(DeliveryAlertKind.EXHAUSTED, "d1.E1", 9)  # a replay failing again
    assert DeliveryAlertRaised.model_validate_json(alert.to_bytes()) == alert
    disabled = delivery_alert(
        DeliveryAlertKind.DISABLED,
        failed,
        command_centre="PA-ZZZX",
        last_status=None,
        last_error="connection refused",
        disable_after_s=72 * 3600,
        now=NOW,
    )
    assert "已连续失败 72 小时" in disabled.message and "已停用" in disabled.message


def test_robot_cards_for_a_delivery_alert() -> None:
    failed = job(1, url="http://dept.example/hook")
    failed.attempts = 8
    alert = delivery_alert(
        DeliveryAlertKind.GONE,
        failed,
        command_centre="PA-ZZZX",
        last_status=410,
        last_error="gone",
        disable_after_s=3600,
        now=NOW,
    )
    robot = Endpoint(
        endpoint_id="01JD6Z8V1Q3C4X5Y6Z7A8B9C0D",
        unit_code="PA-ZZZX",
        channel=EndpointChannel.WECOM,
        url="https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k",
        url_display="https://qyapi.weixin.qq.com/cgi-bin/webhook/send",
        notification_types=frozenset(NotificationType),
    )
    request = render(robot, alert, now=NOW, link_template="https://hub/tasks/{task_id}")
    text = request.body.decode()
    assert "投递告警" in text and "端点已停用（410）" in text and "PA-CG" in text and "https://hub/tasks/T1" in text


# --- the engine raises them ------------------------------------------------------------------------


async def test_an_exhausted_delivery_raises_one_alert_for_the_command_centre(tmp_path: Path) -> None:
    _, _, producer, _ = await run_engine(tmp_path, [500], [job(1, url="")], until=3)
    alerts = alerts_of(producer)
    assert [(a.kind, a.unit_code, a.endpoint_unit_code, a.attempts, a.last_status) for a in alerts] == [
        (DeliveryAlertKind.EXHAUSTED, "PA-ZZZX", "PA-CG", 3, 500)
    ]
    assert alerts[0].delivery_id == "d1.E1" and alerts[0].webhook_id == "task_T1-1"


async def test_a_gone_endpoint_raises_one_alert_not_one_per_delivery(tmp_path: Path) -> None:
    jobs = [job(1, url="", endpoint="default"), job(2, url="", endpoint="default")]
    _, _, producer, _ = await run_engine(tmp_path, [410], jobs, until=1)
    alerts = alerts_of(producer)
    assert [(a.kind, a.delivery_id) for a in alerts] == [(DeliveryAlertKind.GONE, "d1.default")]


async def test_an_endpoint_failing_for_the_period_is_disabled_with_an_alert(tmp_path: Path) -> None:
    # Retries 50 ms apart; failing for 60 ms disables it at the second or third attempt, whichever comes
    # first on a slow machine. Either way both deliveries end: none is left waiting on a disabled endpoint.
    jobs = [job(1, url="", endpoint="default"), job(2, url="", task="T2", endpoint="default")]

    def settled(box: Outbox) -> bool:
        return all(box.get(d).state != "pending" for d in ("d1.default", "d2.default"))  # type: ignore[union-attr]

    _, box, producer, targets = await run_engine(tmp_path, [500], jobs, until=4, disable_after_s=0.06, settled=settled)
    assert not targets.is_enabled("default")
    kinds = [a.kind for a in alerts_of(producer)]
    assert kinds.count(DeliveryAlertKind.DISABLED) == 1  # once for the endpoint, however many deliveries fail
    assert {box.get(d).state for d in ("d1.default", "d2.default")} <= {"exhausted", "disabled"}  # type: ignore[union-attr]


async def test_a_delivery_alert_that_fails_raises_none_of_its_own(tmp_path: Path) -> None:
    failed = job(1, url="")
    failed.kind = DELIVERY_ALERT_JOB
    _, box, producer, _ = await run_engine(tmp_path, [500], [failed], until=3)
    assert box.get("d1.E1").state == "exhausted"  # type: ignore[union-attr]
    assert alerts_of(producer) == []


async def test_without_a_command_centre_no_alert_is_raised(tmp_path: Path) -> None:
    _, _, producer, _ = await run_engine(tmp_path, [500], [job(1, url="")], until=3, command_centre=None)
    assert alerts_of(producer) == []


# --- how long an endpoint has failed, across restarts ----------------------------------------------


def test_endpoint_health_counts_from_the_first_failure_after_the_last_success() -> None:
    health = EndpointHealth()
    assert health.failed("E1", 1_000) == 1_000
    assert health.failed("E1", 5_000) == 1_000
    health.succeeded("E1", 6_000)
    assert health.failing_since("E1") is None
    assert health.failed("E1", 7_000) == 7_000


def test_outbox_tells_failing_since_and_a_restart_goes_on_counting(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "p0.sqlite", 0)
    box.store([job(1, endpoint="A"), job(2, endpoint="A"), job(3, endpoint="B"), job(4, endpoint="C")], {})
    box.record(
        [],
        [
            Attempt("d1.A", 1, 1_000, 200, 2.0, None, "delivered"),
            Attempt("d2.A", 1, 2_000, 500, 2.0, "x", "retrying"),
            Attempt("d2.A", 2, 3_000, 500, 2.0, "x", "retrying"),
            Attempt("d3.B", 1, 4_000, None, None, "refused", "retrying"),
            Attempt("d4.C", 1, 5_000, 200, 1.0, None, "delivered"),
        ],
    )
    found = box.endpoint_health()
    assert found == {"A": (1_000, 2_000), "B": (0, 4_000), "C": (5_000, None)}
    health = EndpointHealth()
    health.seed(found)
    # Another partition saw A delivered later: its failures before that no longer count.
    health.seed({"A": (2_500, 3_000)})
    assert (health.failing_since("A"), health.failing_since("B"), health.failing_since("C")) == (3_000, 4_000, None)
    assert health.failed("B", 90_000) == 4_000  # the restarted engine goes on from the first failure


# --- limits are the whole notifier's -----------------------------------------------------------------


def test_each_replica_takes_its_partitions_share_of_an_endpoints_limits() -> None:
    limits = Limits(concurrency=32, rate_per_s=300.0, burst=200)
    third = limits.share(2 / 6)
    assert (third.concurrency, round(third.rate_per_s, 6), third.burst) == (11, 100.0, 67)
    assert limits.share(1.0) == limits
    assert limits.share(0.0).concurrency == 1 and limits.share(0.0).burst == 1
    scheduler = Scheduler(lambda _e: Limits(concurrency=4, rate_per_s=1000.0, burst=100))
    for n in range(1, 9):
        scheduler.add(job(n, task=f"T{n}", next_at=0))
    assert len(scheduler.take(0, 100)) == 4  # the whole limit while it holds every partition
    scheduler.set_share(1 / 6)
    for n in range(9, 13):
        scheduler.add(job(n, task=f"T{n}", next_at=0))
    assert scheduler.take(0, 100) == []  # 4 in flight, its share now 1


# --- retention -------------------------------------------------------------------------------------


def test_prune_removes_finished_deliveries_past_the_retention_not_pending_ones(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "p0.sqlite", 0)
    box.store([job(1), job(2, task="T2"), job(3, task="T3")], {})
    box.record(
        [
            JobUpdate("d1.E1", "delivered", 1, 0, 200, None, 1_000),
            JobUpdate("d2.E1", "exhausted", 8, 0, 500, "x", 9_000),
        ],
        [Attempt("d1.E1", 1, 1_000, 200, 1.0, None, "delivered")],
    )
    assert box.prune(5_000) == 1
    assert box.get("d1.E1") is None and box.attempts_of("d1.E1") == []
    assert box.get("d2.E1") is not None and box.get("d3.E1") is not None  # newer, and pending
