"""Router settings (prefix GRIDHUB_ROUTER_)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gridhub.kernel.settings import CommonSettings, require_secret
from services.router.flows import FlowPolicy
from services.router.merging import MergePolicy


class RouterSettings(BaseSettings):
    """Settings of the router service."""

    model_config = SettingsConfigDict(env_prefix="GRIDHUB_ROUTER_", extra="ignore", frozen=True)

    common: CommonSettings = Field(default_factory=CommonSettings)
    port: int = Field(8102, description="Port of /metrics, /healthz, /readyz and the /triage API.")
    host: str = "127.0.0.1"
    duty_list: Path | None = Field(None, description="Duty-list JSON file; the packaged sample when unset.")
    dutylist_wait_s: float = Field(
        30.0,
        gt=0,
        description="Longest the router waits at start for the published duty list (config.dutylist) before "
        "routing on the configured one.",
    )
    merge_enabled: bool = Field(True, description="Link reports of one incident from several channels into one case.")
    merge_distance_m: float = Field(
        300.0, gt=0, description="Reports with coordinates at most this far apart share a place."
    )
    merge_window_h: float = Field(6.0, gt=0, description="Reports at most this many hours apart can be one incident.")
    merge_min_similarity: float = Field(
        0.25, ge=0, le=1, description="Text similarity (bigram Dice) to merge, same matter."
    )
    merge_cross_matter_similarity: float = Field(
        0.6, ge=0, le=1, description="Text similarity to merge when the matters differ or one is unknown."
    )
    merge_max_candidates: int = Field(200, ge=1, description="Reports kept per township in the open-cases table.")
    max_returns: int = Field(
        2, ge=1, description="Returns (退回) by primary units after which an event goes to the triage queue."
    )
    dispatcher_keys: dict[str, str] = Field(
        default_factory=dict,
        description="Command-centre dispatcher id -> key, as JSON, for the /triage API. Empty in dev mode means "
        "'dev-<dispatcher id>' is accepted; required in prod.",
    )
    command_wait_s: float = Field(
        10.0, gt=0, description="Longest a /triage command waits to come back through the queue's log (then 202)."
    )

    @model_validator(mode="after")
    def _safe_in_prod(self) -> RouterSettings:
        require_secret(self.common.mode, "GRIDHUB_ROUTER_DISPATCHER_KEYS", self.dispatcher_keys)
        return self

    def flow_policy(self) -> FlowPolicy:
        """The flows' settings."""
        return FlowPolicy(max_returns=self.max_returns)

    def merge_policy(self) -> MergePolicy:
        """The merging policy these settings describe."""
        return MergePolicy(
            distance_m=self.merge_distance_m,
            window=timedelta(hours=self.merge_window_h),
            min_similarity=self.merge_min_similarity,
            cross_matter_similarity=self.merge_cross_matter_similarity,
            max_candidates=self.merge_max_candidates,
        )
