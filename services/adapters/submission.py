"""What every inbound channel calls to put one report on the bus: the single submit path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from fastapi.responses import Response

from schemas import Channel


@dataclass(frozen=True)
class Submitted:
    """A report the hub holds: its event id, and whether it was already known (nothing new published)."""

    event_id: str
    duplicate: bool = False


class Submit(Protocol):
    """Publish one report raw (or recognise it as a repeat); a problem Response when the bus is unavailable."""

    async def __call__(
        self, channel: Channel, source_id: str, payload: dict[str, Any], *, content_type: str = "application/json"
    ) -> Submitted | Response: ...
