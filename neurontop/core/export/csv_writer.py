"""CSV export of samples: wide (one row per sample) or long (tidy), streaming, fixed columns.

The column set is fixed by the first sample (glances #3606 is the bug to avoid): a later sample
that lacks a value writes an empty cell, never a shifted row. Cells are numeric, units are in the
column names; docs/export.md lists every column and its precision.

Samples arrive in batches (batch.Batch: one array per figure); every figure of a batch becomes one
matrix, the fixed columns are taken from it by name, and numtext formats the whole block at once.
tests/test_batch.py holds the same table one cell at a time, the definition this is checked against.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import IO

import numpy as np

from ..analysis.hints import HintMonitor
from ..analysis.rules import bottleneck_causes, causes
from ..analysis.thresholds import DEFAULTS, Thresholds
from ..store import numtext
from ..telemetry import fields as catalogue
from ..telemetry.batch import Batch, Layout, from_samples, layout_of
from ..telemetry.fields import ENGINE_NAMES
from ..telemetry.sample import Sample
from .cells import format_block, iso_block, row_blocks

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


def figures(b: Batch, groups: tuple[str, ...], hints: np.ndarray | None,
            out: Callable[[tuple[int, int]], np.ndarray] | None = None) -> tuple[list[str], np.ndarray]:
    """Every exportable figure of batch `b` in `groups`: column names and an [n, k] float matrix
    (NaN where the sample lacks the figure). `hints` is [n, 2 x len(causes())]: shown, then the breakdown. `out(shape)` gives
    the matrix to fill (prefetch's shared memory), else a new one."""
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
    m = out((n, k)) if out is not None else np.empty((n, k))
    a = 0
    for p in parts:
        m[:, a:a + p.shape[1]] = p
        a += p.shape[1]
    m[np.isinf(m)] = np.nan  # (an infinite rate is no figure either)
    return names, m


@dataclass(frozen=True)
class Figures:
    """A batch reduced to what the writer reads: its figure matrix and its rows' times and steps.
    prefetch's reader sends this instead of the whole batch (half the bytes through the pipe, and
    the figures are gathered beside the writer instead of in it)."""

    layout: Layout
    time_s: np.ndarray
    timestamp: np.ndarray
    step: np.ndarray
    flops_ok: np.ndarray
    names: list[str]
    m: np.ndarray  # [rows, figures]

    def __len__(self) -> int:
        return len(self.time_s)


def reduce_batch(b: Batch, groups: tuple[str, ...], hints: np.ndarray | None,
                 out: Callable[[tuple[int, int]], np.ndarray] | None = None) -> Figures:
    names, m = figures(b, groups, hints, out)
    return Figures(b.layout, b.time_s, b.timestamp, b.step, b.flops_ok, names, m)


class _Bytes:
    """Bytes out to a binary stream, or decoded to a text one (io.StringIO in tests)."""

    def __init__(self, out: IO) -> None:
        self.out = out
        self.text = isinstance(out, io.TextIOBase)
        self.buffer = getattr(out, "buffer", None) if self.text else None
        if self.buffer is not None:
            out.flush()

    def write(self, data: bytes) -> None:
        if self.buffer is not None:
            self.buffer.write(data)
        elif self.text:
            self.out.write(data.decode())
        else:
            self.out.write(data)

    def flush(self) -> None:
        (self.buffer or self.out).flush()


class CsvExporter:
    def __init__(self, out: IO, groups: tuple[str, ...], layout: str = "wide", every_s: float | None = None,
                 t_from: float | None = None, t_to: float | None = None, start_unix: float | None = None,
                 th: Thresholds = DEFAULTS) -> None:
        self.out = _Bytes(out)
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
        self._plans: dict[Layout, np.ndarray | None] = {}
        self._decimals: list[int] = []
        self._bin: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None  # the open bin's rows

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

    def add_batch(self, b: Batch | Figures, hints: np.ndarray | None = None) -> None:
        """A batch of samples; `hints` ([rows, causes()] bool) when they were evaluated already
        (prefetch's reader does), else the exporter evaluates them. A `Figures` (a batch reduced
        by the reader, hints included) is written as it is."""
        if not len(b):
            return
        if self.t0 is None:
            self.t0 = float(b.time_s[0])
        if isinstance(b, Figures):
            names, m = b.names, b.m
        else:
            if hints is None and self.hintmon is not None:
                hints = self.hintmon.feed(b, with_lost=True)
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
            self._header()
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
        rel, ts, step, vals = rel[keep], ts[keep], b.step[keep], vals[keep]
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
    def _header(self) -> None:
        assert self.cols is not None
        if self.layout == "long":
            self.out.write(b"time_s,device,core,metric,value\n")
        else:
            self.out.write((",".join(["time_s", "timestamp", "step"] + [c.name for c in self.cols]) + "\n").encode())

    def _write(self, rel: np.ndarray, ts: np.ndarray, step: np.ndarray, vals: np.ndarray) -> None:
        assert self.cols is not None
        n = len(rel)
        if not n:
            return
        self.rows += n
        t_blk = format_block(rel[:, None], [3])[0]
        if self.layout == "long":
            self._write_long(t_blk, vals)
            return
        comma = numtext.literal(b",", n)
        blocks = [t_blk, comma, iso_block(ts), comma, numtext.ints(step), *row_blocks(vals, self._decimals)]
        blocks.append(numtext.literal(b"\n", n))
        self.out.write(numtext.join(blocks))

    def _write_long(self, t_blk: np.ndarray, vals: np.ndarray) -> None:
        """One line per present value: time_s,device,core,metric,value (row by row, column by column)."""
        assert self.cols is not None
        n, k = vals.shape
        cells = format_block(vals, self._decimals)
        lines = []
        for c, blk in zip(self.cols, cells, strict=True):
            dev = "" if c.device is None else str(c.device)
            core = "" if c.core is None else str(c.core)
            mid = numtext.literal(f",{dev},{core},{c.metric},".encode(), n)
            lines.append(np.concatenate([t_blk, mid, blk, numtext.literal(b"\n", n)], axis=1))
        w = max(x.shape[1] for x in lines)
        grid = np.zeros((n, k, w), dtype=np.uint8)
        for j, x in enumerate(lines):
            grid[:, j, :x.shape[1]] = x
        grid[np.isnan(vals)] = 0  # a missing value writes no line
        self.out.write(grid.tobytes().translate(None, b"\0"))

    def finish(self) -> int:
        self._drain()
        if self._bin is not None and len(self._bin[0]):
            self._emit_bins(*self._bin, np.array([0]))
            self._bin = None
        self.out.flush()
        return self.rows


# -- the process's heap during an export ------------------------------------------------------------
# Keep freed memory in the process for streaming work that allocates the same large arrays again
# and again (a few MB of temporaries per batch). glibc returns blocks above its mmap threshold to
# the kernel on free, and the next batch faults the same pages in again: for an hour's export that
# was 165,000 page faults and 0.3 s of system time. A fixed threshold of 32 MiB (and a trim
# threshold above it) keeps those blocks on the heap for reuse. Elsewhere (musl, macOS) it does nothing.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 64 << 20) -> bool:
    """Set glibc's thresholds for this process (and what it forks from now on); True if it did."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))
