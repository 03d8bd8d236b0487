"""The simulation engine: advances simulated time one report window at a time.

It holds the current configuration, the cumulative counters and the proxy model, and builds one
neuron-monitor report (plus the `neuron_top` extension) per window. Everything random comes from
one seeded generator, so a fixed seed reproduces the stream byte for byte.

(About 530 lines, one class: the engine's state, its lifecycle (warm-up, training, a hang, a
crash) and the report it builds from that state. The models it runs are in timing.py, memory.py,
numerics.py, scenarios.py and truth.py.)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import msgspec
import numpy as np

from .knobs import check_all as check_knobs
from .memory import CoreMemory, core_memory, host_memory, idle_core_memory
from .numerics import ProxyGPT
from .presets import Preset
from .scenarios import SCENARIOS, resolve
from .timing import ENGINES, Knobs, StepModel, busy_until, step_model, traffic_until
from .truth import lost_shares, main_cause
from .workload import TransformerConfig

PROTOCOL = "neuron-top-telemetry"
PROTOCOL_VERSION = 1
FIXED_EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z: start of the clock of non-real-time runs
RT_OVERHEAD_S = 60e-6  # the runtime's own time per execution (submission, completion): total - device latency
RUNTIME_THREADS = 0.04  # cores the runtime's own threads use while a job runs
# Warm-up after `compile_s` of compilation: loading takes a quarter as long, and the first step then
# spends a tenth of it on the host before its first execution (tracing, first-execution setup).
LOAD_SHARE = 0.25
FIRST_STEP_SHARE = 0.1
COMPILE_JOBS = 8  # neuronx-cc's parallel compile processes
_encoder = msgspec.json.Encoder()


@dataclass
class SimConfig:
    preset: Preset
    scenario: str = "healthy"
    seed: int = 0
    period_s: float = 1.0
    numerics: bool = True
    workload: str | None = None
    overrides: dict = field(default_factory=dict)
    start_time: float | None = None
    wall_clock: bool = False  # timestamps follow the wall clock (real-time serving)
    pid: int = 4242
    instance_name: str = ""  # a cluster's node name (instance_info.instance_name)


class Engine:
    def __init__(self, cfg: SimConfig, shared: dict | None = None) -> None:
        """`shared`: step models and truths already computed for the same configuration (a
        cluster's nodes with the same knobs compute them once)."""
        self.cfg = cfg
        self.shared = shared if shared is not None else {}
        self.cluster_truth: dict | None = None  # a cluster node: the job's main cause and node (cluster.py)
        self.on_apply: Callable[[Engine], None] | None = None  # called after a configuration change
        self.preset = cfg.preset
        self.rng = np.random.default_rng(cfg.seed)
        self.seq = 0
        self.sim_time = 0.0
        self.epoch = cfg.start_time if cfg.start_time is not None else FIXED_EPOCH
        n = self.preset.n_cores
        self.cum_busy_ns = np.zeros(n)
        self.cum_flops = np.zeros(n)
        self.cum_read = np.zeros(n)
        self.cum_write = np.zeros(n)
        self.cum_efa = 0.0
        self.steps_done = 0.0
        self.exec_done = 0.0
        self.train_s = 0.0  # seconds of training (after warm-up): the clock of steps and a leak
        self.step_times: list[float] = []
        self.events: list[dict] = []
        self.paused = False
        self.crashed = False
        self.proxy = ProxyGPT(seed=cfg.seed, shards=min(4, n)) if cfg.numerics else None
        self.proxy_cpu_s = 0.0
        self.queue_depth = 0.0
        self.phase_now, self.on, self.executions = "train", 1.0, 0
        self.wait_s = 0.0  # seconds of the last window the device waited for input
        self._apply(cfg.scenario, cfg.overrides, cfg.workload)
        self.cum_links = np.zeros(len(self.model.links))

    # -- configuration -------------------------------------------------------------------------
    def _apply(self, scenario: str, overrides: dict, workload: str | None) -> None:
        wl, knobs, sc = resolve(self.preset, scenario, overrides, workload)
        self.scenario = sc
        self.knobs = knobs
        self.overrides = dict(overrides)
        self.workload_name = workload
        key = (self.preset.name, self.preset.lnc, repr(wl), knobs)
        if key not in self.shared:
            m = step_model(self.preset, wl, knobs)
            self.shared[key] = (m, lost_shares(self.preset, wl, knobs, m))
        self.model: StepModel = self.shared[key][0]
        self.wl: TransformerConfig = self.model.extra["cfg"]
        mem = core_memory(self.preset, self.wl)
        if knobs.extra_tensor_bytes:
            mem = replace(mem, tensors=mem.tensors + knobs.extra_tensor_bytes)
        self.mem_active = mem
        self.crashed = False
        self._check_memory()
        self.lost = self.shared[key][1]
        self.queue_capacity = knobs.workers * knobs.prefetch
        self.queue_depth = float(self.queue_capacity)
        self._static_cache: dict[str, msgspec.Raw] = {}
        if self.on_apply is not None:
            self.on_apply(self)

    def _check_memory(self) -> None:
        """Out of memory: the job crashes, releases its device memory and says so in the stream."""
        total = self.mem_active.total + self._leaked()
        cap = self.preset.core_hbm_bytes
        if total > cap and not self.crashed:
            self.crashed = True
            self.events.append({
                "type": "oom", "core": 0, "requested_bytes": total, "capacity_bytes": cap,
                "message": f"out of device memory: {total / 2**30:.1f} GiB needed per core, "
                           f"{cap / 2**30:.1f} GiB available",
            })

    def _leaked(self) -> int:
        return int(self.knobs.leak_mb_per_s * 2**20 * self.train_s)

    def phase(self) -> str:
        """compile, load, train, hung or crashed: where the run is in its life."""
        if self.crashed:
            return "crashed"
        if 0 < self.knobs.hang_after_s <= self.train_s:
            return "hung"
        c = self.knobs.compile_s
        if self.sim_time < c:
            return "compile"
        if self.sim_time < (1 + LOAD_SHARE) * c:
            return "load"
        if self.sim_time < self.train_start():
            return "first_step"
        return "train"

    def train_start(self) -> float:
        """When training starts: after compiling, loading, and the first step's host-only start
        (the lazy tracing of the step and each graph's first-execution setup, before any execution)."""
        return (1 + LOAD_SHARE + FIRST_STEP_SHARE) * self.knobs.compile_s

    def truth(self) -> dict:
        """The main cause and the share of the step each cause costs (truth.py), or the run's state."""
        ph = self.phase()
        if ph == "crashed":
            cause = "out_of_memory"
        elif ph == "hung":
            cause = "hang"
        elif ph != "train":
            cause = "warm_up"
        else:
            cause = main_cause(self.lost)
            mem = self.mem_active.total + self._leaked()
            if cause == "none" and self.knobs.leak_mb_per_s > 0:
                cause = "memory_leak"
            elif cause == "none" and mem >= 0.9 * self.preset.core_hbm_bytes:
                cause = "hbm_capacity"
            elif cause == "none" and self.knobs.ecc_per_s > 0:
                cause = "hardware_errors"
        out = {"scenario": self.scenario.name, "cause": cause, "phase": ph, "lost": dict(self.lost)}
        if self.cluster_truth is not None:
            out["cluster"] = dict(self.cluster_truth)
        return out

    def control(self, request: dict) -> dict:
        """Apply a control request: {"scenario": S} and/or {"set": {knob: value}}, {"pause": bool}.

        Everything is checked before anything changes; a request that fails leaves the run as it was.
        """
        scenario = request.get("scenario", self.scenario.name)
        if not isinstance(scenario, str) or scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {str(scenario)[:40]!r}; choose one of {', '.join(SCENARIOS)}")
        sets = check_knobs(request.get("set") or {})
        pause = request.get("pause", self.paused)
        if not isinstance(pause, bool):
            raise ValueError("'pause' must be true or false")
        workload = request.get("workload", self.workload_name)
        if workload is not None and not isinstance(workload, str):
            raise ValueError("'workload' must be a workload name")
        overrides = {} if "scenario" in request else dict(self.overrides)
        overrides.update(sets)
        if "scenario" in request or sets or "workload" in request:
            old = (self.scenario.name, dict(self.overrides), self.workload_name)
            try:
                self._apply(scenario, overrides, workload)
            except Exception as exc:
                self._apply(*old)  # the last good configuration, so the stream goes on
                raise ValueError(f"cannot apply {sets or scenario}: {exc}") from None
            self.events.append({"type": "scenario", "from": old[0], "to": scenario, "set": sets})
        self.paused = pause
        return {"scenario": self.scenario.name, "knobs": knob_dict(self.knobs), "paused": self.paused}

    # -- one window ------------------------------------------------------------------------------
    def step_window(self, period: float | None = None) -> dict:
        """Advance the clock by one period and return the report for that window."""
        dt = period or self.cfg.period_s
        m, n = self.model, self.preset.n_cores
        # The part of the window spent training (a window may end the warm-up)
        start = max(self.sim_time, self.train_start())
        train_dt = max(0.0, self.sim_time + dt - start) if not (self.paused or self.crashed) else 0.0
        if self.knobs.hang_after_s > 0:  # a hang: training stops there, the memory stays
            train_dt = max(0.0, min(train_dt, self.knobs.hang_after_s - self.train_s))
        self.phase_now = self.phase()
        running = train_dt > 0
        on = train_dt / dt  # the training share of the window
        frac = (train_dt / m.period_s) if running else 0.0
        # Small per-core jitter: real counters wobble by about a percent from window to window.
        jit = 1.0 + self.rng.normal(0.0, 0.01, n)
        jit_step = float(np.clip(1.0 + self.rng.normal(0.0, 0.015), 0.9, 1.1))
        if running:  # the step's timeline over the window's training time (timing.busy_until)
            busy = busy_until(m, self.train_s + train_dt) - busy_until(m, self.train_s)
            util = np.clip(busy / dt * jit, 0.0, 1.0)
            # The wait for input sits in the gaps between compute bursts: the window's share of the
            # step's waiting follows its share of the busiest core's idle time.
            gaps = m.period_s - float(m.busy_s.max())
            self.wait_s = m.input_wait_s * max(0.0, train_dt - float(busy.max())) / gaps if gaps > 0 else 0.0
        else:
            util = np.zeros(n)
            self.wait_s = 0.0
        scale = util / np.maximum(m.busy_s / m.period_s, 1e-12)
        flops_rate = m.flops / m.period_s * scale
        read_rate = m.hbm_read / m.period_s * scale
        write_rate = m.hbm_write / m.period_s * scale
        engines = {e: np.clip(m.engine_busy_s[i] / m.period_s * scale, 0, 1) for i, e in enumerate(ENGINES)}
        engines["dma"] = np.clip(m.dma_busy_s / m.period_s * scale, 0, 1)
        if running:  # collectives' traffic on the same timeline: TP/PP through the micro-batches, gradients at the end
            t0, t1 = self.train_s, self.train_s + train_dt
            links_sent = traffic_until(m, t1, m.link_micro_share) - traffic_until(m, t0, m.link_micro_share)
            efa_sent = traffic_until(m, t1, 0.0) - traffic_until(m, t0, 0.0)
        else:
            links_sent = efa_sent = 0.0
        link_rate = m.link_bytes * links_sent / dt
        self.cum_busy_ns += util * dt * 1e9
        self.cum_flops += flops_rate * dt
        self.cum_read += read_rate * dt
        self.cum_write += write_rate * dt
        self.cum_links += link_rate * dt
        self.cum_efa += m.efa_bytes * efa_sent
        prev_exec = int(self.exec_done)
        self.exec_done += frac * m.executions_per_step
        self.executions = int(self.exec_done) - prev_exec
        self.train_s += train_dt
        if self.knobs.leak_mb_per_s and running:
            self._check_memory()
        prev_steps = int(self.steps_done)
        self.steps_done += frac
        new_steps = int(self.steps_done) - prev_steps
        for k in range(min(new_steps, 16)):
            first = prev_steps + k == 0 and self.knobs.compile_s > 0  # its host-only start counts too
            lead = FIRST_STEP_SHARE * self.knobs.compile_s if first else 0.0
            self.step_times.append(m.period_s * float(np.clip(1 + self.rng.normal(0, 0.01), 0.95, 1.05)) + lead)
        self.step_times = self.step_times[-64:]
        if self.proxy is not None and running:
            c0 = time.process_time()
            for _ in range(min(new_steps, 2)):  # bounded: at most two proxy steps per window
                self.proxy.step()
            self.proxy_cpu_s += time.process_time() - c0
        # Input queue: drains when input is slower than the device, refills otherwise.
        if m.input_s > m.device_s:
            self.queue_depth = max(0.0, self.queue_depth - self.queue_capacity * 0.5)
        else:
            self.queue_depth = min(self.queue_capacity, self.queue_depth + self.queue_capacity * 0.5)
        self.sim_time += dt
        self.seq += 1
        self.on = on
        report = self._report(dt, util, flops_rate, read_rate, write_rate, engines, link_rate, new_steps,
                              running, jit_step)
        self.events = []
        return report

    # -- report assembly -------------------------------------------------------------------------
    def _report(self, dt, util, flops_rate, read_rate, write_rate, engines, link_rate, new_steps,
                running, jit_step) -> dict:
        p, m = self.preset, self.model
        n = p.n_cores
        r4 = lambda x: round(float(x), 4)  # noqa: E731
        cores = {}
        for i in range(n):
            entry: dict[str, object] = {"neuroncore_utilization": round(float(util[i]) * 100, 2), "flops": int(flops_rate[i])}
            if p.core_version == "v3d":
                u = float(util[i]) * 100
                d = float(self.rng.normal(0, 0.2)) if running else 0.0
                entry["v3d"] = {
                    f"nc_v3.{2 * i}": {"neuroncore_utilization": round(min(100.0, max(0.0, u + d)), 2)},
                    f"nc_v3.{2 * i + 1}": {"neuroncore_utilization": round(min(100.0, max(0.0, u - d)), 2)},
                }
            cores[str(i)] = entry

        mem_cores, dev_total = self._memory(running)
        host = host_memory(p, self.wl, self.knobs.workers)
        host_total = sum(host.values())
        steps_in_window = dt * self.on / m.period_s if running else 0.0
        executions = self.executions * int(m.active.sum())  # each working core runs its copy of the graph
        failed = int(any(e.get("type") == "oom" for e in self.events))  # the execution that ran out of memory
        # An execution is one graph: a micro-batch's forward and backward, or the step's last graph
        # (gradient all-reduce, optimizer). Total latency adds the runtime's own time to the device's.
        latency = dev_latency = None
        if executions:
            # The window's executions: micro-batch graphs and, one in `executions_per_step`, the
            # step's last graph (gradient all-reduce, optimizer); percentiles of that mixture.
            # The quantile q is the shorter graph's latency while q is within its share, then the
            # longer one's (the step's last graph is often the shorter: p99 is never below p75).
            micro_share = 1 - 1 / m.executions_per_step
            parts = sorted((v, w) for v, w in ((m.micro_device_s, micro_share), (m.tail_device_s, 1 - micro_share))
                           if w > 0)
            sig = lambda x: float(f"{x:.6g}")  # noqa: E731
            dev_latency = {}
            for k, q, f in (("p0", 0.0, 0.97), ("p1", 0.01, 0.975), ("p25", 0.25, 0.99), ("p50", 0.5, 1.0),
                            ("p75", 0.75, 1.01), ("p99", 0.99, 1.03), ("p100", 1.0, 1.05)):
                dev_latency[k] = sig((parts[0][0] if q <= parts[0][1] else parts[-1][0]) * f)
            latency = {k: float(f"{v + RT_OVERHEAD_S:.6g}") for k, v in dev_latency.items()}
        vcpu_avg, vcpu_per, rt_user, rt_sys = self._vcpu(running)
        tokens_s = m.tokens_per_step / m.period_s * jit_step * self.on if running else 0.0
        mfu = m.model_flops_per_step / m.period_s / m.peak_flops * jit_step * self.on if running else 0.0
        st = sorted(self.step_times) or [0.0]
        pct = lambda q: r4(st[min(len(st) - 1, int(q * (len(st) - 1)))])  # noqa: E731
        wait = min(self.wait_s, dt)
        report = {
            "neuron_runtime_data": [{
                "pid": self.cfg.pid,
                "neuron_runtime_tag": str(self.cfg.pid),
                "error": "",
                "report": {
                    "neuroncore_counters": {"period": dt, "neuroncores_in_use": cores, "error": ""},
                    "execution_stats": {
                        "period": dt,
                        "error_summary": {**dict.fromkeys(
                            ("generic", "numerical", "transient", "model", "runtime", "hardware"), 0),
                            "runtime": failed},
                        "execution_summary": {"completed": executions, "completed_with_err": failed,
                                              "completed_with_num_err": 0, "timed_out": 0,
                                              "incorrect_input": 0, "failed_to_queue": 0},
                        "latency_stats": {"total_latency": latency, "device_latency": dev_latency},
                        "error": "",
                    },
                    "memory_used": {
                        "period": dt,
                        "neuron_runtime_used_bytes": {
                            "host": host_total,
                            "neuron_device": dev_total,
                            "usage_breakdown": {"host": host, "neuroncore_memory_usage": mem_cores},
                        },
                        "loaded_models": self._loaded_models(),
                        "error": "",
                    },
                    "neuron_runtime_vcpu_usage": {"period": dt, "vcpu_usage": {"user": rt_user, "system": rt_sys},
                                                  "error": ""},
                },
            }],
            "system_data": {
                "neuron_hw_counters": {"period": dt, "neuron_devices": (
                    self._hw(int(self.rng.poisson(self.knobs.ecc_per_s * dt))) if self.knobs.ecc_per_s > 0
                    and not self.crashed else self._static("hw")), "error": ""},
                "vcpu_usage": {"period": dt, "average_usage": vcpu_avg, "usage_data": vcpu_per,
                               "context_switch_count": int(2000 * p.vcpus * dt * (1 + 0.05 * jit_step)),
                               "error": ""},
                "memory_info": {"period": dt, "memory_total_bytes": p.host_mem_bytes,
                                "memory_used_bytes": host_total + 6 * 2**30, "swap_total_bytes": 0,
                                "swap_used_bytes": 0, "error": ""},
            },
            "instance_info": self._static("instance"),
            "neuron_hardware_info": self._static("hardware"),
            "neuron_top": {
                "version": PROTOCOL_VERSION,
                "seq": self.seq,
                "time_s": round(self.sim_time, 6),
                "timestamp": round(self.epoch + self.sim_time, 6),
                "period_s": dt,
                "cores": {
                    "busy_ns": [int(x) for x in self.cum_busy_ns],
                    "flops": [int(x) for x in self.cum_flops],
                    "hbm_read_bytes": [int(x) for x in self.cum_read],
                    "hbm_write_bytes": [int(x) for x in self.cum_write],
                    "engines": {k: [round(float(x), 4) for x in v] for k, v in engines.items()},
                },
                "hbm": {"bandwidth_bytes_per_s": p.hbm_bw, "capacity_bytes": p.hbm_bytes},
                "links": {
                    "pairs": [list(x) for x in m.links],
                    "bandwidth_bytes_per_s": p.link_bw,
                    "bytes": [int(x) for x in self.cum_links],
                },
                "collectives": [
                    {"name": c.name, "op": c.kind, "bytes": int(c.bytes),
                     "count": int(round(c.calls_per_step * steps_in_window)),
                     "calls_per_step": c.calls_per_step,
                     "time_s": r4(c.time_s * c.calls_per_step * steps_in_window),
                     "exposed_s": r4(c.exposed_s * steps_in_window),
                     "algbw_bytes_per_s": int(c.algbw), "busbw_bytes_per_s": int(c.busbw)}
                    for c in m.collectives
                ],
                "efa": {"bytes": int(self.cum_efa), "bandwidth_bytes_per_s": p.efa_gbps / 8 * 1e9},
                "training": {
                    "workload": self.wl.name, "dtype": self.wl.dtype,
                    "step": int(self.steps_done),
                    "loss": (round(self.proxy.last_loss, 5) if self.proxy and not math.isnan(self.proxy.last_loss)
                             else None),
                    "loss_source": "proxy" if self.proxy else None,
                    "proxy_step": self.proxy.step_count if self.proxy else 0,
                    "tokens_per_s": round(tokens_s, 1),
                    "samples_per_s": round(m.samples_per_step / m.period_s * self.on if running else 0.0, 3),
                    "mfu": round(mfu, 4),
                    "step_time_s": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99)},
                    "global_batch": self.wl.global_batch, "micro_batch": self.wl.micro_batch,
                    "seq": self.wl.seq,
                },
                "input": {
                    "workers": self.knobs.workers,
                    "queue_depth": round(self.queue_depth, 2),
                    "queue_capacity": self.queue_capacity,
                    "wait_s": r4(wait),
                    "wait_frac": r4(wait / dt),
                },
                "events": list(self.events),
                "truth": self.truth(),
            },
        }
        return report

    def _memory(self, running: bool) -> tuple[dict, int]:
        p, m = self.preset, self.model
        out, total = {}, 0
        ph = self.phase_now
        c = self.knobs.compile_s
        # Warm-up: nothing on the device while compiling, then the graphs and weights load.
        loaded = 0.0 if ph == "compile" else min(1.0, (self.sim_time - c) / (LOAD_SHARE * c)) if ph == "load" else 1.0
        leaked = self._leaked()
        for i in range(p.n_cores):
            if self.crashed or not m.active[i] or loaded < 1.0:
                # A crashed job's process has exited: its device memory is released.
                mem = idle_core_memory() if i < self.wl.cores_used and not self.crashed else CoreMemory(0, 0, 0, 0, 0, 0)
                if loaded < 1.0 and m.active[i] and not self.crashed:
                    a = self.mem_active
                    mem = CoreMemory(int(a.tensors * loaded), int(a.constants * loaded), int(a.model_code * loaded),
                                     int(a.model_shared_scratchpad * loaded), int(a.runtime_memory * loaded), 0)
                elif loaded < 1.0:
                    mem = CoreMemory(0, 0, 0, 0, 0, 0)
                tensors = mem.tensors
            else:
                # The runtime allocates a loaded graph's tensors (activations included) once, so
                # neuron-monitor's device memory stays flat while training; only a leak grows it.
                mem = self.mem_active
                tensors = mem.tensors + leaked
            out[str(i)] = {"constants": mem.constants, "model_code": mem.model_code,
                           "model_shared_scratchpad": mem.model_shared_scratchpad,
                           "runtime_memory": mem.runtime_memory, "tensors": tensors}
            total += tensors + mem.constants + mem.model_code + mem.model_shared_scratchpad + mem.runtime_memory
        return out, total

    def _hw(self, events: int) -> list[dict]:
        """neuron_hw_counters: ECC events in the period (neuron-monitor reports each period's count)."""
        k = self.knobs
        return [{"neuron_device_index": d, "mem_ecc_corrected": events if d == k.ecc_device else 0,
                 "mem_ecc_uncorrected": 0, "sram_ecc_uncorrected": 0, "sram_ecc_corrected": 0}
                for d in range(self.preset.n_devices)]

    def _loaded_models(self) -> msgspec.Raw:
        if "models" not in self._static_cache:
            p = self.preset
            mem = self.mem_active
            models = []
            for i in range(min(p.n_cores, self.wl.cores_used)):
                models.append({
                    "name": f"MODULE_{i}_SyncTensorsGraph_{self.wl.name}_train_step",
                    "uuid": f"{self.cfg.seed:08x}{i:024x}",
                    "model_id": 10001 + i,
                    "is_running": bool(self.model.active[i]) and not self.crashed,
                    "subgraphs": {"sg_00": {
                        "memory_used_bytes": {
                            "host": 20480,
                            "neuron_device": mem.constants + mem.model_code + mem.runtime_memory,
                            "usage_breakdown": {
                                "host": {"application_memory": 20480, "constants": 0, "dma_buffers": 0, "tensors": 0},
                                "neuron_device": {"constants": mem.constants, "model_code": mem.model_code,
                                                  "runtime_memory": mem.runtime_memory, "tensors": 0},
                            },
                        },
                        "neuroncore_index": i,
                        "neuron_device_index": i // p.cores_per_device,
                    }},
                })
            self._static_cache["models"] = msgspec.Raw(_encoder.encode(models))
        return self._static_cache["models"]

    def _static(self, key: str) -> msgspec.Raw:
        if key not in self._static_cache:
            p = self.preset
            val: object
            if key == "hw":
                val = self._hw(0)
            elif key == "instance":
                val = {"instance_name": self.cfg.instance_name, "instance_id": f"i-sim{self.cfg.seed:013x}", "instance_type": p.name,
                       "instance_availability_zone": "sim-1a", "instance_availability_zone_id": "sim1-az1",
                       "instance_region": "sim-1", "ami_id": "ami-devicesim", "subnet_id": "subnet-devicesim",
                       "error": ""}
            else:
                val = {"neuron_device_type": p.device_type, "neuron_device_version": p.device_version,
                       "neuroncore_version": p.core_version, "neuron_device_count": p.n_devices,
                       "neuron_device_memory_size": p.hbm_bytes, "neuroncore_per_device_count": p.cores_per_device,
                       "logical_neuroncore_config": p.lnc, "error": ""}
            self._static_cache[key] = msgspec.Raw(_encoder.encode(val))
        return self._static_cache[key]

    def _vcpu(self, running: bool) -> tuple[dict, dict, float, float]:
        """Host CPU as the threads use it. The training process (neuron_runtime_vcpu_usage) is the
        main thread, launching graphs and synchronising (vCPU 0), and the runtime's own threads.
        Data-loader workers are processes of their own (vCPUs 1..workers), and so are the compiler's
        jobs during warm-up; the rest of the host is nearly idle."""
        p, m, k = self.preset, self.model, self.knobs
        n = p.vcpus
        user: np.ndarray = np.full(n, 0.6)
        system: np.ndarray = np.full(n, 0.3)
        ph, on = self.phase_now, self.on
        main = rt = 0.0
        if ph == "compile" and not self.paused:
            jobs = min(COMPILE_JOBS, n - 1)
            user[1 : 1 + jobs] = 93.0
            system[1 : 1 + jobs] = 4.0
            main = 0.05
        elif ph == "load" and not self.paused:
            main = 0.6  # the runtime copies weights to the device
        elif ph == "first_step" and not self.paused:
            main = 1.0  # the main thread traces the first step (a lazy graph) before it can launch it
        if running:
            w = min(k.workers, n - 1)
            user[1 : 1 + w] += 100.0 * m.worker_busy * 0.92 * on
            system[1 : 1 + w] += 100.0 * m.worker_busy * 0.06 * on
            main += min(1.0, (m.main_busy_s / m.period_s + 0.02)) * on
            rt = RUNTIME_THREADS
        main = min(1.0, main)
        user[0] += 100.0 * main * 0.85
        system[0] += 100.0 * main * 0.15
        rt_vcpu = n - 1 if n > 1 + min(k.workers, n - 1) else 0
        user[rt_vcpu] += 100.0 * rt * 0.5
        system[rt_vcpu] += 100.0 * rt * 0.5
        user = np.clip(user + self.rng.normal(0, 0.2, n), 0, 99.5)
        system = np.clip(system + self.rng.normal(0, 0.05, n), 0, 100 - user)
        per = {}
        for i in range(n):
            u, s = round(float(user[i]), 2), round(float(system[i]), 2)
            per[str(i)] = {"user": u, "nice": 0, "system": s, "idle": max(0.0, round(100 - u - s, 2)), "io_wait": 0,
                           "irq": 0, "soft_irq": 0}
        au, asys = float(user.mean()), float(system.mean())
        avg = {"user": round(au, 2), "nice": 0, "system": round(asys, 2), "idle": max(0.0, round(100 - au - asys, 2)),
               "io_wait": 0, "irq": 0, "soft_irq": 0}
        # The training process's share of the whole host, as neuron-monitor reports it
        rt_user = round(100.0 * (main * 0.85 + rt * 0.5) / n, 2)
        rt_sys = round(100.0 * (main * 0.15 + rt * 0.5) / n, 2)
        return avg, per, rt_user, rt_sys

    def hello(self) -> dict:
        p = self.preset
        return {
            "protocol": PROTOCOL,
            "version": PROTOCOL_VERSION,
            "device": {"preset": p.name, "device_type": p.device_type, "core_version": p.core_version,
                       "devices": p.n_devices, "cores_per_device": p.cores_per_device, "lnc": p.lnc},
            "config": {"scenario": self.scenario.name, "seed": self.cfg.seed, "period_s": self.cfg.period_s,
                       "workload": self.wl.name, "numerics": self.proxy is not None,
                       "knobs": knob_dict(self.knobs)},
        }


def knob_dict(k: Knobs) -> dict:
    return {f: getattr(k, f) for f in Knobs.__dataclass_fields__}


def encode(report: dict) -> bytes:
    return _encoder.encode(report)


__all__ = ["Engine", "SimConfig", "encode", "PROTOCOL", "PROTOCOL_VERSION"]
