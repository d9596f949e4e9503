"""Follows config.dutylist into the replica's ActiveDutyList: no consumer group, from the start, until stopped.

Every router replica reads the topic's one partition itself (the kernel's TopicFollower), so all switch on the
same record within a fetch of each other. Records read together are applied at once (`apply_latest`: the last one
that applies is built, once); a record already applied (a re-read after a failure) is skipped by its offset, so a
restart of the follow never switches back through older versions. `ready()` once the follower has read what
the topic held when it started (or after `ready_timeout_s`, serving the list in force: the configured one when
nothing could be read). Wiring: start it before the agents route, await `wait_ready()`, read
`holder.current` once per event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from gridhub.kernel.follower import Records, TopicFollower
from gridhub.kernel.metrics import ServiceMetrics
from gridhub.kernel.settings import CommonSettings
from services.router.duty_versions import ActiveDutyList, ActiveList, Applied, SwitchOutcome

TOPIC = "config.dutylist"
log = logging.getLogger(__name__)


class DutyListMetrics:
    """gridhub_router_dutylist_*: switches by outcome, when the list in force was published and switched to."""

    def __init__(self, registry: CollectorRegistry) -> None:
        m = ServiceMetrics("router", registry)
        self.switches = m.counter(
            "dutylist_switches",
            "config.dutylist records applied, by outcome: switched, version-reused (switched), unchanged, reverted "
            "(tombstone: the configured list), invalid (the list in force stays), skipped (replaced unread).",
            ("outcome",),
        )
        for outcome in SwitchOutcome:
            self.switches.labels(outcome.value)
        self.published = m.gauge(
            "dutylist_published", "timestamp_seconds", "When the list in force was published (0: the configured list)."
        )
        self.switched = m.gauge("dutylist_switched", "timestamp_seconds", "When this replica last switched lists.")
        self.build = m.gauge(
            "dutylist_index_build", "seconds", "Time the last switch spent building the new list's routing index."
        )
        self.matters = m.gauge("dutylist", "matters", "Matters of the list in force.")
        self.lag = m.gauge("dutylist_lag", "records", "config.dutylist records on the broker not yet read.")

    def show(self, active: ActiveList) -> None:
        """Set the gauges that describe the list in force."""
        self.published.set(active.published.published_at.timestamp() if active.published else 0)
        self.matters.set(len(active.matter_codes))


class DutyListFollower:
    """The background consumer that keeps an ActiveDutyList on the latest record of config.dutylist."""

    def __init__(
        self,
        common: CommonSettings,
        holder: ActiveDutyList,
        registry: CollectorRegistry,
        *,
        ready_timeout_s: float = 30.0,
        on_applied: Callable[[Applied], None] | None = None,
    ) -> None:
        self.holder = holder
        self.metrics = DutyListMetrics(registry)
        self.on_applied = on_applied
        self._next_offset = 0  # the topic has one partition: records below this were applied
        self._follower = TopicFollower(
            common,
            TOPIC,
            self._apply,
            self.metrics.lag,
            ready_timeout_s=ready_timeout_s,
            size=lambda: len(holder.current.matter_codes),
        )
        self.metrics.show(holder.current)

    def ready(self) -> bool:
        """True once the topic was read up to its end at start (or the ready timeout passed)."""
        return self._follower.ready

    async def wait_ready(self, timeout_s: float) -> bool:
        """Wait until ready, at most timeout_s; whether it is."""
        return await self._follower.wait_ready(timeout_s)

    async def start(self) -> None:
        """Start following; returns at once (ready() tells when caught up)."""
        await self._follower.start()

    async def stop(self) -> None:
        """Stop following; the holder keeps the list in force."""
        await self._follower.stop()

    def _apply(self, records: Records) -> None:
        fresh = [r for r in records if r.offset >= self._next_offset]
        if not fresh:
            return
        self._next_offset = fresh[-1].offset + 1
        for record, applied in zip(fresh, self.holder.apply_latest([r.value for r in fresh]), strict=True):
            self._report(record.offset, applied)

    def _report(self, offset: int, applied: Applied) -> None:
        self.metrics.switches.labels(applied.outcome.value).inc()
        extra = {"offset": offset, "outcome": applied.outcome.value, "version": applied.active.version}
        if applied.outcome is SwitchOutcome.INVALID:
            log.warning("duty list record refused, %s stays in force: %s", applied.active.version, applied.detail)
        elif applied.switched:
            self.metrics.switched.set(time.time())
            self.metrics.build.set(applied.build_s)
            self.metrics.show(applied.active)
            level = logging.WARNING if applied.outcome is SwitchOutcome.VERSION_REUSED else logging.INFO
            log.log(
                level,
                "duty list switched: %s",
                applied.detail,
                extra={**extra, "previous": applied.previous.version, "build_s": round(applied.build_s, 4)},
            )
        elif applied.outcome is SwitchOutcome.UNCHANGED:
            self.metrics.show(applied.active)
            log.info("duty list unchanged: %s", applied.detail, extra=extra)
        if self.on_applied is not None:
            self.on_applied(applied)
