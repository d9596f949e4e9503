"""What the adapters' unit tests share: a recording publisher and the app served in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from schemas import ReportReceived
from services.adapters.api import create_api
from services.adapters.settings import AdaptersSettings


class FakePublisher:
    """Records (topic, key, value) in place of Kafka; raises `error` when set."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes]] = []
        self.error: Exception | None = None

    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> None:
        if self.error is not None:
            raise self.error
        self.records.append((topic, key, value))

    def reports(self) -> list[ReportReceived]:
        """The raw reports published so far."""
        return [ReportReceived.model_validate_json(value) for _, _, value in self.records]


def api_with(settings: AdaptersSettings, publisher: FakePublisher) -> FastAPI:
    """The adapters app publishing to `publisher`, with a fresh metrics registry."""

    async def factory() -> FakePublisher:
        return publisher

    return create_api(settings, CollectorRegistry(), publisher_factory=factory)


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app in-process, with its lifespan (startup and shutdown) run around it."""
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://adapters.test") as client,
    ):
        yield client
