"""OpenCases: looking only at reports that share a place finds exactly what comparing with every report finds."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from schemas import new_id
from schemas.dutylist import DutyList, load_duty_list
from services.router.decide import decide
from services.router.evaluation import dev_event, load_devset
from services.router.merging import Candidate, MergePolicy, Report, find_case, link_record, report_features
from services.router.open_cases import OpenCases
from services.router.signature import TextRules

POLICY = MergePolicy()


@pytest.fixture(scope="module")
def reports() -> list[Report]:
    """The development set's reports, each twice or three times at shifted times, places and with new ids."""
    duty: DutyList = load_duty_list()
    rules = TextRules.load()
    rng = random.Random(7)
    out = []
    for row in load_devset() * 3:
        event = dev_event(row)
        at = event.received_at + timedelta(minutes=rng.randrange(0, 420))
        location = event.location
        if location.lat is not None and location.lon is not None and rng.random() < 0.5:
            # Nudge coordinates by up to ~400 m: some copies stay within the merge distance, some leave it.
            location = location.model_copy(
                update={"lat": location.lat + rng.uniform(-0.0036, 0.0036), "lon": location.lon + 0.001}
            )
        # Another report of the incident: its own id and source id (the same source id twice is a duplicate).
        source = event.sources[0].model_copy(update={"source_id": new_id()})
        event = event.model_copy(
            update={
                "event_id": new_id(),
                "sources": (source,),
                "received_at": at,
                "reported_at": at,
                "location": location,
            }
        )
        decision = decide(event, duty)
        matter = decision.matter
        out.append(
            report_features(
                event,
                matter_code=matter.code if matter else None,
                matter_name=matter.name if matter else None,
                grid_code=decision.grid.code if decision.grid else None,
                rules=rules,
            )
        )
    rng.shuffle(out)
    return out


def test_indexed_search_equals_the_full_scan(reports: list[Report]) -> None:
    cases = OpenCases(POLICY)
    rows: list[Candidate] = []
    linked = 0
    for report in reports:
        expected = find_case(report, rows, POLICY)
        found = cases.find(report)
        assert found == expected
        row = (
            Candidate(case_id=report.event_id, report=report)
            if found is None
            else Candidate(case_id=found.case_id, report=report, link=link_record(found))
        )
        linked += found is not None
        rows.append(row)
        cases.add(row)
    assert linked > 20  # the comparison covered links, not only misses


def test_remove_last_undoes_an_add(reports: list[Report]) -> None:
    cases = OpenCases(POLICY, [Candidate(case_id=r.event_id, report=r) for r in reports[:50]])
    before = {name: {k: list(v) for k, v in getattr(cases, name).items()} for name in ("by_grid", "by_cell", "by_tail")}
    cases.add(Candidate(case_id=reports[50].event_id, report=reports[50]))
    cases.remove_last()
    after = {name: {k: list(v) for k, v in getattr(cases, name).items()} for name in ("by_grid", "by_cell", "by_tail")}
    assert after == before and len(cases) == 50 and cases.prior(reports[50].event_id) is None


def test_pruning_is_skipped_until_the_oldest_report_is_past_the_retention(reports: list[Report]) -> None:
    rows = [Candidate(case_id=r.event_id, report=r) for r in sorted(reports[:20], key=lambda r: r.received_at)]
    cases = OpenCases(POLICY, rows)
    newest = rows[-1].report.received_at
    assert cases.pruned(newest) is None
    later = cases.pruned(rows[0].report.received_at + POLICY.retention * 1.2)
    assert later is not None and len(later) < len(cases)
