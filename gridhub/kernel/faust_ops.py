"""/metrics, /healthz and /readyz on a Faust worker's own web server."""

from __future__ import annotations

from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry

from gridhub.kernel.health import Health
from gridhub.kernel.metrics import CONTENT_TYPE_LATEST, render


def faust_is_assigned(app: faust.App) -> bool:
    """True when the worker has finished a rebalance and owns at least one partition."""
    consumer = app.consumer
    return bool(not app.rebalancing and consumer is not None and consumer.assignment())


def install_ops_pages(app: faust.App, registry: CollectorRegistry, health: Health) -> None:
    """Serve Prometheus metrics and health on the worker's web port."""

    @app.page("/metrics")
    class MetricsPage(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(render(registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/healthz")
    class LivePage(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok", "service": health.service})

    @app.page("/readyz")
    class ReadyPage(View):
        async def get(self, request: Request) -> Response:
            ready, checks = health.readiness()
            body: dict[str, Any] = {"ready": ready, "checks": checks, "service": health.service}
            return self.json(body, status=200 if ready else 503)
