"""The mediation ladder for disputes (矛盾纠纷逐级调解); pure.

A dispute climbs grid worker (and grid instructor) → villager group → village/community → township centre →
county, one level up after `mediation_failures_per_level` (2) failed mediations at a level (牟定县's rule).
Only matters the duty list marks `mediation` climb it (平安县: M12 物业纠纷, M32 婚姻家庭, M33 土地承包,
M35 邻里纠纷); labour, land-taking and medical disputes have their own statutory channels (arbitration,
administrative review, the medical mediation committee) and stay with their departments.

A failed mediation is a unit's update `mediation-failed` with its reason, on the task of the level's unit.
Which unit stands for each level in a list without grid-worker or villager-group units (平安县's):

| level | unit |
|---|---|
| grid-worker (网格员) | the village committee of the event's grid or village (no grid-worker units in the list) |
| villager-group (村民小组) | the same village committee (villager groups are not units of the list) |
| village-committee (村（社区）) | the same village committee |
| township-centre (乡镇) | the township's centre, e.g. 城关镇综治中心 PA-CG |
| county-centre (县级) | the command centre PA-ZZZX |

A level whose unit is unknown (no village for the event) is skipped. The ladder starts at the level of the
unit holding the primary task when the first failure arrives: a village committee starts at the grid-worker
level (and so gets a new task at each of its three levels), a township centre at the township level, the
command centre or a county department at the county level, the top: failures there are recorded only.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.dutylist import DutyList, Unit


@dataclass(frozen=True)
class Level:
    """One rung of the ladder."""

    key: str
    name: str


LEVELS = (
    Level("grid-worker", "网格员（网格指导员）"),
    Level("villager-group", "村民小组"),
    Level("village-committee", "村（社区）"),
    Level("township-centre", "乡镇综治中心"),
    Level("county-centre", "县级（县综治中心）"),
)
TOP = len(LEVELS) - 1
_START = {"village-committee": 0, "township-centre": 3, "command-centre": TOP, "county-department": TOP}


@dataclass(frozen=True)
class Rung:
    """Where a dispute is on the ladder: the level and the failed mediations there so far."""

    level: int
    failures: int = 0


@dataclass(frozen=True)
class MoveUp:
    """Enough failures at a level: a new task for the next level's unit."""

    rung: Rung  # the new level, no failures yet
    unit_code: str
    reason: str


@dataclass(frozen=True)
class StayAt:
    """The dispute stays at its level (another try, or no level above): recorded only."""

    rung: Rung
    reason: str


def start_level(holder: Unit) -> int:
    """The level the unit holding a dispute stands for when its first mediation fails."""
    return _START[holder.kind]


def unit_for_level(level: int, township: str | None, village: str | None, duty: DutyList) -> str | None:
    """The unit that mediates at a level for an event in this township and village, if the list has one."""
    if level <= 2:
        return village
    if level == 3:
        return next((u.code for u in duty.units if u.kind == "township-centre" and u.township == township), None)
    return duty.county.command_centre


def after_failure(
    rung: Rung | None, holder: Unit, township: str | None, village: str | None, reason: str, duty: DutyList
) -> MoveUp | StayAt:
    """One more failed mediation by the holder: stay for another try, or move up a level."""
    current = rung or Rung(start_level(holder))
    per_level = duty.mediation_failures_per_level
    failures = current.failures + 1
    level = LEVELS[current.level]
    said = f"{level.name}（{holder.name}）第 {failures} 次调解不成，理由：“{reason}”"
    if failures < per_level:
        return StayAt(Rung(current.level, failures), f"{said}；每级调解 {per_level} 次不成方上移")
    for up in range(current.level + 1, len(LEVELS)):
        unit = unit_for_level(up, township, village, duty)
        if unit is not None:
            return MoveUp(
                Rung(up),
                unit,
                f"矛盾纠纷逐级调解：{said}，{level.name}已调解 {failures} 次不成，上移至{LEVELS[up].name}"
                f"（{duty.unit(unit).name}）",
            )
    return StayAt(
        Rung(current.level, failures),
        f"{said}；已至{LEVELS[TOP].name}，无更高调解层级，应引导当事人依法通过仲裁、诉讼等途径解决",
    )
