"""Steady-state timing of one training step: roofline ops, torus collectives, input pipeline.

A pure function of (preset, workload, knobs). The engine turns its per-step figures into report
windows. Formulas: shared/reference/simulator-modeling.md §1.3 (roofline with size-dependent
efficiency), §2.1 (alpha-beta ring collectives, NCCL bus factors), §3 (producer/consumer input
pipeline, `period = max(device time, input time)`).

Utilisation is time-based as in neuron-monitor: the share of the window in which any compute
engine of the core executes. A core stalled on HBM (DMA only), waiting at a collective, or waiting
for input counts as idle; that choice is documented in docs/protocol.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .presets import Preset, torus_links
from .workload import Collective, Op, TransformerConfig, build_collectives, build_ops, optimizer_op

ENGINES = ("tensor", "vector", "scalar", "gpsimd")

# Calibrated constants (see docs/protocol.md "Calibration" and the closing note of the devicesim issue).
# Practical ceiling of the tensor engine on large GEMMs, fitted on Trainium's published training
# throughput (shared/reference/trn1-training-throughput.csv, all 9 rows: the largest |error| is least
# at 0.435, 14.2 %; benchmarks/simulator.py prints the table). 0.55 came from an H200 and made every
# row 4-41 % optimistic; 0.435 puts a healthy single-instance job at 30-35 % MFU, AWS's GPT-3 rows
# say 28-30 %.
TENSOR_EFF_MAX = 0.435
TENSOR_HALF_FLOPS = 1.5e9  # GEMM size at which half the ceiling is reached
MEM_EFF_MAX = 0.90  # streaming ops reach ~90 % of HBM bandwidth at >= 128 MB
MEM_HALF_BYTES = 1e6
OP_FIXED_S = 4e-6  # instruction issue / semaphore wait per op
CC_ALPHA_S = 5e-6  # per ring step latency
CC_EFF_MAX = 0.80  # large messages reach ~80 % of link bandwidth
CC_HALF_BYTES = 24e6  # fitted to nccom-test: 2 ranks, 32 MB all-reduce at 40.7 GB/s
TP_OVERLAP = 0.75  # share of tensor-parallel collectives hidden by sequence-parallel overlap
GPSIMD_FLOPS = 8 * 16 * 2 * 1.4e9  # derived: 8 cores x 512-bit fp32 lanes x FMA x 1.4 GHz


@dataclass(frozen=True)
class Knobs:
    """Everything a scenario or the user can change while the simulator runs."""

    workers: int = 4  # data-loader worker processes
    cpu_us_per_token: float = 2.0  # host CPU cost of producing one token of input (read, tokenize, pack)
    prefetch: int = 2  # batches each worker keeps ready
    host_sync_ms: float = 0.0  # host-side synchronisation per micro-batch (e.g. loss.item())
    link_efficiency: float = 1.0  # share of NeuronLink bandwidth the collectives actually get
    overlap_grad_allreduce: bool = True
    straggler_core: int = -1
    straggler_factor: float = 1.0
    idle_cores: int = 0  # allocated cores the job never uses
    micro_batch: int | None = None
    global_batch: int | None = None
    seq: int | None = None
    dtype: str | None = None
    zero1: bool | None = None
    recompute: str | None = None
    nodes: int | None = None  # instances in the data-parallel job (gradient traffic crosses EFA)
    extra_tensor_bytes: int = 0  # device memory held beyond the model (cached outputs, a leak)
    launch_ms: float = 1.0  # host time per graph execution on the main thread (Python dispatch, launch)
    graphs_per_micro: int = 1  # graphs each micro-batch is cut into (graph breaks, eager ops): small graphs
    compile_s: float = 0.0  # warm-up: graph compilation before the first step (then loading, a quarter as long)
    leak_mb_per_s: float = 0.0  # device memory each working core gains per second of training (a leak)
    hang_after_s: float = 0.0  # a hang after this many seconds of training: cores stop, memory held (0: never)
    ecc_per_s: float = 0.0  # corrected ECC events per second on `ecc_device` (a failing HBM stack)
    ecc_device: int = 0
    slowdown: float = 1.0  # every core of this instance runs this much slower (a throttled or degraded node)
    efa_efficiency: float = 1.0  # share of EFA bandwidth the cross-instance collectives get (a degraded network)

    def apply(self, cfg: TransformerConfig) -> TransformerConfig:
        changes: dict[str, Any] = {
            k: v
            for k, v in (
                ("micro_batch", self.micro_batch),
                ("global_batch", self.global_batch),
                ("seq", self.seq),
                ("dtype", self.dtype),
                ("zero1", self.zero1),
                ("recompute", self.recompute),
                ("nodes", self.nodes),
            )
            if v is not None
        }
        return replace(cfg, **changes) if changes else cfg


@dataclass(frozen=True)
class CollectiveStat:
    name: str
    kind: str
    bytes: float  # array size per rank per call
    calls_per_step: int
    time_s: float  # per call
    algbw: float  # bytes/s
    busbw: float  # bytes/s
    exposed_s: float  # per step, not hidden under compute


@dataclass
class StepModel:
    period_s: float
    device_s: float
    input_s: float
    compute_s: float  # per step on a normal core, engine-busy time
    exposed_comm_s: float
    optimizer_s: float
    host_sync_s: float
    busy_s: np.ndarray  # per core, any-engine busy seconds per step
    engine_busy_s: np.ndarray  # [4, cores]
    dma_busy_s: np.ndarray  # per core
    flops: np.ndarray  # per core per step
    hbm_read: np.ndarray  # per core per step (bytes)
    hbm_write: np.ndarray
    link_bytes: np.ndarray  # per torus link per step (each direction)
    links: list[tuple[int, int]]
    efa_bytes: float  # per step, instance egress
    collectives: list[CollectiveStat]
    tokens_per_step: float  # on this instance
    samples_per_step: float
    model_flops_per_step: float  # on this instance (6N + attention), for MFU
    peak_flops: float  # bf16 peak of the cores the job uses
    active: np.ndarray  # bool per core
    input_wait_s: float
    worker_busy: float  # fraction of each worker thread busy
    micro_device_s: float = 0.0  # device latency of one micro-batch graph (an execution)
    tail_device_s: float = 0.0  # device latency of the step's last graph (gradient all-reduce, optimizer)
    executions_per_step: int = 1
    main_busy_s: float = 0.0  # per step: the host's main thread busy (launching graphs, synchronising)
    opt_busy_s: np.ndarray | None = None  # per core: the optimizer's engine-busy seconds (at the step's end)
    tail_gap_s: float = 0.0  # per step: pipeline bubble and exposed gradient all-reduce, before the optimizer
    link_micro_share: float = 1.0  # share of the step's link traffic sent inside micro-batches (TP, PP)
    step_comm_s: float = 0.0  # per step: the gradient collectives' own duration (their traffic's shortest spread)
    extra: dict = field(default_factory=dict)


def tensor_eff(flops: float) -> float:
    return TENSOR_EFF_MAX * flops / (flops + TENSOR_HALF_FLOPS)


def mem_eff(nbytes: float) -> float:
    return MEM_EFF_MAX * nbytes / (nbytes + MEM_HALF_BYTES)


def cc_eff(nbytes: float) -> float:
    return CC_EFF_MAX * nbytes / (nbytes + CC_HALF_BYTES)


def engine_peak(preset: Preset, engine: str, dtype: str) -> float:
    lnc = preset.lnc
    if engine == "tensor":
        return lnc * (preset.tensor_bf16_flops if dtype == "bf16" else preset.tensor_fp32_flops)
    if engine == "vector":
        return lnc * preset.vector_flops
    if engine == "scalar":
        return lnc * preset.scalar_flops
    return lnc * GPSIMD_FLOPS


def op_time(preset: Preset, op: Op, dtype: str, ideal: str = "") -> tuple[float, float, float]:
    """(elapsed, engine-busy, dma-busy) seconds of one instance of an op on one core. With
    ideal="memory" a matmul never waits for HBM (the counterfactual of low arithmetic intensity)."""
    peak = engine_peak(preset, op.engine, dtype)
    eff_c = tensor_eff(op.flops) if op.engine == "tensor" else 0.9
    t_c = op.flops / (peak * max(eff_c, 1e-3))
    t_m = op.hbm_bytes / (preset.core_hbm_bw * max(mem_eff(op.hbm_bytes), 1e-3))
    if "memory" in ideal and op.engine == "tensor":
        t_m = min(t_m, t_c)
    return max(t_c, t_m) + OP_FIXED_S, t_c + OP_FIXED_S, t_m


def ring_bandwidth(preset: Preset, ranks: int, cross_chip: bool, link_efficiency: float) -> float:
    """Per-rank ring bandwidth, bytes/s. Two rings over a chip's links, shared by its cores."""
    if cross_chip and preset.n_devices > 1:
        bw = preset.link_bw_per_device / 2 / preset.cores_per_device
    else:
        bw = preset.hbm_bw / 4 / preset.cores_per_device  # on-chip DMA copy between cores
    return bw * link_efficiency


BUS_FACTOR = {
    "all_reduce": lambda n: 2 * (n - 1) / n,
    "reduce_scatter": lambda n: (n - 1) / n,
    "all_gather": lambda n: (n - 1) / n,
    "send_recv": lambda n: 1.0,
}


def collective_time(preset: Preset, c: Collective, knobs: Knobs, cfg: TransformerConfig) -> tuple[float, float]:
    """(seconds per call, bytes each rank sends per call)."""
    n = c.ranks
    factor = BUS_FACTOR[c.kind](n)
    steps = 2 * (n - 1) if c.kind == "all_reduce" else max(1, n - 1)
    sent = factor * c.bytes
    if c.name.startswith("dp") and cfg.nodes > 1:
        # Hierarchical: ring inside the instance, then across instances over EFA.
        local = max(1, cfg.dp)
        bw_in = ring_bandwidth(preset, local, True, knobs.link_efficiency) * cc_eff(c.bytes)
        t_in = (2 * (local - 1) if c.kind == "all_reduce" else local - 1) * CC_ALPHA_S
        t_in += BUS_FACTOR[c.kind](local) * c.bytes / bw_in if local > 1 else 0.0
        efa_bw = preset.efa_gbps / 8 * 1e9 / max(1, cfg.cores_used) * 0.8 * knobs.efa_efficiency
        shard = c.bytes / local
        t_out = steps * 4 * CC_ALPHA_S + BUS_FACTOR[c.kind](cfg.nodes) * shard / (efa_bw * cc_eff(shard) / CC_EFF_MAX)
        return t_in + t_out, sent
    cross_chip = n > preset.cores_per_device or c.name.startswith("dp")
    bw = ring_bandwidth(preset, n, cross_chip, knobs.link_efficiency) * cc_eff(c.bytes)
    return steps * CC_ALPHA_S + sent / bw, sent


def step_model(preset: Preset, base_cfg: TransformerConfig, knobs: Knobs, ideal: str = "") -> StepModel:
    """One step's figures. `ideal` is for counterfactuals only (truth.py): "memory" removes matmuls'
    HBM stalls, "comm" the collectives' time."""
    cfg = knobs.apply(base_cfg)
    cfg.validate()
    n = preset.n_cores
    dtype = cfg.dtype
    ops = build_ops(cfg)
    opt = optimizer_op(cfg)

    t_fwd = t_bwd = 0.0
    busy = np.zeros(4)
    dma = flops = nbytes = 0.0
    for op in ops:
        el, eb, dm = op_time(preset, op, dtype, ideal)
        if op.phase == "fwd":
            t_fwd += el * op.count
        else:
            t_bwd += el * op.count
        busy[ENGINES.index(op.engine)] += eb * op.count
        dma += dm * op.count
        flops += op.flops * op.count
        nbytes += op.hbm_bytes * op.count
    t_opt, b_opt, d_opt = op_time(preset, opt, dtype)

    colls = build_collectives(cfg)
    stats: list[CollectiveStat] = []
    t_micro_comm = 0.0
    t_step_comm_overlap = 0.0
    t_step_comm_serial = 0.0
    sent_per_step = sent_micro = step_comm = 0.0
    accum = cfg.accumulation
    for c in colls:
        t, sent = collective_time(preset, c, knobs, cfg)
        if "comm" in ideal:
            t = 0.0  # the counterfactual of communication: collectives that cost nothing
        calls = c.count * (accum if c.per == "microbatch" else 1)
        if c.per == "microbatch":
            exposed_each = t * (1 - TP_OVERLAP) if c.kind == "all_reduce" else t
            t_micro_comm += exposed_each * c.count
            exposed = exposed_each * calls
        elif c.overlappable and knobs.overlap_grad_allreduce:
            t_step_comm_overlap += t
            exposed = 0.0  # settled below against the last backward pass
        else:
            t_step_comm_serial += t
            exposed = t
        sent_per_step += sent * calls
        if c.per == "microbatch":
            sent_micro += sent * calls
        else:
            step_comm += t * calls
        algbw = c.bytes / t if t > 0 else 0.0
        stats.append(CollectiveStat(c.name, c.kind, c.bytes, calls, t, algbw, algbw * BUS_FACTOR[c.kind](c.ranks), exposed))
    # Gradient all-reduce hides under the last micro-batch's backward pass; only the tail shows.
    tail = max(0.0, t_step_comm_overlap - 0.9 * t_bwd)
    dp_exposed = tail + t_step_comm_serial
    if t_step_comm_overlap:
        stats = [replace(st, exposed_s=tail) if st.name in ("dp_reduce_scatter", "dp_allreduce") else st
                 for st in stats]

    # The host's main thread prepares and launches each micro-batch's graph (launch_ms) while the
    # previous one runs; a host synchronisation (loss.item()) waits for the result and then works
    # on the host (host_sync_ms) before launching the next: device and host take turns.
    sync = knobs.host_sync_ms / 1e3
    launch = knobs.launch_ms / 1e3
    t_micro = t_fwd + t_bwd + t_micro_comm
    graphs = max(1, knobs.graphs_per_micro)
    host_micro = graphs * launch
    cycle = t_micro + sync + host_micro if sync > 0 else max(t_micro, host_micro)
    host_sync = sync * accum
    # 1F1B bubble: (p - 1)/m of the m micro-batches' time (simulator-modeling.md §1.5), i.e. p - 1
    # micro-batch times per step in which a stage waits for the pipeline to fill and drain.
    bubble = (cfg.pp - 1) * t_micro
    device = accum * cycle + bubble + dp_exposed + t_opt

    # Per-core scaling: straggler runs slower, idle cores and cores outside the job do nothing.
    scale = np.full(n, knobs.slowdown)
    active = np.zeros(n, dtype=bool)
    used = min(n, cfg.cores_used)
    idle = min(knobs.idle_cores, used)
    active[: used - idle] = True
    if 0 <= knobs.straggler_core < n and knobs.straggler_factor > 1:
        scale[knobs.straggler_core] *= knobs.straggler_factor
    compute_core = accum * (t_fwd + t_bwd) + t_opt
    slow = float(scale[active].max()) if active.any() else 1.0
    device_max = device + compute_core * (slow - 1)

    samples = cfg.micro_batch * accum * max(1, cfg.dp)
    t_input = samples * cfg.seq * knobs.cpu_us_per_token / 1e6 / max(1, knobs.workers)
    period = max(device_max, t_input)

    eng = np.outer(busy * accum + np.array([0, b_opt, 0, 0]), np.ones(n)) * scale
    eng *= active
    busy_core = eng.sum(axis=0)
    dma_core = (dma * accum + d_opt) * scale * active
    fl = (flops * accum + opt.flops) * active
    hb = (nbytes * accum + opt.hbm_bytes) * active
    links = torus_links(preset)
    link_bytes = np.zeros(len(links))
    chips_used = len({i // preset.cores_per_device for i in range(n) if active[i]})
    if links and chips_used > 1:
        # Each chip's ring traffic is spread over its links; a link carries both end chips' share.
        per_chip = sent_per_step * preset.cores_per_device
        per_link = per_chip / preset.links_per_device
        for i, (a, b) in enumerate(links):
            if active[a * preset.cores_per_device] and active[b * preset.cores_per_device]:
                link_bytes[i] = per_link
    efa = 0.0
    if cfg.nodes > 1:
        grad = (2.0 if dtype == "bf16" else 4.0) * cfg.params / (cfg.tp * cfg.pp)
        efa = 2 * grad * (cfg.nodes - 1) / cfg.nodes * (cfg.tp * cfg.pp)
    # Idle allocated cores train nothing: throughput comes from the working cores only, while MFU
    # is taken against every core the job holds (the waste shows up as lower MFU).
    working = int(active.sum()) / max(1, used)
    tokens = cfg.micro_batch * accum * max(1, cfg.dp) * cfg.seq * working
    return StepModel(
        period_s=period,
        device_s=device_max,
        input_s=t_input,
        compute_s=float(busy.sum() * accum + b_opt),
        exposed_comm_s=accum * t_micro_comm + dp_exposed,
        optimizer_s=t_opt,
        host_sync_s=host_sync,
        busy_s=busy_core,
        engine_busy_s=eng,
        dma_busy_s=dma_core,
        flops=fl,
        hbm_read=hb * 0.6,
        hbm_write=hb * 0.4,
        link_bytes=link_bytes,
        links=links,
        efa_bytes=efa,
        collectives=stats,
        tokens_per_step=tokens,
        samples_per_step=samples * working,
        model_flops_per_step=cfg.flops_per_token() * tokens,
        # the cores of the whole model replica, across instances when TP x PP spans several (the
        # FLOPs count the whole replica's tokens too)
        peak_flops=max(1, cfg.cores_used) * preset.core_bf16_flops,
        active=active,
        input_wait_s=max(0.0, t_input - device_max),
        worker_busy=min(1.0, t_input / period) if period > 0 else 0.0,
        micro_device_s=t_micro * slow / graphs,
        tail_device_s=dp_exposed + t_opt * slow,
        executions_per_step=accum * graphs + 1,
        main_busy_s=accum * (host_micro + sync),
        opt_busy_s=b_opt * scale * active,
        tail_gap_s=bubble + dp_exposed,
        link_micro_share=sent_micro / sent_per_step if sent_per_step > 0 else 1.0,
        step_comm_s=step_comm,
        extra={"accumulation": accum, "cfg": cfg},
    )


def _phases(m: StepModel) -> tuple[int, float, float, float]:
    """(accumulation, optimizer time, the micro-batch phase's length, one micro-batch cycle)."""
    accum = max(1, int(m.extra.get("accumulation", 1)))
    o_max = float(m.opt_busy_s.max()) if m.opt_busy_s is not None and len(m.opt_busy_s) else 0.0
    micro_phase = max(0.0, m.period_s - m.tail_gap_s - o_max)
    return accum, o_max, micro_phase, micro_phase / accum


def busy_until(m: StepModel, t: float) -> np.ndarray:
    """Each core's engine-busy seconds from the start of training to training time `t`: the timeline
    inside a step. A step is `accumulation` micro-batch cycles, each a compute burst then a gap (its
    exposed collectives, host synchronisation or launch gaps, and its share of any wait for input),
    then the pipeline bubble and the exposed gradient all-reduce, then the optimizer. A report window
    integrates this, so utilisation moves within a step at fine periods and averages out at coarse ones."""
    period = m.period_s
    accum, _, micro_phase, cycle = _phases(m)
    o = m.opt_busy_s if m.opt_busy_s is not None else np.zeros_like(m.busy_s)
    b = np.clip((m.busy_s - o) / accum, 0.0, cycle)
    k, x = divmod(max(0.0, t), period)
    if x < micro_phase and cycle > 0:
        j, r = divmod(x, cycle)
        part = j * b + np.minimum(r, b)
    else:
        part = accum * b + np.clip(x - micro_phase - m.tail_gap_s, 0.0, o)
    return k * (accum * b + o) + part


def traffic_until(m: StepModel, t: float, micro_share: float) -> float:
    """Steps' worth of a collective traffic sent from the start of training to training time `t`.
    `micro_share` of it (tensor- and pipeline-parallel) flows evenly through the micro-batch phase;
    the rest, the gradients' collectives, after the last micro-batch's backward pass has begun:
    through the last cycle and the exposed tail, or their own duration if that is longer."""
    period = m.period_s
    _, _, micro_phase, cycle = _phases(m)
    k, x = divmod(max(0.0, t), period)
    micro = min(x, micro_phase) / micro_phase if micro_phase > 0 else 1.0
    end = micro_phase + m.tail_gap_s
    start = max(0.0, end - max(cycle + m.tail_gap_s, m.step_comm_s))
    grads = min(1.0, max(0.0, (x - start) / (end - start))) if end > start else float(x >= end)
    return k + micro_share * micro + (1.0 - micro_share) * grads
