"""`gridhub dutylist validate|evaluate` and `gridhub route`: the duty list and the router, without a broker."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from schemas.dutylist import DutyList
    from services.router.decide import Decision
    from services.router.evaluation import Evaluation

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
