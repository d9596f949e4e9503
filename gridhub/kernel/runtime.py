"""Running a service's main coroutine on the event loop its settings choose."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from gridhub.kernel.logging import configure_logging
from gridhub.kernel.settings import CommonSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T], common: CommonSettings) -> T:
    """Run `main` to completion on uvloop (the default: its sockets and callbacks cost about half of asyncio's
    own, which the Kafka client and webhook delivery spend most of their time in) or on asyncio's loop."""
    if common.event_loop == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def serve_http(app: FastAPI, service: str, common: CommonSettings, host: str, port: int) -> None:
    """Serve an HTTP-only service (adapters, console) with uvicorn in the foreground, on the loop `common` names and
    with the hub's JSON logging, until SIGINT/SIGTERM."""
    import uvicorn

    configure_logging(service, common.log_level, common.log_json)
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, loop=common.event_loop)
