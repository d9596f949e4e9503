"""The open cases of one township, indexed by place so a report is compared only with reports it could join; pure.

`merging.find_case` asks two reports to share a place (the same grid, coordinates within `distance_m`, or the
same address) before anything else; comparing a report with every open report of a busy township costs
hundreds of them per event. `OpenCases` keeps the township's recent reports in arrival order with indexes by
grid, by coordinate cell and by address, and hands `find_case` only the reports that share a grid, a
neighbouring cell or the address, in arrival order (its tie-break keeps the older report).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from services.router.merging import (
    MIN_ADDRESS_SUFFIX,
    Candidate,
    MergeDecision,
    MergePolicy,
    Report,
    find_case_among,
    prune,
)

# Latitude degrees per metre; a cell's side is the merge distance, so a match is at most one cell away.
_DEG_PER_M = 1 / 111_320


class OpenCases:
    """Recent reports of open cases in one township, appendable and undoable (the last append)."""

    def __init__(self, policy: MergePolicy, rows: Iterable[Candidate] = ()) -> None:
        self.policy = policy
        self.rows: list[Candidate] = []
        self.by_event: dict[str, int] = {}
        self.by_case: dict[str, list[int]] = {}
        self.by_grid: dict[str, list[int]] = {}
        self.by_cell: dict[tuple[int, int], list[int]] = {}
        self.by_address: dict[str, list[int]] = {}  # whole address -> rows
        self.by_tail: dict[str, list[int]] = {}  # every tail long enough to name a place -> rows
        self._cell_deg = max(policy.distance_m, 1.0) * _DEG_PER_M
        for row in rows:
            self.add(row)

    def __len__(self) -> int:
        return len(self.rows)

    def prior(self, event_id: str) -> Candidate | None:
        """The township's record of this event when it was seen before (a replay)."""
        at = self.by_event.get(event_id)
        return self.rows[at] if at is not None else None

    def add(self, row: Candidate) -> None:
        """Append a report."""
        at = len(self.rows)
        self.rows.append(row)
        report = row.report
        self.by_event[report.event_id] = at
        self.by_case.setdefault(row.case_id, []).append(at)
        for index, key in self._keys(report):
            index.setdefault(key, []).append(at)

    def remove_last(self) -> None:
        """Undo the last add (a rolled-back batch)."""
        row = self.rows.pop()
        report = row.report
        del self.by_event[report.event_id]
        _pop(self.by_case, row.case_id)
        for index, key in self._keys(report):
            _pop(index, key)

    def find(self, report: Report) -> MergeDecision | None:
        """The open case the report belongs to, among reports sharing its place."""
        near: set[int] = set()
        for index, key in self._keys(report, query=True):
            near.update(index.get(key, ()))
        if not near:
            return None
        return find_case_among(report, [self.rows[i] for i in sorted(near)], self.policy, self._case_rows)

    def pruned(self, received_at: datetime) -> OpenCases | None:
        """A new table without what `merging.prune` drops, or None when nothing would be dropped."""
        if not self.rows:
            return None
        # Pruning rebuilds the table: done with slack, so a steady stream does not prune at every report: when the
        # oldest row is past the retention by a tenth of it, or the table a quarter over its cap (then cut to it).
        horizon = received_at - self.policy.retention * 1.1
        cap = self.policy.max_candidates
        if len(self.rows) <= cap + max(10, cap // 4) and self.rows[0].report.received_at >= horizon:
            return None
        return OpenCases(self.policy, prune(self.rows, received_at, self.policy))

    def _case_rows(self, case_id: str) -> list[Candidate]:
        return [self.rows[i] for i in self.by_case.get(case_id, ())]

    def _keys(self, report: Report, *, query: bool = False) -> list[tuple[dict[Any, list[int]], Any]]:
        """The index entries of a report (query: those of the reports it could share a place with)."""
        keys: list[tuple[dict[Any, list[int]], Any]] = []
        if report.grid_code:
            keys.append((self.by_grid, report.grid_code))
        if report.lat is not None and report.lon is not None:
            row, col = self._cell(report.lat, report.lon)
            steps = (-1, 0, 1) if query else (0,)
            keys += [(self.by_cell, (row + dr, col + dc)) for dr in steps for dc in steps]
        address = report.address
        if address:
            # `_same_address`: equal, or the shorter (six characters or more) is the tail of the longer.
            tails = [address[i:] for i in range(len(address) - MIN_ADDRESS_SUFFIX + 1)]
            if query:
                keys.append((self.by_tail, address))  # rows whose address ends with this one
                keys += [(self.by_address, tail) for tail in tails]  # rows whose address is a tail of it
                keys.append((self.by_address, address))
            else:
                keys.append((self.by_address, address))
                keys += [(self.by_tail, tail) for tail in tails]
        return keys

    def _cell(self, lat: float, lon: float) -> tuple[int, int]:
        # Longitude degrees shrink with latitude: scaled so a cell is as wide as it is tall.
        scale = max(math.cos(math.radians(lat)), 0.01)
        return math.floor(lat / self._cell_deg), math.floor(lon * scale / self._cell_deg)


def _pop(index: dict[Any, list[int]], key: Any) -> None:
    positions = index[key]
    positions.pop()
    if not positions:
        del index[key]
