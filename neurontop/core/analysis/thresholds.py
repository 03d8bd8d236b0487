"""Every number the hint rules compare against, in one frozen dataclass.

`DEFAULTS` is what the live view, replay, export and diagnose use; `--hint-threshold` replaces
`util_below` (dataclasses.replace), and tests or users may replace any other. docs/hints.md's cause
table is generated from the rules with these values (rules.causes_table), so the prose cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    util_below: float = 70.0  # % average core utilisation: bottleneck rules run below it
    window_s: float = 10.0  # seconds of stream the rules look at
    every_s: float = 1.0  # seconds of stream time between evaluations
    on_s: float = 3.0  # a cause shows after holding this long (hysteresis)
    off_s: float = 5.0  # and clears after being absent this long
    few_reports: int = 3  # a window of fewer reports still gets an answer, at 0.6 x the confidence
    # severity: the share of the window a cause explains
    critical_share: float = 0.4
    warning_share: float = 0.15
    # which cores count
    allocated_bytes: int = 16 * 1024**2  # a core holding less device memory (and no activity) is not in use
    busy_core_pct: float = 20.0
    idle_core_pct: float = 5.0
    idle_cores_share: float = 0.1  # of the allocated cores
    # straggler: a core busier than its peers, which wait for it at every collective
    straggler_pct: float = 30.0
    straggler_gap_pct: float = 8.0  # points above the median of the other working cores
    straggler_ratio: float = 1.15  # and this many times it
    straggler_max_share: float = 0.125  # of the working cores
    # the host and the executions (plain neuron-monitor)
    saturated: float = 0.85  # a thread busy this share of the window is saturated (the process's CPU, in cores)
    loader_cores: float = 0.75  # host cores busy outside the training process: data-loader workers at work
    idle_vcpu_pct: float = 5.0  # at most this much of an idle vCPU's busy share is background, not work
    input_gap: float = 0.2  # share of the window neither the device nor the main thread works
    turns: float = 0.8  # device share + main-thread share at least this: they take turns
    host_turn: float = 0.15  # the main thread's share in a host synchronisation, at least
    launch_rate: float = 20.0  # executions per second of small graphs
    launch_main: float = 0.6  # the main thread's share that, at that rate, says the host launches flat out
    stall_cover: float = 0.7  # a graph runs on the device this share of the window...
    stall_idle: float = 0.2  # ...while the engines idle at least this share: stalls inside the graphs
    # warm-up (a phase, not a bottleneck)
    warmup_growth: float = 0.1  # device memory gained within the window, as a share of its end value
    warmup_idle_rows: float = 0.5  # reports with every core idle and no execution...
    warmup_host_cores: float = 1.0  # ...while the host compiles on this many cores
    warmup_lead: float = 0.2  # the window's first reports idle, then work: the job started within it
    # input pipeline (extension)
    input_wait: float = 0.1  # share of the window the device waits for input
    # communication, memory
    exposed_comm: float = 0.1  # share of the window in collectives on the critical path
    comm_productive: float = 0.35  # FLOP/s per busy second of the bf16 peak: efficient matmuls, so stalls are waits
    hbm_bandwidth: float = 0.5  # share of the per-core HBM bandwidth on busy cores
    small_batch_tokens: int = 512
    # fp32 precision
    fp32_util_pct: float = 50.0
    fp32_productive_ext: float = 0.35  # FLOP/s / (tensor activity x bf16 peak)
    fp32_productive_plain: float = 0.2  # FLOP/s / (utilisation x bf16 peak)
    fp32_plain_util_pct: float = 80.0
    # device memory
    hbm_capacity_warn: float = 0.90
    hbm_capacity_critical: float = 0.97
    leak_growth: float = 0.005  # device memory gained within the window while training...
    leak_horizon_s: float = 3600.0  # ...at a rate that fills the device within this


DEFAULTS = Thresholds()
