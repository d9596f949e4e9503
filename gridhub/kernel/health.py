"""Liveness and readiness: a service is ready when it is connected to Kafka and has work assigned."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

# How long a Kafka client may go without an answer from the broker before its service stops being ready.
CONTACT_WINDOW_S = 30.0


@dataclass
class Health:
    """Named readiness checks; each returns True when that part is ready."""

    service: str
    checks: dict[str, Callable[[], bool]] = field(default_factory=dict)

    def add(self, name: str, check: Callable[[], bool]) -> None:
        """Register a readiness check."""
        self.checks[name] = check

    def readiness(self) -> tuple[bool, dict[str, bool]]:
        """Run every check; a check that raises counts as not ready."""
        results: dict[str, bool] = {}
        for name, check in self.checks.items():
            try:
                results[name] = bool(check())
            except Exception:
                results[name] = False
        return all(results.values()), results


@dataclass
class Contact:
    """When a Kafka client last heard from the broker (an ack, a commit, an assignment, metadata); `recent()` is the
    "connected" half of readiness: a client whose broker stopped answering is not ready, whatever it still holds."""

    window_s: float = CONTACT_WINDOW_S
    clock: Callable[[], float] = time.monotonic
    last: float = float("-inf")

    def seen(self) -> None:
        """The broker answered just now."""
        self.last = self.clock()

    def recent(self) -> bool:
        """True when the broker answered within the window."""
        return self.clock() - self.last < self.window_s


async def probe_every(
    probe: Callable[[], Awaitable[object]], contact: Contact, every_s: float = 10.0, timeout_s: float = 5.0
) -> None:
    """Run probe() (e.g. a producer's `client.fetch_all_metadata`) every every_s until cancelled, marking the contact
    on each success; a failure or a timeout is logged and leaves the contact to age (run it as a task)."""
    while True:
        try:
            await asyncio.wait_for(probe(), timeout_s)
        except Exception as exc:
            log.warning("the broker did not answer a probe: %r", exc)
        else:
            contact.seen()
        await asyncio.sleep(every_s)
