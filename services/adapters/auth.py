"""API-key checks for sources and units; constant-time comparisons, pure."""

from __future__ import annotations

import hmac


def source_key_ok(keys: dict[str, str], channel: str, presented: str | None) -> bool:
    """True when the presented key is the channel's key."""
    expected = keys.get(channel)
    return bool(expected and presented and hmac.compare_digest(expected.encode(), presented.encode()))


def unit_for_key(keys: dict[str, str], presented: str | None, dev_mode: bool) -> str | None:
    """The unit a bearer key belongs to, or None. Dev mode with no keys accepts 'dev-<unit code>'."""
    if not presented:
        return None
    found = None
    for unit, expected in keys.items():
        # Compare against every key so timing does not reveal which unit's key was close.
        if hmac.compare_digest(expected.encode(), presented.encode()):
            found = unit
    if found is None and dev_mode and not keys and presented.startswith("dev-") and len(presented) > 4:
        found = presented[4:]
    return found
