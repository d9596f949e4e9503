"""Acceptances intake has not indexed yet, read back from the raw topics when an adapters replica starts.

A report accepted just before a replica stopped (a crash, a redeploy) is on its raw topic, but intake may not
have indexed it yet, and the replica's own memory of it (the provisional index) is gone. The source's retry of
it, landing on a fresh replica, would get a new event id that no event carries (intake drops it as a repeat).
So at start each replica reads the last `provisional_ttl_s` of every raw topic into its provisional index,
where intake's index records replace them as they arrive, as for its own acceptances.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from gridhub.kernel.follower import read_window
from gridhub.kernel.settings import CommonSettings
from schemas.catalogue import RAW_TOPICS
from services.adapters.report_index import ReportIndex

log = logging.getLogger(__name__)


def pending_acceptance(key: bytes | None, value: bytes | None) -> tuple[str, str] | None:
    """(dedupe key, proposed event id) of a raw record, or None for one that is not a report (tombstone, junk)."""
    if key is None or value is None:
        return None
    try:
        proposed = json.loads(value).get("proposed_event_id")
        dedupe_key = key.decode()
    except (ValueError, AttributeError, UnicodeDecodeError):
        return None
    return (dedupe_key, proposed) if isinstance(proposed, str) and proposed else None


class RawTail:
    """Reads the recent part of every raw topic into the provisional index once, at start; ready when done."""

    def __init__(
        self,
        common: CommonSettings,
        index: ReportIndex,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        timeout_s: float = 60.0,
    ) -> None:
        self.common = common
        self.index = index
        self.clock = clock
        self.monotonic = monotonic
        self.timeout_s = timeout_s
        self.remembered = 0
        self._task: asyncio.Task[None] | None = None
        self._done = False

    async def start(self) -> None:
        """Start reading (returns at once)."""
        self._task = asyncio.create_task(self._read(), name="adapters-raw-tail")

    async def stop(self) -> None:
        """Stop reading if still at it."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def ready(self) -> bool:
        """True once every raw topic's recent records are in the provisional index (or the read gave up)."""
        return self._done

    async def _read(self) -> None:
        since_ms = int((self.clock() - self.index.provisional_ttl_s) * 1000)
        try:
            await asyncio.gather(
                *(
                    read_window(
                        self.common,
                        self.common.topic(topic),
                        self._remember,
                        since_ms=since_ms,
                        timeout_s=self.timeout_s,
                    )
                    for topic in RAW_TOPICS.values()
                )
            )
        except (TimeoutError, OSError, RuntimeError) as exc:
            # Not reading them only reopens the narrow window this closes; the replica still serves.
            log.warning("raw topics' recent acceptances not read back: %r", exc)
        else:
            log.info("recent acceptances read back from the raw topics", extra={"remembered": self.remembered})
        finally:
            self._done = True

    def _remember(self, record: Any) -> None:
        found = pending_acceptance(record.key, record.value)
        if found is None:
            return
        key, event_id = found
        now = self.monotonic()
        if self.index.lookup(key, now) is None:
            self.index.remember(key, event_id, now)
            self.remembered += 1
