"""Seal and unseal endpoints' secrets for notifier.endpoints (Fernet: AES-128-CBC + HMAC-SHA256, authenticated)."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


def sealer_keys(value: str) -> MultiFernet:
    """The Fernet keys of a comma-separated setting: the first seals, every one unseals; ValueError when malformed."""
    keys = [part.strip() for part in value.split(",") if part.strip()]
    if not keys:
        raise ValueError("GRIDHUB_NOTIFIER_SECRETS_KEY is empty")
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError as exc:
        raise ValueError(
            "GRIDHUB_NOTIFIER_SECRETS_KEY must be Fernet keys (32 bytes, URL-safe base64), comma-separated"
        ) from exc


class Sealer:
    """Seals text into a Fernet token and back; a token of another key (or tampered) fails to unseal."""

    def __init__(self, keys: str) -> None:
        self._fernet = sealer_keys(keys)

    def seal(self, text: str) -> str:
        """The sealed token of a text."""
        return self._fernet.encrypt(text.encode("utf-8")).decode("ascii")

    def unseal(self, token: str) -> str:
        """The text of a sealed token; ValueError when no key opens it."""
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError) as exc:
            raise ValueError("sealed value does not open with GRIDHUB_NOTIFIER_SECRETS_KEY") from exc
