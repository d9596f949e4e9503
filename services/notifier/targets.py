"""Where a message goes: the delivery engine's view of endpoints, behind a small protocol.

`Targets.targets(unit_code, event_type)` lists the endpoints that take a unit's messages of one type;
`disable(endpoint_id, reason)` retires an endpoint (a 410, or failing for too long); `secrets(endpoint_id)` signs
each attempt. `SettingsTargets` reads `GRIDHUB_NOTIFIER_WEBHOOKS` / `GRIDHUB_NOTIFIER_DEFAULT_WEBHOOK` only and keeps
its disabled endpoints in a small JSON file; `RegistryTargets` (what the service runs) reads the endpoint registry
units manage (notifier.endpoints), with the settings' webhooks for units that registered none.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from schemas import NotificationType
from services.notifier.endpoints import SETTINGS_ID_PREFIX, Endpoint, EndpointRegistry, signing_secrets

log = logging.getLogger(__name__)

# Event types an endpoint may filter on: NotificationType's values (task.new, task.co-operating, alert.warning,
# alert.overdue, alert.escalation, task.update).


@dataclass(frozen=True)
class Target:
    """One endpoint a message is delivered to; `secrets` are whsec_ secrets (two during a rotation's overlap)."""

    endpoint_id: str
    url: str
    channel: str = "webhook"
    secrets: tuple[str, ...] = ()


class Targets(Protocol):
    """The endpoints of a unit, and how to retire one."""

    def targets(self, unit_code: str, event_type: str) -> list[Target]:
        """The enabled endpoints taking this unit's messages of this type."""

    def disable(self, endpoint_id: str, reason: str) -> None:
        """Retire an endpoint: no more deliveries go to it."""

    def is_enabled(self, endpoint_id: str) -> bool:
        """Whether deliveries may still go to it."""

    def secrets(self, endpoint_id: str) -> tuple[str, ...]:
        """The secrets signing its deliveries now (looked up at each attempt: a rotation applies to retries)."""

    def url(self, endpoint_id: str) -> str | None:
        """Where to POST now (looked up at each attempt: the outbox keeps no robot keys); None: endpoint deleted."""


class SettingsTargets:
    """Endpoints from settings: a unit's own webhook (`settings:<code>`), else the default one (`settings:default`)."""

    def __init__(self, webhooks: dict[str, str], default: str | None, secret: str, state_file: Path | None) -> None:
        self.webhooks = webhooks
        self.default = default
        self.secret = secret
        self.state_file = state_file
        self.disabled: dict[str, str] = {}
        if state_file is not None and state_file.exists():
            try:
                self.disabled = dict(json.loads(state_file.read_text("utf-8")))
            except (ValueError, TypeError):
                log.warning("unreadable disabled-endpoints file; starting with none", extra={"path": str(state_file)})

    def targets(self, unit_code: str, event_type: str) -> list[Target]:
        """The unit's webhook, or the default webhook; none when neither is set or it is disabled."""
        url = self.webhooks.get(unit_code)
        endpoint_id = f"{SETTINGS_ID_PREFIX}{unit_code}"
        if url is None:
            url, endpoint_id = self.default, f"{SETTINGS_ID_PREFIX}default"
        if url is None or endpoint_id in self.disabled:
            return []
        return [Target(endpoint_id, url, "webhook", (self.secret,))]

    def disable(self, endpoint_id: str, reason: str) -> None:
        """Mark it disabled, here and in the state file (settings cannot be changed from inside)."""
        self.disabled[endpoint_id] = reason
        if self.state_file is not None:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            self.state_file.write_text(json.dumps(self.disabled, ensure_ascii=False), "utf-8")
        log.warning("endpoint disabled", extra={"endpoint_id": endpoint_id, "reason": reason})

    def is_enabled(self, endpoint_id: str) -> bool:
        """Not disabled."""
        return endpoint_id not in self.disabled

    def secrets(self, endpoint_id: str) -> tuple[str, ...]:
        """The one configured signing secret."""
        return (self.secret,)

    def url(self, endpoint_id: str) -> str | None:
        """The configured URL of a settings endpoint."""
        unit = endpoint_id.removeprefix(SETTINGS_ID_PREFIX)
        return self.default if unit == "default" else self.webhooks.get(unit)


class RegistryTargets:
    """Endpoints from the registry units manage (`endpoints.py`, followed from notifier.endpoints), with the
    settings' webhooks for units that registered none. Disabling a registered endpoint publishes it disabled (the
    registry's writer, in the background); a settings endpoint is marked disabled locally, as `SettingsTargets` does.
    """

    def __init__(
        self,
        registry: EndpointRegistry,
        disable_remote: Callable[[str, str], Awaitable[bool]] | None,
        state_file: Path | None,
    ) -> None:
        self.registry = registry
        self.disable_remote = disable_remote
        self.local = SettingsTargets({}, None, registry.signing_secret or "", state_file)
        self._tasks: set[asyncio.Task[None]] = set()
        self._settings_endpoints: dict[str, Endpoint] = {}

    def endpoint(self, endpoint_id: str) -> Endpoint | None:
        """A registered endpoint, or the settings' one with that id."""
        found = self.registry.get(endpoint_id)
        if found is not None or not endpoint_id.startswith(SETTINGS_ID_PREFIX):
            return found
        cached = self._settings_endpoints.get(endpoint_id)
        if cached is None:  # the settings do not change while the service runs
            unit = endpoint_id[len(SETTINGS_ID_PREFIX) :]
            if unit == "default":
                cached = self.registry.fallback("-") if self.registry.default_webhook else None
            else:
                cached = self.registry.fallback(unit)
            if cached is not None:
                self._settings_endpoints[endpoint_id] = cached
        return cached

    def targets(self, unit_code: str, event_type: str) -> list[Target]:
        """The unit's enabled endpoints whose filter takes this type (a NotificationType value)."""
        now = datetime.now(UTC)
        found = self.registry.targets(unit_code, NotificationType(event_type))
        return [
            Target(e.endpoint_id, e.url, e.channel.value, tuple(signing_secrets(e, now)))
            for e in found
            if self.local.is_enabled(e.endpoint_id)
        ]

    def disable(self, endpoint_id: str, reason: str) -> None:
        """Stop deliveries to it at once; publish it disabled when it is a registered one."""
        self.local.disable(endpoint_id, reason)
        found = self.registry.get(endpoint_id)
        if found is not None and not found.from_settings and self.disable_remote is not None:
            task = asyncio.ensure_future(self._disable_remote(endpoint_id, reason))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _disable_remote(self, endpoint_id: str, reason: str) -> None:
        assert self.disable_remote is not None
        for attempt in range(5):
            try:
                await self.disable_remote(endpoint_id, reason)
                return
            except Exception:
                log.exception("could not publish the endpoint disabled; retrying", extra={"endpoint_id": endpoint_id})
                await asyncio.sleep(2.0 * (attempt + 1))

    def is_enabled(self, endpoint_id: str) -> bool:
        """Not disabled here, and (for a registered one) enabled in the registry."""
        if not self.local.is_enabled(endpoint_id):
            return False
        found = self.registry.get(endpoint_id)
        return found is None or found.enabled

    def url(self, endpoint_id: str) -> str | None:
        """The endpoint's URL now (its robot key in the query), None when it was deleted."""
        found = self.endpoint(endpoint_id)
        return None if found is None else found.url

    def secrets(self, endpoint_id: str) -> tuple[str, ...]:
        """The secrets signing now (both during a rotation's overlap)."""
        found = self.endpoint(endpoint_id)
        if found is None:
            return (self.registry.signing_secret,) if self.registry.signing_secret else ()
        return tuple(signing_secrets(found, datetime.now(UTC)))
