"""The console's one background task: every few seconds read each service's /metrics and the router's triage queue,
now and then the SLA's week summary, into `Figures` (over HTTP only, like every service talks to another)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from gridhub.kernel.metrics import ServiceMetrics
from services.console.figures import Figures, Snapshot, parse_metrics
from services.console.settings import ConsoleSettings

log = logging.getLogger(__name__)


class Poller:
    """Reads the other services over HTTP (and the broker's group offsets) into `figures`, one poll at a time."""

    def __init__(
        self,
        settings: ConsoleSettings,
        figures: Figures,
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.figures = figures
        self.clock = clock
        self.client = httpx.AsyncClient(timeout=settings.scrape_timeout_s, transport=transport)
        self.polls = 0
        self._summary_at = -1e18
        m = ServiceMetrics("console", registry)
        self.scrapes = m.counter(
            "scrapes", "Reads of the other services, by target and outcome.", ("target", "outcome")
        )

    def _count(self, target: str, ok: bool) -> None:
        self.scrapes.labels(target, "ok" if ok else "failed").inc()

    async def _get_json(self, target: str, url: str, **kwargs: Any) -> dict[str, Any] | None:
        try:
            answer = await self.client.get(url, **kwargs)
            ok = answer.status_code == 200
            body = answer.json() if ok else None
        except (httpx.HTTPError, ValueError):
            ok, body = False, None
        self._count(target, ok)
        return body if isinstance(body, dict) else None

    async def scrape(self, service: str, base: str) -> Snapshot | None:
        """One service's /metrics, parsed; None when it did not answer."""
        try:
            answer = await self.client.get(f"{base}/metrics")
            answer.raise_for_status()
            snapshot = parse_metrics(answer.text)
        except (httpx.HTTPError, ValueError):
            self._count(service, False)
            return None
        self._count(service, True)
        return snapshot

    async def triage(self) -> dict[str, Any] | None:
        """The router's open triage items (GET /triage with the console's dispatcher key)."""
        key = self.settings.dispatcher_key.get_secret_value()
        headers = {"Authorization": f"Bearer {key}"}
        return await self._get_json("router-triage", f"{self.settings.router_url.rstrip('/')}/triage", headers=headers)

    async def summary(self) -> dict[str, Any] | None:
        """This week's figures by unit (GET /reports/summary?by=unit), the ranking's source."""
        url = f"{self.settings.sla_url.rstrip('/')}/reports/summary"
        return await self._get_json("sla-summary", url, params={"by": "unit"})

    async def poll_once(self) -> None:
        """Read everything once and hand it to the figures."""
        targets = self.settings.targets()
        scraped = await asyncio.gather(*(self.scrape(name, url) for name, url in targets.items()))
        snapshots = dict(zip(targets, scraped, strict=True))
        triage = await self.triage()
        now = self.clock()
        summary = None
        if now - self._summary_at >= self.settings.summary_every_s:
            summary = await self.summary()
            if summary is not None:
                self._summary_at = now
        self.figures.observe(now, snapshots, triage, summary)
        self.polls += 1

    async def run(self) -> None:
        """Poll every interval until cancelled; one failed poll is logged and the next one tries again."""
        while True:
            started = time.monotonic()
            try:
                await self.poll_once()
            except Exception:
                log.exception("console poll failed")
            await asyncio.sleep(max(0.0, self.settings.poll_interval_s - (time.monotonic() - started)))

    async def close(self) -> None:
        """Close the HTTP client."""
        await self.client.aclose()
