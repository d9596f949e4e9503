"""WeChat settings: dev values in dev mode only; optional in prod (all three or none); the key's shape checked."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gridhub.kernel.settings import CommonSettings
from services.adapters.settings import DEV_WECHAT_AES_KEY, AdaptersSettings, WeChatAccount

PROD = CommonSettings(mode="prod", kafka_replication_factor=3)
KEYS = {"source_keys": {"12345": "k-12345-8d1f"}, "unit_keys": {"PA-CG": "k-cg-2a9b"}}
WECHAT = {
    "wechat_token": "haiyanWX2026",
    "wechat_app_id": "wx5823bf96d3bd56c7",
    "wechat_encoding_aes_key": "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR",
}
REAL = {**KEYS, **WECHAT}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GRIDHUB_MODE", "GRIDHUB_ADAPTERS_WECHAT_TOKEN", "GRIDHUB_ADAPTERS_WECHAT_APP_ID"):
        monkeypatch.delenv(name, raising=False)
    for name in ("GRIDHUB_ADAPTERS_WECHAT_ENCODING_AES_KEY", "GRIDHUB_ADAPTERS_WECHAT_ALLOW_PLAINTEXT"):
        monkeypatch.delenv(name, raising=False)


def test_dev_mode_has_working_defaults() -> None:
    settings = AdaptersSettings(common=CommonSettings(mode="dev"))
    assert settings.wechat == WeChatAccount("dev-wechat-token", "dev-wechat-appid", DEV_WECHAT_AES_KEY, True)
    assert len(DEV_WECHAT_AES_KEY) == 43
    assert (settings.wechat_freshness_s, settings.wechat_follow_up_window_s) == (300, 1800)


def test_prod_accepts_the_accounts_own_settings_and_refuses_plaintext_by_default() -> None:
    account = AdaptersSettings(common=PROD, **REAL).wechat
    assert account == WeChatAccount(
        "haiyanWX2026", "wx5823bf96d3bd56c7", WECHAT["wechat_encoding_aes_key"], allow_plaintext=False
    )


def test_plaintext_can_be_allowed_in_prod_and_refused_in_dev() -> None:
    prod = AdaptersSettings(common=PROD, wechat_allow_plaintext=True, **REAL).wechat
    dev = AdaptersSettings(common=CommonSettings(mode="dev"), wechat_allow_plaintext=False).wechat
    assert (prod and prod.allow_plaintext, dev and dev.allow_plaintext) == (True, False)


def test_prod_without_an_official_account_starts_with_no_wechat_channel() -> None:
    assert AdaptersSettings(common=PROD, **KEYS).wechat is None


def test_empty_values_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    # What compose's ${VAR:-} hands over for a county that exported none of them.
    for name in ("TOKEN", "APP_ID", "ENCODING_AES_KEY"):
        monkeypatch.setenv(f"GRIDHUB_ADAPTERS_WECHAT_{name}", "")
    assert AdaptersSettings(common=PROD, **KEYS).wechat is None
    dev = AdaptersSettings(common=CommonSettings(mode="dev")).wechat
    assert dev is not None and dev.token == "dev-wechat-token"


@pytest.mark.parametrize("left_out", sorted(WECHAT))
def test_prod_refuses_a_half_configured_account(left_out: str) -> None:
    given = {name: value for name, value in WECHAT.items() if name != left_out}
    with pytest.raises(ValidationError, match=f"half configured: GRIDHUB_ADAPTERS_{left_out.upper()} unset"):
        AdaptersSettings(common=PROD, **KEYS, **given)


def test_prod_half_configured_message_names_what_is_missing() -> None:
    with pytest.raises(ValidationError) as caught:
        AdaptersSettings(common=PROD, **KEYS, wechat_token="haiyanWX2026")
    message = str(caught.value)
    assert "GRIDHUB_ADAPTERS_WECHAT_APP_ID, GRIDHUB_ADAPTERS_WECHAT_ENCODING_AES_KEY unset" in message
    assert "GRIDHUB_ADAPTERS_WECHAT_TOKEN set" in message


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"wechat_token": "dev-wechat-token"}, "GRIDHUB_ADAPTERS_WECHAT_TOKEN"),
        ({"wechat_app_id": "dev-wechat-appid"}, "GRIDHUB_ADAPTERS_WECHAT_APP_ID"),
        ({"wechat_encoding_aes_key": DEV_WECHAT_AES_KEY}, "GRIDHUB_ADAPTERS_WECHAT_ENCODING_AES_KEY"),
    ],
)
def test_prod_refuses_dev_values(override: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AdaptersSettings(common=PROD, **{**REAL, **override})


@pytest.mark.parametrize("key", ["REPLACE-ME", WECHAT["wechat_encoding_aes_key"][:42], "=" * 43])
def test_encoding_aes_key_shape_checked(key: str) -> None:
    with pytest.raises(ValidationError, match="wechat_encoding_aes_key"):
        AdaptersSettings(common=CommonSettings(mode="dev"), wechat_encoding_aes_key=key)


def test_environment_variables_configure_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDHUB_ADAPTERS_WECHAT_TOKEN", "haiyanWX2026")
    monkeypatch.setenv("GRIDHUB_ADAPTERS_WECHAT_FOLLOW_UP_WINDOW_S", "600")
    settings = AdaptersSettings(common=CommonSettings(mode="dev"))
    assert settings.wechat is not None
    assert (settings.wechat.token, settings.wechat.app_id) == ("haiyanWX2026", "dev-wechat-appid")  # dev fills in
    assert settings.wechat_follow_up_window_s == 600
