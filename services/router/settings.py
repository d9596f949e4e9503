"""Router settings (prefix GRIDHUB_ROUTER_)."""

from __future__ import annotations

import socket
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
    port: int = Field(8102, description="Port of /metrics, /healthz, /readyz.")
    host: str = "127.0.0.1"
    duty_list: Path | None = Field(None, description="Duty-list JSON file; the packaged sample when unset.")
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
        10.0, gt=0, description="Longest a /triage command waits for the queue's owner to apply it (then 202)."
    )
    advertised_host: str | None = Field(
        None,
        description="Host other router replicas reach this one's web server at (forwarding /triage to the queue's "
        "owner); the bind host, or this machine's address when bound to all interfaces.",
    )

    @model_validator(mode="after")
    def _safe_in_prod(self) -> RouterSettings:
        require_secret(self.common.mode, "GRIDHUB_ROUTER_DISPATCHER_KEYS", self.dispatcher_keys)
        return self

    def canonical_url(self) -> str:
        """The URL of this replica's web server as the other replicas reach it."""
        host = self.advertised_host
        if host is None:
            host = self.host
            if host in ("0.0.0.0", "::", ""):
                try:
                    host = socket.gethostbyname(socket.gethostname())
                except OSError:
                    host = socket.gethostname()
        return f"http://{host}:{self.port}"

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
