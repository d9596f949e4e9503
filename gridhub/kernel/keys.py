"""Bearer keys of the hub's HTTP APIs: who a presented key belongs to, compared in constant time; pure."""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping

DEV_PREFIX = "dev-"


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:]
    return None


def holder_of_key(keys: Mapping[str, str], presented: str | None, dev_mode: bool) -> str | None:
    """Who (a unit, a dispatcher) the presented key belongs to in `keys` (who → key), or None. Dev mode with no keys
    configured accepts `dev-<who>`."""
    if not presented:
        return None
    found = None
    for holder, expected in keys.items():
        # Compare against every key so timing does not reveal which holder's key was close.
        if hmac.compare_digest(expected.encode(), presented.encode()):
            found = holder
    if (
        found is None
        and dev_mode
        and not keys
        and presented.startswith(DEV_PREFIX)
        and len(presented) > len(DEV_PREFIX)
    ):
        found = presented[len(DEV_PREFIX) :]
    return found


def key_is_one_of(keys: Iterable[str], presented: str | None) -> bool:
    """Whether the presented key is one of `keys` (each compared in constant time)."""
    if not presented:
        return False
    return any(hmac.compare_digest(presented.encode(), key.encode()) for key in keys)
