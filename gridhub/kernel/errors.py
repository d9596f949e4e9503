"""Typed failures: a permanent one goes to the dead-letter topic; anything else is a passing fault that
propagates, so the message's offset is not committed past it."""

from __future__ import annotations


class PermanentError(Exception):
    """The message can never be processed as it is; dead-letter it with `reason` and `detail`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
