"""The sample model: one decoded report as arrays, and the stateful decoder that makes them.

Headless: no Textual. Rates come from the extension's cumulative counters over the client's own
interval when they are present (so dropped reports do not distort them), else from
neuron-monitor's per-window fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import msgspec
import numpy as np

from .fields import path_fields, read_path
from .hardware import INSTANCE_CHIP, chip_for
from .schema import MAX_CORES, ExtCollective, ExtInput, ExtTraining, Report, report_decoder

MEM_CATEGORIES = ("tensors", "constants", "model_code", "model_shared_scratchpad", "runtime_memory")
MEM_LABELS = ("Tensors", "Constants", "Model Code", "Model Scratchpad", "Runtime Memory")


class DecodeError(ValueError):
    """A report that is not valid neuron-monitor JSON; the message names the field."""


@dataclass(frozen=True)
class Job:
    """One runtime of a report (neuron-monitor's neuron_runtime_data entry): what nvitop shows per process."""

    pid: int
    tag: str
    cores: tuple[int, ...]  # the cores it holds (its neuroncores_in_use keys, else its memory's)
    device_bytes: int  # device memory, every category
    host_bytes: int  # host memory the runtime holds
    cpu_pct: float  # its vCPU usage, user + system
    errors: int  # execution errors in the period, every type


@dataclass(frozen=True, eq=False)
class Sample:
    seq: int
    time_s: float  # since the start of the stream
    timestamp: float | None  # unix time, when the source knows it
    period_s: float
    instance_type: str
    device_type: str
    core_version: str
    n_devices: int
    cores_per_device: int
    hbm_capacity: int  # bytes per device, 0 when unknown
    hbm_bw: float  # bytes/s per device, 0 when unknown
    core_peak_flops: float  # dense bf16 FLOP/s per logical core, 0 when unknown
    util: np.ndarray  # [cores] percent, max over runtimes
    flops: np.ndarray | None  # [cores] FLOP/s; None when the report has no flops field
    mem: np.ndarray  # [cores, 5] bytes by MEM_CATEGORIES
    host_mem: tuple[int, int, int, int]  # application_memory, constants, dma_buffers, tensors
    runtime_user: float
    runtime_system: float
    sys_user: float
    sys_system: float
    sys_idle: float
    sys_iowait: float
    vcpu_busy: np.ndarray  # [vcpus] percent busy (100 - idle)
    host_mem_total: int
    host_mem_used: int
    ecc_corrected: float  # ECC events corrected in the period, every device (mem + sram)
    ecc_uncorrected: float  # and uncorrected
    ecc_device: int  # the device with the most events in the period, -1 when none
    ecc_by_device: dict[int, tuple[float, float]]  # device -> (corrected, uncorrected) in the period, where any
    runtimes: tuple[tuple[int, str], ...]  # (pid, tag)
    runtime_util: tuple[np.ndarray, ...]  # per runtime [cores]
    jobs: tuple[Job, ...]  # per runtime, in the report's order (runtimes' order)
    swap_total: int
    swap_used: int
    exec_errors: dict[str, int]  # execution errors in the period by type (error_summary), every runtime
    exec_cores: int  # cores the first runtime drives (neuroncores_in_use keys)
    executions: int
    latency_p50: float | None
    device_latency_p50: float | None
    engines: np.ndarray | None = None  # [5, cores] active fraction (extension)
    hbm_rate: np.ndarray | None = None  # [cores] bytes/s (extension)
    link_pairs: tuple[tuple[int, int], ...] = ()
    link_rate: np.ndarray | None = None  # [links] bytes/s
    link_bw: float = 0.0
    collectives: tuple[ExtCollective, ...] = ()
    efa_rate: float | None = None
    efa_bw: float = 0.0
    training: ExtTraining | None = None
    input: ExtInput | None = None
    events: tuple[dict, ...] = ()
    extras: dict = field(default_factory=dict)
    instance_id: str = ""  # (a new id is a new stream: another machine's log)

    @property
    def n_cores(self) -> int:
        return len(self.util)

    @property
    def has_extension(self) -> bool:
        return self.engines is not None

    @property
    def avg_util(self) -> float:
        return float(self.util.mean()) if len(self.util) else 0.0

    # Per-sample figures the hint window reads at every evaluation: computed once per sample
    # (cached_property writes the instance dict directly, which a frozen dataclass allows).
    @cached_property
    def mem_per_core(self) -> np.ndarray:
        """[cores] bytes used on each core."""
        return self.mem.sum(axis=1)

    @cached_property
    def exposed_comm_s(self) -> float:
        return float(sum(c.exposed_s for c in self.collectives))

    @cached_property
    def busbw_max(self) -> float:
        return float(max((c.busbw_bytes_per_s for c in self.collectives), default=0.0))

    @cached_property
    def link_mean(self) -> float | None:
        return float(self.link_rate.mean()) if self.link_rate is not None and len(self.link_rate) else None

    def device_mem(self) -> np.ndarray:
        """[devices] bytes used on each device."""
        per_core = self.mem_per_core
        return per_core.reshape(self.n_devices, -1).sum(axis=1) if self.n_devices else per_core


Counters = tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]
"""The extension's cumulative counters of the last report: (time_s, busy_ns, flops, HBM bytes, link
bytes, EFA bytes), for the next report's rates."""


class Decoder:
    """Decodes report lines into Samples; keeps the previous counters to compute rates.

    Its state (the last counters, the reports seen, the clock of plain reports, which have none)
    is read and advanced by the column reader too (store/colread.py), through `prev`, `count`,
    `clock` and `advance`, so either path can continue where the other stopped."""

    def __init__(self) -> None:
        self._prev: Counters | None = None
        self._count = 0
        self._time = 0.0
        self.last_report: Report | None = None  # the report behind the last Sample (the exporter reads it)

    @property
    def prev(self) -> Counters | None:
        return self._prev

    @property
    def count(self) -> int:
        return self._count

    @property
    def clock(self) -> float:
        """Stream time of the last plain report (the sum of periods: plain reports carry no clock)."""
        return self._time

    def advance(self, prev: Counters | None, reports: int, clock: float | None = None) -> None:
        """Continue after `reports` more reports, decoded elsewhere."""
        self._prev = prev
        self._count += reports
        if clock is not None:
            self._time = clock

    def decode(self, line: bytes | str) -> Sample:
        try:
            rep = report_decoder.decode(line)
        except msgspec.ValidationError as exc:
            raise DecodeError(f"invalid report: {exc}") from None
        except msgspec.DecodeError as exc:
            raise DecodeError(f"not JSON: {exc}") from None
        s = self.from_report(rep)
        self.last_report = rep
        return s

    def from_report(self, rep: Report) -> Sample:
        if not rep.neuron_runtime_data and rep.neuron_hardware_info is None and rep.system_data is None:
            raise DecodeError("not a neuron-monitor report: no neuron_runtime_data, system_data or "
                              "neuron_hardware_info")
        hw = rep.neuron_hardware_info
        inst = rep.instance_info.instance_type if rep.instance_info else ""
        n_dev = hw.neuron_device_count if hw and hw.neuron_device_count else 0
        cpd = hw.neuroncore_per_device_count if hw and hw.neuroncore_per_device_count else 0
        max_idx = -1
        for rt in rep.neuron_runtime_data:
            nc = rt.report.neuroncore_counters
            if nc and nc.neuroncores_in_use:
                max_idx = max(max_idx, _max_core_index(nc.neuroncores_in_use, "neuroncores_in_use"))
        n = n_dev * cpd if n_dev and cpd else max_idx + 1
        n = max(n, max_idx + 1)
        if not n_dev:
            n_dev, cpd = (1, n) if n else (0, 0)
        dtype = hw.neuron_device_type if hw else ""
        chip = chip_for(dtype, inst)
        cap = hw.neuron_device_memory_size if hw and hw.neuron_device_memory_size else (chip.hbm_bytes if chip else 0)
        peak = chip.bf16_flops / max(1, cpd) if chip and cpd else 0.0

        util: np.ndarray = np.zeros(n)
        flops: np.ndarray | None = None
        mem = np.zeros((n, 5), dtype=np.int64)
        host = [0, 0, 0, 0]
        rt_user = rt_sys = 0.0
        runtimes, rt_utils, jobs = [], [], []
        errors: dict[str, int] = {}
        period = 0.0
        executions = 0
        exec_cores = 0  # the cores the first runtime drives: its executions run one per core at a time
        lat = dlat = None
        for rt in rep.neuron_runtime_data:
            r = rt.report
            u = np.zeros(n)
            held: list[int] = []
            j_dev = j_host = j_err = 0
            j_cpu = 0.0
            if r.neuroncore_counters:
                period = period or float(r.neuroncore_counters.period)
                items = r.neuroncore_counters.neuroncores_in_use.items()
                idx = [int(k) for k, _ in items]  # keys were checked while sizing n
                held = idx
                if rt is rep.neuron_runtime_data[0]:
                    exec_cores = len(idx)
                missing = next((k for k, c in items if c.neuroncore_utilization is None), None)
                if missing is not None:
                    raise DecodeError(f"invalid report: core {missing} in neuroncores_in_use has no "
                                      "neuroncore_utilization")
                u[idx] = [c.neuroncore_utilization for _, c in items]
                fl = [c.flops if c.flops is not None else c.effective_flops for _, c in items]
                if any(f is not None for f in fl):
                    if flops is None:
                        flops = np.zeros(n)
                    fa = np.array([np.nan if f is None else f for f in fl], dtype=float)
                    flops[idx] = np.fmax(flops[idx], fa)
                    flops = np.nan_to_num(flops)
            util = np.maximum(util, u)  # a core listed by several runtimes: take the max (CloudWatch #1713)
            runtimes.append((rt.pid, rt.neuron_runtime_tag or str(rt.pid)))
            rt_utils.append(u)
            if r.memory_used:
                ub = r.memory_used.neuron_runtime_used_bytes.usage_breakdown
                nmu = ub.neuroncore_memory_usage
                if nmu:
                    _max_core_index(nmu, "neuroncore_memory_usage")  # checks every key is a number
                rows = [(i, cm) for i, cm in zip(map(int, nmu), nmu.values(), strict=True) if i < n]
                if rows:
                    per = np.array([(cm.tensors, cm.constants, cm.model_code, cm.model_shared_scratchpad,
                                     cm.runtime_memory) for _, cm in rows], dtype=np.int64)
                    mem[[i for i, _ in rows]] += per
                    j_dev = int(per.sum())
                    held = held or [i for i, _ in rows]
                h = ub.host
                j_host = h.application_memory + h.constants + h.dma_buffers + h.tensors
                host = [host[0] + h.application_memory, host[1] + h.constants, host[2] + h.dma_buffers,
                        host[3] + h.tensors]
            if r.neuron_runtime_vcpu_usage:
                vu = r.neuron_runtime_vcpu_usage.vcpu_usage
                rt_user += float(vu.user)
                rt_sys += float(vu.system)
                j_cpu = float(vu.user) + float(vu.system)
            if r.execution_stats:
                executions += int(r.execution_stats.execution_summary.get("completed", 0))
                for kind, cnt in r.execution_stats.error_summary.items():
                    errors[kind] = errors.get(kind, 0) + int(cnt)
                    j_err += int(cnt)
                ls = r.execution_stats.latency_stats
                if ls.total_latency is not None:
                    lat = float(ls.total_latency.p50)
                if ls.device_latency is not None:
                    dlat = float(ls.device_latency.p50)
            jobs.append(Job(rt.pid, runtimes[-1][1], tuple(sorted(held)), j_dev, j_host, j_cpu, j_err))
        sd = rep.system_data
        su = ss = si = sw = 0.0
        busy: np.ndarray = np.zeros(0)
        mt = mu = st = su_ = 0
        if sd and sd.vcpu_usage:
            v = sd.vcpu_usage
            if v.average_usage:
                su, ss, si, sw = (float(v.average_usage.user), float(v.average_usage.system),
                                  float(v.average_usage.idle), float(v.average_usage.io_wait))
            if v.usage_data:
                busy = 100.0 - np.array([c.idle for c in v.usage_data.values()], dtype=np.float64)
            period = period or float(v.period)
        if sd and sd.memory_info:
            mt, mu = sd.memory_info.memory_total_bytes, sd.memory_info.memory_used_bytes
            st, su_ = sd.memory_info.swap_total_bytes, sd.memory_info.swap_used_bytes
        ecc_c = ecc_u = 0.0
        ecc_dev, ecc_top = -1, 0
        ecc_by: dict[int, tuple[float, float]] = {}
        for dev in sd.neuron_hw_counters.neuron_devices if sd and sd.neuron_hw_counters else []:
            e_c = dev.mem_ecc_corrected + dev.sram_ecc_corrected
            e_u = dev.mem_ecc_uncorrected + dev.sram_ecc_uncorrected
            ecc_c, ecc_u = ecc_c + e_c, ecc_u + e_u
            if e_c or e_u:
                ecc_by[int(dev.neuron_device_index)] = (float(e_c), float(e_u))
            if e_c + e_u > ecc_top:
                ecc_dev, ecc_top = int(dev.neuron_device_index), e_c + e_u
        ext = rep.neuron_top
        period = float(ext.period_s) if ext and ext.period_s else (period or 1.0)
        self._count += 1
        if ext is not None:
            time_s = float(ext.time_s)
            seq = ext.seq
        else:
            self._time += period
            time_s = self._time
            seq = self._count
        kw: dict = {}
        if ext is not None:
            kw = self._extension(ext, n, time_s)
            if "util" in kw:
                util = kw.pop("util")
                f2 = kw.pop("flops")
                flops = f2 if flops is not None or f2.any() else flops
        return Sample(
            seq=seq, time_s=time_s, timestamp=float(ext.timestamp) if ext and ext.timestamp else None,
            period_s=period, instance_type=inst, device_type=dtype or INSTANCE_CHIP.get(inst.split(".")[0], ""),
            core_version=hw.neuroncore_version if hw else "", n_devices=n_dev, cores_per_device=cpd,
            hbm_capacity=int(cap), hbm_bw=float(chip.hbm_bw) if chip else 0.0, core_peak_flops=peak,
            util=np.clip(util, 0.0, 100.0), flops=flops, mem=mem, host_mem=tuple(host),  # type: ignore[arg-type]
            runtime_user=rt_user, runtime_system=rt_sys, sys_user=su, sys_system=ss, sys_idle=si,
            sys_iowait=sw, vcpu_busy=busy, host_mem_total=mt, host_mem_used=mu,
            ecc_corrected=ecc_c, ecc_uncorrected=ecc_u, ecc_device=ecc_dev, ecc_by_device=ecc_by,
            runtimes=tuple(runtimes),
            runtime_util=tuple(rt_utils), jobs=tuple(jobs), swap_total=st, swap_used=su_, exec_errors=errors,
            exec_cores=exec_cores, executions=executions, latency_p50=lat, device_latency_p50=dlat,
            instance_id=rep.instance_info.instance_id if rep.instance_info else "", extras=_extras(rep), **kw,
        )

    def _extension(self, ext, n: int, time_s: float) -> dict:
        out: dict = {}
        c = ext.cores
        if c and any(len(a) != len(c.busy_ns) for a in (c.flops, c.hbm_read_bytes, c.hbm_write_bytes)):
            raise DecodeError(f"invalid report: neuron_top.cores arrays of different lengths (busy_ns "
                              f"{len(c.busy_ns)}, flops {len(c.flops)}, hbm_read_bytes {len(c.hbm_read_bytes)}, "
                              f"hbm_write_bytes {len(c.hbm_write_bytes)})")
        if c and len(c.busy_ns) == n:
            busy = np.asarray(c.busy_ns, dtype=np.float64)
            fl = np.asarray(c.flops, dtype=np.float64)
            hb = np.asarray(c.hbm_read_bytes, dtype=np.float64) + np.asarray(c.hbm_write_bytes, dtype=np.float64)
            links = np.asarray(ext.links.bytes, dtype=np.float64) if ext.links else np.zeros(0)
            efa = float(ext.efa.bytes) if ext.efa else 0.0
            prev = self._prev
            # (a shape change, a restart: the previous counters do not apply)
            if prev is not None and time_s > prev[0] and len(prev[1]) == n and len(prev[4]) == len(links):
                dt = time_s - prev[0]
                d = lambda now, before: np.maximum(now - before, 0.0) / dt  # noqa: E731
                out["util"] = d(busy, prev[1]) / 1e7
                out["flops"] = d(fl, prev[2])
                out["hbm_rate"] = d(hb, prev[3])
                out["link_rate"] = d(links, prev[4])
                out["efa_rate"] = max(0.0, efa - prev[5]) / dt
            else:
                # First report: the window's own figures, and averages since the counters' zero.
                t = max(time_s, 1e-9)
                out["hbm_rate"] = hb / t
                out["link_rate"] = links / t
                out["efa_rate"] = efa / t
            self._prev = (time_s, busy, fl, hb, links, efa)
            e = c.engines
            cols = [e.tensor, e.vector, e.scalar, e.gpsimd, e.dma]
            if all(len(x) == n for x in cols):
                out["engines"] = np.asarray(cols, dtype=np.float64)
        if ext.links:
            out["link_pairs"] = tuple(tuple(p) for p in ext.links.pairs)
            out["link_bw"] = float(ext.links.bandwidth_bytes_per_s)
        if ext.efa:
            out["efa_bw"] = float(ext.efa.bandwidth_bytes_per_s)
        out["collectives"] = tuple(ext.collectives)
        out["training"] = ext.training
        out["input"] = ext.input
        out["events"] = tuple(ext.events)
        return out


def _extras(rep: Report) -> dict:
    """The catalogue's plain figures, read by their JSON paths (fields.py)."""
    out = {}
    for f in path_fields():
        v = read_path(rep, f.path or ())
        out[f.name] = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else f.default
    return out


def _core_key_ok(key: str) -> bool:
    # decimal ASCII digits only ('³'.isdigit() is true, int('³') fails) and a bounded index
    return 0 < len(key) <= 4 and key.isascii() and key.isdecimal() and int(key) < MAX_CORES


def _max_core_index(keys, where: str) -> int:
    """The largest core key; every key must be a core number (the error names the first that is not)."""
    for k in keys:
        if not _core_key_ok(k):
            raise DecodeError(f"invalid report: core key {k[:20]!r} in {where} is not a core number "
                              f"(0 to {MAX_CORES - 1})")
    return max(map(int, keys))
