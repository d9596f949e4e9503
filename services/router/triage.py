"""The command centre's triage queue (人工分拨): one item per queued event and what dispatchers do to it; pure.

queued → claimed (by one dispatcher) → dispatched (by that dispatcher, to the units and matter they chose,
with a note), or released back to queued. A dispatcher may dispatch an item nobody has claimed (the claim is
implied); one claimed by another dispatcher is refused (409). A dispatched item stays for `KEEP_DISPATCHED`
so a replayed queue command of the same round does nothing, then is dropped. An event queued again in a
later round (after returns) is a new item.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from schemas import (
    Channel,
    ClaimTriagedEvent,
    DispatchTriagedEvent,
    QueueForTriage,
    ReleaseTriagedEvent,
    TriageCause,
)
from schemas.dutylist import DutyList

KEEP_DISPATCHED = timedelta(days=7)
NOT_QUEUED_ZH = "事件 {event_id} 不在分拨队列中（编号错误、尚未入队，或已派单）。"


class TriageState(StrEnum):
    """Where a queued event is."""

    QUEUED = "queued"
    CLAIMED = "claimed"
    DISPATCHED = "dispatched"


class TriageItem(BaseModel):
    """One event in the queue, as the list shows it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str
    round: int
    title: str
    channel: Channel
    matter_code: str | None
    matter_name: str | None
    confidence: float
    cause: TriageCause
    reason: str
    township: str | None
    received_at: datetime
    queued_at: datetime
    state: TriageState = TriageState.QUEUED
    claimed_by: str | None = None
    claimed_at: datetime | None = None
    dispatched_by: str | None = None
    dispatched_at: datetime | None = None
    dispatch_command_id: str | None = None  # the command that dispatched it: its replay is recognised
    history: tuple[str, ...] = ()  # what happened, in Chinese, oldest first


@dataclass(frozen=True)
class Refusal:
    """A command the item's state does not allow: the HTTP status and the Chinese detail."""

    status: int
    detail: str


TriageCommand = ClaimTriagedEvent | ReleaseTriagedEvent | DispatchTriagedEvent


def _stamp(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


def queue(item: TriageItem | None, command: QueueForTriage) -> TriageItem | None:
    """The item a queue command makes, or None when it is a replay (the item has this round or a later one)."""
    if item is not None and item.round >= command.round:
        return None
    return TriageItem(
        event_id=command.event_id,
        round=command.round,
        title=command.title,
        channel=command.channel,
        matter_code=command.matter_code,
        matter_name=command.matter_name,
        confidence=command.confidence,
        cause=command.cause,
        reason=command.reason,
        township=command.township,
        received_at=command.received_at,
        queued_at=command.queued_at,
        history=(f"{_stamp(command.queued_at)} 入队：{command.reason}",),
    )


def apply(item: TriageItem | None, command: TriageCommand) -> TriageItem | Refusal:
    """The item after a dispatcher's command, or why the command is refused."""
    who, at = command.dispatcher, command.requested_at
    if item is None or item.state is TriageState.DISPATCHED:
        return Refusal(404, NOT_QUEUED_ZH.format(event_id=command.event_id))
    holder = item.claimed_by if item.state is TriageState.CLAIMED else None
    if holder is not None and holder != who:
        when = _stamp(item.claimed_at) if item.claimed_at else ""
        return Refusal(409, f"事件 {item.event_id} 已由调度员 {holder} 于 {when} 认领，不能由 {who} 操作。")
    if isinstance(command, ClaimTriagedEvent):
        if holder == who:
            return item  # claiming twice changes nothing
        return item.model_copy(
            update={
                "state": TriageState.CLAIMED,
                "claimed_by": who,
                "claimed_at": at,
                "history": (*item.history, f"{_stamp(at)} 调度员 {who} 认领"),
            }
        )
    if isinstance(command, ReleaseTriagedEvent):
        if holder is None:
            return Refusal(409, f"事件 {item.event_id} 未被认领，无需退回队列。")
        note = f"：{command.note}" if command.note else ""
        return item.model_copy(
            update={
                "state": TriageState.QUEUED,
                "claimed_by": None,
                "claimed_at": None,
                "history": (*item.history, f"{_stamp(at)} 调度员 {who} 放回队列{note}"),
            }
        )
    units = "、".join((command.primary, *command.co_operating))
    return item.model_copy(
        update={
            "state": TriageState.DISPATCHED,
            "claimed_by": who,
            "claimed_at": item.claimed_at or at,
            "dispatched_by": who,
            "dispatched_at": at,
            "dispatch_command_id": command.message_id,
            "history": (*item.history, f"{_stamp(at)} 调度员 {who} 派单至 {units}"),
        }
    )


def listing(items: list[TriageItem], now: datetime) -> list[dict[str, Any]]:
    """The open items (queued or claimed), oldest first, with their age in minutes."""
    open_items = sorted((i for i in items if i.state is not TriageState.DISPATCHED), key=lambda i: i.queued_at)
    return [
        item.model_dump(mode="json") | {"age_minutes": round((now - item.queued_at).total_seconds() / 60, 1)}
        for item in open_items
    ]


def expired(items: list[TriageItem], now: datetime, keep: timedelta = KEEP_DISPATCHED) -> list[str]:
    """Event ids of items dispatched longer ago than `keep`: dropped from the table."""
    return [i.event_id for i in items if i.dispatched_at is not None and now - i.dispatched_at > keep]


def dispatch_problems(
    duty: DutyList, matter_code: str | None, primary: str, co_operating: tuple[str, ...]
) -> list[dict[str, str]]:
    """What is wrong with a dispatcher's choice of units and matter (field, Chinese message), if anything."""
    units = {u.code: u for u in duty.units}
    problems = []
    if matter_code is not None and duty.matter(matter_code) is None:
        problems.append({"field": "matter_code", "message": f"事项 {matter_code} 不在权责清单中"})
    if primary not in units:
        problems.append({"field": "primary", "message": f"单位 {primary} 不在单位表中"})
    elif primary == duty.county.command_centre:
        problems.append({"field": "primary", "message": "不能派回指挥中心本身"})
    for i, code in enumerate(co_operating):
        if code not in units:
            problems.append({"field": f"co_operating.{i}", "message": f"单位 {code} 不在单位表中"})
        elif code == primary:
            problems.append({"field": f"co_operating.{i}", "message": f"单位 {code} 已是主办单位"})
    return problems
