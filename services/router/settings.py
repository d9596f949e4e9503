"""Router settings (prefix GRIDHUB_ROUTER_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from gridhub.kernel.settings import CommonSettings


class RouterSettings(BaseSettings):
    """Settings of the router service."""

    model_config = SettingsConfigDict(env_prefix="GRIDHUB_ROUTER_", extra="ignore", frozen=True)

    common: CommonSettings = Field(default_factory=CommonSettings)
    port: int = Field(8102, description="Port of /metrics, /healthz, /readyz.")
    host: str = "127.0.0.1"
    duty_list: Path | None = Field(None, description="Duty-list JSON file; the packaged sample when unset.")
