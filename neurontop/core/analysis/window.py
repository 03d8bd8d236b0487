"""Window statistics: the figures the rules read, for one window or many windows of a stream.

The rows come from batches (telemetry/batch.py) whichever way the samples arrived: live, replayed,
or read as columns for an export, so every path computes the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .thresholds import DEFAULTS, Thresholds


@dataclass
class WindowStats:
    """Averages over the window that several rules share."""

    n: int
    util: float
    core_util: np.ndarray
    allocated: np.ndarray
    has_ext: bool
    has_flops: bool
    flops: float  # FLOP/s per core, mean
    peak: float  # bf16 FLOP/s per core
    vcpu_busy: np.ndarray
    host_busy: float
    hbm_frac: float | None
    tensor_active: float | None
    exposed_comm: float | None
    input_wait: float | None
    mem_frac_max: float
    mem_dev_max: int
    capacity: int
    events: list[dict] = field(default_factory=list)
    training: Dims | None = None
    busbw_frac: float | None = None
    link_frac: float | None = None
    # what a plain neuron-monitor report carries about the host and the executions (None: absent)
    exec_rate: float | None = None  # executions completed per second on each working core
    dev_cover: float | None = None  # executions/s x mean device latency: the share of time a graph runs on the device
    dev_latency: float | None = None  # s, the executions' median device latency (weighted by executions)
    proc_cores: float | None = None  # the training process's CPU, in cores (neuron_runtime_vcpu_usage x vCPUs)
    host_cores: float | None = None  # the whole host's busy CPU, in cores
    idle_rows: float = 0.0  # share of the window's reports with every core idle and no execution
    lead_idle: float = 0.0  # share of the window's reports, from its start, idle before the first active one
    dtype: str = ""  # the training's number format (extension), "" when unknown
    rows: int = 0  # reports in the window
    cache: dict = field(default_factory=dict, repr=False)  # figures the rules derive once (rules.host)
    ecc_corrected: float = 0.0  # ECC events in the window, every device
    ecc_uncorrected: float = 0.0
    ecc_device: int = -1  # the device that had them (the highest index when several did)
    cores_per_device: int = 1
    mem_growth: float = 0.0  # device memory gained over the window, as a share of its value at the end
    util_swing: float = 0.0  # points: the spread over time (std of the reports' average utilisation) in the window


def _busy_rows(values: np.ndarray, busy: np.ndarray) -> np.ndarray:
    """Per sample: the mean of `values` over its busy cores (0 for a sample with none)."""
    cnt = busy.sum(axis=1)
    return np.where(cnt > 0, (values * busy).sum(axis=1) / np.maximum(cnt, 1), 0.0)


@dataclass
class WindowArrays:
    """The per-sample figures the rules read, one row per sample of the window (all with the last
    sample's core count). Sliced from batches, whichever way the samples arrived: one code path
    for the statistics either way."""

    util: np.ndarray  # [k, cores]
    mem_core: np.ndarray  # [k, cores]
    flops: np.ndarray | None  # [k, cores], None unless every sample has flops
    vcpu_busy: np.ndarray  # [k', vcpus]: the samples with vCPU figures, or only the last if their counts differ
    sys_idle: np.ndarray  # [k]
    has_ext: bool
    hbm_rate: np.ndarray | None  # [k, cores] (with the extension)
    tensor: np.ndarray | None  # [k, cores] tensor-engine activity
    period: np.ndarray  # [k]
    exposed_comm: np.ndarray  # [k]
    input_wait: np.ndarray  # [k'] samples with input figures
    busbw: np.ndarray  # [k]
    link_mean: np.ndarray  # [k'] samples with link rates
    n_devices: int
    cores_per_device: int
    hbm_bw: float
    hbm_capacity: int
    link_bw: float
    peak: float
    training: Dims | None  # the last sample's training figures (micro_batch, seq)
    events: list[dict]
    executions: np.ndarray | None = None  # [k] completed executions, NaN where a report has none
    device_latency: np.ndarray | None = None  # [k] device latency p50, s
    device_quantiles: np.ndarray | None = None  # [k, 6] device latency p0, p25, p50, p75, p99, p100
    proc_cores: np.ndarray | None = None  # [k] the training process's CPU in cores (NaN: no vCPU figures)
    host_cores: np.ndarray | None = None  # [k] the host's busy CPU in cores
    dtype: str = ""
    exec_cores: int = 0  # cores the first runtime drives (0: unknown)
    ecc: np.ndarray | None = None  # [k, 2] ECC events corrected, uncorrected (every device)
    ecc_device: np.ndarray | None = None  # [k] the device with the most, -1 when none


class _Rows:
    """Windows of k rows starting at `starts`: an array's rows for each, [windows, k, ...]."""

    def __init__(self, starts: np.ndarray, k: int, n_rows: int, whole: bool) -> None:
        self.starts, self.k, self.n_rows, self.whole = starts, k, n_rows, whole
        self.step = int(starts[1] - starts[0]) if len(starts) > 1 else 0
        even = self.step >= 0 and bool((np.diff(starts) == self.step).all())  # every `step` rows: a view
        self.idx = None if even else starts[:, None] + np.arange(k)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if len(x) != self.n_rows:
            if not self.whole:
                raise ValueError("stats_of_windows: an array without a row per sample needs the whole window")
            return x[None]
        if self.idx is not None:
            return x[self.idx]
        return as_strided(x[self.starts[0]:], shape=(len(self.starts), self.k, *x.shape[1:]),
                          strides=(self.step * x.strides[0], *x.strides), writeable=False)


def stats_of(w: WindowArrays, th: Thresholds = DEFAULTS) -> WindowStats:
    return stats_of_windows(w, [(0, len(w.util))], th=th)[0]


def stats_of_windows(w: WindowArrays, bounds: Sequence[tuple[int, int]] | np.ndarray,
                     vcpu_below: float | None = None, th: Thresholds = DEFAULTS) -> list[WindowStats]:
    """The statistics of many windows of one stream: rows [a, e) of `w`'s arrays for each (a, e).
    The windows of one length are one array operation per figure; each sum adds the same numbers in
    the same order as a window on its own would (tests compare them bit for bit), so an export's
    hints are the live view's. Each gets w.training and w.events (the caller sets the window's own).
    With `vcpu_below` (the hint threshold), per-vCPU figures are worked out only for windows whose
    utilisation is below it, the only ones whose rules read them; the others get none.

    Arrays whose rows are not one per sample (vcpu_busy, input_wait and link_mean when samples lack
    them) are only allowed with the one window that spans the whole stream."""
    R, n = w.util.shape
    b = np.asarray(bounds, dtype=np.int64).reshape(-1, 2)
    nw = len(b)
    whole = nw == 1 and b[0, 0] == 0 and b[0, 1] == R
    # per-sample figures, for every row at once
    busy = w.util > 1
    bw = w.hbm_bw / max(1, w.cores_per_device)
    hbm_row = _busy_rows(w.hbm_rate, busy) if w.has_ext and bw and w.hbm_rate is not None else None
    tensor_row = _busy_rows(w.tensor, busy) if w.has_ext and w.tensor is not None else None
    nd = w.n_devices
    M = w.mem_core
    dev_row = M.reshape(R, nd, -1).sum(axis=2).max(axis=1) if nd and n % nd == 0 else None
    M = M.astype(np.float64)  # once, not once per window (each window's sum casts the same way)
    f64 = np.float64
    core_util = np.zeros((nw, n))
    util = np.zeros(nw)
    mem = np.zeros((nw, n))
    flops = np.zeros(nw)
    vcpu = np.zeros((nw, w.vcpu_busy.shape[1] if len(w.vcpu_busy) else 0))
    host = np.zeros(nw)
    nan = np.full(nw, np.nan)
    hbm, tensor, comm, wait, busbw, linkf = (nan.copy() for _ in range(6))
    dev = np.zeros(nw, dtype=np.int64)
    has_busbw = np.zeros(nw, dtype=bool)
    # executions and the host (plain neuron-monitor): per row, then per window
    nanr = np.full(R, np.nan)
    ex = w.executions if w.executions is not None else nanr
    ex_ok = ~np.isnan(ex)
    ex0 = np.nan_to_num(ex)
    per = np.where(w.period > 0, w.period, 1.0)
    rate_row = ex0 / per
    lat_d = np.nan_to_num(w.device_latency if w.device_latency is not None else nanr)
    # the executions' mean device time, from the percentiles (a trapezoid over the quantiles; a few
    # long graphs, like a step's last one, weigh in as they should), else the median
    lat_mean = lat_d
    if w.device_quantiles is not None:
        qs = np.array([0.0, 0.25, 0.5, 0.75, 0.99, 1.0])
        Q = w.device_quantiles
        ok_q = ~np.isnan(Q).any(axis=1)
        tr = ((Q[:, 1:] + Q[:, :-1]) / 2 * np.diff(qs)).sum(axis=1)
        lat_mean = np.where(ok_q, np.nan_to_num(tr), lat_d)
    cover_row = rate_row * lat_mean
    idle_row = ((w.util.max(axis=1) if n else np.zeros(R)) < 1.0) & (ex0 == 0)
    after_idle = np.concatenate([[False], idle_row[:-1]])
    util_row = w.util.mean(axis=1) if n else np.zeros(R)
    proc_row = w.proc_cores if w.proc_cores is not None else nanr
    hostc_row = w.host_cores if w.host_cores is not None else nanr
    mem_row = w.mem_core.sum(axis=1).astype(np.float64) if n else np.zeros(R)
    exec_ok = np.zeros(nw, dtype=bool)
    rate, cover, dlat, proc, hostc, idle, growth, lead, swing = (np.zeros(nw) for _ in range(9))
    ecc_w = np.zeros((nw, 2))
    ecc_dev = np.full(nw, -1, dtype=np.int64)
    proc_ok = np.zeros(nw, dtype=bool)
    lengths = b[:, 1] - b[:, 0]
    for k in sorted(set(lengths.tolist())):  # (not np.unique: it imports numpy.ma, 10 ms per process)
        sel = np.flatnonzero(lengths == k)
        rows = _Rows(b[sel, 0], k, R, whole)

        def mean(x: np.ndarray, rows: _Rows = rows) -> np.ndarray:
            r = rows(x)
            return np.add.reduce(r, axis=1, dtype=f64) / r.shape[1]

        core_util[sel] = mean(w.util)
        util[sel] = np.add.reduce(core_util[sel], axis=1, dtype=f64) / n
        if k > 1:  # bursts and gaps: a fine period sees the step's timeline move within the window
            swing[sel] = rows(util_row).std(axis=1)
        mem[sel] = mean(M)
        if w.flops is not None:
            F = rows(w.flops)
            flops[sel] = np.add.reduce(F, axis=(1, 2), dtype=f64) / F[0].size
        if len(w.vcpu_busy):
            if vcpu_below is None:
                vcpu[sel] = mean(w.vcpu_busy)
            elif (low := util[sel] < vcpu_below).any():
                some = _Rows(b[sel[low], 0], k, R, whole)(w.vcpu_busy)
                vcpu[sel[low]] = np.add.reduce(some, axis=1, dtype=f64) / some.shape[1]
        host[sel] = np.where(rows(w.sys_idle).any(axis=1), mean(100 - w.sys_idle), 0.0)
        if w.has_ext:
            if hbm_row is not None:
                hbm[sel] = mean(hbm_row) / bw
            if tensor_row is not None:
                tensor[sel] = mean(tensor_row)
            span = rows(w.period).sum(axis=1)
            comm[sel] = np.where(span != 0, rows(w.exposed_comm).sum(axis=1) / np.where(span != 0, span, 1.0), 0.0)
            if len(w.input_wait):
                wait[sel] = mean(w.input_wait)
            if w.link_bw:
                has_busbw[sel] = rows(w.busbw).any(axis=1)
                busbw[sel] = mean(w.busbw) / w.link_bw
                if len(w.link_mean):
                    linkf[sel] = mean(w.link_mean) / w.link_bw
        if dev_row is not None:
            dev[sel] = rows(dev_row).max(axis=1)
        exec_ok[sel] = rows(ex_ok).all(axis=1)
        if w.ecc is not None and w.ecc_device is not None:
            ecc_w[sel] = rows(w.ecc).sum(axis=1)
            ecc_dev[sel] = rows(w.ecc_device).max(axis=1)
        rate[sel] = mean(rate_row)
        cover[sel] = mean(cover_row)
        n_ex = rows(ex0).sum(axis=1)
        dlat[sel] = rows(ex0 * lat_d).sum(axis=1) / np.maximum(n_ex, 1e-12)
        pr = rows(proc_row)
        proc_ok[sel] = ~np.isnan(pr).any(axis=1)
        proc[sel] = np.nan_to_num(pr).mean(axis=1)
        hostc[sel] = np.nan_to_num(rows(hostc_row)).mean(axis=1)
        ir = rows(idle_row)
        idle[sel] = ir.mean(axis=1)
        first_active = np.where((~ir).any(axis=1), np.argmax(~ir, axis=1), ir.shape[1])
        lead[sel] = np.where((~ir).any(axis=1), first_active / ir.shape[1], 0.0)
        if k > 1:
            # the work started just before the window: its first report, after an idle one, is
            # partly idle (a report that covers the end of a warm-up), well below the others
            ur = rows(util_row)
            ramp = rows(after_idle)[:, 0] & (ur[:, 0] < 0.8 * ur[:, 1:].mean(axis=1))
            lead[sel] = np.where(ramp & (lead[sel] == 0), max(1.0 / k, th.warmup_lead), lead[sel])
        mr = rows(mem_row)
        growth[sel] = (mr[:, -1] - mr[:, 0]) / np.maximum(mr[:, -1], 1.0)
    allocated = (mem >= th.allocated_bytes) | (core_util >= 1.0)
    # A runtime that drives several cores runs one execution per core at a time: per core, the
    # executions are those of the cores that work (at most the runtime's own).
    active = (allocated & (core_util > 0.5)).sum(axis=1)  # cores with any activity run executions
    per_core = np.maximum(1, np.minimum(w.exec_cores or n, active))
    rate, cover = rate / per_core, cover / per_core
    no_vcpu = np.zeros(0)
    has_vcpu = util < vcpu_below if vcpu_below is not None else np.ones(nw, dtype=bool)
    cap = w.hbm_capacity
    ext = w.has_ext
    cols = zip(util.tolist(), flops.tolist(), host.tolist(), _present(hbm, hbm_row is not None),
               _present(tensor, tensor_row is not None), _present(comm, ext),
               _present(wait, ext and len(w.input_wait) > 0), _present(busbw, has_busbw),
               _present(linkf, ext and bool(w.link_bw) and len(w.link_mean) > 0), dev.tolist(), strict=True)
    has_ex = exec_ok & (rate > 0)
    return [WindowStats(
        n=n, util=u, core_util=core_util[i], allocated=allocated[i], has_ext=w.has_ext, has_flops=w.flops is not None,
        flops=fl, peak=w.peak, vcpu_busy=vcpu[i] if has_vcpu[i] else no_vcpu, host_busy=hb, hbm_frac=hf, tensor_active=ta,
        exposed_comm=cm, input_wait=wt, mem_frac_max=dv / cap if cap else 0.0, mem_dev_max=dv, capacity=cap,
        events=w.events, training=w.training, busbw_frac=bb, link_frac=lf,
        exec_rate=float(rate[i]) if exec_ok[i] else None, dev_cover=float(cover[i]) if has_ex[i] else None,
        dev_latency=float(dlat[i]) if has_ex[i] else None, proc_cores=float(proc[i]) if proc_ok[i] else None,
        host_cores=float(hostc[i]) if proc_ok[i] else None, idle_rows=float(idle[i]), lead_idle=float(lead[i]), mem_growth=float(growth[i]),
        util_swing=float(swing[i]),
        dtype=w.dtype, rows=int(lengths[i]), ecc_corrected=float(ecc_w[i, 0]), ecc_uncorrected=float(ecc_w[i, 1]),
        ecc_device=int(ecc_dev[i]), cores_per_device=w.cores_per_device,
    ) for i, (u, fl, hb, hf, ta, cm, wt, bb, lf, dv) in enumerate(cols)]


def _present(a: np.ndarray, present: bool | np.ndarray) -> list[float | None]:
    """Each window's figure, or None where the window lacks it."""
    ok = np.broadcast_to(present, a.shape).tolist()
    return [v if p else None for v, p in zip(a.tolist(), ok, strict=True)]


class Dims:
    """The training figures a rule reads (micro-batch and sequence length), from batch columns."""

    __slots__ = ("micro_batch", "seq")

    def __init__(self, micro_batch: int, seq: int) -> None:
        self.micro_batch, self.seq = micro_batch, seq


def window_of_batches(segs: list, stream: bool = False) -> WindowArrays:
    """The window's arrays from rows [a, e) of batches (batch.Batch), oldest first. With `stream` the
    rows are a stream cut into many windows: FLOP rates come along even if some rows lack them (each
    window checks its own)."""
    last, a_last, e_last = segs[-1]
    lay = last.layout
    segs = [(b, a, e) for b, a, e in segs if b.layout.n_cores == lay.n_cores]

    def cat(get, keep=lambda b: True) -> np.ndarray:
        parts = [get(b)[a:e] for b, a, e in segs if keep(b)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    has_ext = all(b.layout.has_engines for b, _, _ in segs)
    has_flops = all(b.flops_ok[a:e].all() for b, a, e in segs)
    with_vcpu = [(b, a, e) for b, a, e in segs if b.layout.n_vcpu]
    if len({b.layout.n_vcpu for b, _, _ in with_vcpu}) <= 1:
        vcpu = cat(lambda b: b.vcpu_busy, lambda b: b.layout.n_vcpu > 0) if with_vcpu else np.zeros((0, 0))
    else:
        b, _, e = with_vcpu[-1]
        vcpu = b.vcpu_busy[e - 1:e]
    t = Dims(int(last.micro_batch[e_last - 1]), int(last.seq_len[e_last - 1])) if lay.has_training else None
    events = [ev for b, a, e in segs for i in range(a, e) for ev in b.events.get(i, ())] \
        if any(b.events for b, _, _ in segs) else []
    def ex(name: str) -> np.ndarray:
        return cat(lambda b: b.extra.get(name, np.full(len(b), np.nan)))

    def cores(b, pct: np.ndarray) -> np.ndarray:
        return pct / 100.0 * b.layout.n_vcpu if b.layout.n_vcpu else np.full(len(b), np.nan)

    return WindowArrays(
        dtype=lay.dtype, exec_cores=lay.exec_cores, executions=ex("executions"),
        ecc=cat(lambda b: np.stack([b.ecc_corrected, b.ecc_uncorrected], axis=1)), ecc_device=cat(lambda b: b.ecc_device),
        device_latency=ex("device_latency_p50"),
        device_quantiles=np.stack([ex(f"device_latency_{q}") for q in ("p0", "p25", "p50", "p75", "p99", "p100")],
                                  axis=1),
        proc_cores=cat(lambda b: cores(b, b.runtime_user + b.runtime_system)),
        host_cores=cat(lambda b: cores(b, 100.0 - b.sys_idle)),
        util=cat(lambda b: b.util), mem_core=cat(lambda b: b.mem_core),
        flops=cat(lambda b: b.flops) if has_flops or stream else None, vcpu_busy=vcpu, sys_idle=cat(lambda b: b.sys_idle),
        has_ext=has_ext, hbm_rate=cat(lambda b: b.hbm_rate) if has_ext else None,
        tensor=cat(lambda b: b.engines[:, 0]) if has_ext else None, period=cat(lambda b: b.period),
        exposed_comm=cat(lambda b: b.exposed_comm),
        input_wait=cat(lambda b: b.input_wait, lambda b: b.layout.has_input)
        if any(b.layout.has_input for b, _, _ in segs) else np.zeros(0),
        busbw=cat(lambda b: b.busbw_max),
        link_mean=cat(lambda b: b.link_mean, lambda b: b.layout.n_links > 0)
        if any(b.layout.n_links > 0 for b, _, _ in segs) else np.zeros(0),
        n_devices=lay.n_devices, cores_per_device=lay.cores_per_device, hbm_bw=lay.hbm_bw,
        hbm_capacity=lay.hbm_capacity, link_bw=lay.link_bw, peak=lay.core_peak_flops, training=t, events=events,
    )


def rows_since(segs: list, thr: float) -> list:
    """The rows of (batch, a, e) segments later than time `thr` (each segment's times ascend)."""
    out = []
    for b, a, e in segs:
        k = a + int(np.searchsorted(b.time_s[a:e], thr, side="right"))
        if k < e:
            out.append((b, k, e))
    return out



def window_rows(batches: Sequence, seconds: float) -> list:
    """The (batch, a, e) rows of the last `seconds` of `batches` (at least the last row)."""
    segs = [(b, 0, len(b)) for b in batches if len(b)]
    if not segs:
        return []
    last = segs[-1][0]
    return rows_since(segs, float(last.time_s[-1]) - seconds - 1e-9) or [(last, len(last) - 1, len(last))]
