"""A minimal, fast webhook receiver for hub_bench: records when each event's first webhook arrived.

Run: python bench/receiver.py --port 8200 [--verify whsec_...]
  POST /webhook   the notifier's delivery (TaskDispatched JSON); answers 200 at once (with --verify, after checking
                  the Standard Webhooks signature with the `standardwebhooks` package; a bad one answers 400)
  GET  /stats     {"deliveries": n, "events": distinct event ids, "primary": primary-role deliveries, "bad_signatures"}
  GET  /arrivals  {event_id: time.time() of its first webhook}  (?by=webhook-id: keyed by webhook-id instead)
"""

from __future__ import annotations

import argparse
import json
import time

from aiohttp import web
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


def create_app(secret: str | None = None) -> web.Application:
    """The receiver app; all state lives in memory. With a secret, every delivery's signature is verified."""
    first: dict[str, float] = {}
    by_webhook: dict[str, float] = {}
    counts = {"deliveries": 0, "primary": 0, "bad": 0, "bad_signatures": 0}
    verifier = Webhook(secret) if secret else None

    async def webhook(request: web.Request) -> web.Response:
        body = await request.read()
        arrived = time.time()
        if verifier is not None:
            try:
                verifier.verify(body, dict(request.headers))
            except WebhookVerificationError:
                counts["bad_signatures"] += 1
                return web.Response(status=400, text="bad signature")
        counts["deliveries"] += 1
        by_webhook.setdefault(request.headers.get("webhook-id", ""), arrived)
        try:
            task = json.loads(body)
            event_id = str(task["event_id"])
        except (ValueError, KeyError, TypeError):
            counts["bad"] += 1
            return web.Response(status=200)
        first.setdefault(event_id, arrived)
        if task.get("role") == "primary":
            counts["primary"] += 1
        return web.Response(status=200)

    async def stats(_: web.Request) -> web.Response:
        return web.json_response({**counts, "events": len(first)})

    async def arrivals(request: web.Request) -> web.Response:
        return web.json_response(by_webhook if request.query.get("by") == "webhook-id" else first)

    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_post("/webhook", webhook)
    app.router.add_get("/stats", stats)
    app.router.add_get("/arrivals", arrivals)
    return app


def main() -> None:
    """Parse --host/--port and serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8200)
    parser.add_argument("--verify", default=None, help="whsec_ secret: verify every delivery's signature.")
    args = parser.parse_args()
    web.run_app(create_app(args.verify), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
