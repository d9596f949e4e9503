"""The router on the labelled development set: the figures the packaged list and classifier must keep."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from schemas.dutylist import load_duty_list
from services.router.evaluation import (
    TARGET_TRIAGE_RATE,
    TARGET_UNIT_ACCURACY,
    Evaluation,
    evaluate,
    load_devset,
    part_of,
)


@pytest.fixture(scope="module")
def evaluation() -> Evaluation:
    return evaluate(load_duty_list(), load_devset(), timing_rounds=0)


def test_devset_covers_every_matter_and_channel() -> None:
    rows = load_devset()
    assert len(rows) >= 300
    assert {r.expected_matter for r in rows} - {None} == {f"M{n:02d}" for n in range(1, 48)}
    assert {r.channel for r in rows} == {"12345", "110", "wechat", "petition", "gridapp"}


def test_split_is_stable_and_about_seventy_thirty() -> None:
    assert (part_of("dev-001"), part_of("dev-002")) == (part_of("dev-001"), part_of("dev-002"))
    parts = Counter(r.part for r in load_devset())
    assert parts == {"tuning": 250, "held-out": 109}


def test_unit_accuracy_on_routed_events_meets_the_target_on_both_parts(evaluation: Evaluation) -> None:
    for name in ("tuning", "held-out"):
        accuracy = evaluation.parts[name].unit_accuracy_on_routed
        assert accuracy is not None and accuracy >= TARGET_UNIT_ACCURACY, (name, accuracy)


def test_triage_rate_does_not_regress(evaluation: Evaluation) -> None:
    # The target is ≤ 10 %. The development set itself sends 7.5 % of its events to triage (out of scope, or a
    # township matter with no place: 6.8 % of the tuning part, 9.2 % of the held-out part); words the list does
    # not know send more. Measured with this list: tuning 8.8 % (the target met), held-out 19.3 % (not met); with
    # the similarity fallbacks (ties between units, wordless reports): tuning 8.0 %, held-out 18.3 %.
    # These ceilings catch a regression; lower them as the list improves.
    tuning, held_out = evaluation.parts["tuning"].triage_rate, evaluation.parts["held-out"].triage_rate
    assert TARGET_TRIAGE_RATE == 0.10
    assert tuning is not None and tuning <= TARGET_TRIAGE_RATE, tuning
    assert held_out is not None and held_out <= 0.19, held_out


def test_matter_accuracy_and_ambiguous_events(evaluation: Evaluation) -> None:
    figures = {name: f.as_dict() for name, f in evaluation.parts.items()}
    assert figures["tuning"]["matter_accuracy"] >= 0.91
    assert figures["held-out"]["matter_accuracy"] >= 0.79
    # Events labelled for the command centre (nothing in the list fits) mostly do go to triage.
    assert figures["all"]["ambiguous_correctly_triaged"] >= 0.9


def test_routing_the_whole_set_is_fast() -> None:
    duty, rows = load_duty_list(), load_devset()
    start = time.perf_counter()
    evaluate(duty, rows, timing_rounds=1)
    assert time.perf_counter() - start < 5.0
