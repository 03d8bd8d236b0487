"""Prometheus metrics of the latest report: AWS's neuron-monitor-prometheus.py series, and neuron-top's own.

The AWS series keep that exporter's names, types, labels and transforms
(shared/reference/neuron-tools-and-trainium.md §3.1), so AWS's Grafana dashboard reads them
unchanged: utilisation and vCPU shares as ratios (/100), bytes as bytes, latencies in seconds,
execution and ECC counters that add each report's per-period counts. Every series carries the
instance labels. Per-runtime gauges exist only while a runtime runs (AWS's exporter clears them
too). `neurontop_*` series add what neuron-monitor lacks, from the `neuron_top` extension (FLOP/s,
HBM and link traffic, EFA, training figures) and from the diagnosis (the findings shown, and the
share of utilisation each bottleneck explains).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from ..analysis.rules import Hint
from ..telemetry.sample import MEM_CATEGORIES, Sample
from ..telemetry.schema import Report

INSTANCE_LABELS = ("instance_name", "instance_id", "instance_type", "availability_zone", "region", "subnet_id")
ECC_EVENTS = ("mem_ecc_corrected", "mem_ecc_uncorrected", "sram_ecc_corrected", "sram_ecc_uncorrected")
PERCENTILES = ("p0", "p1", "p25", "p50", "p75", "p99", "p100")


class NeuronCollector(Collector):
    """Holds the latest report (and its decoded sample and shown hints); `collect` turns it into metrics."""

    def __init__(self) -> None:
        self.report: Report | None = None
        self.sample: Sample | None = None
        self.received: float | None = None  # unix time of the last report (a stream that stops goes stale)
        self.hints: list[Hint] = []
        self.lost: dict[str, float] = {}
        self.totals: dict[tuple, float] = {}  # (metric, labels...) -> running total of a counter
        self.created: dict[tuple, float] = {}

    def update(self, rep: Report, sample: Sample | None = None, hints: list[Hint] | None = None,
               lost: dict[str, float] | None = None) -> None:
        """`lost`: the hint monitor's time-loss breakdown (utilisation points by cause)."""
        self.report, self.sample, self.hints = rep, sample, list(hints or [])
        self.lost = dict(lost or {})
        now = time.time()
        self.received = now
        for rt in rep.neuron_runtime_data:
            es = rt.report.execution_stats
            if es is None:
                continue
            tag = rt.neuron_runtime_tag or str(rt.pid)
            for metric, counts in (("execution_errors", es.error_summary), ("execution_status", es.execution_summary)):
                for kind, n in counts.items():
                    self._add((metric, tag, kind), n, now)
        hw = rep.system_data.neuron_hw_counters if rep.system_data else None
        for dev in hw.neuron_devices if hw else []:
            for ev in ECC_EVENTS:
                self._add(("hardware_ecc_events", ev, str(dev.neuron_device_index)), getattr(dev, ev), now)

    def _add(self, key: tuple, n: float, now: float) -> None:
        self.totals[key] = self.totals.get(key, 0.0) + max(0.0, float(n))
        self.created.setdefault(key, now)

    def _instance(self) -> list[str]:
        ii = self.report.instance_info if self.report is not None else None
        if ii is None:
            return [""] * len(INSTANCE_LABELS)
        return [ii.instance_name, ii.instance_id, ii.instance_type, ii.instance_availability_zone, ii.instance_region,
                ii.subnet_id]

    def collect(self) -> Iterator[Any]:
        rep = self.report
        if rep is None:
            return
        inst = self._instance()
        il = list(INSTANCE_LABELS)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=[*il, *labels])

        util = gauge("neuroncore_utilization_ratio", "NeuronCore utilisation", ("runtime_tag", "neuroncore"))
        vcpu = gauge("neuron_runtime_vcpu_usage_ratio", "Neuron runtime vCPU usage", ("runtime_tag", "usage_type"))
        mem = gauge("neuron_runtime_memory_used_bytes", "Neuron runtime memory used", ("runtime_tag", "memory_location"))
        core_mem = {c: gauge(f"neuroncore_memory_usage_{c}", f"NeuronCore memory used: {c}",
                             ("runtime_tag", "neuroncore", "memory_location")) for c in MEM_CATEGORIES}
        lat = gauge("execution_latency_seconds", "execution latency", ("runtime_tag", "percentile"))
        for rt in rep.neuron_runtime_data:
            tag = rt.neuron_runtime_tag or str(rt.pid)
            r = rt.report
            if r.neuroncore_counters:
                for core, c in r.neuroncore_counters.neuroncores_in_use.items():
                    util.add_metric([*inst, tag, core], float(c.neuroncore_utilization or 0.0) / 100)
            if r.neuron_runtime_vcpu_usage:
                u = r.neuron_runtime_vcpu_usage.vcpu_usage
                vcpu.add_metric([*inst, tag, "user"], float(u.user) / 100)
                vcpu.add_metric([*inst, tag, "system"], float(u.system) / 100)
            if r.memory_used:
                used = r.memory_used.neuron_runtime_used_bytes
                mem.add_metric([*inst, tag, "host"], float(used.host))
                mem.add_metric([*inst, tag, "neuron_device"], float(used.neuron_device))
                for core, cm in used.usage_breakdown.neuroncore_memory_usage.items():
                    for cat in MEM_CATEGORIES:
                        core_mem[cat].add_metric([*inst, tag, core, "None"], float(getattr(cm, cat)))
            tl = r.execution_stats.latency_stats.total_latency if r.execution_stats else None
            if tl is not None:
                for p in PERCENTILES:
                    lat.add_metric([*inst, tag, p], float(getattr(tl, p)))
        yield from (util, vcpu, mem, *core_mem.values(), lat)
        yield from self._counters(inst, il)
        yield from self._system(rep, inst, il, gauge)
        info = InfoMetricFamily("instance", "the instance", labels=il)
        info.add_metric(inst, {})
        yield info
        hw = rep.neuron_hardware_info
        if hw is not None:
            hwi = InfoMetricFamily("neuron_hardware", "Neuron hardware", labels=il)
            hwi.add_metric(inst, {"neuron_device_count": str(hw.neuron_device_count),
                                  "neuroncore_per_device_count": str(hw.neuroncore_per_device_count)})
            yield hwi
        yield from self._ours(inst, gauge)

    def _counters(self, inst: list[str], il: list[str]) -> Iterator[Any]:
        fams = {
            "execution_errors": CounterMetricFamily("execution_errors", "execution errors",
                                                    labels=[*il, "runtime_tag", "error_type"]),
            "execution_status": CounterMetricFamily("execution_status", "executions by status",
                                                    labels=[*il, "runtime_tag", "status_type"]),
            "hardware_ecc_events": CounterMetricFamily("hardware_ecc_events", "ECC events",
                                                       labels=[*il, "event_type", "neuron_device_index"]),
        }
        for key, total in sorted(self.totals.items()):
            fams[key[0]].add_metric([*inst, *key[1:]], total, created=self.created[key])
        yield from fams.values()

    def _system(self, rep: Report, inst: list[str], il: list[str], gauge: Any) -> Iterator[Any]:
        sd = rep.system_data
        if sd is None:
            return
        v = sd.vcpu_usage
        if v is not None:
            n = gauge("system_vcpu_count", "vCPUs")
            n.add_metric(inst, float(len(v.usage_data)))
            yield n
            a = v.average_usage
            if a is not None:
                u = gauge("system_vcpu_usage_ratio", "host vCPU usage", ("usage_type",))
                u.add_metric([*inst, "user"], min(100.0, float(a.user) + float(a.nice)) / 100)
                u.add_metric([*inst, "system"], min(100.0, float(a.system) + float(a.io_wait) + float(a.irq)
                                                    + float(a.soft_irq)) / 100)
                yield u
        mi = sd.memory_info
        if mi is not None:
            for name, val in (("system_memory_total_bytes", mi.memory_total_bytes),
                              ("system_memory_used_bytes", mi.memory_used_bytes),
                              ("system_swap_total_bytes", mi.swap_total_bytes),
                              ("system_swap_used_bytes", mi.swap_used_bytes)):
                g = gauge(name, name.replace("_", " "))
                g.add_metric(inst, float(val))
                yield g

    def _ours(self, inst: list[str], gauge: Any) -> Iterator[Any]:
        """neuron-top's series: what neuron-monitor lacks (the extension) and the diagnosis."""
        s = self.sample
        found = gauge("neurontop_finding", "1 for each finding neuron-top shows", ("cause", "kind", "severity"))
        lost = gauge("neurontop_lost_utilization_ratio",
                     "utilisation lost below 100 %, by cause (the time-loss breakdown), as a ratio", ("cause",))
        for h in self.hints:
            found.add_metric([*inst, h.cause, h.kind, h.severity], 1.0)
        for cause, points in self.lost.items():
            lost.add_metric([*inst, cause], points / 100)
        yield found
        yield lost
        if self.received is not None:  # the gauges keep their last values: this says how old they are
            g = gauge("neurontop_last_report_timestamp_seconds", "unix time the exporter received its last report")
            g.add_metric(inst, self.received)
            yield g
        if s is None:
            return
        cpd = max(1, s.cores_per_device)
        if s.flops is not None:
            g = gauge("neurontop_neuroncore_flops", "FLOP/s per NeuronCore", ("neuroncore",))
            for i, f in enumerate(s.flops.tolist()):
                g.add_metric([*inst, str(i)], f)
            yield g
        if s.hbm_rate is not None:
            g = gauge("neurontop_hbm_bytes_per_second", "HBM traffic per NeuronCore", ("neuroncore",))
            for i, f in enumerate(s.hbm_rate.tolist()):
                g.add_metric([*inst, str(i)], f)
            yield g
            if s.hbm_bw:
                share = gauge("neurontop_hbm_bandwidth_ratio", "HBM traffic / bandwidth per device",
                              ("neuron_device_index",))
                for d in range(s.n_devices):
                    share.add_metric([*inst, str(d)], float(s.hbm_rate[d * cpd:(d + 1) * cpd].sum()) / s.hbm_bw)
                yield share
        if s.link_rate is not None and len(s.link_rate):
            g = gauge("neurontop_neuronlink_bytes_per_second", "NeuronLink traffic per link", ("link",))
            for (a, b), r in zip(s.link_pairs, s.link_rate.tolist(), strict=False):
                g.add_metric([*inst, f"nd{a}-nd{b}"], r)
            yield g
        if s.efa_rate is not None:
            g = gauge("neurontop_efa_bytes_per_second", "EFA traffic")
            g.add_metric(inst, float(s.efa_rate))
            yield g
        t = s.training
        if t is not None:
            for name, doc, val in (("neurontop_step_time_seconds", "median step time", t.step_time_s.p50),
                                   ("neurontop_tokens_per_second", "training throughput", t.tokens_per_s),
                                   ("neurontop_mfu_ratio", "model FLOPs utilisation", t.mfu),
                                   ("neurontop_training_step", "training step", t.step)):
                g = gauge(name, doc)
                g.add_metric(inst, float(val))
                yield g
