"""What intake reads off a raw topic: an adapter's ReportReceived, or a source's bare payload; pure."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pydantic import ValidationError

from gridhub.kernel.errors import PermanentError
from gridhub.kernel.problems import describe_validation_error
from schemas import Channel, ReportReceived, new_id
from schemas.raw import SOURCE_ID_FIELDS

KAFKA_NATIVE = "kafka-native"


def read_report(channel: Channel | None, value: bytes | None, produced_at: datetime | int) -> ReportReceived:
    """The ReportReceived in a raw record; a bare JSON payload of a known channel is wrapped as if received.

    `produced_at` is the record's time, a datetime or Kafka's Unix milliseconds (converted only when needed).
    """
    if value is None:
        raise PermanentError("malformed-envelope", "(body): 记录没有内容（tombstone）")
    try:
        return ReportReceived.model_validate_json(value)
    except ValidationError as exc:
        envelope_error = describe_validation_error(exc)
    try:
        payload = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError):
        payload = None
    id_field = SOURCE_ID_FIELDS.get(channel) if channel else None
    # Only an object that is clearly not an envelope counts as a bare payload; a broken envelope stays broken.
    if not isinstance(payload, dict) or id_field is None or "schema_version" in payload:
        raise PermanentError("malformed-envelope", envelope_error)
    source_id = payload.get(id_field)
    if not isinstance(source_id, str) or not source_id:
        raise PermanentError("malformed-envelope", f"{id_field}: 直接写入 raw 主题的报告须带 {id_field}")
    assert channel is not None
    if isinstance(produced_at, int):
        produced_at = datetime.fromtimestamp(produced_at / 1000, UTC)
    try:
        return ReportReceived(
            source=channel,
            source_id=source_id,
            proposed_event_id=new_id(),
            received_at=produced_at,
            adapter_version=KAFKA_NATIVE,
            payload=payload,
        )
    except ValidationError as exc:
        raise PermanentError("malformed-envelope", describe_validation_error(exc)) from None
