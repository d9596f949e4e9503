"""Adapter settings (prefix GRIDHUB_ADAPTERS_)."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gridhub.kernel.settings import CommonSettings, require_secret

DEV_SOURCE_KEYS = {
    "12345": "dev-12345-key",
    "110": "dev-110-key",
    "petition": "dev-petition-key",
    "gridapp": "dev-gridapp-key",
}


class AdaptersSettings(BaseSettings):
    """Settings of the HTTP adapters."""

    model_config = SettingsConfigDict(env_prefix="GRIDHUB_ADAPTERS_", extra="ignore", frozen=True)

    common: CommonSettings = Field(default_factory=CommonSettings)
    port: int = 8000
    host: str = "127.0.0.1"
    source_keys: dict[str, str] = Field(
        default_factory=lambda: dict(DEV_SOURCE_KEYS), description="Channel -> API key, as JSON."
    )
    source_hmac_secrets: dict[str, str] = Field(
        default_factory=dict,
        description="Channel -> HMAC secret, as JSON: a source may sign (X-Timestamp, X-Signature) instead of a key.",
    )
    unit_keys: dict[str, str] = Field(
        default_factory=dict,
        description="Unit code -> API key, as JSON. Empty in dev mode means 'dev-<unit code>' is accepted.",
    )
    max_body_bytes: int = Field(1_048_576, gt=0)
    max_photo_bytes: int = Field(10 * 1_048_576, gt=0, description="Largest photo accepted, in bytes.")
    max_photos: int = Field(9, ge=1, le=50, description="Most photos on one grid report.")
    public_base_url: str | None = Field(
        None, description="Base URL units reach the adapters at (for photo links); http://host:port when unset."
    )

    @model_validator(mode="after")
    def _safe_in_prod(self) -> AdaptersSettings:
        require_secret(self.common.mode, "GRIDHUB_ADAPTERS_SOURCE_KEYS", self.source_keys)
        require_secret(self.common.mode, "GRIDHUB_ADAPTERS_UNIT_KEYS", self.unit_keys)
        if self.source_hmac_secrets:
            require_secret(self.common.mode, "GRIDHUB_ADAPTERS_SOURCE_HMAC_SECRETS", self.source_hmac_secrets)
        return self
