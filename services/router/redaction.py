"""Who may see the reporter on a task, and the redacted copy for those who may not; pure.

Units must contact the citizen within an hour, so a task carries its reporter, with two exceptions:

* The unit a petition complains about (被投诉单位) never receives the petitioner's identity: the regulation
  forbids passing it to the accused. Its copy says `WITHHELD_FROM_ACCUSED` instead, and every occurrence of
  the petitioner's name, phone (with or without separators) and home address (whole, or its numbered tail
  such as "3号楼2单元501") is masked in the task's text (title, description, address, the router's reason).
  This holds for the petition office too when the petition complains about it. Other ways of naming the
  petitioner in free text (a nickname, "王女士") are not recognised.
* A confidential reporter (every petitioner) is seen only by the petition office (信访局, the list's
  `county.petition_office`); other units get `WITHHELD_CONFIDENTIAL` and reach the petitioner through it.

A complained-about unit the list cannot name (free text matching no unit) is treated as possibly any unit:
only the petition office sees the identity then, and the others get the accused's notice.
"""

from __future__ import annotations

import re

from schemas import EventNormalised, Location, TaskDispatched, TaskReporter
from schemas.dutylist import DutyList
from schemas.task import WITHHELD_CONFIDENTIAL, WITHHELD_FROM_ACCUSED

MASK = "［已隐去］"
# Separators people put inside a phone number: spaces, hyphens, dots, full-width hyphen and space.
_PHONE_SEPARATORS = r"[\s\-.－　]?"


def complained_unit_code(event: EventNormalised, duty: DutyList) -> str | None:
    """The unit code a report complains about: its code, name or alias, else the longest one named in the text."""
    text = (event.complained_unit or "").strip()
    if not text:
        return None
    names: dict[str, str] = {}
    for unit in duty.units:
        for name in (unit.code, unit.name, *unit.aliases):
            names.setdefault(name.upper() if name == unit.code else name, unit.code)
    if (exact := names.get(text) or names.get(text.upper())) is not None:
        return exact
    inside = [(len(name), code) for name, code in names.items() if len(name) >= 2 and name in text]
    return max(inside)[1] if inside else None


def reporter_for(event: EventNormalised, unit_code: str, duty: DutyList) -> TaskReporter:
    """The reporter as this unit may see them: in full, or withheld with the reason."""
    reporter = event.reporter
    office = duty.county.petition_office
    if event.complained_unit:
        accused = complained_unit_code(event, duty)
        if unit_code == accused or (accused is None and unit_code != office):
            return TaskReporter(anonymous=reporter.anonymous, withheld=True, notice=WITHHELD_FROM_ACCUSED)
    if reporter.confidential and unit_code != office:
        return TaskReporter(anonymous=reporter.anonymous, withheld=True, notice=WITHHELD_CONFIDENTIAL)
    return TaskReporter(
        name=reporter.name, phone=reporter.phone, address=reporter.address, anonymous=reporter.anonymous
    )


def _phone_pattern(phone: str) -> re.Pattern[str] | None:
    digits = re.sub(r"\D", "", phone)
    if len(digits) < 5:
        return None
    if len(digits) > 11 and digits.startswith("86"):
        digits = digits[2:]  # +86 13912345678: the number as people write it
    # 13912345678 also as 139-1234-5678, 139 1234 5678 (a +86 before it stays, the number goes).
    return re.compile(r"(?<!\d)" + _PHONE_SEPARATORS.join(map(re.escape, digits)) + r"(?!\d)")


def _address_parts(address: str) -> list[str]:
    # The whole address, then its tails of six characters or more that hold a number: the dwelling
    # ("幸福小区3号楼2单元501", "3号楼2单元501", "2单元501") however much of the place the writer put before it.
    # A tail without a number ("东街社区幸福小区") is a neighbourhood, left as it is: the task needs its place.
    address = address.strip()
    tails = [address[i:] for i in range(1, len(address) - 5) if any(c.isdigit() for c in address[i:])]
    return [address, *tails]


def scrub(text: str, event: EventNormalised) -> str:
    """The text with the reporter's name, phone and home address (its numbered tails too) masked."""
    reporter = event.reporter
    values = [*(_address_parts(reporter.address) if reporter.address else []), (reporter.name or "").strip()]
    for value in sorted((v for v in values if v), key=len, reverse=True):
        text = text.replace(value, MASK)
    if reporter.phone and (pattern := _phone_pattern(reporter.phone)) is not None:
        text = pattern.sub(MASK, text)
    return text


def redact(task: TaskDispatched, event: EventNormalised) -> TaskDispatched:
    """A task whose reporter is withheld, with the reporter's personal data masked in all its text."""
    if task.reporter is None or not task.reporter.withheld:
        return task
    loc = task.location
    location = Location(
        address=scrub(loc.address, event) if loc.address else None,
        district=scrub(loc.district, event) if loc.district else None,
        grid_code=loc.grid_code,
        lat=loc.lat,
        lon=loc.lon,
    )
    decision = task.decision.model_copy(update={"reason": scrub(task.decision.reason, event)})
    return task.model_copy(
        update={
            "title": scrub(task.title, event),
            "description": scrub(task.description, event),
            "location": location,
            "decision": decision,
        }
    )
