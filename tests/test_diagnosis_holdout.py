"""The randomised holdout (benchmarks/diagnosis.py): a fixed-seed sample of mixed-knob simulator runs
(two causes at once, mild and severe, every preset, periods 0.1-5 s, 15-300 reports, warm-up on and
off), each diagnosed with and without the extension and scored against the simulator's computed
truth. `python -m benchmarks --only diagnosis` runs a larger sample and prints the confusion matrices."""

from __future__ import annotations

import pytest

from benchmarks.diagnosis import run_case, sample_cases, summarise

pytestmark = pytest.mark.slow  # about a minute: CI runs it with the slow tests


@pytest.fixture(scope="module")
def outcomes():
    return [run_case(c) for c in sample_cases(40, seed=4242)]


def test_the_sample_mixes_causes_presets_periods_and_warm_up(outcomes) -> None:
    cases = [o.case for o in outcomes]
    assert len({c.preset for c in cases}) == 3 and {c.period for c in cases} >= {0.1, 1.0, 5.0}
    assert any(len(c.causes) == 2 for c in cases) and any(not c.causes for c in cases)
    assert any("compile_s" in c.knobs for c in cases) and any("compile_s" not in c.knobs for c in cases)
    assert sum(o.steady_util < 70 for o in outcomes) >= 15  # enough runs below the threshold to score


def test_with_the_extension_the_top_cause_is_the_truth(outcomes) -> None:
    s = summarise(outcomes)["extension"]
    assert s["top1"] >= 0.95, s["verdicts"]
    assert s["false_alarms"] == 0


def test_on_plain_data_a_wrong_cause_is_rare_and_unexplained_is_bounded(outcomes) -> None:
    s = summarise(outcomes)["plain"]
    assert s["wrong_below"] <= 0.05, s["confusion"]
    assert s["unexplained_below"] <= 0.20, s["confusion"]
    assert s["false_alarms"] == 0


def test_the_truth_is_the_counterfactual_not_the_injected_knobs(outcomes) -> None:
    # a run whose injected causes all cost too little is "none", and co-binding causes share the loss
    for o in outcomes:
        if o.truth in ("none", "warm_up", "fp32_precision", "hbm_capacity"):
            continue
        assert o.lost.get(o.truth, 0) >= 0.1 and o.lost[o.truth] == max(
            v for c, v in o.lost.items() if c != "fp32_precision"), (o.truth, o.lost)
