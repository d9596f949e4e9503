"""Running a batch worker as a service: /metrics, /healthz and /readyz on uvicorn in the same event loop, and a
graceful stop on SIGTERM or SIGINT (the batch in hand is finished and committed, then the group is left)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import uvicorn
from fastapi import APIRouter, FastAPI
from prometheus_client import CollectorRegistry

from gridhub.kernel.batchloop import BatchHandler, BatchLoop
from gridhub.kernel.batchout import KafkaDeadLetters
from gridhub.kernel.health import Health
from gridhub.kernel.http import install_problem_handlers, ops_router
from gridhub.kernel.logging import configure_logging
from gridhub.kernel.runtime import run
from gridhub.kernel.settings import CommonSettings

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 20.0


class _OpsServer(uvicorn.Server):
    """uvicorn without signal handling of its own: the service stops the worker first, then the server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Component(Protocol):
    """A part that runs beside the batch loop (a topic follower, a cache): started before it, stopped after it."""

    async def start(self) -> None:
        """Start (return once running; background work goes in tasks of its own)."""

    async def stop(self) -> None:
        """Stop and release what it holds."""


def ops_app(service: str, registry: CollectorRegistry, health: Health, routers: Sequence[APIRouter] = ()) -> FastAPI:
    """The worker's HTTP app: the ops endpoints, and the service's own routes if it has any."""
    app = FastAPI(title=f"GridHub {service}", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(ops_router(registry, health))
    for router in routers:
        app.include_router(router)
    install_problem_handlers(app)
    return app


@dataclass
class BatchService:
    """A batch worker and its ops endpoints: what a batch service's create_app returns."""

    service: str
    common: CommonSettings
    loop: BatchLoop
    registry: CollectorRegistry
    health: Health
    host: str
    port: int
    routers: Sequence[APIRouter] = ()
    components: Sequence[Component] = field(default_factory=tuple)

    async def serve(
        self, stop: asyncio.Event | None = None, *, handle_signals: bool = True, freeze_gc: bool = False
    ) -> None:
        """Serve until SIGTERM/SIGINT (or `stop` is set), then stop the worker and the server cleanly."""
        stop = stop or asyncio.Event()
        running = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
        for sig in signals:
            running.add_signal_handler(sig, stop.set)
        config = uvicorn.Config(
            ops_app(self.service, self.registry, self.health, self.routers),
            host=self.host,
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="off",
            ws="none",
        )
        server = _OpsServer(config)
        started: list[Component] = []
        for component in self.components:
            await component.start()
            started.append(component)
        web = asyncio.create_task(server.serve(), name=f"{self.service}-ops")
        work = asyncio.create_task(self._work(freeze_gc), name=f"{self.service}-worker")
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({web, work, stopped}, return_when=asyncio.FIRST_COMPLETED)
            self.loop.stop()
            if not work.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(work), STOP_TIMEOUT_S)
            if work.done():
                work.result()  # a worker that died says why
        finally:
            for task in (work, stopped):
                task.cancel()
            await asyncio.gather(work, stopped, return_exceptions=True)
            await self.loop.close()
            server.should_exit = True
            await asyncio.gather(web, return_exceptions=True)
            for component in reversed(started):
                await component.stop()
            for sig in signals:
                running.remove_signal_handler(sig)

    async def _work(self, freeze_gc: bool) -> None:
        await self.loop.start()
        if freeze_gc:
            # What start-up made (modules, pydantic schemas, clients) lives as long as the process: keep it out
            # of the full collections, which otherwise cost tens of milliseconds each once records flow.
            gc.freeze()
        log.info("worker started", extra={"topics": self.loop.topics, "group": self.loop.group})
        await self.loop.run()

    def run(self) -> None:
        """Run in the foreground until SIGINT/SIGTERM (`gridhub serve <service>`)."""
        configure_logging(self.service, self.common.log_level, self.common.log_json)
        run(self.serve(freeze_gc=True), self.common)


def batch_service(
    service: str,
    common: CommonSettings,
    topics: Sequence[str],
    handler: BatchHandler,
    registry: CollectorRegistry,
    *,
    host: str,
    port: int,
    dead_letters: KafkaDeadLetters | None = None,
    routers: Sequence[APIRouter] = (),
    components: Sequence[Component] = (),
    health: Health | None = None,
) -> BatchService:
    """A BatchService whose readiness is: partitions assigned and their state restored (and the given health's
    own checks, e.g. followers caught up)."""
    loop = BatchLoop(common, service, topics, handler, registry, dead_letters=dead_letters)
    health = health or Health(service)
    health.add("kafka-assigned", loop.ready)
    return BatchService(service, common, loop, registry, health, host, port, routers, tuple(components))
