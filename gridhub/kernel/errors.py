"""Typed failures: retryable ones are tried again, permanent ones go to the dead-letter topic."""

from __future__ import annotations


class PermanentError(Exception):
    """The message can never be processed as it is; dead-letter it with `reason` and `detail`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class RetryableError(Exception):
    """A passing failure (network, a peer down); the same message may succeed later."""
