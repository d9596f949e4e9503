"""Running a service's main coroutine on the event loop its settings choose."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from gridhub.kernel.settings import CommonSettings

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T], common: CommonSettings) -> T:
    """Run `main` to completion on uvloop (the default: its sockets and callbacks cost about half of asyncio's
    own, which the Kafka client and webhook delivery spend most of their time in) or on asyncio's loop."""
    if common.event_loop == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)
