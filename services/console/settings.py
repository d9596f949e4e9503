"""Console settings (prefix GRIDHUB_CONSOLE_)."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gridhub.kernel.settings import CommonSettings, require_secret


class ConsoleSettings(BaseSettings):
    """Where the other services answer, how often to ask them, and the console's own port."""

    model_config = SettingsConfigDict(env_prefix="GRIDHUB_CONSOLE_", extra="ignore", frozen=True)

    common: CommonSettings = Field(default_factory=CommonSettings)
    port: int = Field(8105, description="Port of the ops page (/ops), its JSON (/ops/api/series) and /metrics.")
    host: str = Field("127.0.0.1", description="The page shows the triage queue: keep it on loopback or a closed net.")
    adapters_url: str = "http://127.0.0.1:8000"
    intake_url: str = "http://127.0.0.1:8101"
    router_url: str = "http://127.0.0.1:8102"
    sla_url: str = "http://127.0.0.1:8103"
    notifier_url: str = "http://127.0.0.1:8104"
    poll_interval_s: float = Field(5.0, ge=0.2, le=60, description="How often every service's /metrics is read.")
    window_s: float = Field(900.0, ge=60, le=6 * 3600, description="How much history the charts keep (memory bound).")
    rate_window_s: float = Field(60.0, ge=5, le=900, description="Rates (per minute, success, latency) over this.")
    summary_every_s: float = Field(30.0, ge=1, description="How often the week's summary (/reports/summary) is read.")
    scrape_timeout_s: float = Field(2.0, gt=0, le=30)
    dispatcher_key: SecretStr = Field(
        SecretStr("dev-console"),
        description="Bearer key the console reads the router's triage queue with (GRIDHUB_ROUTER_DISPATCHER_KEYS).",
    )

    @model_validator(mode="after")
    def _prod_secrets(self) -> ConsoleSettings:
        require_secret(self.common.mode, "GRIDHUB_CONSOLE_DISPATCHER_KEY", self.dispatcher_key.get_secret_value())
        return self

    def targets(self) -> dict[str, str]:
        """Service name → base URL, for every service whose /metrics the console reads."""
        urls = (self.adapters_url, self.intake_url, self.router_url, self.sla_url, self.notifier_url)
        names = ("adapters", "intake", "router", "sla", "notifier")
        return {name: url.rstrip("/") for name, url in zip(names, urls, strict=True)}
