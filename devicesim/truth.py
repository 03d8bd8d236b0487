"""Ground truth computed from the timing model, not named by the scenario.

For every cause the simulator can inject, the counterfactual removes it (its knobs back to a
healthy value, or the matmuls' HBM stalls taken away) and runs the timing model again. The share
of the step a cause costs is 1 - throughput / throughput without it; the main cause is the one
whose removal raises throughput most, and "none" when no cause costs `NONE_BELOW` of the step.
Advisories (device memory nearly full) and events (out of memory, warm-up) are settled by the
engine, which knows the run's state.
"""

from __future__ import annotations

from dataclasses import replace

from .presets import Preset
from .timing import Knobs, StepModel, step_model
from .workload import TransformerConfig

NONE_BELOW = 0.05  # a cause that costs less than this share of the step is not the truth

# cause -> the knobs of a run without it (or an `ideal` of the timing model)
REMOVED: dict[str, dict] = {
    "input_pipeline": {"cpu_us_per_token": 0.0},
    "host_sync": {"host_sync_ms": 0.0},
    "launch_overhead": {"graphs_per_micro": 1},
    "communication": {"link_efficiency": 1.0, "overlap_grad_allreduce": True},
    "straggler": {"straggler_factor": 1.0},
    "idle_cores": {"idle_cores": 0},
    "fp32_precision": {"dtype": "bf16"},
    "hbm_bandwidth": {},  # ideal="memory"
}


def throughput(m: StepModel) -> float:
    return m.tokens_per_step / m.period_s if m.period_s > 0 else 0.0


def lost_shares(preset: Preset, cfg: TransformerConfig, knobs: Knobs, model: StepModel) -> dict[str, float]:
    """The share of the step each cause costs (only those above half a percent), largest first."""
    base = throughput(model)
    out: dict[str, float] = {}
    for cause, change in REMOVED.items():
        if cause == "fp32_precision" and knobs.apply(cfg).dtype != "fp32":
            continue
        try:
            m = step_model(preset, cfg, replace(knobs, **change), ideal="memory" if cause == "hbm_bandwidth" else "")
        except ValueError:
            continue
        t = throughput(m)
        share = 1 - base / t if t > 0 else 0.0
        if share >= 0.005:
            out[cause] = round(share, 4)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def main_cause(lost: dict[str, float]) -> str:
    if not lost:
        return "none"
    cause, share = next(iter(lost.items()))
    return cause if share >= NONE_BELOW else "none"
