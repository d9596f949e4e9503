"""Follows notifier.endpoints into the endpoints registry in every notifier replica (group-less, from the start)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from gridhub.kernel.follower import TopicFollower
from gridhub.kernel.metrics import ServiceMetrics
from gridhub.kernel.settings import CommonSettings
from services.notifier.endpoints import EndpointRegistry

TOPIC = "notifier.endpoints"


class EndpointFollower:
    """A component (start/stop/ready) that keeps an EndpointRegistry in step with notifier.endpoints."""

    def __init__(
        self,
        common: CommonSettings,
        registry: EndpointRegistry,
        metrics: CollectorRegistry,
        *,
        ready_timeout_s: float = 60.0,
    ) -> None:
        self.registry = registry
        lag = ServiceMetrics("notifier", metrics).gauge(
            "endpoints_lag", "records", "notifier.endpoints records not yet read into the registry (last fetch)."
        )
        self._follower = TopicFollower(
            common, TOPIC, registry.apply_records, lag, ready_timeout_s=ready_timeout_s, size=registry.__len__
        )

    @property
    def ready(self) -> bool:
        """Whether the registry holds what the topic held at start (or the readiness timeout passed)."""
        return self._follower.ready

    async def start(self) -> None:
        """Start following; returns at once."""
        await self._follower.start()

    async def stop(self) -> None:
        """Stop following (the registry stays as it is)."""
        await self._follower.stop()

    async def wait_ready(self, timeout_s: float) -> bool:
        """Wait until ready, at most timeout_s."""
        return await self._follower.wait_ready(timeout_s)
