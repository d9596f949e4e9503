"""Batch import (backfill) of a channel's reports from JSONL or CSV: rows checked like HTTP bodies; pure."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from schemas import Channel, ReportReceived, new_id
from services.adapters.channels import (
    ADAPTER_VERSION,
    SOURCE_ID_RULE_ZH,
    TOO_DEEP_ZH,
    channel_spec,
    too_deep,
)


@dataclass(frozen=True)
class Row:
    """One row of the file: its line number and either a payload or why it could not be read."""

    line: int
    payload: dict[str, Any] | None
    error: str | None = None


@dataclass(frozen=True)
class Rejected:
    """A row that will not be imported, with the reason in Chinese and the row as read."""

    line: int
    reason: str
    row: object


@dataclass
class ImportSummary:
    """What an import did: accepted, duplicates within the file, rejected rows."""

    accepted: int = 0
    duplicate: int = 0
    rejected: list[Rejected] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        """Counts for the closing line of the command."""
        return {"accepted": self.accepted, "duplicate": self.duplicate, "rejected": len(self.rejected)}


def read_rows(path: Path) -> Iterator[Row]:
    """Rows of a .jsonl (one JSON object a line) or .csv (header row; empty cells dropped) file."""
    text = path.read_text("utf-8-sig")  # Excel writes a BOM before UTF-8 CSV
    if path.suffix.lower() == ".csv":
        for number, record in enumerate(csv.DictReader(io.StringIO(text)), start=2):
            yield Row(number, {k.strip(): v.strip() for k, v in record.items() if k and v and v.strip()})
        return
    if path.suffix.lower() not in (".jsonl", ".ndjson"):
        raise ValueError(f"{path.name}: only .jsonl/.ndjson and .csv files can be imported")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Row(number, None, f"不是有效的 JSON：{exc.msg}")
            continue
        except RecursionError:
            yield Row(number, None, f"{TOO_DEEP_ZH}。")
            continue
        yield Row(number, value, None) if isinstance(value, dict) else Row(number, None, "应为 JSON 对象")


def plan_import(
    channel: Channel, rows: Iterable[Row], received_at: datetime, summary: ImportSummary
) -> Iterator[ReportReceived]:
    """The raw reports to publish for the rows; rejected rows and repeats within the file go to summary."""
    spec = channel_spec(channel)
    seen: set[str] = set()
    for row in rows:
        if row.payload is None:
            summary.rejected.append(Rejected(row.line, row.error or "无法读取", None))
            continue
        source_id = spec.source_id_in(row.payload)
        if source_id is None:
            summary.rejected.append(Rejected(row.line, f"{spec.id_field}：{SOURCE_ID_RULE_ZH}", row.payload))
            continue
        if too_deep(row.payload):
            summary.rejected.append(Rejected(row.line, f"{TOO_DEEP_ZH}。", None))
            continue
        if source_id in seen:
            summary.duplicate += 1
            continue
        seen.add(source_id)
        summary.accepted += 1
        yield ReportReceived(
            source=channel,
            source_id=source_id,
            proposed_event_id=new_id(),
            received_at=received_at,
            adapter_version=f"{ADAPTER_VERSION} import",
            payload=row.payload,
        )


def write_rejects(path: Path, rejected: list[Rejected]) -> None:
    """Rejected rows as JSON lines (line, reason, row), readable Chinese."""
    with path.open("w", encoding="utf-8") as out:
        for item in rejected:
            out.write(json.dumps({"line": item.line, "reason": item.reason, "row": item.row}, ensure_ascii=False))
            out.write("\n")
