"""Configuration published on the bus: the duty list in force (`config.dutylist`, compacted, one key)."""

from __future__ import annotations

import hashlib
import json

from pydantic import Field, model_validator

from schemas.base import AwareDatetime, Message
from schemas.dutylist import DutyList

# The one key of config.dutylist: compaction keeps the latest record, which is the list in force.
DUTYLIST_KEY = "dutylist"


def dutylist_sha256(duty: DutyList) -> str:
    """The SHA-256 (hex) of a duty list's content: its JSON with sorted keys, no spaces, UTF-8.

    Computed from the validated model (defaults filled in), so two files that differ only in layout, key order or
    spelled-out defaults have the same digest: "the same content".
    """
    text = json.dumps(duty.model_dump(mode="json"), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class DutyListPublished(Message):
    """A duty list put in force by `gridhub dutylist publish`: the whole list, its digest, who and when.

    The router applies the latest record of the topic; a rollback is an older list published again (with a new
    version number when its content is not that of the version it had).
    """

    version: str = Field(min_length=1, max_length=64, description="The list's version (the same as the list's own).")
    duty_list: DutyList = Field(description="The whole duty list, validated (references, codes, weights).")
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 of the list's canonical JSON (sorted keys, no spaces, UTF-8); checked on receipt.",
    )
    published_by: str = Field(min_length=1, max_length=128, description="Who published it (an operator's name).")
    published_at: AwareDatetime = Field(description="When it was published.")
    previous_version: str | None = Field(
        None, description="The version in force when it was published (None: the router's configured list)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> DutyListPublished:
        if self.version != self.duty_list.version:
            raise ValueError(f"version {self.version!r} is not the list's own version {self.duty_list.version!r}")
        digest = dutylist_sha256(self.duty_list)
        if digest != self.sha256:
            raise ValueError(f"sha256 {self.sha256} does not match the list's content ({digest})")
        return self

    @classmethod
    def of(
        cls, duty: DutyList, *, published_by: str, published_at: AwareDatetime, previous_version: str | None = None
    ) -> DutyListPublished:
        """The record that publishes a list (version and digest taken from it)."""
        return cls(
            version=duty.version,
            duty_list=duty,
            sha256=dutylist_sha256(duty),
            published_by=published_by,
            published_at=published_at,
            previous_version=previous_version,
        )
