"""Returns (退回): where an event goes when the unit handling it returns it; pure.

A primary unit returns a task with a reason ("不属于我单位职责"). The router routes the event again, never to
a unit that has returned it, in this order:

1. The township returned a township-tier matter (属地): the matter's first county-level co-operating unit
   that has not returned it takes it over (the next tier: 乡镇退回，转县直配合部门主办).
2. Otherwise, or when there is no such unit, the matter was likely wrong: the next matter the report's words
   speak for (the text ranking of `text.py`) whose primary unit has not returned it, with that matter's
   co-operating units (less those that returned it).
3. Nothing left, or this return is the `max_returns`-th: the command centre's triage queue.

A return by a co-operating or summoned unit only drops that unit (it is never routed to again); the primary
still handles the event. The dispatcher at the command centre is not bound by this rule: a manual dispatch may
pick any unit.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas import EventNormalised
from schemas.dutylist import TOWNSHIP, DutyList, Matter
from services.router.decide import place, router_index
from services.router.text import confidence, event_text


@dataclass(frozen=True)
class ReturnHistory:
    """What the router knows of an event's returns before this one."""

    returned_by: tuple[str, ...] = ()  # unit codes, oldest first
    returns: int = 0  # returns by primary units so far


@dataclass(frozen=True)
class Reroute:
    """Route the event again: this matter, to these units."""

    matter: Matter
    primary: str
    co_operating: tuple[str, ...]
    confidence: float
    reason: str
    returned_by: tuple[str, ...]
    returns: int


@dataclass(frozen=True)
class ToTriage:
    """Send the event to the command centre's triage queue."""

    reason: str
    returned_by: tuple[str, ...]
    returns: int


def _names(codes: tuple[str, ...], duty: DutyList) -> str:
    return "、".join(duty.unit(c).name for c in codes)


def after_return(
    event: EventNormalised,
    matter_code: str | None,
    returning_unit: str,
    reason: str,
    history: ReturnHistory,
    duty: DutyList,
    max_returns: int,
    current_confidence: float = 0.0,
) -> Reroute | ToTriage:
    """The next routing of an event its primary unit returned, or triage (`current_confidence`: the matter's)."""
    index = router_index(duty)
    returned_by = tuple(dict.fromkeys((*history.returned_by, returning_unit)))
    returns = history.returns + 1
    excluded = set(returned_by)
    said = f"{duty.unit(returning_unit).name}（{returning_unit}）退回，理由：“{reason}”"
    counted = f"第 {returns} 次退回（上限 {max_returns} 次）"
    if returns >= max_returns:
        return ToTriage(
            f"退回 {returns} 次（{_names(returned_by, duty)}），转指挥中心人工分拨：{said}", returned_by, returns
        )
    township = place(event, duty).township
    centre = index.centres.get(township) if township else None

    def resolve(ref: str) -> str | None:
        return (centre.code if centre else None) if ref == TOWNSHIP else ref

    def co_ops(matter: Matter, primary: str) -> tuple[str, ...]:
        units = (resolve(c) for c in matter.co_operating)
        return tuple(dict.fromkeys(u for u in units if u and u != primary and u not in excluded))

    current = index.matters.get(matter_code) if matter_code else None
    if current is not None and current.primary == TOWNSHIP and centre is not None and returning_unit == centre.code:
        # 1. The township returned its own matter: the next tier, a county co-operating unit, takes it.
        county = [c for c in current.co_operating if c != TOWNSHIP and c not in excluded]
        if county:
            primary = county[0]
            return Reroute(
                matter=current,
                primary=primary,
                co_operating=co_ops(current, primary),
                confidence=current_confidence,
                reason=f"退回后改派：{said}；改由事项 {current.code} 的配合单位 {duty.unit(primary).name} 主办"
                f"（乡镇退回，转县直部门）；{counted}",
                returned_by=returned_by,
                returns=returns,
            )
    # 2. The next matter the words speak for whose primary has not returned the event.
    ranked = index.text.score(event_text(event.title, event.description)).ranked
    for i, scored in enumerate(ranked):
        matter = scored.matter
        candidate = resolve(matter.primary)
        if matter is current or candidate is None or candidate in excluded:
            continue
        primary = candidate
        rival = next((s for s in ranked[i + 1 :] if resolve(s.matter.primary) != primary), None)
        conf = confidence(scored.score, rival.score if rival else 0)
        words = "、".join(h.label() for h in scored.hits)
        return Reroute(
            matter=matter,
            primary=primary,
            co_operating=co_ops(matter, primary),
            confidence=conf,
            reason=f"退回后改派：{said}；改派下一候选事项 {matter.code} {matter.name}"
            f"（{words}，计 {scored.score} 分），由 {duty.unit(primary).name} 主办；{counted}",
            returned_by=returned_by,
            returns=returns,
        )
    # 3. No unit left that has not returned it.
    return ToTriage(f"{said}；无其他未退回的候选单位，转指挥中心人工分拨；{counted}", returned_by, returns)
