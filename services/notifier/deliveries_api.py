"""Query and replay deliveries: `GET /deliveries?task_id=`, `GET /deliveries?endpoint_id=&since=`,
`POST /deliveries/{delivery_id}/replay`, `POST /deliveries/replay?endpoint_id=&since=`.

Answers come from the outbox files of the partitions this replica owns (the deployment runs one replica, which owns
every partition). A bearer key from `GRIDHUB_NOTIFIER_API_KEYS` (a dispatcher's or operator's) is required; errors
are problem+json. A replay makes a finished delivery pending again with a fresh retry schedule and the same
webhook-id (receivers dedupe); a delivery still pending is left alone (409).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse, Response

from gridhub.kernel.http import problem
from gridhub.kernel.keys import bearer_token, key_is_one_of
from services.notifier.outbox import PENDING, Job, Outbox, now_ms
from services.notifier.scheduler import Scheduler

FAILED_STATES = ("exhausted", "gone", "disabled")


class OutboxOwner(Protocol):
    """What the API reads: the open outbox files and the scheduler."""

    outboxes: dict[int, Outbox]
    scheduler: Scheduler


class Wakeable(Protocol):
    """The engine, woken when a replay made work due."""

    @property
    def wake(self) -> Any:
        """An asyncio.Event."""

    def flush(self, partition: int | None = None) -> None:
        """Write recorded attempts to the outbox."""


def _iso(ms: int | None) -> str | None:
    return None if not ms else datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def job_view(job: Job, outbox: Outbox | None = None) -> dict[str, Any]:
    """A delivery as the API shows it (with its attempts when the outbox is given); no body, no secrets."""
    view: dict[str, Any] = {
        "delivery_id": job.delivery_id,
        "webhook_id": job.webhook_id,
        "kind": job.kind,
        "subject_id": job.subject_id,
        "task_id": job.task_id,
        "unit_code": job.unit_code,
        "endpoint_id": job.endpoint_id,
        "channel": job.channel,
        "state": job.state,
        "attempts": job.attempts,
        "next_attempt_at": _iso(job.next_at_ms) if job.state == PENDING else None,
        "last_status": job.last_status,
        "last_error": job.last_error,
        "created_at": _iso(job.created_ms),
        "updated_at": _iso(job.updated_ms),
    }
    if outbox is not None:
        view["attempt_log"] = [
            {
                "n": a.n,
                "at": _iso(a.at_ms),
                "status": a.status,
                "latency_ms": a.latency_ms,
                "response_excerpt": a.excerpt,
                "outcome": a.outcome,
            }
            for a in outbox.attempts_of(job.delivery_id)
        ]
    return view


def deliveries_router(owner: OutboxOwner, engine: Wakeable, api_keys: dict[str, str]) -> APIRouter:
    """The deliveries routes over an owner of outboxes."""
    router = APIRouter()

    def refused(authorization: str | None) -> Response | None:
        # api_keys: key → who; compared in constant time like every other key of the hub.
        if not key_is_one_of(api_keys, bearer_token(authorization)):
            return problem(
                401,
                "需要调度员或运维人员的 API 密钥（Authorization: Bearer <key>）。",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return None

    def parse_since(since: str | None) -> int | Response:
        if since is None:
            return 0
        try:
            parsed = datetime.fromisoformat(since)
        except ValueError:
            return problem(400, f"since 不是 ISO 8601 时间：{since}")
        if parsed.tzinfo is None:
            return problem(400, "since 必须带时区，例如 2026-11-20T09:00:00+08:00。")
        return int(parsed.timestamp() * 1000)

    @router.get("/deliveries")
    async def list_deliveries(
        task_id: Annotated[str | None, Query(max_length=64)] = None,
        endpoint_id: Annotated[str | None, Query(max_length=200)] = None,
        since: Annotated[str | None, Query(max_length=64)] = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> Response:
        if (denied := refused(authorization)) is not None:
            return denied
        if (task_id is None) == (endpoint_id is None):
            return problem(400, "请给出 task_id 或 endpoint_id（二选一）。")
        since_ms = parse_since(since)
        if isinstance(since_ms, Response):
            return since_ms
        engine.flush()
        found: list[dict[str, Any]] = []
        for outbox in list(owner.outboxes.values()):
            jobs = outbox.by_task(task_id) if task_id is not None else outbox.by_endpoint(str(endpoint_id), since_ms)
            found += [job_view(job, outbox) for job in jobs]
        found.sort(key=lambda v: v["created_at"] or "")
        return JSONResponse({"deliveries": found, "count": len(found)})

    def replay(delivery_id: str) -> tuple[str, Job | None]:
        for outbox in list(owner.outboxes.values()):
            job = outbox.get(delivery_id)
            if job is None:
                continue
            if job.state == PENDING or delivery_id in owner.scheduler:
                return "pending", job
            replayed = outbox.replay(delivery_id, now_ms())
            if replayed is not None:
                owner.scheduler.add(replayed)
                engine.wake.set()
            return "replayed", replayed
        return "unknown", None

    @router.post("/deliveries/replay")
    async def replay_failed(
        endpoint_id: Annotated[str, Query(max_length=200)],
        since: Annotated[str, Query(max_length=64)],
        authorization: Annotated[str | None, Header()] = None,
    ) -> Response:
        if (denied := refused(authorization)) is not None:
            return denied
        since_ms = parse_since(since)
        if isinstance(since_ms, Response):
            return since_ms
        engine.flush()
        replayed: list[str] = []
        for outbox in list(owner.outboxes.values()):
            for job in outbox.by_endpoint(endpoint_id, since_ms, failed_only=True):
                state, _ = replay(job.delivery_id)
                if state == "replayed":
                    replayed.append(job.delivery_id)
        return JSONResponse({"replayed": replayed, "count": len(replayed)}, status_code=202)

    @router.post("/deliveries/{delivery_id}/replay")
    async def replay_one(delivery_id: str, authorization: Annotated[str | None, Header()] = None) -> Response:
        if (denied := refused(authorization)) is not None:
            return denied
        engine.flush()
        state, job = replay(delivery_id)
        if state == "unknown" or job is None:
            return problem(404, f"没有投递记录 {delivery_id}（或其分区不在本副本）。")
        if state == "pending":
            return problem(409, f"投递 {delivery_id} 仍在等待重试，无需重放。")
        return JSONResponse(job_view(job), status_code=202)

    return router
