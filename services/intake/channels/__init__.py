"""One normaliser per channel: pure functions from ReportReceived to what the report becomes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, get_args

from pydantic import AwareDatetime as CoreAwareDatetime
from pydantic import BaseModel, create_model

from gridhub.kernel.errors import PermanentError
from schemas import Channel, EventNormalised, EventSupplemented, ReportReceived, SelfResolvedRecorded
from schemas.base import AwareDatetime
from schemas.raw import SOURCE_ID_FIELDS
from services.intake.channels.gridapp import GridReport, fields_gridapp, normalise_gridapp, self_resolved_record
from services.intake.channels.hotline12345 import WorkOrder12345, fields_12345, normalise_12345
from services.intake.channels.petition import Petition, fields_petition, normalise_petition
from services.intake.channels.police110 import PoliceIncident110, fields_110, normalise_110
from services.intake.channels.wechat import process_wechat

M = TypeVar("M", bound=BaseModel)

# What one accepted raw report becomes: an event to route, a recorded self-resolved item, or a
# supplement to an event already reported. Intake's worker sends each kind to its own topic.
Outcome = EventNormalised | SelfResolvedRecorded | EventSupplemented
Normaliser = Callable[[ReportReceived, str], EventNormalised]
Processor = Callable[[ReportReceived, str], Outcome]

NORMALISERS: dict[Channel, Normaliser] = {
    Channel.HOTLINE_12345: normalise_12345,
    Channel.POLICE_110: normalise_110,
    Channel.PETITION: normalise_petition,
    Channel.GRID_APP: normalise_gridapp,
}

# Channels whose reports can become something other than an event (a processor per channel).
PROCESSORS: dict[Channel, Processor] = {Channel.WECHAT: process_wechat}


def normalise(raw: ReportReceived, event_id: str) -> EventNormalised:
    """Normalise a raw report of any channel; PermanentError when it cannot be."""
    normaliser = NORMALISERS.get(raw.source)
    if normaliser is None:
        raise PermanentError("unsupported-channel", f"no normaliser for channel {raw.source.value!r} yet")
    return normaliser(raw, event_id)


def self_resolved(raw: ReportReceived, event_id: str) -> SelfResolvedRecorded | None:
    """The record of a report resolved on the spot (grid app only), or None when it must be dispatched."""
    return self_resolved_record(raw, event_id) if raw.source is Channel.GRID_APP else None


def process(raw: ReportReceived, event_id: str) -> Outcome:
    """What a raw report becomes; PermanentError (with a reason code) when it is invalid."""
    processor = PROCESSORS.get(raw.source)
    if processor is not None:
        return processor(raw, event_id)
    return self_resolved(raw, event_id) or normalise(raw, event_id)


@dataclass(frozen=True, slots=True)
class Direct:
    """A channel's one-pass path from raw bytes to event fields, for intake's worker.

    `validate_json` reads ReportReceived with the payload typed as the channel's model: one JSON validation checks
    the envelope and the payload together (the full path validates the envelope, then its payload dict again). It
    takes only what the full path would accept and normalise to the same event: anything it refuses (an invalid
    or bare payload, another source, an id differing from the source id) or leaves to the model path (`fields`
    returning None) goes the full path, which says what is wrong exactly as before.
    """

    channel: Channel
    validate_json: Callable[[bytes], Any]
    id_field: str
    fields: Callable[[Any, str, Any], dict[str, Any] | None]
    label: str  # the channel's value: the dedupe key's prefix and the metrics' label


_REQUIRE_AWARE = get_args(AwareDatetime)[1].func


def aware_in_core(model: type[M]) -> type[M]:
    """`model`, its AwareDatetime fields checked by pydantic's own AwareDatetime: in its core, without a call back
    into Python per time. On JSON both accept exactly the same times (tests); only the error differs, and a report
    refused here goes the full path, whose errors are the contract's."""
    overrides: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if field.alias is not None or field.validation_alias is not None or field.default_factory is not None:
            continue  # left as it is: the new field would not carry the alias or factory over
        if field.annotation is datetime and [getattr(m, "func", None) for m in field.metadata] == [_REQUIRE_AWARE]:
            overrides[name] = (CoreAwareDatetime, ... if field.is_required() else field.default)
        elif field.annotation == AwareDatetime | None and not field.metadata:
            overrides[name] = (CoreAwareDatetime | None, field.default)
    if not overrides:
        return model
    return create_model(f"{model.__name__}AwareInCore", __base__=model, **overrides)


def typed_envelope(payload: type[BaseModel]) -> type[ReportReceived]:
    """ReportReceived with the payload typed as a channel's model."""
    return create_model(f"ReportReceived{payload.__name__}", __base__=ReportReceived, payload=(payload, ...))


def _direct(channel: Channel, payload: type[BaseModel], fields: Callable[[Any, str, Any], Any]) -> Direct:
    # The validator itself: model_validate_json only adds a Python call around it.
    validate_json = aware_in_core(typed_envelope(aware_in_core(payload))).__pydantic_validator__.validate_json
    return Direct(channel, validate_json, SOURCE_ID_FIELDS[channel], fields, channel.value)


# WeChat has none: its processor reads the raw payload (and follow-ups become supplements).
DIRECT: dict[Channel, Direct] = {
    d.channel: d
    for d in (
        _direct(Channel.HOTLINE_12345, WorkOrder12345, fields_12345),
        _direct(Channel.POLICE_110, PoliceIncident110, fields_110),
        _direct(Channel.PETITION, Petition, fields_petition),
        # A self-resolved report is recorded, not dispatched: the full path (fields_gridapp gives None).
        _direct(Channel.GRID_APP, GridReport, fields_gridapp),
    )
}
