"""Adapter settings (prefix GRIDHUB_ADAPTERS_)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gridhub.kernel.settings import CommonSettings, require_secret

DEV_SOURCE_KEYS = {
    "12345": "dev-12345-key",
    "110": "dev-110-key",
    "petition": "dev-petition-key",
    "gridapp": "dev-gridapp-key",
}
# The WeChat official account's callback secrets in dev mode; prod refuses them. An EncodingAESKey is
# 43 letters and digits, so the dev one cannot carry the "dev-" prefix and is refused by value.
DEV_WECHAT_TOKEN = "dev-wechat-token"
DEV_WECHAT_APP_ID = "dev-wechat-appid"
DEV_WECHAT_AES_KEY = "GridHubDevWeChatEncodingAESKey0123456789abc"


@dataclass(frozen=True)
class WeChatAccount:
    """The official account's server settings (服务器配置) the callback routes use."""

    token: str
    app_id: str
    encoding_aes_key: str
    allow_plaintext: bool


class AdaptersSettings(BaseSettings):
    """Settings of the HTTP adapters."""

    # populate_by_name: duty_list's env names are aliases, yet AdaptersSettings(duty_list=...) must still work.
    model_config = SettingsConfigDict(
        env_prefix="GRIDHUB_ADAPTERS_", extra="ignore", frozen=True, populate_by_name=True
    )

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
    batch_max_items: int = Field(500, ge=1, le=10_000, description="Most reports in one POST .../batch.")
    batch_max_bytes: int = Field(8 * 1_048_576, gt=0, description="Largest .../batch request body, in bytes.")
    index_ready_timeout_s: float = Field(
        60.0, gt=0, description="Longest /readyz waits for the report index and task owners to catch up, then serves."
    )
    index_provisional_ttl_s: float = Field(
        120.0,
        gt=0,
        description="How long this replica answers a repeat from its own acceptance before intake has indexed it.",
    )
    index_cache_mib: int = Field(8, ge=1, description="SQLite page cache of the report index, in MiB.")
    duty_list: Path | None = Field(
        None,
        validation_alias=AliasChoices("GRIDHUB_ADAPTERS_DUTY_LIST", "GRIDHUB_ROUTER_DUTY_LIST"),
        description="Duty-list JSON file Open311 lists services from; the router's file by default, else the sample.",
    )
    public_base_url: str | None = Field(
        None, description="Base URL units reach the adapters at (for photo links); http://host:port when unset."
    )
    # Optional: a county without an official account sets none of the three (its WeChat routes answer 404).
    wechat_token: str | None = Field(
        None,
        min_length=3,
        max_length=32,
        description="Token (令牌) entered in the official account's server settings; signs every callback.",
    )
    wechat_app_id: str | None = Field(
        None, min_length=1, description="AppID of the official account; safe-mode messages carry it."
    )
    wechat_encoding_aes_key: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9]{43}$",
        description="EncodingAESKey (消息加解密密钥, 43 characters) for safe mode (安全模式).",
    )
    wechat_allow_plaintext: bool | None = Field(
        None,
        description="Accept plaintext-mode (明文模式) callbacks, whose bodies are unsigned; unset: only in dev mode.",
    )
    wechat_freshness_s: float = Field(
        300, gt=0, description="A callback whose timestamp is further than this from now is refused (replay)."
    )
    wechat_follow_up_window_s: float = Field(
        1800, gt=0, description="A citizen's photo or location within this long of their report adds to it."
    )
    wechat_sessions: int = Field(
        10_000, ge=1, description="Citizens' open reports remembered for follow-ups (LRU, per adapters replica)."
    )

    @model_validator(mode="after")
    def _safe_in_prod(self) -> AdaptersSettings:
        require_secret(self.common.mode, "GRIDHUB_ADAPTERS_SOURCE_KEYS", self.source_keys)
        require_secret(self.common.mode, "GRIDHUB_ADAPTERS_UNIT_KEYS", self.unit_keys)
        self._wechat_complete_in_prod()
        if self.source_hmac_secrets:
            require_secret(self.common.mode, "GRIDHUB_ADAPTERS_SOURCE_HMAC_SECRETS", self.source_hmac_secrets)
        return self

    @field_validator("wechat_token", "wechat_app_id", "wechat_encoding_aes_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # Compose passes ${VAR:-} and a Secret may hold an empty key: both mean "not set", not a bad value.
        return None if value == "" else value

    def _wechat_complete_in_prod(self) -> None:
        values = {
            "GRIDHUB_ADAPTERS_WECHAT_TOKEN": self.wechat_token,
            "GRIDHUB_ADAPTERS_WECHAT_APP_ID": self.wechat_app_id,
            "GRIDHUB_ADAPTERS_WECHAT_ENCODING_AES_KEY": self.wechat_encoding_aes_key,
        }
        given = {name: value for name, value in values.items() if value is not None}
        if self.common.mode == "dev" or not given:
            return  # dev fills in what is missing; prod without any of them has no WeChat channel
        missing = [name for name in values if name not in given]
        if missing:
            raise ValueError(
                f"WeChat channel half configured: {', '.join(missing)} unset while {', '.join(given)} set; "
                "set all three of the official account's server settings, or none (no WeChat channel)"
            )
        for name, value in given.items():
            require_secret(self.common.mode, name, value)
        if self.wechat_encoding_aes_key == DEV_WECHAT_AES_KEY:
            raise ValueError("GRIDHUB_ADAPTERS_WECHAT_ENCODING_AES_KEY must be set to the account's key in prod mode")

    @property
    def wechat(self) -> WeChatAccount | None:
        """The official account's server settings, or None when this county has no WeChat channel (prod only)."""
        dev = self.common.mode == "dev"
        if not dev and self.wechat_token is None:  # complete or absent, as the validator ensured
            return None
        return WeChatAccount(
            token=self.wechat_token or DEV_WECHAT_TOKEN,
            app_id=self.wechat_app_id or DEV_WECHAT_APP_ID,
            encoding_aes_key=self.wechat_encoding_aes_key or DEV_WECHAT_AES_KEY,
            # Plaintext bodies are unsigned (only the query is): off in prod unless asked for.
            allow_plaintext=dev if self.wechat_allow_plaintext is None else self.wechat_allow_plaintext,
        )
