"""Running a Faust-based service: logging, ops pages, and the worker loop."""

from __future__ import annotations

import faust
from prometheus_client import CollectorRegistry

from gridhub.kernel.faust_ops import faust_is_assigned, install_ops_pages
from gridhub.kernel.health import Health
from gridhub.kernel.logging import configure_logging
from gridhub.kernel.settings import CommonSettings


def prepare(app: faust.App, service: str, registry: CollectorRegistry) -> Health:
    """Add /metrics, /healthz and /readyz (ready = Kafka connected and partitions assigned)."""
    health = Health(service)
    health.add("kafka-assigned", lambda: faust_is_assigned(app))
    install_ops_pages(app, registry, health)
    return health


def run_worker(app: faust.App, common: CommonSettings, service: str) -> None:
    """Run a Faust worker in the foreground until SIGINT/SIGTERM."""
    configure_logging(service, common.log_level, common.log_json)
    worker = faust.Worker(app, loglevel=common.log_level.lower(), quiet=True, redirect_stdouts=False)
    # faust.Worker would replace our JSON handler with its own; give it back.
    worker.on_setup_root_logger = lambda logger, level: configure_logging(service, common.log_level, common.log_json)  # type: ignore[method-assign]
    worker.execute_from_commandline()
