"""Settings shared by every service; each service adds its own Settings with its own prefix."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Mode = Literal["dev", "prod"]

# Tansu completes a group's first join only after half the member's session timeout
# (6 s -> 3 s, Faust's 60 s default -> 30 s), so dev and tests keep it short; real Kafka
# clusters use the Kafka 3.x client default.
DEV_SESSION_TIMEOUT_S = 6.0
PROD_SESSION_TIMEOUT_S = 45.0


class CommonSettings(BaseSettings):
    """Settings every GridHub process reads (prefix GRIDHUB_, bootstrap also from KAFKA_BOOTSTRAP)."""

    model_config = SettingsConfigDict(env_prefix="GRIDHUB_", extra="ignore", frozen=True)

    mode: Mode = Field("dev", description="dev allows demo secrets; prod rejects unsafe defaults.")
    kafka_bootstrap: str = Field(
        "127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP", "GRIDHUB_KAFKA_BOOTSTRAP"),
        description="Comma-separated host:port list of the Kafka cluster.",
    )
    kafka_idempotence: bool = Field(
        True, description="Idempotent producers (acks=all). Real Kafka: on. Embedded Tansu: off (no InitProducerId)."
    )
    kafka_session_timeout_s: float | None = Field(
        None, gt=0, description="Consumer group session timeout; default 6 s in dev, 45 s in prod."
    )
    kafka_linger_ms: int = Field(5, ge=0, le=1000, description="Producer linger: batch messages for this long.")
    kafka_fetch_max_wait_ms: int = Field(
        100, ge=1, le=5000, description="Longest a consumer fetch waits for data (Faust's own default is 1500)."
    )
    kafka_batch_max_records: int = Field(
        1000, ge=1, le=100_000, description="Most records a batch worker reads at once (getmany max_records)."
    )
    kafka_batch_timeout_ms: int = Field(
        200, ge=1, le=60_000, description="Longest a batch worker's read waits when nothing is buffered."
    )
    kafka_replication_factor: int = Field(1, ge=1, description="Replication factor for topics the hub creates.")
    topic_prefix: str = Field(
        "gridhub.", pattern=r"^[A-Za-z0-9._-]*$", description="Prefix of every topic and group id."
    )
    data_dir: Path = Field(Path("var"), description="Where services keep local state (tables, attachments).")
    log_level: str = "INFO"
    log_json: bool = True
    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop", description="Event loop of every service process: uvloop (libuv, the default) or asyncio's own."
    )

    @property
    def session_timeout_s(self) -> float:
        """The consumer session timeout in force."""
        if self.kafka_session_timeout_s is not None:
            return self.kafka_session_timeout_s
        return DEV_SESSION_TIMEOUT_S if self.mode == "dev" else PROD_SESSION_TIMEOUT_S

    def topic(self, name: str) -> str:
        """Full topic name for a catalogue name."""
        return f"{self.topic_prefix}{name}"

    def group(self, service: str) -> str:
        """Consumer group id of a service."""
        return f"{self.topic_prefix}{service}"

    @model_validator(mode="after")
    def _prod_is_safe(self) -> CommonSettings:
        if self.mode == "prod" and self.kafka_replication_factor < 3:
            raise ValueError("GRIDHUB_KAFKA_REPLICATION_FACTOR must be at least 3 in prod mode")
        return self


def require_secret(mode: Mode, name: str, value: str | dict[str, str]) -> None:
    """Raise when a secret (or any secret in a mapping) is empty outside dev mode."""
    if mode == "dev":
        return
    values = value.values() if isinstance(value, dict) else [value]
    if not value or any(not v or v.startswith("dev-") for v in values):
        raise ValueError(f"{name} must be set to real secrets in prod mode (empty or dev- values refused)")
