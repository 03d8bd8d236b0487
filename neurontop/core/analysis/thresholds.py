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
    # severity: the share of the window a cause explains
    critical_share: float = 0.4
    warning_share: float = 0.15
    # which cores count
    allocated_bytes: int = 16 * 1024**2  # a core holding less device memory (and no activity) is not in use
    busy_core_pct: float = 20.0
    idle_core_pct: float = 5.0
    idle_cores_share: float = 0.1  # of the allocated cores
    # straggler
    straggler_pct: float = 80.0
    straggler_gap_pct: float = 25.0  # points above the median of the other working cores
    straggler_max_share: float = 0.125  # of the working cores
    # input pipeline
    input_wait: float = 0.1  # share of the window the device waits for input (extension)
    hot_vcpu_pct: float = 85.0
    hot_vcpu_max_share: float = 0.25  # at most max(2, this share of the vCPUs) are saturated
    rest_vcpu_pct: float = 40.0  # while the others average below this
    # communication, memory
    exposed_comm: float = 0.2  # share of the window in collectives on the critical path
    hbm_bandwidth: float = 0.5  # share of the per-core HBM bandwidth on busy cores
    small_batch_tokens: int = 512
    # host synchronisation (nothing else fired)
    host_sync_host_pct: float = 30.0
    host_sync_input_wait: float = 0.05
    host_sync_comm: float = 0.1
    # fp32 precision
    fp32_util_pct: float = 50.0
    fp32_productive_ext: float = 0.35  # FLOP/s / (tensor activity x bf16 peak)
    fp32_productive_plain: float = 0.2  # FLOP/s / (utilisation x bf16 peak)
    fp32_plain_util_pct: float = 80.0
    # device memory
    hbm_capacity_warn: float = 0.90
    hbm_capacity_critical: float = 0.97


DEFAULTS = Thresholds()
