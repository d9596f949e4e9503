"""Batch import: JSONL and CSV rows checked like HTTP bodies, repeats and bad rows accounted for; pure."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas import Channel
from services.adapters.batch_import import ImportSummary, plan_import, read_rows, write_rejects

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def order(order_no: str) -> dict[str, str]:
    return {
        "order_no": order_no,
        "appeal_type": "投诉",
        "content": "小区下水道反流",
        "call_time": "2026-11-20T09:30:00+08:00",
    }


def test_jsonl_rows_become_raw_reports_and_bad_rows_are_rejected_with_reasons(tmp_path: Path) -> None:
    lines = [
        json.dumps(order("GD-1"), ensure_ascii=False),
        "",
        "{不是 JSON",
        json.dumps(["not", "an", "object"]),
        json.dumps(order("GD 2"), ensure_ascii=False),
        json.dumps(order("GD-1"), ensure_ascii=False),
        json.dumps(order("GD-3"), ensure_ascii=False),
    ]
    path = tmp_path / "orders.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = ImportSummary()
    reports = list(plan_import(Channel.HOTLINE_12345, read_rows(path), NOW, summary))

    assert [r.source_id for r in reports] == ["GD-1", "GD-3"]
    assert all(r.received_at == NOW and r.source is Channel.HOTLINE_12345 for r in reports)
    assert reports[0].payload == order("GD-1")
    assert summary.as_dict() == {"accepted": 2, "duplicate": 1, "rejected": 3}
    assert [(r.line, r.reason.split("：")[0]) for r in summary.rejected] == [
        (3, "不是有效的 JSON"),
        (4, "应为 JSON 对象"),
        (5, "order_no"),
    ]


def test_rows_nested_too_deep_are_rejected_not_a_crash(tmp_path: Path) -> None:
    deep = '{"order_no": "GD-9", "extra": ' + "[" * 300 + "]" * 300 + "}"
    path = tmp_path / "orders.jsonl"
    path.write_text("\n".join(["[" * 10_000, deep, json.dumps(order("GD-10"))]) + "\n", encoding="utf-8")
    summary = ImportSummary()
    reports = list(plan_import(Channel.HOTLINE_12345, read_rows(path), NOW, summary))
    assert [r.source_id for r in reports] == ["GD-10"]
    assert [(r.line, r.reason) for r in summary.rejected] == [
        (1, "JSON 嵌套超过 64 层。"),
        (2, "JSON 嵌套超过 64 层。"),
    ]


def test_csv_with_bom_and_empty_cells(tmp_path: Path) -> None:
    path = tmp_path / "110.csv"
    path.write_text(
        "\ufeffincident_no,call_time,incident_type,summary,lat\n"
        "110-0001,2026-11-20T21:05:00+08:00,噪声扰民,广场舞音响过大,\n"
        ",2026-11-20T21:06:00+08:00,火情,无编号,35.1\n",
        encoding="utf-8",
    )
    summary = ImportSummary()
    reports = list(plan_import(Channel.POLICE_110, read_rows(path), NOW, summary))
    assert [r.payload for r in reports] == [
        {
            "incident_no": "110-0001",
            "call_time": "2026-11-20T21:05:00+08:00",
            "incident_type": "噪声扰民",
            "summary": "广场舞音响过大",
        }
    ]
    assert [r.line for r in summary.rejected] == [3]


def test_other_file_types_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "orders.xlsx"
    path.write_bytes(b"PK")
    with pytest.raises(ValueError, match=r"only \.jsonl/\.ndjson and \.csv"):
        list(read_rows(path))


def test_channel_without_json_rows_is_refused() -> None:
    with pytest.raises(KeyError, match="not a JSON channel"):
        list(plan_import(Channel.WECHAT, [], NOW, ImportSummary()))


def test_rejects_file_is_readable_chinese(tmp_path: Path) -> None:
    summary = ImportSummary()
    path = tmp_path / "bad.jsonl"
    path.write_text('{"content": "没有工单编号"}\n', encoding="utf-8")
    list(plan_import(Channel.HOTLINE_12345, read_rows(path), NOW, summary))
    out = tmp_path / "bad.rejected.jsonl"
    write_rejects(out, summary.rejected)
    text = out.read_text("utf-8")
    assert "没有工单编号" in text and "order_no" in text
    assert json.loads(text)["line"] == 1
