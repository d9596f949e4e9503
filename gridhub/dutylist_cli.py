"""`gridhub dutylist validate|evaluate|publish|active|diff` and `gridhub route`: the duty list and the router.

validate, evaluate and route need no broker; publish, active and diff read (and publish writes) config.dutylist.
"""

from __future__ import annotations

import asyncio
import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from gridhub.kernel.settings import CommonSettings
    from schemas.config import DutyListPublished
    from schemas.dutylist import DutyList
    from services.router.decide import Decision
    from services.router.duty_versions import ActiveDutyList, Applied
    from services.router.evaluation import Evaluation
    from services.router.replay_diff import DiffReport

dutylist_app = typer.Typer(
    help="The duty list (权责清单): validate a file, evaluate the router on the development set.",
    no_args_is_help=True,
)

ListOption = Annotated[
    Path | None,
    typer.Option("--list", exists=True, dir_okay=False, help="Duty-list JSON file; the packaged list when unset."),
]


def _load(path: Path | None) -> DutyList:
    from pydantic import ValidationError

    from schemas.dutylist import load_duty_list

    try:
        return load_duty_list(path)
    except (ValidationError, ValueError) as exc:
        typer.echo(f"清单无效 / invalid duty list {path or '(packaged)'}: {exc}", err=True)
        raise typer.Exit(1) from exc


def check_file(path: Path) -> tuple[DutyList | None, list[str]]:
    """The list in a file and its problems (each in Chinese / English); the list is None when it has any."""
    from pydantic import ValidationError

    from gridhub.kernel.problems import field_errors
    from schemas.dutylist import DutyList, Problem

    try:
        data = json.loads(path.read_text("utf-8"))
    except OSError as exc:
        return None, [f"无法读取文件 / cannot read {path}: {exc.strerror}"]
    except UnicodeDecodeError:
        return None, [f"文件不是 UTF-8 编码 / {path} is not UTF-8"]
    except json.JSONDecodeError as exc:
        return None, [
            f"JSON 格式错误（第 {exc.lineno} 行第 {exc.colno} 列）/ invalid JSON at {exc.lineno}:{exc.colno}: {exc.msg}"
        ]
    found: list[Problem] = []
    try:
        duty = DutyList.model_validate(data, context={"problems": found})
    except ValidationError as exc:
        return None, [f"{e['field']}: {e['message']}" for e in field_errors(exc)]
    if found:
        return None, [str(p) for p in found]
    return duty, []


def summary(duty: DutyList) -> str:
    """One paragraph: what the list holds."""
    kinds: dict[str, int] = {}
    for unit in duty.units:
        kinds[unit.kind] = kinds.get(unit.kind, 0) + 1
    tiers: dict[str, int] = {}
    for matter in duty.matters:
        tiers[matter.tier.value] = tiers.get(matter.tier.value, 0) + 1
    categories = sum(len(m) for m in duty.channel_categories.values())
    coarse = sum(not isinstance(t, str) for m in duty.channel_categories.values() for t in m.values())
    words = sum(len(m.keywords) + len(m.phrases) for m in duty.matters)
    return (
        f"清单 {duty.version}（{duty.county.name}）有效 / valid: "
        f"{len(duty.matters)} 个事项 matters（乡镇属地 township {tiers.get('township', 0)}，"
        f"县直部门 county {tiers.get('county', 0)}），{words} 个关键词和短语 words；"
        f"{len(duty.units)} 个单位 units（指挥中心 {kinds.get('command-centre', 0)}，县直部门 "
        f"{kinds.get('county-department', 0)}，乡镇 {kinds.get('township-centre', 0)}，村（居）委会 "
        f"{kinds.get('village-committee', 0)}）；{len(duty.grids)} 个网格 grids；"
        f"{categories} 个渠道分类 channel categories（其中粗分类 coarse {coarse}）；"
        f"置信度阈值 threshold {duty.confidence_threshold}"
    )


@dutylist_app.command("validate")
def validate(
    file: Annotated[
        Path | None, typer.Argument(dir_okay=False, help="Duty-list JSON file; the packaged list when omitted.")
    ] = None,
) -> None:
    """Check a duty list: shape, references, codes, weights. Exit 0 with a summary, or 1 with every problem."""
    from importlib import resources

    from schemas.dutylist import advisories

    if file is None:
        with resources.as_file(resources.files("schemas").joinpath("data/dutylist.json")) as packaged:
            duty, problems = check_file(packaged)
    else:
        duty, problems = check_file(file)
    if duty is None:
        typer.echo(f"清单无效 / invalid duty list: {file or '(packaged)'}（{len(problems)} 个问题 problems）")
        for problem in problems:
            typer.echo(f"  - {problem}")
        raise typer.Exit(1)
    typer.echo(summary(duty))
    for note in advisories(duty):
        typer.echo(f"  提示 / note: {note}")


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _left(text: str, width: int) -> str:
    """Pad to a display width (a Chinese character takes two columns)."""
    return text + " " * max(0, width - _width(text))


def _right(text: str, width: int) -> str:
    return " " * max(0, width - _width(text)) + text


def render_evaluation(ev: Evaluation, devset: Path, *, errors: str | None = None) -> str:
    """The evaluation as text tables (Chinese / English headers)."""
    from services.router.evaluation import TARGET_TRIAGE_RATE, TARGET_UNIT_ACCURACY

    parts = {name: f.as_dict() for name, f in ev.parts.items()}
    t, h, a = parts["tuning"], parts["held-out"], parts["all"]
    lines = [
        f"清单 {ev.duty_list_version} · 开发集 devset {devset.name}：{a['events']} 条事件 events"
        f"（调参 tuning {t['events']} / 留出 held-out {h['events']}，按 id 哈希稳定划分）",
        "",
        _left("", 42) + "".join(_right(x, 16) for x in ("调参 tuning", "留出 held-out", "全部 all", "目标 target")),
    ]
    rows: list[tuple[str, str, str]] = [
        ("单位准确率（已分派）unit acc, routed", "unit_accuracy_on_routed", f"≥ {TARGET_UNIT_ACCURACY:.0%}"),
        ("转人工分拨率 triage rate", "triage_rate", f"≤ {TARGET_TRIAGE_RATE:.0%}"),
        ("事项准确率 matter accuracy", "matter_accuracy", ""),
        ("单位准确率（全部）unit acc, all", "unit_accuracy_all", ""),
        ("该分拨的已分拨 ambiguous → triage", "ambiguous_correctly_triaged", ""),
    ]
    for label, key, target in rows:
        cells = [_pct(t[key]), _pct(h[key]), _pct(a[key]), target]
        lines.append(_left(label, 42) + "".join(_right(c, 16) for c in cells))
    cells = [f"{p['routed']}/{p['events']}" for p in (t, h, a)]
    lines.append(_left("已分派/事件 routed/events", 42) + "".join(_right(c, 16) for c in cells))
    cells = ["是 yes" if p["meets_targets"] else "否 no" for p in (t, h, a)]
    lines.append(_left("达标 meets targets", 42) + "".join(_right(c, 16) for c in cells))
    lines.append(f"每条事件 decide() 耗时 per event: {ev.micros_per_event:.0f} µs（分类+定位+分派，单核）")
    lines.append(f"规则 rules (all): {', '.join(f'{k} {v}' for k, v in a['rules'].items())}")
    lines += ["", "按渠道 by channel (all)：事件 events · 单位准确率 unit acc (routed) · 分拨率 triage"]
    for channel, c in a["by_channel"].items():
        lines.append(
            f"  {channel:9}{c['events']:>5}{_pct(c['unit_accuracy_on_routed']):>10}{_pct(c['triage_rate']):>9}"
        )
    lines += ["", "每事项 per matter：样本 n · 精确率 precision · 召回率 recall（调参 tuning | 留出 held-out）"]
    for code, tm in t["per_matter"].items():
        hm = h["per_matter"][code]
        lines.append(
            f"  {code}  {tm['expected']:>3}{_pct(tm['precision']):>8}{_pct(tm['recall']):>8}   |"
            f"{hm['expected']:>3}{_pct(hm['precision']):>8}{_pct(hm['recall']):>8}"
        )
    for name in ("tuning", "held-out"):
        lines += ["", f"混淆前十 confusion top 10 ({name})：应为 expected → 实为 got（triage = 转人工）"]
        lines += [f"  {c['expected']:>4} → {c['got']:<7}{c['events']:>3}" for c in parts[name]["confusion_top10"]]
    lines += ["", "置信度校准 calibration (all)：区间 band · 事件 events · 事项准确率 matter accuracy"]
    lines += [
        f"  {c['confidence']:9}{c['events']:>5}{_pct(c['matter_accuracy']):>9}" for c in a["calibration"] if c["events"]
    ]
    if errors:
        lines += ["", f"错误与转人工 mistakes and triage ({errors})："]
        for o in ev.outcomes:
            if errors != "all" and o.row.part != errors:
                continue
            if o.correct_unit and not (o.triaged and o.row.expected_matter):
                continue
            lines.append(
                f"  {o.row.id} [{o.row.channel}] 应为 {o.row.expected_matter}/{o.row.expected_unit} "
                f"实为 {o.classified}/{o.unit}{' triage' if o.triaged else ''}：{o.row.text}\n      {o.reason}"
            )
    return "\n".join(lines)


@dutylist_app.command("evaluate")
def evaluate_command(
    duty_list: ListOption = None,
    devset: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help="Labelled JSON lines; tests/data/routing_devset.jsonl when unset."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    errors: Annotated[
        str | None, typer.Option(help="Also list mistakes and triaged events of: tuning, held-out or all.")
    ] = None,
) -> None:
    """Route the labelled development set: unit accuracy, triage rate, per-matter precision and recall."""
    from services.router.evaluation import DEVSET_PATH, evaluate, load_devset

    if errors not in (None, "tuning", "held-out", "all"):
        raise typer.BadParameter("one of tuning, held-out, all", param_hint="--errors")
    path = devset or DEVSET_PATH
    if not path.exists():
        typer.echo(f"找不到开发集 / no development set at {path}", err=True)
        raise typer.Exit(1)
    duty = _load(duty_list)
    ev = evaluate(duty, load_devset(path))
    if as_json:
        typer.echo(json.dumps(ev.as_dict(), ensure_ascii=False, indent=2))
    else:
        typer.echo(render_evaluation(ev, path, errors=errors))


def decision_dict(decision: Decision, duty: DutyList) -> dict[str, Any]:
    """A decision as JSON: units with roles, matter, tier, confidence, rule, reason, place, words."""
    r = decision.routing
    cls = decision.classification
    runner_up = cls.runner_up if cls else None
    return {
        "matter": {"code": r.matter_code, "name": r.matter_name} if r.matter_code else None,
        "tier": decision.tier.value,
        "units": [
            {"code": a.unit_code, "name": duty.unit(a.unit_code).name, "role": a.role.value}
            for a in decision.assignments
        ],
        "triage": r.triage,
        "rule": r.rule,
        "confidence": r.confidence,
        "reason": r.reason,
        "duty_list_version": r.duty_list_version,
        "township": r.township,
        "village": r.village,
        "grid": r.grid_code,
        "hits": [{"word": h.word, "weight": h.weight, "kind": h.kind} for h in (cls.hits if cls else ())],
        "runner_up": (
            {"code": runner_up.matter.code, "name": runner_up.matter.name, "score": runner_up.score}
            if runner_up
            else None
        ),
    }


def route_command(
    source: Annotated[str, typer.Option(help="Channel: 12345, 110, wechat, petition or gridapp.")],
    text: Annotated[str, typer.Option(help="What the report says.")],
    grid: Annotated[str | None, typer.Option(help="Grid code, e.g. PA-CG-01-001.")] = None,
    lat: Annotated[float | None, typer.Option(help="WGS-84 latitude (with --lon).")] = None,
    lon: Annotated[float | None, typer.Option(help="WGS-84 longitude (with --lat).")] = None,
    category: Annotated[
        str | None, typer.Option(help="A matter code (M08) or the channel's own category (110: 燃气泄漏).")
    ] = None,
    address: Annotated[str | None, typer.Option(help="Address as the channel records it.")] = None,
    duty_list: ListOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the decision as JSON.")] = False,
) -> None:
    """Route one report with the duty list and print the decision (no broker, nothing sent)."""
    from schemas import Channel
    from services.router.decide import decide
    from services.router.evaluation import report_event

    channels = [c.value for c in Channel]
    if source not in channels:
        raise typer.BadParameter(f"one of {', '.join(channels)}", param_hint="--source")
    if (lat is None) != (lon is None):
        raise typer.BadParameter("give both --lat and --lon", param_hint="--lat/--lon")
    duty = _load(duty_list)
    event = report_event(source, text, category=category, grid=grid, lat=lat, lon=lon, address=address)
    decision = decide(event, duty)
    out = decision_dict(decision, duty)
    if as_json:
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    matter = out["matter"]
    typer.echo(f"事项 matter: {matter['code']} {matter['name']}" if matter else "事项 matter: —")
    typer.echo(f"层级 tier: {out['tier']}；规则 rule: {out['rule']}；置信度 confidence: {out['confidence']:.2f}")
    for unit in out["units"]:
        typer.echo(f"  {unit['role']:13} {unit['code']:10} {unit['name']}")
    typer.echo(f"理由 reason: {out['reason']}")


# --- Versions: publish a list on config.dutylist, show the list in force, diff a candidate (with a replay) ---

ConfiguredOption = Annotated[
    Path | None,
    typer.Option(
        "--configured",
        envvar="GRIDHUB_ROUTER_DUTY_LIST",
        exists=True,
        dir_okay=False,
        help="The routers' configured list, in force while nothing is published; the packaged list when unset.",
    ),
]
DUTYLIST_TOPIC = "config.dutylist"


@dataclass
class PublishedState:
    """What config.dutylist holds: the list in force (as a router would apply it) and the records still there."""

    holder: ActiveDutyList
    history: list[DutyListPublished]  # valid records, oldest first (until compaction drops the older ones)
    applied: list[Applied]  # one per record, as the holder applied them
    topic_exists: bool


def _candidate(file: Path) -> DutyList:
    """The list in a file, checked exactly like `dutylist validate`; exit 2 with every problem when invalid."""
    duty, problems = check_file(file)
    if duty is None:
        typer.echo(f"清单无效 / invalid duty list: {file}（{len(problems)} 个问题 problems）", err=True)
        for problem in problems:
            typer.echo(f"  - {problem}", err=True)
        raise typer.Exit(2)
    return duty


def _broker_failed(common: CommonSettings, exc: BaseException) -> typer.Exit:
    typer.echo(f"无法访问 Kafka / cannot reach Kafka at {common.kafka_bootstrap}: {exc!r}", err=True)
    return typer.Exit(1)


async def read_published(common: CommonSettings, base: DutyList, timeout_s: float = 30.0) -> PublishedState:
    """Read config.dutylist from the start to its end and apply it as every router replica does."""
    from pydantic import ValidationError

    from gridhub.kernel.follower import read_window
    from schemas.config import DutyListPublished
    from services.router.duty_versions import ActiveDutyList

    values: list[bytes | None] = []
    read = await read_window(
        common, common.topic(DUTYLIST_TOPIC), lambda record: values.append(record.value), timeout_s=timeout_s
    )
    holder = ActiveDutyList(base)
    applied = holder.apply_latest(values)
    history = []
    for value in values:
        if value is not None:
            try:
                history.append(DutyListPublished.model_validate_json(value))
            except ValidationError:
                continue
    return PublishedState(holder, history, applied, read is not None)


async def send_published(common: CommonSettings, record: DutyListPublished, timeout_s: float = 30.0) -> int:
    """Produce the record on config.dutylist (created compacted if missing) and wait for the ack; its offset."""
    from gridhub.kernel.kafka import create_topics, make_producer
    from schemas import DUTYLIST_KEY, topic_spec

    await asyncio.wait_for(create_topics(common, (topic_spec(DUTYLIST_TOPIC),)), timeout_s)
    # gzip: a county's list is tens of kilobytes of JSON that compresses about sixfold.
    producer = make_producer(common, compression_type="gzip", max_request_size=8 * 1024 * 1024)
    await asyncio.wait_for(producer.start(), timeout_s)
    try:
        sent = await asyncio.wait_for(
            producer.send_and_wait(common.topic(DUTYLIST_TOPIC), record.to_bytes(), key=DUTYLIST_KEY.encode()),
            timeout_s,
        )
        return int(sent.offset)
    finally:
        await producer.stop()


def _os_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


async def publish_list(
    common: CommonSettings,
    file: Path,
    *,
    by: str,
    base: DutyList,
    yes: bool,
    confirm: Callable[[str], bool] | None = None,
) -> DutyListPublished | None:
    """`gridhub dutylist publish` without the command line: check, compare with the list in force, publish.

    Exit 2 (typer.Exit) for an invalid file or a version that names other content; None when the content is
    already in force (nothing published) or the operator declined; the record once the broker acked it.
    """
    from datetime import UTC, datetime

    from aiokafka.errors import KafkaError

    from schemas.config import DutyListPublished, dutylist_sha256
    from services.router.duty_versions import list_changes

    candidate = _candidate(file)
    typer.echo(summary(candidate))
    try:
        state = await read_published(common, base)
    except (KafkaError, OSError, TimeoutError) as exc:
        raise _broker_failed(common, exc) from exc
    active = state.holder.current
    typer.echo(f"在用 / in force: {active.describe()}")
    digest = dutylist_sha256(candidate)
    if digest == active.sha256:
        typer.echo(f"已在用 / already active: {candidate.version}，内容相同，未发布 / same content, nothing published")
        return None
    known = {state.holder.base.version: ("配置的清单 the configured list", state.holder.base.sha256)}
    for h in state.history:
        known[h.version] = (f"{h.published_by} 于 {h.published_at.isoformat(timespec='seconds')} 发布", h.sha256)
    known[active.version] = ("在用 in force", active.sha256)
    if candidate.version in known and known[candidate.version][1] != digest:
        where = known[candidate.version][0]
        typer.echo(
            f"拒绝发布 / refused: 版本号 {candidate.version} 已用于不同的内容（{where}）；内容改变时必须改版本号 / "
            f"version {candidate.version} already names other content: change `version` when the content changes",
            err=True,
        )
        raise typer.Exit(2)
    typer.echo("\n".join(list_changes(active.duty, candidate).lines()))
    topic = common.topic(DUTYLIST_TOPIC)
    ask = confirm or (lambda text: typer.confirm(text, default=False))
    if not yes and not ask(f"发布 {candidate.version} 到 {topic}，各路由实例立即切换？/ publish to {topic}?"):
        typer.echo("未发布 / not published")
        return None
    record = DutyListPublished.of(
        candidate, published_by=by, published_at=datetime.now(UTC).astimezone(), previous_version=active.version
    )
    try:
        offset = await send_published(common, record)
    except (KafkaError, OSError, TimeoutError) as exc:
        raise _broker_failed(common, exc) from exc
    typer.echo(
        f"已发布 / published: {record.version}（sha256 {record.sha256[:12]}，{topic} offset {offset}，"
        f"{record.published_by} 于 {record.published_at.isoformat(timespec='seconds')}）；"
        "各路由实例收到即切换 / every router replica switches on receipt"
    )
    return record


@dutylist_app.command("publish")
def publish_command(
    file: Annotated[Path, typer.Argument(dir_okay=False, help="The duty-list JSON file to put in force.")],
    by: Annotated[
        str | None, typer.Option("--by", help="Who publishes it (recorded with it); the OS user when unset.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Publish without asking.")] = False,
    configured: ConfiguredOption = None,
) -> None:
    """Put a new version of the duty list in force on every router (config.dutylist); no restart.

    Checked like `validate` (exit 2 with every problem), compared with the list in force (a version that already
    names other content is refused, exit 2; the same content is a no-op), the changes shown, then produced and
    acknowledged by the broker.
    """
    from gridhub.kernel.settings import CommonSettings

    publisher = (by or _os_user()).strip()
    if not 1 <= len(publisher) <= 128:
        raise typer.BadParameter("1-128 characters", param_hint="--by")
    common = CommonSettings()
    base = _load(configured)
    asyncio.run(publish_list(common, file, by=publisher, base=base, yes=yes))


def _active_dict(state: PublishedState, topic: str) -> dict[str, Any]:
    active = state.holder.current
    p = active.published
    return {
        "topic": topic,
        "version": active.version,
        "source": active.source,
        "sha256": active.sha256,
        "published_by": p.published_by if p else None,
        "published_at": p.published_at.isoformat() if p else None,
        "previous_version": p.previous_version if p else None,
        "matters": len(active.duty.matters),
        "units": len(active.duty.units),
        "grids": len(active.duty.grids),
        "refused": [a.detail for a in state.applied if a.outcome.value == "invalid"],
        "history": [
            {"version": h.version, "sha256": h.sha256, "published_by": h.published_by, "at": h.published_at.isoformat()}
            for h in state.history
        ],
    }


@dutylist_app.command("active")
def active_command(
    configured: ConfiguredOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print it as JSON.")] = False,
) -> None:
    """Print the duty list in force: the latest published version, or the configured list when none was."""
    from aiokafka.errors import KafkaError

    from gridhub.kernel.settings import CommonSettings

    common = CommonSettings()
    topic = common.topic(DUTYLIST_TOPIC)
    try:
        state = asyncio.run(read_published(common, _load(configured)))
    except (KafkaError, OSError, TimeoutError) as exc:
        raise _broker_failed(common, exc) from exc
    out = _active_dict(state, topic)
    if as_json:
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    active = state.holder.current
    if active.published is None:
        typer.echo(
            f"{topic} 上没有发布的清单 / nothing published on {topic}: 路由使用配置的清单 / routers use their own"
        )
    typer.echo(f"在用 / in force: {active.describe()}")
    if active.published is not None:
        typer.echo(f"  上一版 / previous: {active.published.previous_version or '配置的清单 configured'}")
    typer.echo(f"  {summary(active.duty)}")
    for detail in out["refused"]:
        typer.echo(f"  注意 / note: 主题上有无效记录，未采用 / an invalid record was not applied: {detail}")
    if len(state.history) > 1:
        typer.echo(f"  {topic} 上的版本 / versions still on the topic (oldest first):")
        for h in state.history:
            typer.echo(f"    {h.version:16} {h.published_by:12} {h.published_at.isoformat(timespec='seconds')}")


_SINCE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str) -> float:
    """`24h`, `90m`, `7d`, `30s` in seconds."""
    found = _SINCE.match(text.strip())
    if found is None:
        raise typer.BadParameter("a number and s, m, h or d, e.g. 24h", param_hint="--since")
    return float(found.group(1)) * _SECONDS[found.group(2)]


async def replay_events(
    common: CommonSettings,
    old: DutyList,
    new: DutyList,
    *,
    since_ms: int | None,
    last: int | None,
    max_rows: int,
    timeout_s: float = 120.0,
) -> tuple[DiffReport, int, bool]:
    """Read recent events.normalised group-less and decide each with both lists; (report, unreadable, topic found)."""
    from aiokafka import ConsumerRecord
    from pydantic import ValidationError

    from gridhub.kernel.follower import read_window
    from schemas import EventNormalised
    from services.router.replay_diff import ReplayDiff

    diff = ReplayDiff(old, new, max_rows=max_rows)
    unreadable = 0

    def apply(record: ConsumerRecord[bytes, bytes]) -> None:
        nonlocal unreadable
        if record.value is None:
            return
        try:
            event = EventNormalised.model_validate_json(record.value)
        except ValidationError:
            unreadable += 1
            return
        diff.add(event)

    read = await read_window(
        common, common.topic("events.normalised"), apply, since_ms=since_ms, last=last, timeout_s=timeout_s
    )
    return diff.report, unreadable, read is not None


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    if _width(text) <= width:
        return text
    out = ""
    for ch in text:
        if _width(out + ch) > width - 1:
            break
        out += ch
    return out + "…"


def render_replay(report: DiffReport, unreadable: int, window: str) -> list[str]:
    """The replay's counts, where the differing events go, and the table of them."""
    lines = [
        f"重放 / replay {window}：{report.replayed} 条事件 events（无法解析 unreadable {unreadable}）",
        f"在用 in force {report.old_version} → 候选 candidate {report.new_version}：",
    ]
    rows = [
        ("相同 same", report.same),
        ("不同 routed differently", report.different),
        ("  主办单位不同 different unit", report.by_aspect["unit"]),
        ("  事项不同 different matter", report.by_aspect["matter"]),
        ("  协办单位不同 different co-operating", report.by_aspect["co-operating"]),
        ("  新转人工 newly to triage", report.by_aspect["to-triage"]),
        ("  不再转人工 out of triage", report.by_aspect["out-of-triage"]),
    ]
    lines += [f"  {_left(label, 40)}{n:>8}" for label, n in rows]
    if report.moves:
        lines.append("  去向 moves（事项/主办 → 事项/主办 · 事件 events）：")
        lines += [f"    {om}/{ou} → {nm}/{nu}  {n}" for (om, ou, nm, nu), n in report.moves.most_common(10)]
    if report.rows:
        lines += [
            "",
            f"不同的事件 events routed differently（{len(report.rows)}"
            + (f"，另 {report.rows_left_out} 条未列 / {report.rows_left_out} more" if report.rows_left_out else "")
            + "）：",
            _left("事件 event", 28)
            + _left("标题 title", 26)
            + _left("主办 unit", 22)
            + _left("事项 matter", 18)
            + "置信度 confidence",
        ]
        for row in report.rows:
            o, n = row.old, row.new
            unit = f"{o.unit}{'*' if o.triage else ''} → {n.unit}{'*' if n.triage else ''}"
            lines.append(
                _left(row.event_id, 28)
                + _left(_cut(row.title, 24), 26)
                + _left(unit, 22)
                + _left(f"{o.matter or '—'} → {n.matter or '—'}", 18)
                + f"{o.confidence:.2f} → {n.confidence:.2f}"
            )
        if any(row.old.triage or row.new.triage for row in report.rows):
            lines.append("（* 转人工 triage）")
    return lines


@dutylist_app.command("diff")
def diff_command(
    file: Annotated[Path, typer.Argument(dir_okay=False, help="The candidate duty-list JSON file.")],
    replay: Annotated[
        bool, typer.Option("--replay", help="Route recent events.normalised with both lists and compare.")
    ] = False,
    since: Annotated[
        str | None, typer.Option(help="Replay the events of this long ago until now: 24h, 90m, 7d (default 24h).")
    ] = None,
    last: Annotated[int | None, typer.Option(min=1, help="Replay the last N events of each partition instead.")] = None,
    rows: Annotated[int, typer.Option(min=0, help="List at most this many differing events.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
    timeout: Annotated[float, typer.Option(min=1, help="Longest the replay may read, in seconds.")] = 120.0,
    configured: ConfiguredOption = None,
) -> None:
    """Compare a candidate list with the list in force; with --replay, show which recent events it routes otherwise.

    Nothing is published and no router is involved: the events are decided here with the router's own code.
    """
    import time
    from datetime import UTC, datetime

    from aiokafka.errors import KafkaError

    from gridhub.kernel.settings import CommonSettings
    from services.router.duty_versions import list_changes

    if since is not None and last is not None:
        raise typer.BadParameter("give --since or --last, not both", param_hint="--since/--last")
    if (since is not None or last is not None) and not replay:
        raise typer.BadParameter("--since and --last choose the events of --replay", param_hint="--replay")
    seconds = parse_since(since or "24h") if last is None else None
    candidate = _candidate(file)
    common = CommonSettings()
    try:
        state = asyncio.run(read_published(common, _load(configured)))
    except (KafkaError, OSError, TimeoutError) as exc:
        raise _broker_failed(common, exc) from exc
    active = state.holder.current
    changes = list_changes(active.duty, candidate)
    out: dict[str, Any] = {"active": _active_dict(state, common.topic(DUTYLIST_TOPIC)), "changes": changes.as_dict()}
    text = [f"在用 / in force: {active.describe()}", f"候选 / candidate: {summary(candidate)}", *changes.lines()]
    if replay:
        since_ms = int((time.time() - seconds) * 1000) if seconds is not None else None
        if since_ms is not None:
            start = datetime.fromtimestamp(since_ms / 1000, UTC).astimezone().isoformat(timespec="seconds")
            window = f"{common.topic('events.normalised')} 自 since {start}（{since or '24h'}）"
        else:
            window = f"{common.topic('events.normalised')} 每分区最近 {last} 条 / last {last} per partition"
        try:
            report, unreadable, found = asyncio.run(
                replay_events(
                    common, active.duty, candidate, since_ms=since_ms, last=last, max_rows=rows, timeout_s=timeout
                )
            )
        except (KafkaError, OSError, TimeoutError) as exc:
            raise _broker_failed(common, exc) from exc
        if not found:
            typer.echo(f"找不到主题 / no topic {common.topic('events.normalised')}", err=True)
            raise typer.Exit(1)
        out["replay"] = {"window": window, "unreadable": unreadable, **report.as_dict()}
        text += ["", *render_replay(report, unreadable, window)]
    if as_json:
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        typer.echo("\n".join(text))
