"""One normaliser per channel: pure functions from ReportReceived to what the report becomes."""

from __future__ import annotations

from collections.abc import Callable

from gridhub.kernel.errors import PermanentError
from schemas import Channel, EventNormalised, EventSupplemented, ReportReceived, SelfResolvedRecorded
from services.intake.channels.gridapp import normalise_gridapp, self_resolved_record
from services.intake.channels.hotline12345 import normalise_12345
from services.intake.channels.petition import normalise_petition
from services.intake.channels.police110 import normalise_110
from services.intake.channels.wechat import process_wechat

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
