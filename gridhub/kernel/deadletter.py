"""Build dead-letter records so every stage rejects the same way."""

from __future__ import annotations

import base64
from datetime import datetime

from schemas import ReportDeadLettered


def dead_letter(
    *,
    stage: str,
    reason: str,
    detail: str,
    topic: str,
    value: bytes,
    now: datetime,
    key: bytes | None = None,
    partition: int | None = None,
    offset: int | None = None,
    causation_id: str | None = None,
) -> ReportDeadLettered:
    """A ReportDeadLettered carrying the original bytes (base64) and where they came from."""
    return ReportDeadLettered(
        causation_id=causation_id,
        stage=stage,
        reason=reason,
        detail=detail[:4000],
        original_topic=topic,
        original_partition=partition,
        original_offset=offset,
        original_key=key.decode("utf-8", "replace") if key is not None else None,
        original_value=base64.b64encode(value).decode("ascii"),
        dead_lettered_at=now,
    )
