"""Fields every GridHub message carries: schema version, its own id, and the id it came from."""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime
from typing import Annotated, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)  # every 10-bit value as two characters
_MAX_RANDOMNESS = (1 << 80) - 1
_ulid_lock = threading.Lock()
# The millisecond, randomness and encoded millisecond of the last id made, and entropy not used yet
# (os.urandom once per 64 milliseconds that make ids, not once per millisecond: system calls are dear here).
_last_ms = -1
_randomness = 0
_prefix = ""
_entropy = memoryview(b"")
# The first 22 characters of the last id (millisecond and randomness but its low 20 bits) and the randomness >> 20
# they encode: counting up changes only the last few characters, so most ids encode two pairs, not eight.
_head = ""
_high = -1


def _forget_in_child() -> None:
    # A forked child must not count on from its parent's last id, nor reuse its entropy.
    global _last_ms, _entropy
    _last_ms, _entropy = -1, memoryview(b"")


os.register_at_fork(after_in_child=_forget_in_child)


def new_id() -> str:
    """Return a new ULID as its 26-character Crockford base32 string.

    Monotonic like python-ulid's ULID() (the same millisecond counts the randomness up), at a fifth of its
    cost: every event on the hot path makes two or three ids.
    """
    global _last_ms, _randomness, _prefix, _entropy, _head, _high
    ms = time.time_ns() // 1_000_000
    p = _PAIRS
    with _ulid_lock:
        if ms == _last_ms and _randomness < _MAX_RANDOMNESS:
            _randomness += 1
        else:
            if len(_entropy) < 10:
                _entropy = memoryview(os.urandom(640))
            _last_ms, _randomness, _entropy = ms, int.from_bytes(_entropy[:10], "big"), _entropy[10:]
            _prefix = f"{p[ms >> 40]}{p[(ms >> 30) & 1023]}{p[(ms >> 20) & 1023]}{p[(ms >> 10) & 1023]}{p[ms & 1023]}"
            _high = -1
        r = _randomness
        if r >> 20 != _high:
            _high = r >> 20
            _head = (
                f"{_prefix}{p[r >> 70]}{p[(r >> 60) & 1023]}{p[(r >> 50) & 1023]}{p[(r >> 40) & 1023]}"
                f"{p[(r >> 30) & 1023]}{p[(r >> 20) & 1023]}"
            )
        head = _head
    return f"{head}{p[(r >> 10) & 1023]}{p[r & 1023]}"


def id_at_time_of(other_id: str, randomness: bytes) -> str:
    """A ULID with the timestamp of another ULID and the first 10 bytes of `randomness` (a digest: ids that repeat)."""
    r = int.from_bytes(randomness[:10], "big")
    p = _PAIRS
    # A ULID's first 10 characters are its 48-bit millisecond timestamp and nothing else.
    return (
        f"{other_id[:10].upper()}{p[r >> 70]}{p[(r >> 60) & 1023]}{p[(r >> 50) & 1023]}{p[(r >> 40) & 1023]}"
        f"{p[(r >> 30) & 1023]}{p[(r >> 20) & 1023]}{p[(r >> 10) & 1023]}{p[r & 1023]}"
    )


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
        # The same bytes as model_dump_json().encode(), without the round trip through str (a third cheaper).
        return self.__pydantic_serializer__.to_json(self)
