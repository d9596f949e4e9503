"""What every channel's normaliser shares: payload validation, the id check, source references, the event's
fields and its two forms (the model, and its wire bytes without a second validation)."""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from gridhub.kernel.errors import PermanentError
from gridhub.kernel.problems import describe_validation_error
from schemas import Channel, EventNormalised, Reporter, ReportReceived, new_id
from schemas.raw import SOURCE_ID_FIELDS
from services.intake.wire import dict_serializer

P = TypeVar("P", bound=BaseModel)


class RawReport(Protocol):
    """What a normaliser reads of the envelope: a ReportReceived, or intake's one-pass typed envelope."""

    @property
    def message_id(self) -> str: ...
    @property
    def source(self) -> Channel: ...
    @property
    def source_id(self) -> str: ...
    @property
    def received_at(self) -> Any: ...


def parse_payload(model: type[P], raw: ReportReceived) -> P:
    """The channel payload as its model; PermanentError for bad fields or an id that is not the source id."""
    try:
        payload = model.model_validate(raw.payload)
    except ValidationError as exc:
        raise PermanentError("invalid-payload", describe_validation_error(exc)) from None
    id_field = SOURCE_ID_FIELDS[raw.source]
    own_id = getattr(payload, id_field)
    if own_id != raw.source_id:
        raise PermanentError("source-id-mismatch", f"{id_field} {own_id!r} differs from source_id {raw.source_id!r}")
    return payload


def envelope(raw: RawReport, event_id: str) -> dict[str, Any]:
    """The fields every channel's event dict starts with: version, ids, and the raw report it came from."""
    return {
        "schema_version": EVENT_VERSION,
        "message_id": new_id(),
        "causation_id": raw.message_id,
        "event_id": event_id,
        "sources": source_refs(raw),
    }


def source_refs(raw: RawReport) -> tuple[dict[str, Any], ...]:
    """The event's reference back to the raw report it came from (as data for `event`)."""
    return ({"source": raw.source, "source_id": raw.source_id, "raw_message_id": raw.message_id},)


_EVENT_WIRE = dict_serializer(EventNormalised)
# What a normaliser's event dict repeats of the model (tests hold the dicts to the model, field by field).
EVENT_VERSION = EventNormalised.SCHEMA_VERSION
PERSONAL_FIELDS: tuple[str, ...] = Reporter.model_fields["personal_fields"].default


def event(**fields: Any) -> EventNormalised:
    """The canonical event from its fields (a normaliser's `fields_*` dict: every field, nested parts as dicts).

    One validation of the whole tree in pydantic's core instead of one Python constructor per nested model.
    """
    return EventNormalised.model_validate(fields)


def event_bytes(fields: dict[str, Any]) -> bytes:
    """The wire bytes of `event(**fields)`, written by the model's own field serialisers without validating again.

    For the fields a normaliser builds from its validated payload (`fields_12345` and the others: every field in
    the model's order): every value already has its field's type and meets its constraints (titles cut to 60
    characters of the first line, descriptions as long as the payload allows, coordinates in the same ranges, times
    with offsets, ids that are ULIDs), so validating would change nothing; tests hold the bytes equal to the model's
    own on varied reports. A third of the cost of validating the event and serialising the model.
    """
    return _EVENT_WIRE.to_json(fields)


def first_line(text: str) -> str:
    """The first line of a free-text field, for titles."""
    return text.splitlines()[0]


def check_phone(value: str | None) -> str | None:
    """A phone number of digits, + and - only (what hotline, 110 and 信访 systems record)."""
    if value is not None and not value.replace("-", "").replace("+", "").isdigit():
        raise ValueError("电话号码只能包含数字、+ 和 -")
    return value
