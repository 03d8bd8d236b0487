"""The export's rows: a batch of samples -> the fixed columns -> a typed polars DataFrame.

The column set is fixed by the first exported sample (glances #3606 is the bug to avoid): a later
sample that lacks a value gets a null, never a shifted row. Columns come from the field catalogue
(telemetry/fields.py) and the rule registry (the hints); each is Int64 when its precision is 0
decimals (bytes, counts, flags) and Float64 rounded to its precision otherwise. `--from/--to` and
`--every` (a mean per bin) are applied here, batch by batch, so memory stays flat for any length.
A sink (writers.py) turns the frames into CSV, Parquet or Arrow; the Python API keeps them.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import polars as pl

from ..analysis.hints import HintMonitor
from ..analysis.rules import bottleneck_causes, causes
from ..analysis.thresholds import DEFAULTS, Thresholds
from ..telemetry import fields as catalogue
from ..telemetry.batch import Batch, Layout, concat, from_samples, layout_of
from ..telemetry.fields import ENGINE_NAMES
from ..telemetry.sample import Sample

GROUPS = (*catalogue.groups(), "hints")


@dataclass(frozen=True)
class Column:
    name: str
    group: str
    decimals: int  # 0: integer
    device: int | None = None
    core: int | None = None
    metric: str = ""
    link: tuple[int, int] | None = None  # the two devices of a NeuronLink column


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
    return columns_for_layout(layout_of(s), groups, s.flops is not None)


def _exported(lay: Layout, groups: tuple[str, ...], has_flops: bool) -> list[catalogue.Field]:
    """The catalogue's fields this layout exports in these groups, in column order."""
    return [f for g in groups if g != "hints" for f in catalogue.exported(g)
            if f.present is None or f.present(lay, has_flops)]


def _columns_of(f: catalogue.Field, lay: Layout) -> list[Column]:
    assert f.csv is not None and f.group is not None
    pat, g, dec = f.csv, f.group, f.decimals
    cpd = max(1, lay.cores_per_device)
    if f.shape in ("core", "engine_core"):
        engines = ENGINE_NAMES if f.shape == "engine_core" else ("",)
        return [Column(pat.format(d=d, c=c, engine=e), g, dec, d, c, f.metric(engine=e))
                for e in engines for d, c in (divmod(i, cpd) for i in range(lay.n_cores))]
    if f.shape == "device":
        return [Column(pat.format(d=d), g, dec, d, None, f.metric()) for d in range(lay.n_devices)]
    if f.shape == "link":
        return [Column(pat.format(a=a, b=b), g, dec, None, None, pat.format(a=a, b=b), (a, b)) for a, b in lay.link_pairs]
    return [Column(pat, g, dec, metric=pat)]


def columns_for_layout(lay: Layout, groups: tuple[str, ...], has_flops: bool = True) -> list[Column]:
    cols = [c for f in _exported(lay, groups, has_flops) for c in _columns_of(f, lay)]
    if "hints" in groups:
        cols += [Column(f"hint_{cause}", "hints", 0, metric=f"hint_{cause}") for cause in causes()]
        # the time-loss breakdown: utilisation points lost to each cause (rules.breakdown)
        cols += [Column(f"lost_{cause}_pct", "hints", 1, metric=f"lost_{cause}_pct") for cause in bottleneck_causes()]
    return cols


def _values(f: catalogue.Field, b: Batch) -> np.ndarray:
    """[rows, k] floats: a field's exported values."""
    if f.value is not None:
        return f.value(b)
    v = b.extra[f.name] if f.path is not None else getattr(b, f.name)
    v = v[:, None] if v.ndim == 1 else v
    v = v.astype(np.float64) if v.dtype != np.float64 else v
    return v * f.mul if f.mul != 1.0 else v


# -- a batch's figures as one matrix ---------------------------------------------------------------
@lru_cache(maxsize=32)
def _figure_names(lay: Layout, groups: tuple[str, ...], hint_causes: tuple[str, ...],
                  fields: tuple[str, ...]) -> list[str]:
    return [c.name for c in columns_for_layout(lay, groups)]


def figures(b: Batch, groups: tuple[str, ...], hints: np.ndarray | None) -> tuple[list[str], np.ndarray]:
    """Every exportable figure of batch `b` in `groups`: column names and an [n, k] float matrix
    (NaN where the sample lacks the figure). `hints` is [n, 2 x len(causes())]: shown, then the breakdown."""
    n = len(b)
    lay = b.layout
    names = _figure_names(lay, groups, causes(), tuple(f.name for f in catalogue.FIELDS))
    parts = [_values(f, b) for f in _exported(lay, groups, True)]
    if "hints" in groups:
        nc = len(causes())
        lost_cols = [nc + causes().index(c) for c in bottleneck_causes()]
        h = hints.astype(np.float64) if hints is not None else np.zeros((n, 2 * nc))
        parts.append(h[:, :nc])
        parts.append(h[:, lost_cols] if h.shape[1] == 2 * nc else np.zeros((n, len(lost_cols))))
    k = sum(p.shape[1] for p in parts)
    if k != len(names):
        raise AssertionError(f"export: {k} figures for {len(names)} names")
    m = np.empty((n, k))
    a = 0
    for p in parts:
        m[:, a:a + p.shape[1]] = p
        a += p.shape[1]
    m[np.isinf(m)] = np.nan  # (an infinite rate is no figure either)
    return names, m


Sink = Callable[[pl.LazyFrame, list[Column]], None]  # a frame and the columns it holds, in order


class Exporter:
    """Samples or batches in, polars frames out to `sink` (wide: time_s, timestamp, step and the
    fixed columns; long: time_s, timestamp, step, device, core, link, metric, value).

    Frames are lazy: the sink adds its own casts (CSV's precisions) and polars runs them in one pass.
    The sink runs on a writer thread, one frame at a time and in order, while this thread decodes the
    next batches: polars writes without the GIL, so the two overlap on a second core."""

    def __init__(self, sink: Sink, groups: tuple[str, ...], layout: str = "wide", every_s: float | None = None,
                 t_from: float | None = None, t_to: float | None = None, start_unix: float | None = None,
                 th: Thresholds = DEFAULTS) -> None:
        self.sink = sink
        self.groups = groups
        self.layout = layout
        self.every = every_s
        self.t_from, self.t_to = t_from, t_to
        self.start_unix = start_unix
        self.cols: list[Column] | None = None
        self.t0: float | None = None
        self.rows = 0
        self.hintmon = HintMonitor(th) if "hints" in groups else None
        self._pending: list[Sample] = []
        self._gathered: list[Batch] = []  # batches not evaluated yet (add_batch)
        self._gathered_rows = 0
        self._plans: dict[Layout, np.ndarray | None] = {}
        self._decimals: list[int] = []
        self._bin: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None  # the open bin's rows
        self._out: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []  # rows waiting for a frame
        self._out_rows = 0
        self._writer: ThreadPoolExecutor | None = None
        self._written: Future | None = None  # the frame the writer thread is on

    # -- input --
    def add(self, s: Sample) -> None:
        """One sample (logs, tests); batched internally."""
        self._pending.append(s)
        if len(self._pending) >= 600:
            self._drain()

    def _drain(self) -> None:
        for b in from_samples(self._pending):
            self.add_batch(b)
        self._pending = []

    def add_batch(self, b: Batch) -> None:
        """A batch of samples, in order. Batches of one layout are gathered to a frame's rows before
        they are evaluated: the hints' and figures' cost is largely per call (a profile's chunks are
        600 rows)."""
        if self._gathered and (b.layout != self._gathered[0].layout or self._gathered_rows >= self.FRAME_ROWS):
            self._evaluate()
        if len(b):
            self._gathered.append(b)
            self._gathered_rows += len(b)

    def _evaluate(self) -> None:
        if not self._gathered:
            return
        b = concat(self._gathered)
        self._gathered, self._gathered_rows = [], 0
        if self.t0 is None:
            self.t0 = float(b.time_s[0])
        hints = self.hintmon.feed(b, with_lost=True) if self.hintmon is not None else None
        names, m = figures(b, self.groups, hints)
        rel = b.time_s - self.t0
        keep = np.ones(len(b), dtype=bool)
        if self.t_from is not None:
            keep &= rel >= self.t_from - 1e-9
        if self.t_to is not None:
            keep &= rel <= self.t_to + 1e-9
        if not keep.any():
            return
        if self.cols is None:
            first = int(np.argmax(keep))
            self.cols = columns_for_layout(b.layout, self.groups, bool(b.flops_ok[first]))
            self._decimals = [c.decimals for c in self.cols]
        if b.layout not in self._plans:  # where each fixed column is among this layout's figures
            where = {nm: i for i, nm in enumerate(names)}
            take = np.array([where.get(c.name, -1) for c in self.cols], dtype=np.int64)
            same = len(take) == len(names) and (take == np.arange(len(take))).all()
            self._plans[b.layout] = None if same else take  # None: the fixed columns, in order (usual)
        plan = self._plans[b.layout]
        vals = m if plan is None else np.concatenate([m, np.full((len(b), 1), np.nan)], axis=1)[:, plan]  # -1: NaN
        ts = b.timestamp.copy()
        if self.start_unix is not None:
            ts = np.where(np.isnan(ts), self.start_unix + rel, ts)
        step = b.step
        if not keep.all():  # (no copies of the figure matrix without --from/--to)
            rel, ts, step, vals = rel[keep], ts[keep], step[keep], vals[keep]
        if self.every:
            self._binned(rel, ts, step, vals)
        else:
            self._write(rel, ts, step, vals)

    # -- resampling --
    def _binned(self, rel: np.ndarray, ts: np.ndarray, step: np.ndarray, vals: np.ndarray) -> None:
        if self._bin is not None:
            rel, ts, step, vals = (np.concatenate([a, b]) for a, b in zip(self._bin, (rel, ts, step, vals),
                                                                             strict=True))
        cut = np.flatnonzero(np.diff(self._bin_index(rel))) + 1
        starts = np.concatenate([[0], cut])
        last = starts[-1]
        self._bin = (rel[last:], ts[last:], step[last:], vals[last:])
        if len(starts) > 1:
            self._emit_bins(rel[:last], ts[:last], step[:last], vals[:last], starts[:-1])

    def _bin_index(self, rel: np.ndarray) -> np.ndarray:
        assert self.every
        return np.floor(rel / self.every + 1e-9).astype(np.int64)

    def _emit_bins(self, rel, ts, step, vals, starts) -> None:
        """One row per bin: bins start at `starts` and each runs to the next (the last to the end)."""
        ends = np.concatenate([starts[1:], [len(rel)]])
        ok = ~np.isnan(vals)
        sums = np.add.reduceat(np.where(ok, vals, 0.0), starts, axis=0)
        cnt = np.add.reduceat(ok.astype(np.int64), starts, axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(cnt > 0, sums / np.maximum(cnt, 1), np.nan)
        b_rel = self._bin_index(rel[starts]) * self.every
        b_ts = ts[starts] - (rel[starts] - b_rel)
        self._write(b_rel, b_ts, step[ends - 1], means)

    # -- output --
    FRAME_ROWS = 2048  # rows per frame: the libraries' cost is per call and per column, so fewer, larger calls

    def _write(self, rel: np.ndarray, ts: np.ndarray, step: np.ndarray, vals: np.ndarray) -> None:
        if len(rel):
            self._out.append((rel, ts, step, vals))
            self._out_rows += len(rel)
            if self._out_rows >= self.FRAME_ROWS:
                self._flush()

    def _flush(self) -> None:
        if not self._out:
            return
        assert self.cols is not None
        rel, ts, step, vals = (x[0] if len(x) == 1 else np.concatenate(x) for x in zip(*self._out, strict=True))
        self._out, self._out_rows = [], 0
        self.rows += len(rel)
        ms = pl.Series(np.where(np.isfinite(ts), np.rint(ts * 1000.0), np.nan), nan_to_null=True)
        head = {"time_s": np.round(rel, 3),
                "timestamp": ms.cast(pl.Int64).cast(pl.Datetime("ms", time_zone="UTC")),
                "step": pl.Series(step, dtype=pl.Int64)}
        self._wait()  # (its error, if any, is raised here; and one frame in flight keeps memory flat)
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="export-writer")
        self._written = self._writer.submit(self._emit, head, vals, self._decimals, self.cols)

    def _emit(self, head: dict[str, Any], vals: np.ndarray, decimals: list[int], cols: list[Column]) -> None:
        # (a sink that rounds the floats itself, CSV's decimal casts, needs no copy: polars rounds the
        # integer columns of a wide frame as it casts them)
        if self.layout != "wide" or not getattr(self.sink, "rounds", False):
            vals = _rounded(vals, decimals)
        self.sink((_long if self.layout == "long" else _wide)(head, vals, cols), cols)

    def _wait(self) -> None:
        if self._written is not None:
            done, self._written = self._written, None
            done.result()

    def finish(self) -> int:
        """Write what is pending; the rows written."""
        self._drain()
        self._evaluate()
        if self._bin is not None and len(self._bin[0]):
            self._emit_bins(*self._bin, np.array([0]))
            self._bin = None
        self._flush()
        self.close()
        return self.rows

    def close(self, raise_error: bool = True) -> None:
        """Wait for the writer thread (raising its error, unless the caller is failing already) and end it."""
        try:
            if raise_error:
                self._wait()
        finally:
            if self._writer is not None:
                self._writer.shutdown(wait=True, cancel_futures=True)
                self._writer = None


def _rounded(vals: np.ndarray, decimals: list[int]) -> np.ndarray:
    """Each column rounded to its precision (one numpy call per precision; NaN stays NaN)."""
    dec = np.asarray(decimals)
    out = np.empty_like(vals)
    for d in sorted(set(decimals)):
        js = np.flatnonzero(dec == d)
        out[:, js] = np.round(vals[:, js], d)
    return out


def _wide(head: dict[str, Any], vals: np.ndarray, cols: list[Column]) -> pl.LazyFrame:
    """Integer columns (0 decimals) as Int64 (rounded half to even, as np.round does), the others
    Float64; NaN is null."""
    ints = [c.name for c in cols if c.decimals == 0]
    # the rows as one series that polars cuts into columns (pl.DataFrame(vals) makes a Series per
    # column in Python: 4x the time, all of it holding the GIL the reader needs)
    n, k = vals.shape
    body = pl.Series(vals.ravel(), nan_to_null=True).reshape((n, k)).arr.to_struct(
        fields=[c.name for c in cols]).struct.unnest()
    return pl.DataFrame(head).hstack(body).lazy().with_columns(pl.col(ints).round(0).cast(pl.Int64))


def _long(head: dict[str, Any], vals: np.ndarray, cols: list[Column]) -> pl.LazyFrame:
    """One row per present value, row by row, column by column; NeuronLink columns are one
    `link_bytes_per_s` metric with the link ("nd0-nd1") in its own column."""
    n, k = vals.shape
    flat = vals.ravel()
    keep = np.isfinite(flat)
    row = np.repeat(np.arange(n), k)[keep]
    col = np.tile(np.arange(k), n)[keep]
    meta = pl.DataFrame({
        "device": pl.Series([c.device for c in cols], dtype=pl.Int16),
        "core": pl.Series([c.core for c in cols], dtype=pl.Int16),
        "link": pl.Series([f"nd{c.link[0]}-nd{c.link[1]}" if c.link else None for c in cols], dtype=pl.String),
        "metric": pl.Series(["link_bytes_per_s" if c.link else c.metric for c in cols], dtype=pl.String),
    })
    return pl.DataFrame(head)[row].hstack(meta[col]).lazy().with_columns(value=pl.Series(flat[keep], dtype=pl.Float64))
