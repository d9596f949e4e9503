"""SLA settings (prefix GRIDHUB_SLA_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from gridhub.kernel.settings import CommonSettings


class SlaSettings(BaseSettings):
    """Settings of the SLA service."""

    model_config = SettingsConfigDict(env_prefix="GRIDHUB_SLA_", extra="ignore", frozen=True)

    common: CommonSettings = Field(default_factory=CommonSettings)
    port: int = Field(8103, description="Port of /tasks/{id}, /metrics, /healthz, /readyz.")
    host: str = "127.0.0.1"
    calendar_files: tuple[Path, ...] = Field(
        (), description="holiday-cn JSON files that fill or override years of the statutory calendar."
    )
