"""Notifier settings (prefix GRIDHUB_NOTIFIER_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gridhub.kernel.settings import CommonSettings, require_secret
from schemas.dutylist import load_duty_list
from services.notifier.outbound import allow_entry
from services.notifier.sealing import sealer_keys
from services.notifier.signing import secret_bytes

# Known to everyone: fine for `make up` and tests, refused in prod mode.
DEV_SIGNING_SECRET = "whsec_ZGV2LWdyaWRodWItc2lnbmluZy1zZWNyZXQtMzJieXRlcyE="
# Fernet key sealing endpoints' secrets on notifier.endpoints in dev mode (base64 of gridhub-dev-notifier-secrets-key).
DEV_SECRETS_KEY = "Z3JpZGh1Yi1kZXYtbm90aWZpZXItc2VjcmV0cy1rZXk="


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
        (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0),
        description="Waits before each retry after the first (immediate) attempt: 5 s, 5 min, 30 min, 2 h, 5 h, "
        "10 h, 10 h (Svix's schedule); Retry-After lengthens a wait, never shortens it.",
    )
    timeout_s: float = Field(10.0, gt=0, description="One attempt's time limit (connection, request and answer).")
    connect_timeout_s: float = Field(
        5.0, gt=0, description="Time limit of making a connection (TLS handshake included), within timeout_s."
    )
    concurrency: int = Field(64, ge=1, le=1000, description="Deliveries in flight per worker.")
    endpoint_concurrency: int = Field(32, ge=1, le=1000, description="Attempts in flight per endpoint.")
    endpoint_rate_per_s: float = Field(1000.0, gt=0, description="Attempts per second per endpoint (token bucket).")
    endpoint_burst: int = Field(200, ge=1, description="Token bucket size per endpoint.")
    slow_down_s: float = Field(
        30.0, ge=0, description="After a 429, 408 or 5xx, attempts to that endpoint go one at a time for this long."
    )
    disable_after_s: float = Field(
        3 * 86400.0, gt=0, description="An endpoint failing every attempt for this long is disabled (with an alert)."
    )
    fetch_max_wait_ms: int = Field(
        10,
        ge=1,
        le=5000,
        description="Longest the notifier's input fetch waits for data; overrides GRIDHUB_KAFKA_FETCH_MAX_WAIT_MS for "
        "it. Short: a broker answering a fetch only when its wait runs out (Tansu) holds each task that long before "
        "its webhook (measured on Tansu: 100 ms gave ~33 ms p50 produce-to-consume, 5-10 ms gave 4-16 ms).",
    )
    record_every_ms: int = Field(
        100,
        ge=1,
        le=5000,
        description="Attempts are written to the outbox (one transaction per partition) and their records produced "
        "in rounds this far apart: a crash repeats at most this much of attempts (same webhook-ids). At 20 ms, up to "
        "300 commits/s with six partitions cost more than the rows they wrote.",
    )
    api_keys: dict[str, str] = Field(
        default_factory=lambda: {"dev-dispatcher-key": "dispatcher", "dev-operator-key": "operator"},
        description="Bearer key -> who, for the deliveries query and replay API (dev keys refused in prod).",
    )
    # Endpoints units register (issue 6): who they are, how their secrets are sealed, where the hub may connect.
    unit_keys: dict[str, str] = Field(
        default_factory=dict,
        description="Unit code -> API key, as JSON (like the adapters'). Empty in dev mode means 'dev-<unit code>'.",
    )
    secrets_key: str = Field(
        DEV_SECRETS_KEY,
        description="Fernet key(s) sealing endpoints' URLs and secrets on notifier.endpoints, comma-separated: "
        "the first seals, every one unseals (key rotation). Generate: Fernet.generate_key().",
    )
    outbound_allowlist: tuple[str, ...] = Field(
        (),
        description="Private addresses the notifier may still POST to, as JSON: CIDRs (10.1.0.0/16) or host:port "
        "(receiver.local:9000, 127.0.0.1:8089). The hosts of WEBHOOKS and DEFAULT_WEBHOOK are always allowed.",
    )
    rotation_overlap_h: float = Field(
        24.0, ge=0, le=24 * 30, description="Default hours the old secret keeps signing after a rotation."
    )
    task_link_template: str = Field(
        "http://127.0.0.1:8103/tasks/{task_id}",
        description="Link on WeCom/DingTalk cards, {task_id} filled in (the SLA service's task view by default).",
    )
    endpoint_ready_timeout_s: float = Field(
        60.0, gt=0, description="Longest /readyz waits for notifier.endpoints to be read, then serves."
    )
    command_centre: str | None = Field(
        None,
        description="Unit code of the county command centre, who is told of deliveries given up and endpoints "
        "disabled (deliveries.alerts); None: the duty list's (GRIDHUB_NOTIFIER_DUTY_LIST, else the packaged one).",
    )
    duty_list: Path | None = Field(None, description="Duty list file naming the command centre (None: the packaged).")
    outbox_retention_days: float = Field(
        30.0,
        gt=0,
        description="Finished deliveries (and their attempts) older than this are removed from the outbox; "
        "deliveries.results keeps every attempt for its own retention (90 days).",
    )

    @model_validator(mode="after")
    def _safe_in_prod(self) -> NotifierSettings:
        secret_bytes(self.signing_secret)
        require_secret(
            self.common.mode,
            "GRIDHUB_NOTIFIER_SIGNING_SECRET",
            "" if self.signing_secret == DEV_SIGNING_SECRET else self.signing_secret,
        )
        require_secret(self.common.mode, "GRIDHUB_NOTIFIER_UNIT_KEYS", self.unit_keys)
        require_secret(
            self.common.mode,
            "GRIDHUB_NOTIFIER_SECRETS_KEY",
            "" if DEV_SECRETS_KEY in self.secrets_key.split(",") else self.secrets_key,
        )
        sealer_keys(self.secrets_key)
        for entry in self.outbound_allowlist:
            allow_entry(entry)
        require_secret(self.common.mode, "GRIDHUB_NOTIFIER_API_KEYS", {k: k for k in self.api_keys})
        return self

    def outbox_dir(self) -> Path:
        """Where the outbox files live (one per input partition)."""
        return self.common.data_dir / "notifier"

    def command_centre_unit(self) -> str:
        """The command centre's unit code: the setting, else the duty list's."""
        if self.command_centre:
            return self.command_centre
        return load_duty_list(self.duty_list).county.command_centre

    def endpoint_for(self, unit_code: str) -> str | None:
        """The webhook URL configured for a unit, else the default one."""
        return self.webhooks.get(unit_code, self.default_webhook)
