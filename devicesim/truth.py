"""Ground truth computed from the timing model, not named by the scenario.

For every cause the simulator can inject, the counterfactual removes it (its knobs back to a
healthy value, or the matmuls' HBM stalls taken away) and runs the timing model again. The share
of the step a cause costs is 1 - throughput / throughput without it; the main cause is the one
whose removal raises throughput most, and "none" when no cause costs `NONE_BELOW` of the step.
Communication's counterfactual is collectives that cost nothing (ideal="comm"), so the inherent
collective time of a small-sequence job counts as well as degraded links; fp32 lowers throughput
without idling the cores, so it is the truth only when no utilisation cause matters.
Advisories (device memory nearly full) and events (out of memory, warm-up) are settled by the
engine, which knows the run's state.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

from .presets import Preset
from .timing import Knobs, StepModel, step_model
from .workload import TransformerConfig

# A cause that costs less than this share of the step is not the truth: a healthy tensor-parallel job
# carries 2-8 % of collective time that no setting removes (trn1.32xlarge's Llama-2-7B at TP8: 7.6 %).
NONE_BELOW = 0.1

# cause -> the knobs of a run without it (or an `ideal` of the timing model, IDEAL)
REMOVED: dict[str, dict] = {
    "input_pipeline": {"cpu_us_per_token": 0.0},
    "host_sync": {"host_sync_ms": 0.0},
    "launch_overhead": {"graphs_per_micro": 1},
    "communication": {},  # ideal="comm": collectives that cost nothing (injected or inherent to the job)
    "straggler": {"straggler_factor": 1.0},
    "idle_cores": {"idle_cores": 0},
    "hardware_errors": {"ecc_per_s": 0.0, "straggler_factor": 1.0},  # a slow core on a device with ECC errors
    "fp32_precision": {"dtype": "bf16"},
    "hbm_bandwidth": {},  # ideal="memory"
}


IDEAL = {"hbm_bandwidth": "memory", "communication": "comm"}
# Causes that lower throughput without idling the cores: the truth of "why is utilisation low" is
# one of the others; these are the truth only when no utilisation cause matters.
NOT_IDLE = ("fp32_precision",)


def throughput(m: StepModel) -> float:
    return m.tokens_per_step / m.period_s if m.period_s > 0 else 0.0


def lost_shares(preset: Preset, cfg: TransformerConfig, knobs: Knobs, model: StepModel) -> dict[str, float]:
    """The share of the step each cause costs (only those above half a percent), largest first.

    Causes can bind together (an input pipeline as slow as a device that synchronises with the host:
    removing either alone gains little), so each cause's share is its Shapley value: its marginal
    gain averaged over every order of removing the causes that matter, which adds up to the loss of
    removing them all."""
    base = throughput(model)
    if base <= 0:
        return {}
    cache: dict[frozenset, float] = {frozenset(): 0.0}

    def loss(removed: frozenset) -> float:
        if removed not in cache:
            change: dict = {}
            for c in removed:
                change.update(REMOVED[c])
            ideal = "+".join(sorted(IDEAL[c] for c in removed if c in IDEAL))
            try:
                t = throughput(step_model(preset, cfg, replace(knobs, **change), ideal=ideal))
            except ValueError:
                t = base
            cache[removed] = max(0.0, 1 - base / t) if t > 0 else 0.0
        return cache[removed]

    applies = [c for c in REMOVED if not (c == "fp32_precision" and knobs.apply(cfg).dtype != "fp32")]
    # a slow core on the device whose HBM corrects errors is a hardware error, not a plain straggler
    hw = knobs.ecc_per_s > 0 and knobs.straggler_core // max(1, preset.cores_per_device) == knobs.ecc_device
    applies = [c for c in applies if c != ("straggler" if hw else "hardware_errors")]
    every = frozenset(applies)
    # the causes that matter: alone, or as the last one removed (bounded: at most 6, the largest)
    matter = sorted((c for c in applies if loss(frozenset([c])) > 1e-4 or loss(every) - loss(every - {c}) > 1e-4),
                    key=lambda c: -max(loss(frozenset([c])), loss(every) - loss(every - {c})))[:6]
    out: dict[str, float] = {}
    for c in matter:
        others = [x for x in matter if x != c]
        value = 0.0
        for k in range(len(others) + 1):
            weight = math.factorial(k) * math.factorial(len(matter) - k - 1) / math.factorial(len(matter))
            for sub in itertools.combinations(others, k):
                s = frozenset(sub)
                value += weight * (loss(s | {c}) - loss(s))
        if value >= 0.005:
            out[c] = round(value, 4)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def main_cause(lost: dict[str, float]) -> str:
    """The utilisation cause that costs most (at least NONE_BELOW), else a throughput-only cause, else none."""
    for pool in ([c for c in lost if c not in NOT_IDLE], [c for c in lost if c in NOT_IDLE]):
        if pool and lost[pool[0]] >= NONE_BELOW:
            return pool[0]
    return "none"
