"""The duty list (权责清单): matters, units, grids; loaded and validated from a JSON file."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from schemas.task import DeadlineClass, DurationUnit, Tier

TOWNSHIP = "township"  # in a matter's primary/co_operating: "the event's own township centre"
KEYWORD_WEIGHTS = range(1, 4)  # a keyword weighs 1-3
PHRASE_WEIGHTS = range(1, 6)  # a phrase (several words, unambiguous) weighs 1-5


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Unit(_Frozen):
    """A unit that can receive tasks."""

    code: str
    name: str
    kind: Literal["command-centre", "county-department", "township-centre", "village-committee"]
    aliases: tuple[str, ...] = ()
    township: str | None = None
    places: tuple[str, ...] = Field(
        (),
        description="Landmarks in the unit's area (小区, markets, hospitals, stations) that place an event "
        "in its township (and village, for a village committee).",
    )


class Grid(_Frozen):
    """One grid of the county's grid registry, with its centre point."""

    code: str
    township: str
    village: str
    lat: float
    lon: float
    village_code: str | None = Field(None, description="Code of the grid's village committee unit.")


class Matter(_Frozen):
    """One matter of the list: who is responsible, at which tier, within which deadline class."""

    code: str
    name: str
    description: str
    keywords: dict[str, int] = Field(description="word -> weight (1-3); matches a whole word of the segmented text")
    phrases: dict[str, int] = Field(
        default_factory=dict, description="phrase of several words -> weight (1-5); outweighs single words"
    )
    excludes: tuple[str, ...] = Field((), description="words that rule this matter out when the text has them")
    primary: str = Field(description="unit code, or 'township' for the event's township centre")
    co_operating: tuple[str, ...] = ()
    tier: Tier
    deadline_class: DeadlineClass
    mediation: bool = Field(
        False,
        description="A dispute (矛盾纠纷) that climbs the mediation ladder: grid worker, villager group, village, "
        "township centre, county centre, one level up after the list's mediation_failures_per_level failures.",
    )


class Term(_Frozen):
    """A time limit in the list's own words."""

    amount: int = Field(gt=0)
    unit: DurationUnit


class Office(_Frozen):
    """An office outside the units that take tasks (it receives escalations only)."""

    code: str
    name: str


class County(_Frozen):
    """The county the list belongs to."""

    code: str
    name: str
    command_centre: str
    petition_office: str | None = Field(
        None,
        description="Unit code of the petition office (信访局): the only unit that sees a confidential "
        "reporter's identity (never when a petition complains about it).",
    )
    supervision_office: Office | None = Field(
        None,
        description="The supervision office (督办, e.g. the county government's 督查室): the last rung of the SLA's "
        "escalation of an overdue task, after the township centre and the command centre. It takes no tasks.",
    )


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a duty list, in Chinese and English."""

    zh: str
    en: str

    def __str__(self) -> str:
        return f"{self.zh} / {self.en}"


class DutyList(_Frozen):
    """A versioned duty list: the county's matters, units and grids."""

    version: str
    county: County
    units: tuple[Unit, ...]
    grids: tuple[Grid, ...]
    matters: tuple[Matter, ...]
    channel_categories: dict[str, dict[str, str | tuple[str, ...]]] = Field(
        default_factory=dict,
        description="channel -> the channel's own category -> a matter code (decides), or a list of candidate "
        "matter codes (a coarse category: the text chooses among them, the first is the default)",
    )
    deadline_classes: dict[DeadlineClass, dict[Literal["resolve"], Term]]
    contact_within_hours: int = Field(1, gt=0)
    confidence_threshold: float = Field(0.5, ge=0, le=1)
    max_grid_distance_km: float = Field(
        5.0, gt=0, description="Coordinates further than this from every grid centre place nothing."
    )
    mediation_failures_per_level: int = Field(
        2, ge=1, description="Failed mediations at one level of the ladder before the dispute moves up a level."
    )

    @model_validator(mode="after")
    def _references_resolve(self, info: ValidationInfo) -> DutyList:
        problems = reference_problems(self)
        sink = info.context.get("problems") if isinstance(info.context, dict) else None
        if isinstance(sink, list):
            sink.extend(problems)  # the caller lists them one by one (gridhub dutylist validate)
        elif problems:
            raise ValueError("; ".join(map(str, problems)))
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


def _duplicates(codes: list[str]) -> list[str]:
    return sorted(code for code, n in Counter(codes).items() if n > 1)


def reference_problems(duty: DutyList) -> list[Problem]:
    """Everything in a structurally valid list that does not hold together: references, codes, weights."""
    units = {u.code: u for u in duty.units}
    townships = {u.township for u in duty.units if u.kind == "township-centre" and u.township}
    matters = {m.code for m in duty.matters}
    problems: list[Problem] = []

    def add(zh: str, en: str) -> None:
        problems.append(Problem(zh, en))

    if duty.county.command_centre not in units:
        add(
            f"指挥中心 {duty.county.command_centre} 不在单位表中",
            f"command centre {duty.county.command_centre} is not in units",
        )
    office = duty.county.petition_office
    if office is not None and office not in units:
        add(f"信访部门 {office} 不在单位表中", f"petition office {office} is not in units")
    for code in _duplicates([u.code for u in duty.units]):
        add(f"单位编码 {code} 重复", f"duplicate unit code {code}")
    for code in _duplicates([g.code for g in duty.grids]):
        add(f"网格编码 {code} 重复", f"duplicate grid code {code}")
    if len(matters) != len(duty.matters):
        add(f"事项编码重复：{'、'.join(_duplicates([m.code for m in duty.matters]))}", "duplicate matter codes")
    for unit in duty.units:
        if unit.kind == "township-centre" and not unit.township:
            add(f"乡镇综治中心 {unit.code} 未填写所属乡镇", f"township centre {unit.code} has no township")
        if unit.kind == "village-committee" and unit.township not in townships:
            add(
                f"村（居）委会 {unit.code} 所属乡镇 {unit.township} 没有综治中心",
                f"village committee {unit.code}: township {unit.township} has no centre",
            )
    for matter in duty.matters:
        for ref in (matter.primary, *matter.co_operating):
            if ref != TOWNSHIP and ref not in units:
                add(f"事项 {matter.code} 引用了不存在的单位 {ref}", f"matter {matter.code}: unknown unit {ref}")
        if (matter.primary == TOWNSHIP) != (matter.tier is Tier.TOWNSHIP):
            add(
                f"事项 {matter.code} 的层级 {matter.tier.value} 与主办单位 {matter.primary} 不符",
                f"matter {matter.code}: tier {matter.tier.value} does not fit primary {matter.primary}",
            )
        for kind, terms, allowed in (
            ("keyword", matter.keywords, KEYWORD_WEIGHTS),
            ("phrase", matter.phrases, PHRASE_WEIGHTS),
        ):
            label = "关键词" if kind == "keyword" else "短语"
            for word, weight in terms.items():
                if weight not in allowed:
                    add(
                        f"事项 {matter.code} {label}“{word}”权重 {weight} 超出 {allowed.start}–{allowed.stop - 1}",
                        f"matter {matter.code}: {kind} {word!r} weight {weight} "
                        f"outside {allowed.start}-{allowed.stop - 1}",
                    )
                if not word.strip() or word != word.strip():
                    add(
                        f"事项 {matter.code} {label}“{word}”为空或含首尾空格",
                        f"matter {matter.code}: blank {kind} {word!r}",
                    )
        for word in sorted(set(matter.keywords) & set(matter.phrases)):
            add(
                f"事项 {matter.code}“{word}”既是关键词又是短语",
                f"matter {matter.code}: {word!r} is both keyword and phrase",
            )
        for word in matter.excludes:
            if word in matter.keywords or word in matter.phrases:
                add(
                    f"事项 {matter.code} 的排除词“{word}”也是它的关键词",
                    f"matter {matter.code}: exclude {word!r} is also a term",
                )
    for grid in duty.grids:
        if grid.township not in townships:
            add(
                f"网格 {grid.code} 所属乡镇 {grid.township} 没有综治中心",
                f"grid {grid.code}: township {grid.township} has no centre",
            )
        village = units.get(grid.village_code) if grid.village_code else None
        if grid.village_code and (village is None or village.kind != "village-committee"):
            add(
                f"网格 {grid.code} 的村（居）委会 {grid.village_code} 不存在",
                f"grid {grid.code}: village committee {grid.village_code} is not a village-committee unit",
            )
        elif village is not None and village.township != grid.township:
            add(
                f"网格 {grid.code} 属于 {grid.township}，其村（居）委会 {village.code} 却属于 {village.township}",
                f"grid {grid.code}: township {grid.township} but its village committee is in {village.township}",
            )
    if any(g.village_code for g in duty.grids):
        for grid in duty.grids:
            if not grid.village_code:
                add(f"网格 {grid.code} 未填写村（居）委会", f"grid {grid.code}: no village committee (village_code)")
    for channel, mapping in duty.channel_categories.items():
        for category, target in mapping.items():
            targets = (target,) if isinstance(target, str) else target
            if not targets:
                add(f"{channel} 分类“{category}”没有候选事项", f"{channel} category {category}: no candidate matter")
            for code in targets:
                if code not in matters:
                    add(
                        f"{channel} 分类“{category}”对应的事项 {code} 不存在",
                        f"{channel} category {category}: unknown matter {code}",
                    )
    for c in DeadlineClass:
        if c not in duty.deadline_classes:
            add(f"时限类别 {c.value} 没有办结时限", f"deadline class {c.value} has no resolve term")
    return problems


def advisories(duty: DutyList) -> list[Problem]:
    """Things worth a look that do not make the list invalid."""
    notes: list[Problem] = []
    with_grids = {g.township for g in duty.grids}
    for unit in duty.units:
        if unit.kind == "township-centre" and unit.township not in with_grids:
            notes.append(Problem(f"乡镇 {unit.township} 没有网格", f"township {unit.township} has no grid"))
    categorised = {
        code
        for mapping in duty.channel_categories.values()
        for target in mapping.values()
        for code in ((target,) if isinstance(target, str) else target)
    }
    for matter in duty.matters:
        if not matter.keywords and not matter.phrases and matter.code not in categorised:
            notes.append(
                Problem(
                    f"事项 {matter.code} 没有关键词、短语或渠道分类，只能显式指定",
                    f"matter {matter.code} has no keyword, phrase or channel category",
                )
            )
    places: dict[str, set[str]] = {}
    for unit in duty.units:
        if unit.kind in ("township-centre", "village-committee") and unit.township:
            for name in (*unit.aliases, *unit.places):
                places.setdefault(name, set()).add(unit.township)
    for name, where in sorted(places.items()):
        if len(where) > 1:
            notes.append(
                Problem(
                    f"地名“{name}”属于多个乡镇（{'、'.join(sorted(where))}）",
                    f"place name {name!r} belongs to several townships",
                )
            )
    return notes


def load_duty_list(path: Path | None = None) -> DutyList:
    """Load and validate a duty list file (the packaged 平安县 list when path is None)."""
    if path is None:
        text = resources.files("schemas").joinpath("data/dutylist.json").read_text("utf-8")
    else:
        text = path.read_text("utf-8")
    return DutyList.model_validate(json.loads(text))
