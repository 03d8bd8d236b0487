"""Batches straight from a profile's columnar chunks (the export's reader).

A columnar chunk (colcodec) already holds every number of a report shape as a column, so a Batch is
built from those columns directly: no JSON text, no per-report objects. The rules are
sample.Decoder's, applied to whole columns, and both share the decoder's counter state, so a chunk
this cannot read (an unexpected shape, a JSON-lines chunk) is decoded report by report and stacked
(batch.from_samples) with the same result, only slower. tests/test_batch.py checks that both agree.

(About 600 lines: it mirrors sample.Decoder rule for rule, column-wise; the two halves, reading a
shape's columns and deriving rates from them, share the shape's bookkeeping; a worker thread
decodes the next chunks' columns. It exists for speed: the benchmark hour (36,000 trn1.32xlarge
reports) becomes batches in 1.0 s this way and in 32 s report by report, on the 2-vCPU VM,
2026-12-02; 0.6 s with the worker thread, 2026-12-06.)
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..telemetry.batch import Batch, from_samples, layout_of
from ..telemetry.fields import path_fields
from ..telemetry.sample import Decoder, Sample
from ..telemetry.schema import report_decoder
from . import colcodec


class Unsupported(Exception):
    """A chunk the column reader does not cover: decode it report by report instead."""


class _Cols:
    """A group's columns by JSON path, as float64 (or int64) arrays; records which it was asked for.
    `mat` holds the columns listed in `pos` (column -> place in `mat`).

    Every request is turned into an op (a constant, a column or columns of `mat`, a text column) and
    the ops are recorded: the requests of a shape come in the same order for every chunk, so a later
    chunk of the shape replays the script instead of looking each JSON path up again (thousands per
    chunk; most of what the reader spent outside numpy)."""

    def __init__(self, g, xt: colcodec._Texts, index: dict[tuple, int], n: int, mat: np.ndarray,
                 cols: np.ndarray, pos: dict[int, int], script: list | None = None,
                 fmat: np.ndarray | None = None) -> None:
        self.g, self.xt, self.index, self.n, self.mat, self.pos = g, xt, index, n, mat, pos
        self.used: set[int] = set()
        self.script, self.k = script, 0  # a script to replay, or None: record one in `rec`
        self.rec: list[tuple] = []
        # every column as a double (text columns, 'x', are parsed cell by cell when asked)
        self.fmat = _floats(mat, g.kinds, cols) if fmat is None else fmat

    def _op(self, make) -> tuple:
        if self.script is not None:
            self.k += 1
            return self.script[self.k - 1]
        op = make()
        self.rec.append(op)
        return op

    def _run(self, op: tuple) -> np.ndarray:
        kind, a, dtype = op
        if kind == "f":  # a: a place in mat, or an array of places
            return self.fmat[:, a]
        if kind == "i":
            return self.mat[:, a]
        if kind == "const":
            return np.full(self.n, a, dtype=dtype)
        if kind == "text":  # (still a needed column: in another chunk it may be numeric)
            return np.array([float(t) for t in self.xt[a]], dtype=np.float64)
        # "stack": one op per path
        return np.stack([self._run(o) for o in a], axis=1) if a else np.zeros((self.n, 0), dtype=dtype)

    def _fop(self, path: tuple, default: float) -> tuple:
        j = self.index.get(path)
        if j is None:
            return ("const", float(default), np.float64)
        self.used.add(j)
        return ("text", j, None) if self.g.kinds[j] == "x" else ("f", self.pos[j], None)

    def _iop(self, path: tuple, default: int) -> tuple:
        j = self.index.get(path)
        if j is None:
            return ("const", int(default), np.int64)
        if self.g.kinds[j] != "i":
            raise Unsupported(f"non-integer cells in integer field {path}")
        self.used.add(j)
        return ("i", self.pos[j], None)

    def _many(self, ops: list[tuple], kind: str, dtype) -> tuple:
        """Columns of `mat` in one gather when every op is one; else one op each."""
        if all(o[0] == kind for o in ops):
            return (kind, np.array([o[1] for o in ops], dtype=np.int64), None)
        return ("stack", ops, dtype)

    def f(self, path: tuple, default: float = 0.0) -> np.ndarray:
        return self._run(self._op(lambda: self._fop(path, default)))

    def i(self, path: tuple, default: int = 0) -> np.ndarray:
        return self._run(self._op(lambda: self._iop(path, default)))

    def fs(self, paths: list[tuple], default: float = 0.0) -> np.ndarray:
        """[rows, len(paths)] floats: many columns in one gather."""
        return self._run(self._op(lambda: self._many([self._fop(p, default) for p in paths], "f", np.float64)))

    def is_(self, paths: list[tuple]) -> np.ndarray:
        """[rows, len(paths)] integers: many columns in one gather."""
        return self._run(self._op(lambda: self._many([self._iop(p, 0) for p in paths], "i", np.int64)))


def _floats(mat: np.ndarray, kinds: list[str], cols: np.ndarray) -> np.ndarray:
    """Columns `cols` of a group as the doubles their text parses to, in one division (correctly
    rounded, as float() of the text is)."""
    return mat / 10.0 ** colcodec.decimals_of(kinds)[cols]


@dataclass
class _Shape:
    """What a report shape tells once: its first report (layout, validation), the path of each
    number, and which columns the figures need. Shared by the chunks of that shape."""

    doc: dict
    s0: Sample
    index: dict[tuple, int]
    layout_cols: list[int]  # hardware counts, link pairs: must not change within a shape's rows
    layout_vals: np.ndarray
    needed: list[int] | None = None  # known after the first chunk of the shape
    events: bool = False
    key: tuple = ()
    scripts: dict[int, tuple[list, list]] = dataclasses.field(default_factory=dict)  # id(kinds) -> (kinds, script)


_SHAPES: dict[tuple, _Shape] = {}


def _key(lg: colcodec.LazyGroup) -> tuple[tuple, list[bool]]:
    """The shape's key: the text between the numbers, and the (constant) text inside strings; a
    column's kind (integer, decimals) may differ from chunk to chunk and is read per chunk."""
    real, nonreal, joined = colcodec.derived(lg.g.lits, "shape", lambda lits: (
        (r := colcodec._real(lits)), [j for j, x in enumerate(r) if not x], b"\x00".join(lits)))
    for j in nonreal:
        if not lg.xt.constant(j):
            raise Unsupported("text inside strings changes within the shape")
    return (joined, tuple(lg.xt.cell(j, 0) for j in nonreal), tuple(f.path for f in path_fields())), real


def _needed(needed: list[int]) -> tuple[np.ndarray, dict[int, int]]:
    """A shape's needed columns as an array, and each one's place among them."""
    return colcodec.derived(needed, "pos", lambda need: (
        np.asarray(need, dtype=np.int64), {j: i for i, j in enumerate(need)}))


def _prefetch(chunk: colcodec.LazyChunk) -> None:
    """On a worker thread: the columns (and their doubles) that a chunk's known shapes need, for
    _group_raw. numpy releases the GIL for most of this, so it runs beside the reader's own work.
    A chunk it cannot decode is left to the reader, which says what is wrong with it."""
    for lg in chunk.groups:
        try:
            sh = _SHAPES.get(_key(lg)[0])
            if sh is not None and sh.needed is not None and not sh.events:
                mat = lg.columns(sh.needed)
                lg.ahead = (sh.needed, mat, _floats(mat, lg.g.kinds, _needed(sh.needed)[0]))
        except Exception:  # noqa: BLE001, S112 - the reader decodes the group itself, and reports
            continue


def _shape(lg: colcodec.LazyGroup) -> _Shape:
    g = lg.g
    key, real = _key(lg)
    sh = _SHAPES.get(key)
    if sh is not None and sh.needed is not None:
        return sh  # the caller checks the hardware figures against the shape's (_group_raw)
    row0 = lg.row0()
    if sh is not None and np.array_equal(row0[0, sh.layout_cols], sh.layout_vals):
        return sh
    line = colcodec._line(g, row0, lg.xt, lg.fl, 0)
    doc = colcodec._json_decode(line)
    s0 = Decoder().decode(line)  # validation and the layout; the rows share the shape
    paths = colcodec.number_paths(doc)
    if len(paths) != sum(real):
        raise Unsupported("tokens and numbers disagree")
    index = dict(zip(paths, [j for j, r in enumerate(real) if r], strict=True))
    lay = [j for p, j in index.items() if p[0] == "neuron_hardware_info" or p[:3] in (
        ("neuron_top", "links", "pairs"), ("neuron_top", "links", "bandwidth_bytes_per_s"))]
    sh = _Shape(doc, s0, index, lay, row0[0, lay].copy(), events=bool(_get(doc, "neuron_top", "events")),
                key=key)
    if len(_SHAPES) > 32:
        _SHAPES.clear()
    _SHAPES[key] = sh
    return sh


def _get(doc, *path):
    for p in path:
        if isinstance(doc, dict):
            doc = doc.get(p)
        elif isinstance(doc, list) and isinstance(p, int) and p < len(doc):
            doc = doc[p]
        else:
            return None
    return doc


_ENG = ("tensor", "vector", "scalar", "gpsimd", "dma")
_MEM = ("tensors", "constants", "model_code", "model_shared_scratchpad", "runtime_memory")


@dataclass
class _Raw:
    """One shape's rows as its columns give them, before rates: what _derive turns into a Batch.
    Arrays are [rows] or [rows, cores] unless noted; None where the shape lacks the figure."""

    util: np.ndarray  # neuron-monitor's utilisation, the maximum over runtimes
    nm_flops: np.ndarray | None  # neuron-monitor's FLOP/s (flops or effective_flops); None: no such field
    mem: np.ndarray  # int64 device memory per core: every category, every runtime
    runtime_user: np.ndarray
    runtime_system: np.ndarray
    sys_user: np.ndarray
    sys_system: np.ndarray
    sys_idle: np.ndarray
    vcpu_busy: np.ndarray  # [rows, vCPUs]
    host_mem_used: np.ndarray  # int64
    ecc: np.ndarray  # [rows, 2]: corrected, uncorrected (every device)
    ecc_device: np.ndarray  # int64, -1 when none
    period: np.ndarray
    extra: dict[str, np.ndarray]  # the catalogue's `path` figures
    ext: bool = False  # the shape has the neuron_top extension
    time_s: np.ndarray | None = None  # (the extension's clock, sequence number and timestamp)
    seq: np.ndarray | None = None
    timestamp: np.ndarray | None = None
    cores: bool = False  # the extension's per-core counters match the core count
    busy_ns: np.ndarray | None = None  # cumulative counters, as float64 (the rates come from these)
    flops_total: np.ndarray | None = None
    hbm_bytes: np.ndarray | None = None
    link_bytes: np.ndarray | None = None  # [rows, links]
    efa_bytes: np.ndarray | None = None
    engines: np.ndarray | None = None  # [rows, engines, cores]
    exposed_comm: np.ndarray | None = None
    busbw_max: np.ndarray | None = None
    training: dict[str, np.ndarray] | None = None  # step, loss, tokens_per_s, mfu, p50, micro_batch, seq
    input_wait: np.ndarray | None = None
    events: list | dict | None = None  # per row (a shape's rows), then {row: events} (a chunk's)


def _group_raw(lg: colcodec.LazyGroup) -> tuple[Sample, _Raw]:
    """One shape's rows: its first report decoded as a Sample (the layout) and the raw per-row figures
    (counters, not yet rates), following Decoder.from_report."""
    sh = _shape(lg)
    ahead = None
    if sh.needed is None or sh.events:
        mat = lg.full()
        cols = np.arange(mat.shape[1])
        pos = {j: j for j in range(mat.shape[1])}
    else:
        ahead = lg.ahead if lg.ahead is not None and lg.ahead[0] is sh.needed else None
        lg.ahead = None  # (its arrays go with this call, not with the chunk)
        mat = ahead[1] if ahead is not None else lg.columns(sh.needed)
        cols, pos = _needed(sh.needed)
        if (mat[0, [pos[j] for j in sh.layout_cols]] != sh.layout_vals).any():
            _SHAPES.pop(sh.key, None)  # same text, other hardware figures: read this shape afresh
            return _group_raw(lg)
    lay = mat[:, [pos[j] for j in sh.layout_cols]]
    if not (lay == lay[:1]).all():
        raise Unsupported("hardware figures change within the shape")
    g, xt, fl, doc, s0 = lg.g, lg.xt, lg.fl, sh.doc, sh.s0
    # a chunk of a known shape (and kinds) replays the requests its first such chunk recorded
    hit = sh.scripts.get(id(g.kinds)) if sh.needed is not None and not sh.events else None
    c = _Cols(g, xt, sh.index, lg.n, mat, cols, pos, hit[1] if hit is not None and hit[0] is g.kinds else None,
              ahead[2] if ahead is not None else None)
    n, nc = lg.n, s0.n_cores
    util: np.ndarray = np.zeros((n, nc))
    nm_flops: np.ndarray | None = None
    mem = np.zeros((n, nc), dtype=np.int64)  # device memory per core: every category, every runtime
    rt_user = np.zeros(n)
    rt_sys = np.zeros(n)
    period: np.ndarray = np.zeros(n)
    for r, rt in enumerate(doc.get("neuron_runtime_data") or []):
        rep = rt.get("report") or {}
        base = ("neuron_runtime_data", r, "report")
        ncc = rep.get("neuroncore_counters")
        u = np.zeros((n, nc))
        if ncc is not None:
            p = c.f((*base, "neuroncore_counters", "period"))
            period = np.where(period != 0, period, p)
            items = list((ncc.get("neuroncores_in_use") or {}).items())
            pre: tuple = (*base, "neuroncore_counters", "neuroncores_in_use")
            idx = [int(k) for k, _ in items]
            u[:, idx] = c.fs([(*pre, k, "neuroncore_utilization") for k, _ in items])
            fa = np.full((n, len(items)), np.nan)
            any_f = False
            for q, (k, cc) in enumerate(items):
                name = "flops" if cc.get("flops") is not None else "effective_flops" if cc.get(
                    "effective_flops") is not None else None
                if name is not None:
                    fa[:, q] = c.f((*pre, k, name))
                    any_f = True
            if any_f:
                if nm_flops is None:
                    nm_flops = np.zeros((n, nc))
                nm_flops[:, idx] = np.fmax(nm_flops[:, idx], fa)
                nm_flops = np.nan_to_num(nm_flops)
        util = np.maximum(util, u)
        mu = rep.get("memory_used")
        if mu is not None:
            pre = (*base, "memory_used", "neuron_runtime_used_bytes", "usage_breakdown", "neuroncore_memory_usage")
            ks = [k for k in _get(mu, "neuron_runtime_used_bytes", "usage_breakdown", "neuroncore_memory_usage") or {}
                  if int(k) < nc]
            if ks:
                cats = c.is_([(*pre, k, cat) for cat in _MEM for k in ks]).reshape(n, len(_MEM), len(ks))
                mem[:, [int(k) for k in ks]] += cats.sum(axis=1)  # (over a middle axis: a few whole-row adds)
        if rep.get("neuron_runtime_vcpu_usage") is not None:
            pre = (*base, "neuron_runtime_vcpu_usage", "vcpu_usage")
            rt_user = rt_user + c.f((*pre, "user"))
            rt_sys = rt_sys + c.f((*pre, "system"))
    v = _get(doc, "system_data", "vcpu_usage")
    z = np.zeros(n)
    su = ss = si = z
    busy: np.ndarray = np.zeros((n, 0))
    mu = np.zeros(n, dtype=np.int64)
    if v is not None:
        pre = ("system_data", "vcpu_usage")
        if v.get("average_usage") is not None:
            su, ss = c.f((*pre, "average_usage", "user")), c.f((*pre, "average_usage", "system"))
            si = c.f((*pre, "average_usage", "idle"), 100.0)
        if v.get("usage_data"):
            busy = 100.0 - c.fs([(*pre, "usage_data", k, "idle") for k in v["usage_data"]], 100.0)
        period = np.where(period != 0, period, c.f((*pre, "period")))
    if _get(doc, "system_data", "memory_info") is not None:
        mu = c.i(("system_data", "memory_info", "memory_used_bytes"))
    devs = _get(doc, "system_data", "neuron_hw_counters", "neuron_devices") or []
    ecc = np.zeros((n, 2))
    ecc_device: np.ndarray = np.full(n, -1, dtype=np.int64)
    if devs:
        pre = ("system_data", "neuron_hw_counters", "neuron_devices")
        per_dev = c.fs([(*pre, d, f"{m}_ecc_{k}") for d in range(len(devs)) for k in ("corrected", "uncorrected")
                        for m in ("mem", "sram")])
        both = per_dev.reshape(n, len(devs), 2, 2).sum(axis=3)  # [rows, devices, corrected/uncorrected]
        ecc = both.sum(axis=1)
        tot = both.sum(axis=2)
        dev_idx = np.array([int(x.get("neuron_device_index", d)) for d, x in enumerate(devs)], dtype=np.int64)
        ecc_device = np.where(tot.max(axis=1) > 0, dev_idx[np.argmax(tot, axis=1)], -1)
    raw = _Raw(util=util, nm_flops=nm_flops, mem=mem, runtime_user=rt_user, runtime_system=rt_sys, sys_user=su,
               sys_system=ss, sys_idle=si, vcpu_busy=busy, host_mem_used=mu, period=period, ecc=ecc,
               ecc_device=ecc_device,
               extra={f.name: c.f(f.path or (), f.default) for f in path_fields()})  # the catalogue's plain figures
    ext = doc.get("neuron_top")
    raw.ext = ext is not None
    if ext is not None:
        ep = c.f(("neuron_top", "period_s"))
        raw.period = np.where(ep != 0, ep, np.where(period != 0, period, 1.0))
        raw.time_s = c.f(("neuron_top", "time_s"))
        raw.seq = c.i(("neuron_top", "seq"))
        ts = c.f(("neuron_top", "timestamp"))
        raw.timestamp = np.where(ts != 0, ts, np.nan)
        cores = ext.get("cores")
        raw.cores = cores is not None and len(cores.get("busy_ns") or []) == nc
        if raw.cores:
            pre = ("neuron_top", "cores")
            per = lambda name: c.is_([(*pre, name, k) for k in range(nc)]).astype(np.float64)  # noqa: E731
            raw.busy_ns = per("busy_ns")
            raw.flops_total = per("flops")
            raw.hbm_bytes = per("hbm_read_bytes") + per("hbm_write_bytes")
            nl = len(_get(ext, "links", "bytes") or []) if ext.get("links") is not None else 0
            raw.link_bytes = c.is_([("neuron_top", "links", "bytes", k) for k in range(nl)]).astype(np.float64)
            raw.efa_bytes = c.i(("neuron_top", "efa", "bytes")).astype(np.float64) if ext.get("efa") is not None \
                else np.zeros(n)
            if s0.engines is not None:
                raw.engines = c.fs([(*pre, "engines", e, k) for e in _ENG for k in range(nc)]).reshape(n, len(_ENG), nc)
        colls = ext.get("collectives") or []
        exp = np.zeros(n)
        bus = np.zeros(n)
        for q in range(len(colls)):
            exp = exp + c.f(("neuron_top", "collectives", q, "exposed_s"))
            bus = np.maximum(bus, c.f(("neuron_top", "collectives", q, "busbw_bytes_per_s")))
        raw.exposed_comm, raw.busbw_max = exp, bus
        if s0.training is not None:
            pre = ("neuron_top", "training")
            loss = c.f((*pre, "loss"), np.nan)
            raw.training = dict(step=c.i((*pre, "step")), loss=loss, tokens_per_s=c.f((*pre, "tokens_per_s")),
                                mfu=c.f((*pre, "mfu")), p50=c.f((*pre, "step_time_s", "p50")),
                                micro_batch=c.i((*pre, "micro_batch")), seq=c.i((*pre, "seq")))
        if s0.input is not None:
            raw.input_wait = c.f(("neuron_top", "input", "wait_frac"))
        if ext.get("events"):
            full = lg.full()
            raw.events = [_events(report_decoder.decode(colcodec._line(g, full, xt, fl, k))) for k in range(n)]
    else:
        raw.period = np.where(period != 0, period, 1.0)  # Decoder: `period or 1.0` without the extension
    if sh.needed is None:
        sh.needed = sorted(c.used | set(sh.layout_cols))
    elif c.script is None and not sh.events:  # (the positions are among the needed columns)
        sh.scripts[id(g.kinds)] = (g.kinds, c.rec)
    return s0, raw


def _events(rep) -> list[dict]:
    return rep.neuron_top.events if rep.neuron_top is not None else []


def _sig(s0: Sample, raw: _Raw) -> tuple:
    return (layout_of(s0), raw.ext, raw.cores, raw.nm_flops is None, raw.vcpu_busy.shape[1],
            raw.link_bytes.shape[1] if raw.link_bytes is not None else 0, raw.engines is not None,
            raw.training is not None, raw.input_wait is not None)


def from_chunk(chunk: colcodec.LazyChunk, dec: Decoder) -> Batch:
    """A columnar chunk as one batch; `dec` carries the counters across chunks (and to the report by
    report path). Raises Unsupported, leaving `dec` untouched, for chunks this does not cover."""
    parts = [(np.asarray(lg.g.rows, dtype=np.intp), *_group_raw(lg)) for lg in chunk.groups]
    sig = _sig(parts[0][1], parts[0][2])
    if any(_sig(s0, raw) != sig for _, s0, raw in parts[1:]):
        raise Unsupported("report shapes of different layouts in one chunk")
    n = chunk.n
    s0 = parts[0][1]
    if len(parts) == 1 and parts[0][2].events is None:  # one shape (the usual chunk): its rows, in order
        return _derive(s0, parts[0][2], n, dec)
    merged: dict = {}
    for f in dataclasses.fields(_Raw):
        v0 = getattr(parts[0][2], f.name)
        if f.name == "events":  # -> {row: events}
            ev: dict[int, tuple] = {}
            for rows, _, r in parts:
                ev.update({i: tuple(e) for i, e in zip(rows.tolist(), r.events or [()] * len(rows), strict=True) if e})
            merged[f.name] = ev
        elif isinstance(v0, np.ndarray):  # each shape's rows into their places in the chunk
            a = np.empty((n, *v0.shape[1:]), dtype=v0.dtype)
            for rows, _, r in parts:
                a[rows] = getattr(r, f.name)
            merged[f.name] = a
        elif isinstance(v0, dict):
            merged[f.name] = {}
            for k2, v2 in v0.items():
                a = np.empty(n, dtype=v2.dtype)
                for rows, _, r in parts:
                    a[rows] = getattr(r, f.name)[k2]
                merged[f.name][k2] = a
        else:
            merged[f.name] = v0
    return _derive(s0, _Raw(**merged), n, dec)


def _derive(s0: Sample, raw: _Raw, n: int, dec: Decoder) -> Batch:
    """Rates from counters over consecutive rows, as Decoder does one report at a time."""
    nc = s0.n_cores
    util = raw.util
    flops = raw.nm_flops
    flops_ok = np.full(n, flops is not None)
    if flops is None:
        flops = np.zeros((n, nc))
    period = raw.period
    count = dec.count + np.arange(1, n + 1)
    if raw.ext:
        assert raw.time_s is not None and raw.seq is not None and raw.timestamp is not None
        time_s, seq, ts = raw.time_s, raw.seq, raw.timestamp
    else:
        time_s = np.cumsum(np.concatenate([[dec.clock], period]))[1:]
        seq, ts = count, np.full(n, np.nan)
    hbm_rate = link_rate = engines = None
    efa_rate: np.ndarray = np.full(n, np.nan)
    new_prev = dec.prev
    if raw.ext and raw.cores:
        busy, fl, hb, links, efa = raw.busy_ns, raw.flops_total, raw.hbm_bytes, raw.link_bytes, raw.efa_bytes
        assert busy is not None and fl is not None and hb is not None and links is not None and efa is not None
        prev = dec.prev
        p_time = np.concatenate([[prev[0] if prev is not None else np.nan], time_s[:-1]])
        p_busy = np.concatenate([prev[1][None, :] if prev is not None and len(prev[1]) == nc else
                                 np.full((1, nc), np.nan), busy[:-1]])
        p_fl = np.concatenate([prev[2][None, :] if prev is not None and len(prev[2]) == nc else
                               np.full((1, nc), np.nan), fl[:-1]])
        p_hb = np.concatenate([prev[3][None, :] if prev is not None and len(prev[3]) == nc else
                               np.full((1, nc), np.nan), hb[:-1]])
        nl = links.shape[1]
        p_links = np.concatenate([prev[4][None, :] if prev is not None and len(prev[4]) == nl else
                                  np.full((1, nl), np.nan), links[:-1]])
        p_efa = np.concatenate([[prev[5] if prev is not None else np.nan], efa[:-1]])
        ok = time_s > p_time
        if prev is not None and (len(prev[4]) != nl or len(prev[1]) != nc):
            if len(prev[4]) != nl:
                ok[0] = False
            elif ok[0]:
                raise Unsupported("the previous report has another core count")
        dt = np.where(ok, time_s - p_time, 1.0)
        with np.errstate(invalid="ignore"):
            d_util = np.maximum(busy - p_busy, 0.0) / dt[:, None] / 1e7
            d_fl = np.maximum(fl - p_fl, 0.0) / dt[:, None]
            d_hb = np.maximum(hb - p_hb, 0.0) / dt[:, None]
            d_links = np.maximum(links - p_links, 0.0) / dt[:, None]
            d_efa = np.maximum(efa - p_efa, 0.0) / dt
        t = np.maximum(time_s, 1e-9)
        util = np.where(ok[:, None], d_util, util)
        if raw.nm_flops is None:
            flops_ok = ok & d_fl.any(axis=1)
            flops = np.where(flops_ok[:, None], d_fl, 0.0)
        else:
            flops = np.where(ok[:, None], d_fl, flops)
        hbm_rate = np.where(ok[:, None], d_hb, hb / t[:, None])
        link_rate = np.where(ok[:, None], d_links, links / t[:, None])
        efa_rate = np.where(ok, d_efa, efa / t)
        new_prev = (float(time_s[-1]), busy[-1], fl[-1], hb[-1], links[-1], float(efa[-1]))
        engines = raw.engines
    lay = layout_of(s0)
    nan = np.full(n, np.nan)
    tr = raw.training
    wait = raw.input_wait
    batch = Batch(
        layout=lay, time_s=time_s, timestamp=ts, seq=seq, period=period, util=np.clip(util, 0.0, 100.0),
        flops=flops, flops_ok=flops_ok, mem_core=raw.mem, engines=engines, hbm_rate=hbm_rate,
        link_rate=link_rate if lay.n_links >= 0 else None, efa_rate=efa_rate, sys_user=raw.sys_user,
        sys_system=raw.sys_system, sys_idle=raw.sys_idle, runtime_user=raw.runtime_user,
        runtime_system=raw.runtime_system, host_mem_used=raw.host_mem_used, vcpu_busy=raw.vcpu_busy,
        ecc_corrected=raw.ecc[:, 0], ecc_uncorrected=raw.ecc[:, 1], ecc_device=raw.ecc_device,
        step=tr["step"] if tr is not None else seq, loss=tr["loss"] if tr is not None else nan,
        tokens_per_s=tr["tokens_per_s"] if tr is not None else nan, mfu=tr["mfu"] if tr is not None else nan,
        step_p50=np.where(tr["p50"] > 0, tr["p50"], np.nan) if tr is not None else nan,  # (none before a step)
        micro_batch=tr["micro_batch"] if tr is not None else np.zeros(n, dtype=np.int64),
        seq_len=tr["seq"] if tr is not None else np.zeros(n, dtype=np.int64),
        input_wait=wait if wait is not None else nan,
        exposed_comm=raw.exposed_comm if raw.exposed_comm is not None else np.zeros(n),
        busbw_max=raw.busbw_max if raw.busbw_max is not None else np.zeros(n),
        link_mean=link_rate.mean(axis=1) if link_rate is not None and link_rate.shape[1] else nan,
        events=raw.events if isinstance(raw.events, dict) else {}, extra=raw.extra,
    )
    # Commit the decoder's state only now: an Unsupported above leaves it as it was.
    dec.advance(new_prev, n, None if raw.ext else float(time_s[-1]))
    return batch


def iter_profile(prof, skip_bad: bool = False, rows: int = 600, on_skip=None) -> Iterator[Batch]:
    """A profile's samples as batches: columnar chunks read as columns, others report by report.
    A worker thread decodes the columns of the next chunks while this one derives the batches."""
    chunks = prof.iter_chunks(lazy=True, on_bad=(on_skip or (lambda _msg: None)) if skip_bad else None)
    with ThreadPoolExecutor(1, thread_name_prefix="profile-columns") as pool:
        yield from _batches(prof, _ahead(chunks, pool), skip_bad, rows)


_AHEAD = 2  # chunks decoded ahead (one alone left the reader waiting for it at times)


def _ahead(chunks: Iterator[tuple[int, object]], pool: ThreadPoolExecutor) -> Iterator[tuple[int, object]]:
    """The chunks in order, each once its columns are decoded on `pool` (_prefetch). The first goes
    out at once: the reader learns the shapes from it, which the worker needs for the next ones."""
    queue: deque = deque()
    ahead = 0
    for first, chunk in chunks:
        queue.append((first, chunk, pool.submit(_prefetch, chunk) if isinstance(chunk, colcodec.LazyChunk) else None))
        if len(queue) > ahead:
            yield _ready(*queue.popleft())
            ahead = _AHEAD
    while queue:
        yield _ready(*queue.popleft())


def _ready(first: int, chunk: object, fut: Future | None) -> tuple[int, object]:
    if fut is not None:
        fut.result()
    return first, chunk


def _batches(prof, chunks: Iterator[tuple[int, object]], skip_bad: bool, rows: int) -> Iterator[Batch]:
    from ..telemetry.sample import DecodeError
    from .profile import ProfileError

    dec = Decoder()
    pending: list[Sample] = []

    def flush() -> Iterator[Batch]:
        yield from from_samples(pending)
        pending.clear()

    for first, chunk in chunks:
        if isinstance(chunk, colcodec.LazyChunk):
            try:
                b = from_chunk(chunk, dec)
            except Exception:  # Unsupported, or damage the header check did not catch: read it as text
                try:
                    chunk = chunk.lines(exact=False)
                except Exception as exc:  # noqa: BLE001
                    raise ProfileError(f"{prof.path}: the chunk from sample {first} is corrupt ({exc})") from None
            else:
                yield from flush()
                yield b
                continue
        assert isinstance(chunk, list)
        for k, line in enumerate(chunk):
            try:
                pending.append(dec.decode(line))
            except DecodeError as exc:
                if skip_bad:
                    continue
                raise ProfileError(f"{prof.path}: sample {first + k}: {exc}") from None
            if len(pending) >= rows:
                yield from flush()
    yield from flush()
