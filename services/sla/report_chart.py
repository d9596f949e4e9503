"""The weekly bulletin's chart: on-time closure rate per group as sorted horizontal bars, the county's line,
overdue counts beside each bar; Chinese labels in Noto Sans SC.

Fonts: Chinese needs a CJK font, and a fresh machine often has none (this one has none: `fc-list :lang=zh` is
empty). The project depends on `pylopdf-fonts-zh-cn`, a wheel with Noto Sans SC (SIL OFL 1.1), so the font comes
with `pip install`; a CJK font matplotlib finds on the system is the second choice. Every label is checked against
the chosen font's character map before it is drawn: a name with a character no font has (a rare 生僻字) is shown by
its code instead, and with no CJK font at all the chart is drawn in codes and English. So the image never shows a
missing-glyph box (tofu), and matplotlib never warns "Glyph … missing from font(s)".
"""

from __future__ import annotations

import io
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from services.sla.deadlines import SHANGHAI
from services.sla.reports import GROUP_LABELS, GroupRow, Summary

if TYPE_CHECKING:
    from matplotlib.font_manager import FontProperties

# Families tried on the system when the packaged font is missing, in order.
SYSTEM_CJK_FAMILIES = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "Microsoft YaHei",
    "PingFang SC",
    "SimHei",
)
_PROBE = "平安县周通报按期办结率"
GOOD = "#2e7d32"
BELOW = "#ef6c00"
UNRANKED = "#9e9e9e"
OVERDUE = "#c62828"


def _covers(path: str, text: str) -> bool:
    from matplotlib.ft2font import FT2Font

    charmap = FT2Font(path).get_charmap()
    return all(ord(c) in charmap for c in text)


@lru_cache(maxsize=1)
def cjk_font_path() -> str | None:
    """A font file with Chinese glyphs: the packaged Noto Sans SC, else a system CJK font, else None."""
    try:
        import pylopdf_fonts_zh_cn

        packaged = Path(pylopdf_fonts_zh_cn.sans_path())
        if packaged.is_file() and _covers(str(packaged), _PROBE):
            return str(packaged)
    except ImportError:
        pass
    from matplotlib import font_manager

    for family in SYSTEM_CJK_FAMILIES:
        for entry in font_manager.fontManager.ttflist:
            if entry.name == family and _covers(entry.fname, _PROBE):
                return str(entry.fname)
    return None


@lru_cache(maxsize=4)
def _charmap(path: str) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    return frozenset(FT2Font(path).get_charmap())


class _Labels:
    """Text through the chosen font: a string it cannot show falls back to an ASCII stand-in."""

    def __init__(self, font_path: str | None) -> None:
        from matplotlib import font_manager

        self.font_path = font_path
        if font_path is not None:
            self.prop: FontProperties = font_manager.FontProperties(fname=font_path)
            self.chars = _charmap(font_path)
        else:
            self.prop = font_manager.FontProperties(family="DejaVu Sans")
            self.chars = _charmap(font_manager.findfont(self.prop, fallback_to_default=True))
        self.substituted: list[str] = []

    def shows(self, text: str) -> bool:
        return all(ord(c) in self.chars or c in "\n\t" for c in text)

    def text(self, wanted: str, stand_in: str) -> str:
        if self.shows(wanted):
            return wanted
        self.substituted.append(wanted)
        return stand_in


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _float(value: Fraction | None) -> float | None:
    return None if value is None else float(value)


def render_chart(summary: Summary, *, font_path: str | None = None, use_packaged_font: bool = True) -> bytes:
    """The bulletin chart as PNG bytes (dpi 150, 11 in wide, ~0.42 in per group)."""
    # A bare Figure (no pyplot): no backend or global state is chosen or touched; savefig renders with Agg.
    from matplotlib.figure import Figure

    path = font_path if font_path is not None else (cjk_font_path() if use_packaged_font else None)
    labels = _Labels(path)
    rows: list[GroupRow] = list(summary.rows)
    ranked = [r for r in rows if r.rank is not None]
    unranked = [r for r in rows if r.rank is None]
    shown = ranked + unranked  # best first; drawn top to bottom
    county_rate = summary.county.on_time_rate
    county_value = None if county_rate is None else float(county_rate)
    what = GROUP_LABELS[summary.by]
    as_of = summary.as_of.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")

    height = 2.2 + 0.42 * max(len(shown), 1)
    fig = Figure(figsize=(11, height), dpi=150, layout="constrained")
    ax = fig.add_subplot()
    prop = labels.prop

    positions = list(range(len(shown)))[::-1]
    values = [float(r.on_time_rate) if r.on_time_rate is not None else 0.0 for r in shown]
    colours = [
        UNRANKED
        if r.rank is None or r.on_time_rate is None
        else (GOOD if county_value is None or float(r.on_time_rate) >= county_value else BELOW)
        for r in shown
    ]
    ax.barh(positions, values, color=colours, height=0.62)
    ax.set_xlim(0, 1.18)
    ax.set_ylim(-0.8, max(len(shown), 1) - 0.2)
    ax.set_xticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_xticklabels(["0%", "20%", "40%", "60%", "80%", "100%"])
    ax.set_yticks(positions)
    names = []
    for r in shown:
        rank = f"{r.rank:>2}  " if r.rank is not None else ""
        names.append(rank + labels.text(r.name, r.key))
    ax.set_yticklabels(names, fontproperties=prop, fontsize=10)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(axis="x", color="#e0e0e0", linewidth=0.8)
    ax.set_axisbelow(True)

    top = max(len(shown), 1) - 0.35
    grey = "#757575"
    for y, r, v in zip(positions, shown, values, strict=True):
        if r.on_time_rate is None:
            share = labels.text("本周无到期工单", "no task due this week")
            anchor = ax.text(0.01, y, share, va="center", ha="left", fontproperties=prop, fontsize=9, color=grey)
        else:
            share = f"{_percent(v)}（{r.on_time}/{r.due}）"
            share = labels.text(share, f"{_percent(v)} ({r.on_time}/{r.due})")
            anchor = ax.text(v + 0.01, y, share, va="center", ha="left", fontproperties=prop, fontsize=9)
        response, satisfied = _percent(_float(r.response_rate)), _percent(_float(r.satisfaction_rate))
        extra = labels.text(f"回复率 {response} · 满意度 {satisfied}", f"reply {response} · satisfied {satisfied}")
        # Placed just after the figure it follows, whatever that figure's width.
        ax.annotate(
            extra,
            xy=(1, 0.5),
            xycoords=anchor,
            xytext=(8, 0),
            textcoords="offset points",
            va="center",
            fontproperties=prop,
            fontsize=8,
            color=grey,
        )
        colour = OVERDUE if r.overdue else "#9e9e9e"
        ax.text(1.17, y, str(r.overdue), va="center", ha="right", fontproperties=prop, fontsize=10, color=colour)
    overdue_head = labels.text("超期在办", "overdue")
    ax.text(1.17, top, overdue_head, ha="right", va="bottom", fontproperties=prop, fontsize=9, color=OVERDUE)

    if county_value is not None:
        ax.axvline(county_value, color="#1565c0", linestyle="--", linewidth=1.2)
        line = labels.text(f"全县 {_percent(county_value)}", f"county {_percent(county_value)}")
        ax.text(county_value + 0.006, top, line, color="#1565c0", va="bottom", fontproperties=prop, fontsize=9)

    title = labels.text(
        f"{summary.county.name}周通报 {summary.period.describe()}：各{what}按期办结率",
        f"Weekly bulletin {summary.period.label}: on-time closure rate by {summary.by.value}",
    )
    subtitle = labels.text(
        f"截至 {as_of}；绿色不低于全县、橙色低于全县、灰色本周无到期工单；虚线为全县按期办结率；"
        f"全县应办结 {summary.county.due} 件、按期 {summary.county.on_time} 件，超期在办 {summary.county.overdue} 件",
        f"as of {as_of}; green: at or above the county, orange: below, grey: nothing due; right: overdue open tasks",
    )
    fig.suptitle(title, fontproperties=prop, fontsize=14, fontweight="bold")
    ax.set_title(subtitle, fontproperties=prop, fontsize=9, color="#424242", loc="left")
    ax.set_xlabel(
        labels.text("按期办结率（应办结工单中在时限前办结的比例）", "on-time closure rate"), fontproperties=prop
    )
    for tick in ax.get_xticklabels():
        tick.set_fontproperties(prop)

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
