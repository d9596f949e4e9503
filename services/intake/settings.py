"""Intake settings (prefix GRIDHUB_INTAKE_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from gridhub.kernel.settings import CommonSettings


class IntakeSettings(BaseSettings):
    """Settings of the intake service."""

    model_config = SettingsConfigDict(env_prefix="GRIDHUB_INTAKE_", extra="ignore", frozen=True)

    common: CommonSettings = Field(default_factory=CommonSettings)
    port: int = Field(8101, description="Port of /metrics, /healthz, /readyz.")
    host: str = "127.0.0.1"
