"""The field catalogue: every figure neuron-top reads, in one table.

Each row says where a figure comes from in a neuron-monitor report or the `neuron_top` extension,
whether it is a gauge or a counter (read as a rate over the client's own interval), its unit and
shape, its CSV column pattern, precision and export group, and what it means. Generated from it:
the columns of a batch built from samples (batch.py), the export's columns and figure matrix
(export/exporter.py), and the column table in docs/export.md (`python -m
neurontop.core.telemetry.fields`; a test compares).

Adding a figure that is a plain number in the report is one row with a `path` (the decoder and
the column reader read it by that path, into `Sample.extras` and `Batch.extra`). A figure that
needs more (a maximum over runtimes, a rate from counters) also needs its derivation, in
sample.py's Decoder and store/colread.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .batch import Batch, Layout
    from .sample import Sample

NAN = math.nan
ENGINE_NAMES = ("tensor", "vector", "scalar", "gpsimd", "dma")
SHAPES = ("row", "core", "device", "link", "engine_core", "vcpu")


@dataclass(frozen=True)
class Field:
    name: str  # the batch column (or, for a derived figure, the figure's name)
    shape: str  # one of SHAPES: per report, per core, per device, per link pair, per engine and core, per vCPU
    unit: str
    kind: str  # "gauge", "counter" (a rate over the client's interval), "derived", "time"
    source: str  # where it comes from in the report
    description: str
    group: str | None = None  # export group (--fields); None: not exported
    csv: str | None = None  # column pattern: {d} device, {c} core, {a}/{b} link ends, {engine}
    decimals: int = 0
    mul: float = 1.0  # CSV value = batch value * mul
    present: Callable[[Layout, bool], bool] | None = None  # (layout, has FLOP rates): exported when true
    value: Callable[[Batch], np.ndarray] | None = None  # the [rows, k] export values, when not the column
    sample: Callable[[Sample], Any] | None = None  # the batch column's value from one Sample
    dtype: str = "f8"  # of a per-report batch column
    optional: Callable[[Layout], bool] | None = None  # the batch column exists only when true (else None)
    path: tuple | None = None  # a plain number at this JSON path: read generically (Sample.extras, Batch.extra)
    default: float = NAN  # for `path` figures, when the report lacks it

    @property
    def derived(self) -> bool:
        """Computed from other columns at export (no batch column of its own)."""
        return self.sample is None and self.path is None

    def metric(self, **at: Any) -> str:
        """The long layout's metric name: the column name without its device and core."""
        assert self.csv is not None
        pat = self.csv
        for prefix in ("nd{d}_nc{c}_", "nd{d}_"):
            if pat.startswith(prefix) and self.shape != "link":
                pat = pat[len(prefix):]
                break
        return pat.format(**at)


def _nan_if_none(v: Any) -> float:
    return NAN if v is None else float(v)


def _tr(s: Sample, name: str) -> float:
    return NAN if s.training is None else float(getattr(s.training, name))


def _padded_links(b: Batch) -> np.ndarray:
    n, k = len(b), len(b.layout.link_pairs)
    rate = b.link_rate if b.link_rate is not None else np.zeros((n, 0))
    if rate.shape[1] < k:
        rate = np.concatenate([rate, np.full((n, k - rate.shape[1]), np.nan)], axis=1)
    return rate[:, :k]


def _engines(b: Batch) -> np.ndarray:
    assert b.engines is not None  # (exported only when the layout has them)
    return b.engines.reshape(len(b), -1)


def _links(lay: Layout, has_flops: bool) -> bool:
    return lay.n_links >= 0 and bool(len(lay.link_pairs))


_NM = "neuron_runtime_data[].report"
_RT0 = ("neuron_runtime_data", 0, "report")
_EXEC = "neuron_runtime_data[0].report.execution_stats"
_EXT = "neuron_top"

FIELDS: list[Field] = [
    # -- the stream ---------------------------------------------------------------------------------
    Field("time_s", "row", "s", "time", f"{_EXT}.time_s; plain neuron-monitor: the sum of report periods",
          "time since the start of the stream", sample=lambda s: s.time_s),
    Field("timestamp", "row", "unix s", "time", f"{_EXT}.timestamp", "wall-clock time of the report, when known",
          sample=lambda s: _nan_if_none(s.timestamp)),
    Field("seq", "row", "", "gauge", f"{_EXT}.seq; plain: the report's number", "report sequence number",
          sample=lambda s: s.seq, dtype="i8"),
    Field("period", "row", "s", "gauge", f"{_EXT}.period_s, else the first `period` of the report",
          "the report's window", sample=lambda s: s.period_s),
    Field("step", "row", "", "gauge", f"{_EXT}.training.step, else the report's number", "training step",
          sample=lambda s: s.training.step if s.training is not None else s.seq, dtype="i8"),
    # -- cores --------------------------------------------------------------------------------------
    Field("util", "core", "%", "counter",
          f"{_EXT}.cores.busy_ns (a rate), else {_NM}.neuroncore_counters.neuroncores_in_use.*.neuroncore_utilization "
          "(the maximum over runtimes)", "NeuronCore utilisation: the share of time any engine was busy",
          group="util", csv="nd{d}_nc{c}_util_pct", decimals=2, sample=lambda s: s.util),
    Field("flops", "core", "FLOP/s", "counter",
          f"{_EXT}.cores.flops (a rate), else neuroncores_in_use.*.flops or effective_flops",
          "floating-point operations per second (absent when the telemetry has no FLOP figures)",
          group="flops", csv="nd{d}_nc{c}_flops_tflops", decimals=3,
          present=lambda lay, has_flops: has_flops,
          value=lambda b: np.where(b.flops_ok[:, None], b.flops / 1e12, np.nan),
          sample=lambda s: s.flops if s.flops is not None else np.zeros(s.n_cores)),
    Field("flops_ok", "row", "", "derived", "whether the report has FLOP figures", "the report has FLOP rates",
          sample=lambda s: s.flops is not None, dtype="bool"),
    Field("engines", "engine_core", "fraction", "gauge", f"{_EXT}.cores.engines.{{tensor,vector,scalar,gpsimd,dma}}",
          "the share of the window each engine was active (extension)", group="engines",
          csv="nd{d}_nc{c}_{engine}_active_pct", decimals=2, mul=100.0,
          present=lambda lay, has_flops: lay.has_engines, value=lambda b: _engines(b) * 100,
          sample=lambda s: s.engines, optional=lambda lay: lay.has_engines),
    # -- memory -------------------------------------------------------------------------------------
    Field("mem_core", "core", "bytes", "gauge",
          f"{_NM}.memory_used.neuron_runtime_used_bytes.usage_breakdown.neuroncore_memory_usage.* (all categories, "
          "all runtimes)", "device memory used on each core", sample=lambda s: s.mem_per_core),
    Field("hbm_used", "device", "bytes", "derived", "the sum of mem_core over each device's cores",
          "device (HBM) memory used", group="hbm", csv="nd{d}_hbm_used_bytes", decimals=0,
          value=lambda b: b.dev_mem().astype(np.float64).reshape(len(b), b.layout.n_devices)),
    Field("hbm_rate", "core", "bytes/s", "counter", f"{_EXT}.cores.hbm_read_bytes + hbm_write_bytes (a rate)",
          "HBM traffic of each core (extension)", group="hbm", csv="nd{d}_nc{c}_hbm_bytes_per_s", decimals=0,
          present=lambda lay, has_flops: lay.has_hbm_rate, sample=lambda s: s.hbm_rate,
          optional=lambda lay: lay.has_hbm_rate),
    Field("hbm_capacity", "device", "bytes", "derived",
          "neuron_hardware_info.neuron_device_memory_size, else the chip's published capacity",
          "device (HBM) memory installed", group="hbm", csv="nd{d}_hbm_capacity_bytes", decimals=0,
          value=lambda b: np.full((len(b), b.layout.n_devices), float(b.layout.hbm_capacity or np.nan))),
    # -- interconnect -------------------------------------------------------------------------------
    Field("link_rate", "link", "bytes/s", "counter", f"{_EXT}.links.bytes (a rate), pairs from {_EXT}.links.pairs",
          "NeuronLink traffic of each link (extension)", group="links", csv="link_nd{a}_nd{b}_bytes_per_s",
          decimals=0, present=_links, value=_padded_links, sample=lambda s: s.link_rate,
          optional=lambda lay: lay.n_links >= 0),
    Field("efa_rate", "row", "bytes/s", "counter", f"{_EXT}.efa.bytes (a rate)", "EFA traffic (extension)",
          group="links", csv="efa_bytes_per_s", decimals=0, present=_links, sample=lambda s: _nan_if_none(s.efa_rate)),
    Field("exposed_comm", "row", "s", "gauge", f"{_EXT}.collectives[].exposed_s (summed)",
          "time in collectives on the critical path", sample=lambda s: s.exposed_comm_s),
    Field("busbw_max", "row", "bytes/s", "gauge", f"{_EXT}.collectives[].busbw_bytes_per_s (the largest)",
          "bus bandwidth of the busiest collective", sample=lambda s: s.busbw_max),
    Field("link_mean", "row", "bytes/s", "derived", "the mean of link_rate", "mean NeuronLink traffic per link",
          sample=lambda s: _nan_if_none(s.link_mean)),
    # -- host ---------------------------------------------------------------------------------------
    Field("sys_user", "row", "%", "gauge", "system_data.vcpu_usage.average_usage.user", "host CPU, user",
          group="vcpu", csv="system_user_pct", decimals=2, sample=lambda s: s.sys_user),
    Field("sys_system", "row", "%", "gauge", "system_data.vcpu_usage.average_usage.system", "host CPU, system",
          group="vcpu", csv="system_system_pct", decimals=2, sample=lambda s: s.sys_system),
    Field("sys_idle", "row", "%", "gauge", "system_data.vcpu_usage.average_usage.idle", "host CPU, idle",
          group="vcpu", csv="system_idle_pct", decimals=2, sample=lambda s: s.sys_idle),
    Field("runtime_user", "row", "%", "gauge", f"{_NM}.neuron_runtime_vcpu_usage.vcpu_usage.user (summed)",
          "the Neuron runtimes' CPU, user", group="vcpu", csv="runtime_user_pct", decimals=2,
          sample=lambda s: s.runtime_user),
    Field("runtime_system", "row", "%", "gauge", f"{_NM}.neuron_runtime_vcpu_usage.vcpu_usage.system (summed)",
          "the Neuron runtimes' CPU, system", group="vcpu", csv="runtime_system_pct", decimals=2,
          sample=lambda s: s.runtime_system),
    Field("host_mem_used", "row", "bytes", "gauge", "system_data.memory_info.memory_used_bytes", "host memory used",
          group="vcpu", csv="host_mem_used_bytes", decimals=0, sample=lambda s: s.host_mem_used, dtype="i8"),
    Field("host_mem_total", "row", "bytes", "gauge", "system_data.memory_info.memory_total_bytes",
          "host memory installed", group="vcpu", csv="host_mem_total_bytes", decimals=0,
          path=("system_data", "memory_info", "memory_total_bytes")),
    Field("vcpu_busy", "vcpu", "%", "gauge", "100 - system_data.vcpu_usage.usage_data.*.idle",
          "each vCPU's busy share", sample=lambda s: s.vcpu_busy),
    # -- hardware health ----------------------------------------------------------------------------
    Field("ecc_corrected", "row", "events", "gauge",
          "system_data.neuron_hw_counters.neuron_devices[].{mem,sram}_ecc_corrected (summed)",
          "ECC events corrected in the report's period, every device", group="health", csv="ecc_corrected",
          decimals=0, sample=lambda s: s.ecc_corrected),
    Field("ecc_uncorrected", "row", "events", "gauge",
          "system_data.neuron_hw_counters.neuron_devices[].{mem,sram}_ecc_uncorrected (summed)",
          "ECC events not corrected in the report's period, every device", group="health", csv="ecc_uncorrected",
          decimals=0, sample=lambda s: s.ecc_uncorrected),
    Field("ecc_device", "row", "", "gauge", "the neuron_devices[] entry with the most ECC events",
          "the device with the most ECC events (-1: none)", sample=lambda s: s.ecc_device, dtype="i8"),
    # -- executions (the first runtime's execution_stats: one training process drives its cores) -----
    Field("executions", "row", "", "gauge", f"{_EXEC}.execution_summary.completed",
          "graphs completed in the window (absent: no execution_stats)", path=(*_RT0, "execution_stats",
                                                                              "execution_summary", "completed")),
    *(Field(f"device_latency_{q}", "row", "s", "gauge", f"{_EXEC}.latency_stats.device_latency.{q}",
            f"the {q} percentile of an execution's time on the device",
            path=(*_RT0, "execution_stats", "latency_stats", "device_latency", q))
      for q in ("p0", "p25", "p50", "p75", "p99", "p100")),
    # -- training (extension) -----------------------------------------------------------------------
    Field("loss", "row", "", "gauge", f"{_EXT}.training.loss", "training loss", group="training", csv="loss",
          decimals=5, present=lambda lay, has_flops: lay.has_training,
          sample=lambda s: NAN if s.training is None or s.training.loss is None else s.training.loss),
    Field("tokens_per_s", "row", "tokens/s", "gauge", f"{_EXT}.training.tokens_per_s", "training throughput",
          group="training", csv="tokens_per_s", decimals=1, present=lambda lay, has_flops: lay.has_training,
          sample=lambda s: _tr(s, "tokens_per_s")),
    Field("mfu", "row", "fraction", "gauge", f"{_EXT}.training.mfu", "model FLOPs utilisation", group="training",
          csv="mfu_pct", decimals=2, mul=100.0, present=lambda lay, has_flops: lay.has_training,
          sample=lambda s: _tr(s, "mfu")),
    Field("step_p50", "row", "s", "gauge", f"{_EXT}.training.step_time_s.p50",
          "median step time (empty before the first step)", group="training", csv="step_time_p50_s", decimals=4,
          present=lambda lay, has_flops: lay.has_training,
          sample=lambda s: NAN if s.training is None or s.training.step_time_s.p50 <= 0 else s.training.step_time_s.p50),
    Field("input_wait", "row", "fraction", "gauge", f"{_EXT}.input.wait_frac",
          "the share of the window the device waited for input", group="training", csv="input_wait_pct",
          decimals=2, mul=100.0, present=lambda lay, has_flops: lay.has_training,
          sample=lambda s: NAN if s.input is None else s.input.wait_frac),
    Field("micro_batch", "row", "samples", "gauge", f"{_EXT}.training.micro_batch", "micro-batch size",
          sample=lambda s: s.training.micro_batch if s.training is not None else 0, dtype="i8"),
    Field("seq_len", "row", "tokens", "gauge", f"{_EXT}.training.seq", "sequence length",
          sample=lambda s: s.training.seq if s.training is not None else 0, dtype="i8"),
]


def by_name(name: str) -> Field:
    return next(f for f in FIELDS if f.name == name)


def batch_fields() -> list[Field]:
    """The fields that are batch columns (attributes of Batch), in catalogue order."""
    return [f for f in FIELDS if f.sample is not None]


def path_fields() -> list[Field]:
    """Plain numbers read by their JSON path (Sample.extras, Batch.extra)."""
    return [f for f in FIELDS if f.path is not None]


def exported(group: str) -> list[Field]:
    return [f for f in FIELDS if f.group == group and f.csv is not None]


def groups() -> tuple[str, ...]:
    """The export groups, in catalogue order."""
    return tuple(dict.fromkeys(f.group for f in FIELDS if f.group is not None))


@contextmanager
def registered(f: Field) -> Iterator[Field]:
    """A figure added to the catalogue for the duration of a with-block (tests, plug-ins)."""
    if f.path is None or f.shape != "row":
        raise ValueError("only a plain per-report number (a `path`, shape 'row') can be added without code")
    if any(x.name == f.name for x in FIELDS):
        raise ValueError(f"a field {f.name!r} exists already")
    FIELDS.append(f)
    try:
        yield f
    finally:
        FIELDS.remove(f)


def read_path(doc: Any, path: tuple) -> Any:
    """The value at a JSON path in a decoded report (msgspec Structs, dicts, lists), or None."""
    for p in path:
        if doc is None:
            return None
        if isinstance(p, int):
            doc = doc[p] if isinstance(doc, (list, tuple)) and p < len(doc) else None
        elif isinstance(doc, dict):
            doc = doc.get(p)
        else:
            doc = getattr(doc, p, None)
    return doc


def docs_table() -> str:
    """docs/export.md's table of columns."""
    lines = ["| group (`--fields`) | column | unit | decimals | from | meaning |", "|---|---|---|---|---|---|"]
    for g in groups():
        for f in exported(g):
            unit = {"fraction": "%"}.get(f.unit, f.unit) if f.mul == 100 else f.unit
            unit = "TFLOP/s" if f.name == "flops" else unit
            lines.append(f"| `{g}` | `{f.csv}` | {unit or '-'} | {f.decimals} | {f.source} | {f.description} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m neurontop.core.telemetry.fields: the table for docs/export.md
    print(docs_table(), end="")
