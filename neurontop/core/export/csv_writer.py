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
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import IO

import numpy as np

from ..analysis.hints import HintMonitor
from ..analysis.rules import causes
from ..analysis.thresholds import DEFAULTS, Thresholds
from ..store import numtext
from ..telemetry import fields as catalogue
from ..telemetry.batch import Batch, Layout, from_samples, layout_of
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
        return [Column(n, g, dec, None, None, n) for n in (pat.format(a=a, b=b) for a, b in lay.link_pairs)]
    return [Column(pat, g, dec, metric=pat)]


def columns_for_layout(lay: Layout, groups: tuple[str, ...], has_flops: bool = True) -> list[Column]:
    cols = [c for f in _exported(lay, groups, has_flops) for c in _columns_of(f, lay)]
    if "hints" in groups:
        cols += [Column(f"hint_{cause}", "hints", 0, metric=f"hint_{cause}") for cause in causes()]
    return cols


def _values(f: catalogue.Field, b: Batch) -> np.ndarray:
    """[rows, k] floats: a field's exported values."""
    if f.value is not None:
        return f.value(b)
    v = b.extra[f.name] if f.path is not None else getattr(b, f.name)
    v = v[:, None] if v.ndim == 1 else v
    v = v.astype(np.float64) if v.dtype != np.float64 else v
    return v * f.mul if f.mul != 1.0 else v


def fmt(v: float | None, dec: int) -> str:
    """One cell as the export writes it (the reference for the block formatter)."""
    if v is None or not math.isfinite(v):
        return ""
    if dec == 0:
        return str(int(round(v)))
    return f"{v:.{dec}f}"


# -- a batch's figures as one matrix ---------------------------------------------------------------
@lru_cache(maxsize=32)
def _figure_names(lay: Layout, groups: tuple[str, ...], hint_causes: tuple[str, ...],
                  fields: tuple[str, ...]) -> list[str]:
    return [c.name for c in columns_for_layout(lay, groups)]


def figures(b: Batch, groups: tuple[str, ...], hints: np.ndarray | None,
            out: Callable[[tuple[int, int]], np.ndarray] | None = None) -> tuple[list[str], np.ndarray]:
    """Every exportable figure of batch `b` in `groups`: column names and an [n, k] float matrix
    (NaN where the sample lacks the figure). `hints` is [n, len(causes())]. `out(shape)` gives
    the matrix to fill (prefetch's shared memory), else a new one."""
    n = len(b)
    lay = b.layout
    names = _figure_names(lay, groups, causes(), tuple(f.name for f in catalogue.FIELDS))
    parts = [_values(f, b) for f in _exported(lay, groups, True)]
    if "hints" in groups:
        parts.append(hints.astype(np.float64) if hints is not None else np.zeros((n, len(causes()))))
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


# -- numbers to text, a block at a time ------------------------------------------------------------
def _scaled(v: np.ndarray, d: int) -> np.ndarray:
    """round(v * 10**d) as int64, exactly as Python's f"{v:.{d}f}" rounds (NaN -> 0)."""
    with np.errstate(invalid="ignore", over="ignore"):
        s = v * 10.0**d  # (NaN stays NaN; a value too large for int64 or float raises below)
        r = np.rint(s)
        a = np.abs(s)
        fits = a < 2.0**62  # (NaN and inf do not: they are empty cells)
        if ((a != np.inf) & ~fits & (a == a)).any():
            raise OverflowError("export: a value too large for the block formatter")
        # The product may have rounded across a .5: redo those few cells as Python formats them.
        near = np.abs(s - r) >= 0.5 - a * 1e-15
        out = np.where(fits, r, 0.0).astype(np.int64)
    for idx in zip(*np.nonzero(near), strict=True):
        out[idx] = int(f"{float(v[idx]):.{d}f}".replace(".", ""))
    return out


def _scaled_columns(m: np.ndarray, decimals: list[int]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """[n, k] floats -> (round(v * 10**d) as int64 [n, k], missing [n, k], columns too large for
    int64 (formatted one cell at a time instead))."""
    n, k = m.shape
    scaled = np.zeros((n, k), dtype=np.int64)
    dec = np.asarray(decimals)
    slow: list[int] = []
    for d in sorted(set(dec.tolist())):  # (not np.unique: it imports numpy.ma, 10 ms per process)
        cols = np.flatnonzero(dec == d)
        try:
            scaled[:, cols] = _scaled(m[:, cols], d)
        except OverflowError:
            slow += cols.tolist()
    return scaled, ~np.isfinite(m), slow


def _column_blocks(m: np.ndarray, decimals: list[int], scaled: np.ndarray, missing: np.ndarray,
                   slow: list[int], cols: list[int]) -> dict[int, np.ndarray]:
    """The numtext block of each column in `cols`, missing cells empty."""
    out: dict[int, np.ndarray] = {}
    by_dec: dict[int, list[int]] = {}
    for j in cols:
        if j in slow:
            texts = [fmt(float(x), decimals[j]) for x in m[:, j]]
            out[j] = numtext.strings([(t[1:] if t[:1] == "-" and float(t) == 0 else t).encode() for t in texts])
        else:
            by_dec.setdefault(decimals[j], []).append(j)
    for d, js in by_dec.items():
        for j, blk in zip(js, numtext.table(scaled[:, js], d if d else None), strict=True):
            if missing[:, j].any():
                blk = blk.copy()
                blk[missing[:, j]] = 0
            out[j] = blk
    return out


def format_block(m: np.ndarray, decimals: list[int]) -> list[np.ndarray]:
    """[n, k] floats -> one uint8 block per column (numtext), NaN cells empty."""
    scaled, missing, slow = _scaled_columns(m, decimals)
    blocks = _column_blocks(m, decimals, scaled, missing, slow, list(range(m.shape[1])))
    return [blocks[j] for j in range(m.shape[1])]


_LUT_BITS = 17  # scaled values a lookup table covers: up to 1310.71 at two decimals
_LUT_DEC = 5  # ',' and 1.31071 fill the 8 bytes of a cell: more decimals do not fit
_ZERO = numtext._ZERO


@lru_cache(maxsize=32)
def _cell_table(d: int, bits: int) -> np.ndarray:
    """',' then the text of k / 10**d for k in [0, 2**bits), each an 8-byte cell, and a lone ','
    (a missing value) at 2**bits. A cell is ',', the integer part right-aligned in a fixed field,
    '.', the d decimals; NUL bytes pad the field (the row join drops them)."""
    size = 1 << bits
    ip, fp = np.divmod(np.arange(size, dtype=np.int64), 10**d)
    width = len(str((size - 1) // 10**d))
    cells = np.zeros((size + 1, 8), dtype=np.uint8)
    cells[:, 0] = ord(",")
    for p in range(width):  # the p-th digit from the right; leading zeros stay NUL (but 0 is "0")
        digit = (ip // 10**p) % 10 + _ZERO
        cells[:size, width - p] = np.where((ip >= 10**p) | (p == 0), digit, 0)
    if d:
        cells[:size, 1 + width] = ord(".")
        for p in range(d):
            cells[:size, 1 + width + d - p] = (fp // 10**p) % 10 + _ZERO
    return cells.view("<u8").ravel()


def row_blocks(m: np.ndarray, decimals: list[int]) -> list[np.ndarray]:
    """[n, k] floats -> blocks that, joined, give ',v1,v2,...,vk' for each row (NaN cells empty).
    Consecutive columns of the same precision are one block. Most figures (percentages, TFLOP/s,
    flags) are small non-negative numbers: one table lookup per cell. Others are formatted four
    digits per lookup (numtext.cells)."""
    n, k = m.shape
    scaled, missing, slow = _scaled_columns(m, decimals)
    dec = np.asarray(decimals)
    in_table = (dec <= _LUT_DEC) & (((scaled >= 0) & (scaled < 1 << _LUT_BITS)) | missing).all(axis=0)
    in_table[slow] = False
    is_slow = np.zeros(k, dtype=bool)
    is_slow[slow] = True
    out: list[np.ndarray] = []
    j = 0
    while j < k:
        e = j + 1
        while e < k and in_table[e] == in_table[j] and is_slow[e] == is_slow[j] and dec[e] == dec[j]:
            e += 1
        d = int(dec[j])
        run, gone = scaled[:, j:e], missing[:, j:e]  # (missing cells hold 0)
        if in_table[j]:
            bits = max(10, int(run.max()).bit_length())  # the smallest table that holds the run
            out.append(_cell_table(d, bits)[np.where(gone, 1 << bits, run)].view(np.uint8).reshape(n, -1))
        elif is_slow[j]:
            blocks = _column_blocks(m, decimals, scaled, missing, slow, list(range(j, e)))
            for q in range(j, e):
                out += (numtext.literal(b",", n), blocks[q])
        else:
            blk = numtext.cells(run, d if d else None)
            if gone.any():
                blk.reshape(n, e - j, -1)[gone, 1:] = 0  # an empty cell: its comma alone
            out.append(blk)
        j = e
    return out


def iso_block(ts: np.ndarray) -> np.ndarray:
    """Unix times -> ISO 8601 UTC with milliseconds as uint8 [n, w] ('' for NaN), as datetime writes
    them (`datetime.fromtimestamp(ts, utc).isoformat(timespec="milliseconds")`, with Z)."""
    ok = np.isfinite(ts)
    t = np.where(ok, ts, 0.0)
    sec = np.floor(t)
    us = np.rint((t - sec) * 1e6)  # datetime.fromtimestamp rounds to microseconds, half to even
    ms = sec.astype(np.int64) * 1000 + (us.astype(np.int64) // 1000)
    text = np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms").astype("S23")
    blk = np.frombuffer(text.tobytes(), dtype=np.uint8).reshape(len(ts), 23)
    blk = np.concatenate([blk, numtext.literal(b"Z", len(ts))], axis=1)
    if not ok.all():
        blk = blk.copy()
        blk[~ok] = 0
    return blk


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
                hints = self.hintmon.feed(b)
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
