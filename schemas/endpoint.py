"""Units' notification endpoints (`notifier.endpoints`, compacted, keyed by endpoint id; a tombstone deletes one).

Every secret travels sealed: the URL (a WeCom robot's `key=`, a DingTalk robot's `access_token=` are credentials),
the Standard Webhooks signing secrets and a DingTalk robot's signing secret are Fernet tokens made with the
notifier's `GRIDHUB_NOTIFIER_SECRETS_KEY`; only `url_display` (scheme, host, port and path, no query) is in clear.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from schemas.base import AwareDatetime, Message, UlidStr


class EndpointChannel(StrEnum):
    """How an endpoint is spoken to: a generic JSON webhook, or a WeCom / DingTalk group robot."""

    WEBHOOK = "webhook"
    WECOM = "wecom"
    DINGTALK = "dingtalk"


class NotificationType(StrEnum):
    """What an endpoint asks to receive (its filter)."""

    NEW_TASK = "task.new"  # a task dispatched to the unit as primary (or summoned) unit
    CO_OPERATING_TASK = "task.co-operating"  # a task dispatched to it as co-operating unit
    WARNING = "alert.warning"  # 预警: a clock is 50 % / 80 % used
    OVERDUE = "alert.overdue"  # 超期
    ESCALATION = "alert.escalation"  # 升级督办
    UPDATE = "task.update"  # an update on one of its tasks
    DELIVERY_ALERT = "alert.delivery"  # 投递告警 (command centre): a delivery given up, an endpoint disabled


class EndpointSaved(Message):
    """An endpoint as it now is: registered, changed, rotated, enabled or disabled (the latest record wins)."""

    endpoint_id: UlidStr = Field(description="The endpoint's id; also the record key.")
    unit_code: str = Field(min_length=1, max_length=64, description="The unit that owns it.")
    channel: EndpointChannel
    url_sealed: str = Field(description="The URL, sealed (Fernet): robot URLs carry their credentials.")
    url_display: str = Field(description="The URL without its query (scheme://host[:port]/path), for people.")
    notification_types: tuple[NotificationType, ...] = Field(
        min_length=1, description="What the endpoint receives; at least one type."
    )
    enabled: bool = True
    disabled_reason: str | None = Field(
        None, max_length=500, description="Why it is disabled (by its unit, or by the notifier after a 410)."
    )
    secret_sealed: str | None = Field(
        None,
        description="Sealed signing secret: whsec_<base64> for webhooks (Standard Webhooks), the robot's SEC... "
        "secret for DingTalk (加签); None for WeCom and for a DingTalk robot without 加签.",
    )
    previous_secret_sealed: str | None = Field(
        None, description="The secret before the last rotation, sealed; signs too until previous_secret_until."
    )
    previous_secret_until: AwareDatetime | None = Field(None, description="End of the rotation overlap.")
    created_at: AwareDatetime
    updated_at: AwareDatetime
    updated_by: str = Field(description="Who made this change: the unit, or `notifier` (automatic disable).")

    @model_validator(mode="after")
    def _consistent(self) -> EndpointSaved:
        if (self.previous_secret_sealed is None) != (self.previous_secret_until is None):
            raise ValueError("previous_secret_sealed and previous_secret_until go together")
        if self.enabled and self.disabled_reason is not None:
            raise ValueError("an enabled endpoint has no disabled_reason")
        return self
