"""The duty list in force in a router replica, switched at once when a new version is published; pure.

`gridhub dutylist publish` puts a `DutyListPublished` on `config.dutylist` (compacted, one partition, one key);
every replica follows it (`duty_follower.py`) into an `ActiveDutyList`. What the holder does with each record:

- **The latest record wins**, whatever its version string says: versions are labels ("2026.11-47.2"), not
  ordered numbers, and compaction keeps only the latest record, so a replica that starts tomorrow sees only
  that one. Applying "latest wins" makes every replica, old or new, end on the same list. A rollback is
  publishing the older file again (the CLI asks for a new version number when its content differs from what
  that number meant).
- **Same content as in force** (same SHA-256): nothing rebuilt (`unchanged`), only the publication noted.
- **A version string already seen with other content** (which the CLI refuses): applied all the same, so
  replicas agree, and reported as `version-reused` so it is counted and logged.
- **An invalid record** (not JSON, not a `DutyListPublished`, a list with broken references, a digest that does
  not match): the list in force stays, and the result says why (`invalid`).
- **A tombstone** (no value) on the key: back to the replica's configured list (`reverted`), which is what a
  replica starting after compaction would use.

A switch builds everything derived from the new list (the `RouterIndex` of `decide.py`: lookups, grid points,
place names, the jieba text index, ~0.1 s for the 平安县 list) before the switch takes effect, so the first
event after it routes at full speed: `decide(event, active.duty)` finds the index built for that very list
object. `ActiveList` is one immutable snapshot: read `holder.current` once per event and use its `duty` for the
whole event, so the decision, its tasks and `RoutingDecision.duty_list_version` all name the same list.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ValidationError

from schemas.config import DutyListPublished, dutylist_sha256
from schemas.dutylist import DutyList
from services.router.decide import RouterIndex, router_index


class SwitchOutcome(StrEnum):
    """What applying one record of config.dutylist did (the label of gridhub_router_dutylist_switches_total)."""

    SWITCHED = "switched"  # a new list is in force
    VERSION_REUSED = "version-reused"  # switched, but the version string was seen before with other content
    UNCHANGED = "unchanged"  # the same content as the list in force: nothing rebuilt
    REVERTED = "reverted"  # a tombstone: back to the configured list
    INVALID = "invalid"  # refused; the list in force stays
    SKIPPED = "skipped"  # read in one run with later records that replaced it: never built


SWITCHING = frozenset({SwitchOutcome.SWITCHED, SwitchOutcome.VERSION_REUSED, SwitchOutcome.REVERTED})


@dataclass(frozen=True)
class ActiveList:
    """One duty list in force and what is derived from it; immutable, so a reader holds a consistent snapshot."""

    duty: DutyList
    index: RouterIndex
    sha256: str
    published: DutyListPublished | None  # None: the replica's configured list (GRIDHUB_ROUTER_DUTY_LIST or packaged)
    matter_codes: frozenset[str]

    @property
    def version(self) -> str:
        """The list's version, as decisions record it."""
        return self.duty.version

    @property
    def source(self) -> str:
        """`published` (from config.dutylist) or `configured` (the replica's own file)."""
        return "configured" if self.published is None else "published"

    def describe(self) -> str:
        """One line: version, digest, who published it when."""
        if self.published is None:
            return f"{self.version}（配置的清单 configured，sha256 {self.sha256[:12]}）"
        p = self.published
        return (
            f"{self.version}（{p.published_by} 于 {p.published_at.isoformat(timespec='seconds')} 发布 published，"
            f"sha256 {self.sha256[:12]}）"
        )


@dataclass(frozen=True)
class Applied:
    """The result of applying one record: what happened, the list in force before and after, and why."""

    outcome: SwitchOutcome
    active: ActiveList
    previous: ActiveList
    detail: str
    build_s: float = 0.0  # time spent building the new list's index (0 when nothing was built)

    @property
    def switched(self) -> bool:
        """True when another list is in force now."""
        return self.outcome in SWITCHING


def prepare(duty: DutyList, published: DutyListPublished | None, sha256: str | None = None) -> ActiveList:
    """Build what a list needs for routing (its RouterIndex, registered where decide() looks it up)."""
    return ActiveList(
        duty=duty,
        index=router_index(duty),
        sha256=sha256 or dutylist_sha256(duty),
        published=published,
        matter_codes=frozenset(m.code for m in duty.matters),
    )


def _why(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors(include_url=False)[:3]
        where = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(record)'}: {e['msg']}" for e in first)
        more = f" (+{exc.error_count() - len(first)} more)" if exc.error_count() > len(first) else ""
        return f"记录无效 / invalid record: {where}{more}"[:1000]
    return f"无法启用 / cannot build: {type(exc).__name__}: {exc}"[:1000]


class ActiveDutyList:
    """The duty list in force: starts on the configured list, switches on every valid config.dutylist record."""

    def __init__(self, base: DutyList) -> None:
        self._base = prepare(base, None)
        self._current = self._base
        self._seen: dict[str, str] = {base.version: self._base.sha256}  # version -> digest, as applied here
        self._listeners: list[Callable[[ActiveList, ActiveList], None]] = []

    @property
    def current(self) -> ActiveList:
        """The list in force now (read once per event)."""
        return self._current

    @property
    def base(self) -> ActiveList:
        """The configured list: in force until a record is applied, and again after a tombstone."""
        return self._base

    @property
    def duty(self) -> DutyList:
        """The DutyList in force now."""
        return self._current.duty

    @property
    def version(self) -> str:
        """The version in force now."""
        return self._current.version

    def on_switch(self, listener: Callable[[ActiveList, ActiveList], None]) -> None:
        """Call listener(previous, active) after each switch (to rebuild a caller's own per-list state)."""
        self._listeners.append(listener)

    def apply(self, value: bytes | None) -> Applied:
        """Apply one record value of config.dutylist (None: a tombstone); see the module's rules."""
        previous = self._current
        if value is None:
            if previous is self._base:
                return Applied(SwitchOutcome.UNCHANGED, previous, previous, "墓碑记录，已是配置的清单 / tombstone")
            return self._switch(
                SwitchOutcome.REVERTED, self._base, previous, 0.0, "墓碑记录：恢复配置的清单 / reverted"
            )
        try:
            record = DutyListPublished.model_validate_json(value)
        except ValidationError as exc:
            return Applied(SwitchOutcome.INVALID, previous, previous, _why(exc))
        by = f"{record.published_by} @ {record.published_at.isoformat(timespec='seconds')}"
        if record.sha256 == previous.sha256:
            # The content in force: note the publication, keep the index (nothing to rebuild).
            self._current = ActiveList(previous.duty, previous.index, previous.sha256, record, previous.matter_codes)
            return Applied(
                SwitchOutcome.UNCHANGED, self._current, previous, f"{record.version} 已在用 / in force ({by})"
            )
        started = time.perf_counter()
        try:
            active = prepare(record.duty_list, record, record.sha256)
        except Exception as exc:  # a list that validates but cannot be indexed must not stop the follower
            return Applied(SwitchOutcome.INVALID, previous, previous, _why(exc))
        build_s = time.perf_counter() - started
        seen = self._seen.get(record.version)
        outcome = SwitchOutcome.VERSION_REUSED if seen is not None and seen != record.sha256 else SwitchOutcome.SWITCHED
        self._seen[record.version] = record.sha256
        detail = f"{previous.version} → {record.version}（{by}）"
        if outcome is SwitchOutcome.VERSION_REUSED:
            detail += f"；版本号 {record.version} 曾用于其他内容 / version reused with other content"
        return self._switch(outcome, active, previous, build_s, detail)

    def apply_latest(self, values: Sequence[bytes | None]) -> list[Applied]:
        """Apply a run of records in topic order, ending where applying them one by one would, building once.

        The last record that applies (valid, or a tombstone) decides; later invalid ones are reported invalid,
        earlier ones `skipped`. One result per record, in order.
        """
        results: list[Applied | None] = [None] * len(values)
        for i in range(len(values) - 1, -1, -1):
            applied = self.apply(values[i])
            results[i] = applied
            if applied.outcome is not SwitchOutcome.INVALID:
                for j in range(i):
                    results[j] = Applied(
                        SwitchOutcome.SKIPPED, applied.active, applied.active, "被后来的记录取代 / superseded"
                    )
                break
        return [r for r in results if r is not None]

    def _switch(
        self, outcome: SwitchOutcome, active: ActiveList, previous: ActiveList, build_s: float, detail: str
    ) -> Applied:
        self._current = active  # one assignment: a reader sees the old snapshot or the new, never half of each
        for listener in self._listeners:
            listener(previous, active)
        return Applied(outcome, active, previous, detail, build_s)


@dataclass(frozen=True)
class Changed:
    """One thing in both lists that differs: its code, name and what changed."""

    code: str
    name: str
    what: tuple[str, ...]


@dataclass
class Section:
    """Added, removed and changed entries of one part of the list (matters, units, grids, categories)."""

    before: int = 0
    after: int = 0
    added: list[tuple[str, str]] = field(default_factory=list)  # (code, name)
    removed: list[tuple[str, str]] = field(default_factory=list)
    changed: list[Changed] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "before": self.before,
            "after": self.after,
            "added": [{"code": c, "name": n} for c, n in self.added],
            "removed": [{"code": c, "name": n} for c, n in self.removed],
            "changed": [{"code": c.code, "name": c.name, "what": list(c.what)} for c in self.changed],
        }


@dataclass
class ListChanges:
    """What a candidate list changes against the list in force."""

    old_version: str
    new_version: str
    same_content: bool
    matters: Section
    units: Section
    grids: Section
    categories: Section
    settings: list[str]  # "confidence_threshold 0.5 → 0.55"

    @property
    def empty(self) -> bool:
        return all(s.empty for s in (self.matters, self.units, self.grids, self.categories)) and not self.settings

    def as_dict(self) -> dict[str, Any]:
        return {
            "old_version": self.old_version,
            "new_version": self.new_version,
            "same_content": self.same_content,
            "matters": self.matters.as_dict(),
            "units": self.units.as_dict(),
            "grids": self.grids.as_dict(),
            "channel_categories": self.categories.as_dict(),
            "settings": self.settings,
        }

    def lines(self, limit: int = 30) -> list[str]:
        """The changes as text, at most `limit` entries per part."""
        out = [f"变更 / changes {self.old_version} → {self.new_version}："]
        if self.same_content:
            return [*out, "  内容相同 / same content"]
        if self.empty:
            return [*out, "  仅版本号不同 / only the version differs"]
        for label, section in (
            ("事项 matters", self.matters),
            ("单位 units", self.units),
            ("网格 grids", self.grids),
            ("渠道分类 channel categories", self.categories),
        ):
            if section.empty:
                out.append(f"  {label}: {section.before} → {section.after}，无变化 / unchanged")
                continue
            out.append(
                f"  {label}: {section.before} → {section.after}（新增 added {len(section.added)}，删除 removed "
                f"{len(section.removed)}，修改 changed {len(section.changed)}）"
            )
            entries = [f"    + {c} {n}" for c, n in section.added]
            entries += [f"    - {c} {n}" for c, n in section.removed]
            entries += [f"    ~ {c.code} {c.name}: {'; '.join(c.what)}" for c in section.changed]
            out += entries[:limit]
            if len(entries) > limit:
                out.append(f"    …（另 {len(entries) - limit} 项 / {len(entries) - limit} more）")
        out += [f"  设置 setting: {s}" for s in self.settings]
        return out


def _words(kind: str, old: dict[str, int], new: dict[str, int]) -> str | None:
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    reweighed = sorted(w for w in set(old) & set(new) if old[w] != new[w])
    if not (added or removed or reweighed):
        return None
    parts = [f"+{'、'.join(added)}" if added else "", f"−{'、'.join(removed)}" if removed else ""]
    parts.append("权重 weight " + "、".join(f"{w} {old[w]}→{new[w]}" for w in reweighed) if reweighed else "")
    return f"{kind} " + " ".join(p for p in parts if p)


def _fields(old: BaseModel, new: BaseModel, skip: tuple[str, ...] = ()) -> list[str]:
    what = []
    a, b = old.model_dump(mode="json"), new.model_dump(mode="json")
    for name in a:
        if name not in skip and a[name] != b[name]:
            what.append(f"{name} {_show(a[name])} → {_show(b[name])}")
    return what


def _show(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    text = str(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _section(old: dict[str, tuple[str, BaseModel]], new: dict[str, tuple[str, BaseModel]], diff: Any) -> Section:
    section = Section(before=len(old), after=len(new))
    section.added = [(code, new[code][0]) for code in new if code not in old]
    section.removed = [(code, old[code][0]) for code in old if code not in new]
    for code in new:
        if code in old and old[code][1] != new[code][1]:
            section.changed.append(Changed(code, new[code][0], tuple(diff(old[code][1], new[code][1]))))
    return section


def list_changes(old: DutyList, new: DutyList) -> ListChanges:
    """What `new` changes against `old`: matters, units, grids and channel categories added, removed, changed."""

    def matter_diff(a: Any, b: Any) -> list[str]:
        what = _fields(a, b, skip=("keywords", "phrases", "description"))
        for kind, x, y in (("关键词 keywords", a.keywords, b.keywords), ("短语 phrases", a.phrases, b.phrases)):
            if (words := _words(kind, x, y)) is not None:
                what.append(words)
        if a.description != b.description:
            what.append("description")
        return what

    class _Target(BaseModel):
        target: str | tuple[str, ...]

    def categories(duty: DutyList) -> dict[str, tuple[str, BaseModel]]:
        return {
            f"{channel}:{category}": (category, _Target(target=target))
            for channel, mapping in duty.channel_categories.items()
            for category, target in mapping.items()
        }

    settings = []
    skip = {"version", "units", "grids", "matters", "channel_categories"}
    a, b = old.model_dump(mode="json"), new.model_dump(mode="json")
    for name in a:
        if name not in skip and a[name] != b[name]:
            settings.append(f"{name} {_show(a[name])} → {_show(b[name])}")
    return ListChanges(
        old_version=old.version,
        new_version=new.version,
        same_content=dutylist_sha256(old) == dutylist_sha256(new),
        matters=_section(
            {m.code: (m.name, m) for m in old.matters}, {m.code: (m.name, m) for m in new.matters}, matter_diff
        ),
        units=_section({u.code: (u.name, u) for u in old.units}, {u.code: (u.name, u) for u in new.units}, _fields),
        grids=_section(
            {g.code: (g.village, g) for g in old.grids}, {g.code: (g.village, g) for g in new.grids}, _fields
        ),
        categories=_section(categories(old), categories(new), _fields),
        settings=settings,
    )
