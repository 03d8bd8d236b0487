"""Scenarios: a workload plus knob settings that inject one known bottleneck (the ground truth)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .presets import Preset
from .timing import Knobs
from .workload import DEFAULT_WORKLOAD, WORKLOADS, TransformerConfig


@dataclass(frozen=True)
class Scenario:
    name: str
    truth: str  # the injected cause, as the hints module names causes ("none" when healthy)
    description: str
    workload: str | None = None  # None: the preset's default workload
    knobs: dict = field(default_factory=dict)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("healthy", "none", "well-tuned bf16 training; cores >= 80 % busy"),
        Scenario(
            "input_bound", "input_pipeline",
            "2 data-loader workers tokenising raw text on the fly (150 us/token): the device waits for input",
            knobs={"workers": 2, "cpu_us_per_token": 150.0},
        ),
        Scenario(
            "comm_bound", "communication",
            "4-instance data parallel job; gradient all-reduce not overlapped, collectives at 10 % of link bandwidth",
            knobs={"link_efficiency": 0.1, "overlap_grad_allreduce": False, "nodes": 4},
        ),
        Scenario(
            "hbm_bound", "hbm_bandwidth",
            "1.3B model at 24 tokens per micro-batch: low arithmetic intensity, HBM-bandwidth bound",
            workload="gpt-1.3b", knobs={"seq": 24, "micro_batch": 1, "global_batch_per_core": 64},
        ),
        Scenario("fp32", "fp32_precision",
                 "fp32 instead of bf16 (full activation recompute to fit): busy cores, a quarter of the FLOP rate",
                 knobs={"dtype": "fp32", "recompute": "full"}),
        Scenario("straggler", "straggler", "core 3 runs 2.2x slower; its collective peers wait for it",
                 knobs={"straggler_core": 3, "straggler_factor": 2.2}),
        Scenario("idle_cores", "idle_cores", "half of the allocated NeuronCores never receive work",
                 knobs={"idle_cores_frac": 0.5}),
        Scenario("hbm_pressure", "hbm_capacity",
                 "evaluation outputs kept on the device between steps fill HBM to over 90 % of capacity",
                 knobs={"hbm_fill": 0.93}),
        Scenario("host_sync", "host_sync",
                 "the host synchronises every micro-batch (loss.item(), graph rebuild): device and host take turns",
                 knobs={"host_sync_ms_frac": 1.0}),
        Scenario("launch_bound", "launch_overhead",
                 "tiny graphs launched one by one from Python: the main thread is saturated, the device mostly idle",
                 knobs={"launch_ms": 5.0, "graph_breaks_x": 3.0}),
        Scenario("straggler_mild", "straggler", "core 3 runs 1.4x slower (a throttled or error-correcting core)",
                 knobs={"straggler_core": 3, "straggler_factor": 1.4}),
        Scenario("hw_errors", "hardware_errors",
                 "device 1's HBM corrects 30 ECC errors a second and its first core runs 1.8x slower; its peers wait",
                 knobs={"ecc_per_s": 30.0, "ecc_device": 1, "ecc_slow": 1.8}),
        Scenario("memory_leak", "memory_leak",
                 "tensors kept across steps: device memory grows until the job runs out of memory (about 2 min)",
                 knobs={"leak_fill_s": 120.0}),
    )
}


FIT_SHARE = 0.9  # a shipped workload leaves a tenth of each core's HBM free


def fit_to_preset(cfg: TransformerConfig, preset: Preset, knobs: dict | None = None) -> TransformerConfig:
    """Use every core of the instance: data-parallel degree = cores / (tp * pp). Where a core cannot
    hold its share with the knobs that change memory (micro-batch, sequence, dtype, recompute; trn2
    at LNC=1 has half the memory per core of LNC=2), double the tensor parallelism, as one would on
    the real machine, until it fits or cannot be split further."""
    from .memory import core_memory

    fields = set(Knobs.__dataclass_fields__)
    mem_knobs = Knobs(**{k: v for k, v in (knobs or {}).items() if k in fields})

    tp = min(cfg.tp, preset.n_cores)
    while True:
        dp = max(1, preset.n_cores // (tp * cfg.pp))
        out = replace(cfg, tp=tp, dp=dp, global_batch=max(cfg.global_batch, cfg.micro_batch * dp))
        fits = core_memory(preset, mem_knobs.apply(out)).total <= FIT_SHARE * preset.core_hbm_bytes
        if fits or 2 * tp * cfg.pp > preset.n_cores or cfg.heads % (2 * tp):
            return out
        tp *= 2


def resolve(preset: Preset, scenario: str, overrides: dict | None = None,
            workload: str | None = None) -> tuple[TransformerConfig, Knobs, Scenario]:
    """Turn a scenario name (and user overrides) into a concrete workload and knob set."""
    try:
        sc = SCENARIOS[scenario]
    except KeyError:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}") from None
    wname = workload or sc.workload or DEFAULT_WORKLOAD[preset.name]
    if wname not in WORKLOADS:
        raise ValueError(f"unknown workload {wname!r}; choose one of {', '.join(WORKLOADS)}")
    raw = dict(sc.knobs)
    given = overrides or {}
    # A scenario's derived knob never replaces the same knob set by hand: the user's value wins.
    for derived, knob in (("global_batch_per_core", "global_batch"), ("idle_cores_frac", "idle_cores"),
                          ("host_sync_ms_frac", "host_sync_ms"), ("hbm_fill", "extra_tensor_bytes"),
                          ("graph_breaks_x", "graphs_per_micro"), ("leak_fill_s", "leak_mb_per_s")):
        if knob in given:
            raw.pop(derived, None)
    raw.update(given)
    cfg = fit_to_preset(WORKLOADS[wname], preset, raw)
    if "global_batch_per_core" in raw:
        raw["global_batch"] = int(raw.pop("global_batch_per_core")) * preset.n_cores // cfg.tp
    if "idle_cores_frac" in raw:
        raw["idle_cores"] = int(preset.n_cores * float(raw.pop("idle_cores_frac")))
    fracs = [k for k in ("host_sync_ms_frac", "graph_breaks_x") if k in raw]
    if fracs:
        from .timing import step_model

        base = step_model(preset, cfg, Knobs(**{k: v for k, v in raw.items() if k not in fracs}))
        if "host_sync_ms_frac" in raw:  # stall the host about as long as a micro-batch takes on the device
            raw["host_sync_ms"] = base.micro_device_s * 1e3 * float(raw.pop("host_sync_ms_frac"))
        if "graph_breaks_x" in raw:  # cut each micro-batch into graphs whose launches take x times its device time
            launch = float(raw.get("launch_ms", Knobs.launch_ms)) / 1e3
            raw["graphs_per_micro"] = max(1, round(float(raw.pop("graph_breaks_x")) * base.micro_device_s / launch))
    if "leak_fill_s" in raw:
        from .memory import core_memory

        mem = core_memory(preset, Knobs(**{k: v for k, v in raw.items() if k != "leak_fill_s"}).apply(cfg))
        headroom = max(0, preset.core_hbm_bytes - mem.total)
        raw["leak_mb_per_s"] = headroom / 2**20 / float(raw.pop("leak_fill_s"))
    if "hbm_fill" in raw:
        from .memory import core_memory

        target = float(raw.pop("hbm_fill"))
        mem = core_memory(preset, Knobs(**{k: v for k, v in raw.items()}).apply(cfg))
        # Hold the target at the activations' low point; the step's peak still stays below capacity.
        low = mem.total - 0.2 * mem.activations
        extra = min(target * preset.core_hbm_bytes - low, 0.99 * preset.core_hbm_bytes - mem.total)
        raw["extra_tensor_bytes"] = max(0, int(extra))
    if "ecc_device" in raw:
        raw["ecc_device"] = min(int(raw["ecc_device"]), preset.n_devices - 1)
    if "ecc_slow" in raw:  # the failing device's first core is the slow one
        slow = float(raw.pop("ecc_slow"))
        if "straggler_core" not in given and "straggler_factor" not in given:
            raw["straggler_core"] = int(raw.get("ecc_device", 0)) * preset.cores_per_device
            raw["straggler_factor"] = slow
    if preset.n_cores <= raw.get("straggler_core", -1):
        raw["straggler_core"] = preset.n_cores - 1
    known = set(Knobs.__dataclass_fields__)
    bad = set(raw) - known
    if bad:
        raise ValueError(f"unknown knob(s) {', '.join(sorted(bad))}; known: {', '.join(sorted(known))}")
    return cfg, Knobs(**raw), sc
