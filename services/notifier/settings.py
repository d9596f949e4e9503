"""Notifier settings (prefix GRIDHUB_NOTIFIER_)."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gridhub.kernel.settings import CommonSettings, require_secret
from services.notifier.signing import secret_bytes

# Known to everyone: fine for `make up` and tests, refused in prod mode.
DEV_SIGNING_SECRET = "whsec_ZGV2LWdyaWRodWItc2lnbmluZy1zZWNyZXQtMzJieXRlcyE="


class NotifierSettings(BaseSettings):
    """Settings of the notifier service."""

    model_config = SettingsConfigDict(env_prefix="GRIDHUB_NOTIFIER_", extra="ignore", frozen=True)

    common: CommonSettings = Field(default_factory=CommonSettings)
    port: int = Field(8104, description="Port of /metrics, /healthz, /readyz.")
    host: str = "127.0.0.1"
    webhooks: dict[str, str] = Field(default_factory=dict, description="Unit code -> webhook URL, as JSON.")
    default_webhook: str | None = Field(None, description="URL for units without their own (demo receiver).")
    signing_secret: str = Field(DEV_SIGNING_SECRET, description="Standard Webhooks secret, whsec_<base64>.")
    retry_schedule_s: tuple[float, ...] = Field(
        (1.0, 5.0, 30.0, 120.0), description="Waits before each retry after the first attempt."
    )
    timeout_s: float = Field(10.0, gt=0)
    concurrency: int = Field(64, ge=1, le=1000, description="Deliveries in flight per worker.")

    @model_validator(mode="after")
    def _safe_in_prod(self) -> NotifierSettings:
        secret_bytes(self.signing_secret)
        require_secret(
            self.common.mode,
            "GRIDHUB_NOTIFIER_SIGNING_SECRET",
            "" if self.signing_secret == DEV_SIGNING_SECRET else self.signing_secret,
        )
        return self

    def endpoint_for(self, unit_code: str) -> str | None:
        """The webhook URL configured for a unit, else the default one."""
        return self.webhooks.get(unit_code, self.default_webhook)
