"""CSV export of samples: wide (one row per sample) or long (tidy), streaming, fixed columns.

The column set is fixed by the first sample (glances #3606 is the bug to avoid): a later sample
that lacks a value writes an empty cell, never a shifted row. Cells are numeric, units are in the
column names; docs/export.md lists every column and its precision.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TextIO

import numpy as np

from .hints import DEFAULT_THRESHOLD, HintMonitor
from .sample import ENGINE_NAMES, Sample

GROUPS = ("util", "flops", "engines", "hbm", "links", "vcpu", "training", "hints")
HINT_CAUSES = ("input_pipeline", "communication", "hbm_bandwidth", "small_batch", "straggler", "idle_cores",
               "host_sync", "unexplained", "fp32_precision", "hbm_capacity", "out_of_memory")


@dataclass(frozen=True)
class Column:
    name: str
    group: str
    decimals: int  # 0: integer
    device: int | None = None
    core: int | None = None
    metric: str = ""


def parse_fields(text: str | None) -> tuple[str, ...]:
    if not text:
        return ("util",)
    items = [t.strip() for t in text.split(",") if t.strip()]
    if "all" in items:
        return GROUPS
    bad = [t for t in items if t not in GROUPS]
    if bad:
        raise ValueError(f"unknown field group(s) {', '.join(bad)}; choose from {', '.join(GROUPS)}, all")
    return tuple(g for g in GROUPS if g in items)


def columns_for(s: Sample, groups: tuple[str, ...]) -> list[Column]:
    cols: list[Column] = []
    cpd = max(1, s.cores_per_device)

    def per_core(group: str, metric: str, unit: str, dec: int) -> None:
        for i in range(s.n_cores):
            d, c = divmod(i, cpd)
            cols.append(Column(f"nd{d}_nc{c}_{metric}_{unit}", group, dec, d, c, f"{metric}_{unit}"))

    if "util" in groups:
        per_core("util", "util", "pct", 2)
    if "flops" in groups and s.flops is not None:
        per_core("flops", "flops", "tflops", 3)
    if "engines" in groups and s.engines is not None:
        for e in ENGINE_NAMES:
            per_core("engines", f"{e}_active", "pct", 2)
    if "hbm" in groups:
        for d in range(s.n_devices):
            cols.append(Column(f"nd{d}_hbm_used_bytes", "hbm", 0, d, None, "hbm_used_bytes"))
        if s.hbm_rate is not None:
            per_core("hbm", "hbm", "bytes_per_s", 0)
    if "links" in groups and s.link_rate is not None and len(s.link_pairs):
        for a, b in s.link_pairs:
            cols.append(Column(f"link_nd{a}_nd{b}_bytes_per_s", "links", 0, None, None, f"link_nd{a}_nd{b}_bytes_per_s"))
        cols.append(Column("efa_bytes_per_s", "links", 0, None, None, "efa_bytes_per_s"))
    if "vcpu" in groups:
        for name in ("system_user_pct", "system_system_pct", "system_idle_pct", "runtime_user_pct",
                     "runtime_system_pct"):
            cols.append(Column(name, "vcpu", 2, metric=name))
        cols.append(Column("host_mem_used_bytes", "vcpu", 0, metric="host_mem_used_bytes"))
    if "training" in groups and s.training is not None:
        for name, dec in (("loss", 5), ("tokens_per_s", 1), ("mfu_pct", 2), ("step_time_p50_s", 4),
                          ("input_wait_pct", 2)):
            cols.append(Column(name, "training", dec, metric=name))
    if "hints" in groups:
        for cause in HINT_CAUSES:
            cols.append(Column(f"hint_{cause}", "hints", 0, metric=f"hint_{cause}"))
    return cols


def row_values(s: Sample, cols: list[Column], hints: set[str]) -> list[float | None]:
    """Values in column order; None where this sample lacks the metric."""
    vals: list[float | None] = []
    cpd = max(1, s.cores_per_device)
    dev_mem = s.device_mem() if s.n_devices else None
    links = dict(zip(s.link_pairs, s.link_rate, strict=False)) if s.link_rate is not None else {}
    for c in cols:
        g = c.group
        i = (c.device or 0) * cpd + (c.core or 0) if c.core is not None else None
        v: float | None = None
        if g == "util":
            v = float(s.util[i]) if i is not None and i < s.n_cores else None
        elif g == "flops":
            v = float(s.flops[i]) / 1e12 if s.flops is not None and i is not None and i < s.n_cores else None
        elif g == "engines":
            if s.engines is not None and i is not None and i < s.n_cores:
                v = float(s.engines[ENGINE_NAMES.index(c.metric[: -len("_active_pct")]), i]) * 100
        elif g == "hbm":
            if c.core is None:
                v = float(dev_mem[c.device]) if dev_mem is not None and c.device < len(dev_mem) else None
            elif s.hbm_rate is not None and i is not None and i < s.n_cores:
                v = float(s.hbm_rate[i])
        elif g == "links":
            if c.metric == "efa_bytes_per_s":
                v = s.efa_rate
            else:
                a, b = c.metric[len("link_nd"):-len("_bytes_per_s")].split("_nd")
                r = links.get((int(a), int(b)))
                v = float(r) if r is not None else None
        elif g == "vcpu":
            v = {"system_user_pct": s.sys_user, "system_system_pct": s.sys_system, "system_idle_pct": s.sys_idle,
                 "runtime_user_pct": s.runtime_user, "runtime_system_pct": s.runtime_system,
                 "host_mem_used_bytes": float(s.host_mem_used)}[c.metric]
        elif g == "training":
            t = s.training
            if t is not None:
                v = {"loss": t.loss, "tokens_per_s": t.tokens_per_s, "mfu_pct": t.mfu * 100,
                     "step_time_p50_s": t.step_time_s.p50,
                     "input_wait_pct": s.input.wait_frac * 100 if s.input else None}[c.metric]
                v = float(v) if v is not None else None
        elif g == "hints":
            v = 1.0 if c.metric[len("hint_"):] in hints else 0.0
        vals.append(v if v is None or math.isfinite(v) else None)
    return vals


_NAN = float("nan")
_EMPTY_NAN = re.compile(r"(?<![^,])nan(?=,|\n)")


def fmt(v: float | None, dec: int) -> str:
    if v is None or not math.isfinite(v):
        return ""
    if dec == 0:
        return str(int(round(v)))
    return f"{v:.{dec}f}"


def iso(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CsvExporter:
    def __init__(self, out: TextIO, groups: tuple[str, ...], layout: str = "wide", every_s: float | None = None,
                 t_from: float | None = None, t_to: float | None = None, start_unix: float | None = None,
                 threshold: float = DEFAULT_THRESHOLD) -> None:
        self.out = out
        self.groups = groups
        self.layout = layout
        self.every = every_s
        self.t_from, self.t_to = t_from, t_to
        self.start_unix = start_unix
        self.cols: list[Column] | None = None
        self.t0: float | None = None
        self.rows = 0
        self.hintmon = HintMonitor(threshold) if "hints" in groups else None
        self._bin: list[tuple[float, float | None, int, list[float | None]]] = []
        self._bin_index: int | None = None
        self._template: str | None = None
        self._groups: set[str] | None = None
        self._hbm_rate = False
        self._has_nan = False  # the last fast row holds NaN for missing values

    def _hints(self, s: Sample) -> set[str]:
        if self.hintmon is None:
            return set()
        self.hintmon.feed(s)
        return {h.cause for h in self.hintmon.shown}

    def add(self, s: Sample) -> None:
        if self.t0 is None:
            self.t0 = s.time_s
        rel = s.time_s - self.t0
        hints = self._hints(s)
        if (self.t_from is not None and rel < self.t_from - 1e-9) or (self.t_to is not None and rel > self.t_to + 1e-9):
            return
        if self.cols is None:
            self.cols = columns_for(s, self.groups)
            self._header()
        ts = s.timestamp if s.timestamp is not None else (self.start_unix + rel if self.start_unix is not None else None)
        step = s.training.step if s.training is not None else s.seq
        self._has_nan = False
        vals = self._fast_values(s, hints)
        if vals is None:
            vals = row_values(s, self.cols, hints)
        if self.every:
            b = int(math.floor(rel / self.every + 1e-9))
            if self._bin_index is not None and b != self._bin_index:
                self._flush_bin()
            self._bin_index = b
            self._bin.append((rel, ts, step, vals))
        else:
            self._write(rel, ts, step, vals)

    def _fast_values(self, s: Sample, hints: set[str]) -> list[float | None] | None:
        """The row as one numpy concatenation (the per-cell path costs ~10x more), or None when this
        sample's shape differs from the first one's and the careful per-column path must run.
        Missing values are NaN here (the writer turns them into empty cells)."""
        cols = self.cols or []
        if self._groups is None:
            self._groups = {c.group for c in cols}
            self._hbm_rate = any(c.group == "hbm" and c.core is not None for c in cols)
        groups = self._groups
        parts: list[np.ndarray] = []
        try:
            if "util" in groups:
                parts.append(s.util)
            if "flops" in groups:
                parts.append(s.flops / 1e12)
            if "engines" in groups:
                parts.append(s.engines.ravel() * 100)
            if "hbm" in groups:
                parts.append(s.device_mem().astype(float))
                if self._hbm_rate:
                    parts.append(s.hbm_rate)
            if "links" in groups:
                parts.append(np.asarray(s.link_rate, dtype=float))
                parts.append(np.array([s.efa_rate]))
            if "vcpu" in groups:
                parts.append(np.array([s.sys_user, s.sys_system, s.sys_idle, s.runtime_user, s.runtime_system,
                                       s.host_mem_used], dtype=float))
            if "training" in groups:
                t = s.training
                parts.append(np.array([np.nan if t.loss is None else t.loss, t.tokens_per_s, t.mfu * 100,
                                       t.step_time_s.p50, s.input.wait_frac * 100 if s.input else np.nan], dtype=float))
            if "hints" in groups:
                parts.append(np.array([1.0 if c in hints else 0.0 for c in HINT_CAUSES]))
            row = np.concatenate(parts).astype(float)
        except (AttributeError, TypeError, ValueError):
            return None
        if len(row) != len(cols):
            return None
        finite = np.isfinite(row)
        if finite.all():
            return row.tolist()
        row[~finite] = np.nan
        if self.every:  # the binning averages skip None
            return [None if ok is False else v for v, ok in zip(row.tolist(), finite.tolist(), strict=True)]
        self._has_nan = True
        return row.tolist()

    def _flush_bin(self) -> None:
        if not self._bin or self._bin_index is None:
            return
        rel = self._bin_index * self.every
        first_rel, first_ts = self._bin[0][0], self._bin[0][1]
        ts = first_ts - (first_rel - rel) if first_ts is not None else None
        step = self._bin[-1][2]
        n = len(self._bin[0][3])
        means: list[float | None] = []
        for k in range(n):
            xs = [r[3][k] for r in self._bin if r[3][k] is not None]
            means.append(sum(xs) / len(xs) if xs else None)
        self._write(rel, ts, step, means)
        self._bin = []

    def _header(self) -> None:
        assert self.cols is not None
        if self.layout == "long":
            self.out.write("time_s,device,core,metric,value\n")
        else:
            self.out.write(",".join(["time_s", "timestamp", "step"] + [c.name for c in self.cols]) + "\n")

    def _write(self, rel: float, ts: float | None, step: int, vals: list[float | None]) -> None:
        assert self.cols is not None
        self.rows += 1
        if self.layout == "long":
            t = f"{rel:.3f}"
            lines = []
            for c, v in zip(self.cols, vals, strict=True):
                if v is None:
                    continue
                dev = "" if c.device is None else str(c.device)
                core = "" if c.core is None else str(c.core)
                lines.append(f"{t},{dev},{core},{c.metric},{fmt(v, c.decimals)}\n")
            self.out.write("".join(lines))
        else:
            head = f"{rel:.3f},{iso(ts)},{step},"
            # One format call per row (a per-cell function call was most of the export's time).
            if self._template is None:
                self._template = ",".join("{:.0f}" if c.decimals == 0 else f"{{:.{c.decimals}f}}"
                                          for c in self.cols) + "\n"
            if self._has_nan:
                line = _EMPTY_NAN.sub("", self._template.format(*vals))  # a missing value is an empty cell
            elif None in vals:
                line = self._template.format(*(_NAN if v is None else v for v in vals))
                line = _EMPTY_NAN.sub("", line)
            else:
                line = self._template.format(*vals)
            self.out.write(head + line)

    def finish(self) -> int:
        if self.every:
            self._flush_bin()
        return self.rows
