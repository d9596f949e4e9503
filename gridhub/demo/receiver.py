"""A unit's webhook receiver for the demo: verifies Standard Webhooks signatures, logs, and acts on tasks."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

log = logging.getLogger(__name__)


def create_receiver(secret: str, log_path: Path, adapters_url: str | None, act_after_s: float | None) -> FastAPI:
    """Receiver app: 204 for a verified delivery, 400 for a bad signature; optionally resolves the task."""
    app = FastAPI(title="GridHub demo unit receiver")
    verifier = Webhook(secret)
    seen: set[str] = set()
    background: set[asyncio.Task[None]] = set()
    log_path.parent.mkdir(parents=True, exist_ok=True)

    async def act(task: dict[str, Any]) -> None:
        assert act_after_s is not None and adapters_url is not None
        headers = {"Authorization": f"Bearer dev-{task['unit_code']}"}
        async with httpx.AsyncClient(base_url=adapters_url, timeout=10) as client:
            for kind in ("accepted", "contacted", "resolved"):
                await asyncio.sleep(act_after_s / 3)
                try:
                    response = await client.post(
                        f"/v1/tasks/{task['task_id']}/updates",
                        headers=headers,
                        json={"kind": kind, "note": "演示单位自动处理"},
                    )
                except httpx.HTTPError as exc:
                    log.warning("update %s for %s failed: %r", kind, task["task_id"], exc)
                    return
                if response.status_code != 202:
                    log.warning(
                        "update %s for %s refused: %s %s", kind, task["task_id"], response.status_code, response.text
                    )
                    return

    @app.post("/webhook")
    async def webhook(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            task = verifier.verify(body, dict(request.headers))
        except WebhookVerificationError as exc:
            return JSONResponse({"error": f"signature: {exc}"}, status_code=400)
        webhook_id = request.headers["webhook-id"]
        duplicate = webhook_id in seen
        seen.add(webhook_id)
        line = {
            "webhook_id": webhook_id,
            "duplicate": duplicate,
            "unit": task.get("unit_code"),
            "task_id": task.get("task_id"),
            "title": task.get("title"),
            "reason": task.get("decision", {}).get("reason"),
        }
        with log_path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
        if act_after_s is not None and adapters_url and not duplicate:
            job = asyncio.create_task(act(task))
            background.add(job)
            job.add_done_callback(background.discard)
        return JSONResponse({"received": webhook_id}, status_code=200)

    return app
