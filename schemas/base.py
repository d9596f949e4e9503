"""Fields every GridHub message carries: schema version, its own id, and the id it came from."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from ulid import ULID


def new_id() -> str:
    """Return a new ULID as its 26-character Crockford base32 string."""
    return str(ULID())


def _require_aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must carry a UTC offset, e.g. 2026-11-22T09:30:00+08:00")
    return value


# Every time on the bus is timezone-aware: county systems send +08:00, Kafka tooling UTC.
AwareDatetime = Annotated[datetime, AfterValidator(_require_aware)]

UlidStr = Annotated[str, Field(pattern=r"^[0-9A-HJKMNP-TV-Z]{26}$", examples=["01JD6Z8V1Q3C4X5Y6Z7A8B9C0D"])]


class Message(BaseModel):
    """Base of every topic message: versioned, identified, traceable to its cause."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    SCHEMA_VERSION: ClassVar[int] = 1

    schema_version: int = Field(1, description="Version of this message's schema.")
    message_id: UlidStr = Field(default_factory=new_id, description="This message's own id (ULID).")
    causation_id: str | None = Field(None, description="Id of the message or request this one was produced from.")

    def to_bytes(self) -> bytes:
        """Serialise to UTF-8 JSON as it goes on the wire."""
        return self.model_dump_json().encode()
