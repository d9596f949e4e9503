"""Which responses are retried and after how long; pure."""

from __future__ import annotations

from dataclasses import dataclass

# 410 Gone: the receiver says the endpoint is retired; retrying cannot help.
PERMANENT_STATUSES = frozenset({410})
MAX_RETRY_AFTER_S = 300.0


@dataclass(frozen=True)
class AttemptResult:
    """One attempt: HTTP status (None when the request failed) and error text."""

    status: int | None
    error: str | None = None
    retry_after_s: float | None = None

    @property
    def delivered(self) -> bool:
        """A 2xx answer."""
        return self.status is not None and 200 <= self.status < 300

    @property
    def permanent(self) -> bool:
        """Not worth retrying."""
        return self.status in PERMANENT_STATUSES


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (delta-seconds form only), capped; None if absent or unusable."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def next_delay(schedule: tuple[float, ...], attempt_no: int, result: AttemptResult) -> float | None:
    """Seconds to wait before attempt attempt_no+1, or None when delivery should stop."""
    if result.delivered or result.permanent or attempt_no >= len(schedule):
        return None
    delay = schedule[attempt_no]
    if result.retry_after_s is not None:
        delay = max(delay, result.retry_after_s)
    return delay


# Statuses that mean "you are going too fast" or "I am struggling": the endpoint is slowed down.
SLOW_DOWN_STATUSES = frozenset({408, 429})


@dataclass(frozen=True)
class Verdict:
    """What to do after one attempt of a delivery.

    outcome: delivered | retrying | exhausted | gone; delay_s: wait before the next attempt (retrying only);
    slow_down: the endpoint answered 429, 408 or 5xx (send to it one at a time for a while); pause_s: the endpoint
    asked (Retry-After on a 429 or 503) for nothing at all before then.
    """

    outcome: str
    delay_s: float | None = None
    slow_down: bool = False
    pause_s: float | None = None


def verdict(schedule: tuple[float, ...], attempt_no: int, result: AttemptResult) -> Verdict:
    """The verdict on attempt `attempt_no` (0 for the first) of a delivery under a retry schedule."""
    if result.delivered:
        return Verdict("delivered")
    if result.permanent:
        return Verdict("gone")
    status = result.status
    slow = status is not None and (status in SLOW_DOWN_STATUSES or status >= 500)
    pause = result.retry_after_s if status in (429, 503) else None
    delay = next_delay(schedule, attempt_no, result)
    if delay is None:
        return Verdict("exhausted", slow_down=slow, pause_s=pause)
    return Verdict("retrying", delay, slow, pause)
