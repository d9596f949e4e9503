"""The duty list (权责清单): matters, units, grids; loaded and validated from a JSON file."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.task import DeadlineClass, DurationUnit, Tier

TOWNSHIP = "township"  # in a matter's primary/co_operating: "the event's own township centre"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Unit(_Frozen):
    """A unit that can receive tasks."""

    code: str
    name: str
    kind: Literal["command-centre", "county-department", "township-centre", "village-committee"]
    aliases: tuple[str, ...] = ()
    township: str | None = None


class Grid(_Frozen):
    """One grid of the county's grid registry, with its centre point."""

    code: str
    township: str
    village: str
    lat: float
    lon: float


class Matter(_Frozen):
    """One matter of the list: who is responsible, at which tier, within which deadline class."""

    code: str
    name: str
    description: str
    keywords: dict[str, int] = Field(description="word -> weight")
    primary: str = Field(description="unit code, or 'township' for the event's township centre")
    co_operating: tuple[str, ...] = ()
    tier: Tier
    deadline_class: DeadlineClass


class Term(_Frozen):
    """A time limit in the list's own words."""

    amount: int = Field(gt=0)
    unit: DurationUnit


class County(_Frozen):
    """The county the list belongs to."""

    code: str
    name: str
    command_centre: str


class DutyList(_Frozen):
    """A versioned duty list: the county's matters, units and grids."""

    version: str
    county: County
    units: tuple[Unit, ...]
    grids: tuple[Grid, ...]
    matters: tuple[Matter, ...]
    channel_categories: dict[str, dict[str, str]] = {}
    deadline_classes: dict[DeadlineClass, dict[Literal["resolve"], Term]]
    contact_within_hours: int = Field(1, gt=0)
    confidence_threshold: float = Field(0.5, ge=0, le=1)

    @model_validator(mode="after")
    def _references_resolve(self) -> DutyList:
        units = {u.code for u in self.units}
        townships = {u.township for u in self.units if u.kind == "township-centre"}
        problems = []
        if self.county.command_centre not in units:
            problems.append(f"command centre {self.county.command_centre} is not in units")
        for matter in self.matters:
            for ref in (matter.primary, *matter.co_operating):
                if ref != TOWNSHIP and ref not in units:
                    problems.append(f"matter {matter.code}: unknown unit {ref}")
        problems += [
            f"grid {g.code}: township {g.township} has no centre" for g in self.grids if g.township not in townships
        ]
        matters = {m.code for m in self.matters}
        for channel, mapping in self.channel_categories.items():
            problems += [f"{channel} category {k}: unknown matter {v}" for k, v in mapping.items() if v not in matters]
        problems += [
            f"deadline class {c.value} has no resolve term" for c in DeadlineClass if c not in self.deadline_classes
        ]
        if len(matters) != len(self.matters):
            problems.append("duplicate matter codes")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def unit(self, code: str) -> Unit:
        """The unit with this code."""
        return next(u for u in self.units if u.code == code)

    def township_centre(self, township: str) -> Unit:
        """The township centre of a township code."""
        return next(u for u in self.units if u.kind == "township-centre" and u.township == township)

    def matter(self, code: str) -> Matter | None:
        """The matter with this code, if any."""
        return next((m for m in self.matters if m.code == code), None)


def load_duty_list(path: Path | None = None) -> DutyList:
    """Load and validate a duty list file (the packaged sample when path is None)."""
    if path is None:
        text = resources.files("schemas").joinpath("data/dutylist.json").read_text("utf-8")
    else:
        text = path.read_text("utf-8")
    return DutyList.model_validate(json.loads(text))
