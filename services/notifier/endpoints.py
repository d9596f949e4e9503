"""The endpoints registry (pure): who receives what, with which secrets; filled from notifier.endpoints.

Records of `notifier.endpoints` (`EndpointSaved`, a tombstone deletes) are unsealed into `Endpoint`s as they are
applied. A unit that has registered no endpoint of its own falls back on the settings (`GRIDHUB_NOTIFIER_WEBHOOKS`,
then `GRIDHUB_NOTIFIER_DEFAULT_WEBHOOK`): a generic webhook for every notification type, signed with
`GRIDHUB_NOTIFIER_SIGNING_SECRET`; once a unit registers one, its own endpoints alone decide.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import ConsumerRecord
from pydantic import ValidationError

from schemas import (
    AlertKind,
    EndpointChannel,
    EndpointSaved,
    NotificationType,
    SlaAlertRaised,
    TaskDispatched,
    TaskRole,
    TaskUpdated,
)
from services.notifier.sealing import Sealer
from services.notifier.settings import NotifierSettings

log = logging.getLogger(__name__)
SETTINGS_ID_PREFIX = "settings:"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ALERT_TYPES = {
    AlertKind.WARNING: NotificationType.WARNING,
    AlertKind.OVERDUE: NotificationType.OVERDUE,
    AlertKind.ESCALATION: NotificationType.ESCALATION,
}


@dataclass(frozen=True)
class Endpoint:
    """One endpoint, unsealed: where to send, how, what, and with which secrets."""

    endpoint_id: str
    unit_code: str
    channel: EndpointChannel
    url: str
    url_display: str
    notification_types: frozenset[NotificationType]
    enabled: bool = True
    disabled_reason: str | None = None
    secret: str | None = None
    previous_secret: str | None = None
    previous_secret_until: datetime | None = None
    created_at: datetime = EPOCH
    updated_at: datetime = EPOCH
    from_settings: bool = False  # GRIDHUB_NOTIFIER_WEBHOOKS / DEFAULT_WEBHOOK: not managed through the API

    def receives(self, kind: NotificationType) -> bool:
        """Enabled and asking for this kind of notification."""
        return self.enabled and kind in self.notification_types


def url_display(url: str) -> str:
    """The URL without query and fragment (a robot's key is in its query)."""
    return url.split("#", 1)[0].split("?", 1)[0]


def notification_type(message: TaskDispatched | SlaAlertRaised | TaskUpdated) -> NotificationType:
    """Which filter entry a message falls under."""
    if isinstance(message, TaskDispatched):
        co_operating = message.role is TaskRole.CO_OPERATING
        return NotificationType.CO_OPERATING_TASK if co_operating else NotificationType.NEW_TASK
    if isinstance(message, SlaAlertRaised):
        return ALERT_TYPES[message.kind]
    return NotificationType.UPDATE


def recipients(message: TaskDispatched | SlaAlertRaised | TaskUpdated) -> list[str]:
    """The units a message goes to: the task's unit, and for an escalation also the unit it escalates to."""
    units = [message.unit_code]
    if isinstance(message, SlaAlertRaised) and message.escalate_to and message.escalate_to != message.unit_code:
        units.append(message.escalate_to)
    return units


def signing_secrets(endpoint: Endpoint, now: datetime) -> list[str]:
    """The secrets that sign now: the current one, then the previous one until its overlap ends."""
    secrets = [endpoint.secret] if endpoint.secret else []
    until = endpoint.previous_secret_until
    if endpoint.previous_secret and until is not None and now < until:
        secrets.append(endpoint.previous_secret)
    return secrets


def read_endpoint_record(value: bytes) -> EndpointSaved:
    """An EndpointSaved, leaving out notification types this version does not know (ValidationError otherwise)."""
    try:
        return EndpointSaved.model_validate_json(value)
    except ValidationError as exc:
        # A newer replica may save a type added after this one was built. Skipping the whole record would leave
        # this replica with the endpoint's old version (or none) until it is upgraded: keep the types it knows.
        if not all(e["loc"][:1] == ("notification_types",) and e["type"] == "enum" for e in exc.errors()):
            raise
        data = json.loads(value)
        known = {t.value for t in NotificationType}
        data["notification_types"] = [t for t in data["notification_types"] if t in known]
        return EndpointSaved.model_validate_json(json.dumps(data))  # none left: still refused (at least one)


def unseal(record: EndpointSaved, sealer: Sealer) -> Endpoint:
    """The endpoint a record describes, its URL and secrets unsealed (ValueError when the key does not open them)."""

    def opened(token: str | None) -> str | None:
        return None if token is None else sealer.unseal(token)

    return Endpoint(
        endpoint_id=record.endpoint_id,
        unit_code=record.unit_code,
        channel=record.channel,
        url=sealer.unseal(record.url_sealed),
        url_display=record.url_display,
        notification_types=frozenset(record.notification_types),
        enabled=record.enabled,
        disabled_reason=record.disabled_reason,
        secret=opened(record.secret_sealed),
        previous_secret=opened(record.previous_secret_sealed),
        previous_secret_until=record.previous_secret_until,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


@functools.lru_cache(maxsize=4096)
def configured_endpoint(unit_code: str, url: str, secret: str, *, default: bool) -> Endpoint:
    """The endpoint the settings give a unit (its own webhook, or the default one); cached (frozen, asked for every
    message of a unit without its own endpoint)."""
    return Endpoint(
        endpoint_id=f"{SETTINGS_ID_PREFIX}{'default' if default else unit_code}",
        unit_code=unit_code,
        channel=EndpointChannel.WEBHOOK,
        url=url,
        url_display=url_display(url),
        notification_types=frozenset(NotificationType),
        secret=secret,
        from_settings=True,
    )


class EndpointRegistry:
    """Every registered endpoint (by id and by unit), plus the settings' fallback webhooks."""

    def __init__(
        self,
        sealer: Sealer,
        *,
        webhooks: dict[str, str] | None = None,
        default_webhook: str | None = None,
        signing_secret: str | None = None,
    ) -> None:
        self.sealer = sealer
        self.webhooks = dict(webhooks or {})
        self.default_webhook = default_webhook
        self.signing_secret = signing_secret
        self._by_id: dict[str, Endpoint] = {}
        self._by_unit: dict[str, dict[str, Endpoint]] = {}
        self.records_rejected = 0

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, endpoint_id: str) -> Endpoint | None:
        """A registered endpoint by id."""
        return self._by_id.get(endpoint_id)

    def of_unit(self, unit_code: str) -> list[Endpoint]:
        """A unit's registered endpoints, oldest first."""
        return sorted(self._by_unit.get(unit_code, {}).values(), key=lambda e: (e.created_at, e.endpoint_id))

    def put(self, endpoint: Endpoint) -> None:
        """Set one endpoint (the latest version wins)."""
        self.remove(endpoint.endpoint_id)
        self._by_id[endpoint.endpoint_id] = endpoint
        self._by_unit.setdefault(endpoint.unit_code, {})[endpoint.endpoint_id] = endpoint

    def remove(self, endpoint_id: str) -> None:
        """Forget an endpoint (a tombstone)."""
        old = self._by_id.pop(endpoint_id, None)
        if old is not None:
            unit = self._by_unit.get(old.unit_code, {})
            unit.pop(endpoint_id, None)
            if not unit:
                self._by_unit.pop(old.unit_code, None)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one record of notifier.endpoints; a malformed or unopenable one is logged and skipped."""
        if value is None:
            if key is not None:
                self.remove(key.decode("utf-8", "replace"))
            return
        try:
            endpoint = unseal(read_endpoint_record(value), self.sealer)
        except (ValidationError, ValueError) as exc:
            self.records_rejected += 1
            log.error("endpoint record skipped", extra={"key": key, "error": str(exc)[:300]})
            return
        self.put(endpoint)

    def apply_records(self, records: Iterable[ConsumerRecord[bytes, bytes]]) -> None:
        """Apply a batch of records in order (TopicFollower's apply)."""
        for record in records:
            self.apply(record.key, record.value)

    def fallback(self, unit_code: str) -> Endpoint | None:
        """The settings' webhook for a unit without registered endpoints."""
        if self.signing_secret is None:
            return None
        if (url := self.webhooks.get(unit_code)) is not None:
            return configured_endpoint(unit_code, url, self.signing_secret, default=False)
        if self.default_webhook is not None:
            return configured_endpoint(unit_code, self.default_webhook, self.signing_secret, default=True)
        return None

    def targets(self, unit_code: str, kind: NotificationType) -> list[Endpoint]:
        """Where a notification of this kind for this unit goes: its enabled, matching endpoints, else the settings'."""
        own = self.of_unit(unit_code)
        if own:
            return [endpoint for endpoint in own if endpoint.receives(kind)]
        configured = self.fallback(unit_code)
        return [configured] if configured is not None else []


def registry_from_settings(settings: NotifierSettings) -> EndpointRegistry:
    """An empty registry with the settings' key and fallback webhooks."""
    return EndpointRegistry(
        Sealer(settings.secrets_key),
        webhooks=settings.webhooks,
        default_webhook=settings.default_webhook,
        signing_secret=settings.signing_secret,
    )
