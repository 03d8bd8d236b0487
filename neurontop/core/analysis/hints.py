"""Bottleneck hints: a pure function from a window of samples to a ranked list of hints.

Reads only what real telemetry carries: neuron-monitor's fields and the `neuron_top` extension
(never its `truth`). With plain neuron-monitor data it says less: causes that need per-engine,
HBM, link or input-pipeline counters are not named, and a low-utilisation window whose cause the
data cannot support is reported as such. docs/hints.md explains every rule and threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..telemetry.sample import Sample
from ..telemetry.units import format_evidence, plural

DEFAULT_THRESHOLD = 70.0
DEFAULT_WINDOW_S = 10.0
ALLOCATED_BYTES = 16 * 1024**2  # a core holding less device memory than this is not in use

SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Evidence:
    name: str
    value: float
    unit: str

    def text(self) -> str:
        return format_evidence(self.name, self.value, self.unit)


@dataclass(frozen=True)
class Hint:
    cause: str
    kind: str  # "bottleneck" or "advisory"
    severity: str  # "critical", "warning", "info"
    confidence: float  # 0..1
    title: str
    evidence: tuple[Evidence, ...]
    action: str
    pane: str  # the pane the UI highlights: cores, memory, interconnect, vcpu
    score: float = 0.0  # share of the window this cause explains, for ranking

    def to_dict(self) -> dict:
        return {
            "cause": self.cause, "kind": self.kind, "severity": self.severity,
            "confidence": round(self.confidence, 2), "title": self.title,
            "evidence": [{"name": e.name, "value": round(e.value, 4), "unit": e.unit} for e in self.evidence],
            "action": self.action,
        }


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
    training: object | None = None
    busbw_frac: float | None = None
    link_frac: float | None = None


def window(samples: Sequence[Sample], seconds: float = DEFAULT_WINDOW_S) -> list[Sample]:
    if not samples:
        return []
    end = samples[-1].time_s
    out = [s for s in samples if s.time_s > end - seconds - 1e-9]
    return out or [samples[-1]]


def _busy_rows(values: np.ndarray, busy: np.ndarray) -> np.ndarray:
    """Per sample: the mean of `values` over its busy cores (0 for a sample with none)."""
    cnt = busy.sum(axis=1)
    return np.where(cnt > 0, (values * busy).sum(axis=1) / np.maximum(cnt, 1), 0.0)


@dataclass
class WindowArrays:
    """The per-sample figures the rules read, one row per sample of the window (all with the last
    sample's core count). Built from Samples (live) or sliced from a batch (export): one code path
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
    training: object | None  # the last sample's training figures (micro_batch, seq)
    events: list[dict]


def window_arrays(ws: Sequence[Sample]) -> WindowArrays:
    last = ws[-1]
    n = last.n_cores
    same = [s for s in ws if s.n_cores == n]
    ext = [s for s in same if s.has_extension]
    has_ext = len(ext) == len(same)
    has_flops = all(s.flops is not None for s in same)
    vb = [s.vcpu_busy for s in same if len(s.vcpu_busy)]
    if vb and len({len(v) for v in vb}) == 1:
        vcpu = np.stack(vb)
    else:
        vcpu = vb[-1][None, :] if vb else np.zeros((0, 0))
    return WindowArrays(
        util=np.stack([s.util for s in same]), mem_core=np.stack([s.mem_per_core for s in same]),
        flops=np.stack([s.flops for s in same]) if has_flops else None, vcpu_busy=vcpu,
        sys_idle=np.array([s.sys_idle for s in same], dtype=np.float64), has_ext=has_ext,
        hbm_rate=np.stack([s.hbm_rate for s in ext]) if has_ext else None,
        tensor=np.stack([s.engines[0] for s in ext]) if has_ext else None,
        period=np.array([s.period_s for s in same], dtype=np.float64),
        exposed_comm=np.array([s.exposed_comm_s for s in same], dtype=np.float64),
        input_wait=np.array([s.input.wait_frac for s in same if s.input is not None], dtype=np.float64),
        busbw=np.array([s.busbw_max for s in same], dtype=np.float64),
        link_mean=np.array([s.link_mean for s in same if s.link_mean is not None], dtype=np.float64),
        n_devices=last.n_devices, cores_per_device=last.cores_per_device, hbm_bw=last.hbm_bw,
        hbm_capacity=last.hbm_capacity, link_bw=last.link_bw, peak=last.core_peak_flops, training=last.training,
        events=[e for s in same for e in s.events],
    )


def stats(ws: Sequence[Sample]) -> WindowStats:
    return stats_of(window_arrays(ws))


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


def stats_of(w: WindowArrays) -> WindowStats:
    return stats_of_windows(w, [(0, len(w.util))])[0]


def stats_of_windows(w: WindowArrays, bounds: Sequence[tuple[int, int]] | np.ndarray,
                     vcpu_below: float | None = None) -> list[WindowStats]:
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
    lengths = b[:, 1] - b[:, 0]
    for k in sorted(set(lengths.tolist())):  # (not np.unique: it imports numpy.ma, 10 ms per process)
        sel = np.flatnonzero(lengths == k)
        rows = _Rows(b[sel, 0], k, R, whole)

        def mean(x: np.ndarray, rows: _Rows = rows) -> np.ndarray:
            r = rows(x)
            return np.add.reduce(r, axis=1, dtype=f64) / r.shape[1]

        core_util[sel] = mean(w.util)
        util[sel] = np.add.reduce(core_util[sel], axis=1, dtype=f64) / n
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
    allocated = (mem >= ALLOCATED_BYTES) | (core_util >= 1.0)
    no_vcpu = np.zeros(0)
    has_vcpu = util < vcpu_below if vcpu_below is not None else np.ones(nw, dtype=bool)
    cap = w.hbm_capacity
    ext = w.has_ext
    cols = zip(util.tolist(), flops.tolist(), host.tolist(), _present(hbm, hbm_row is not None),
               _present(tensor, tensor_row is not None), _present(comm, ext),
               _present(wait, ext and len(w.input_wait) > 0), _present(busbw, has_busbw),
               _present(linkf, ext and bool(w.link_bw) and len(w.link_mean) > 0), dev.tolist(), strict=True)
    return [WindowStats(
        n=n, util=u, core_util=core_util[i], allocated=allocated[i], has_ext=w.has_ext, has_flops=w.flops is not None,
        flops=fl, peak=w.peak, vcpu_busy=vcpu[i] if has_vcpu[i] else no_vcpu, host_busy=hb, hbm_frac=hf, tensor_active=ta,
        exposed_comm=cm, input_wait=wt, mem_frac_max=dv / cap if cap else 0.0, mem_dev_max=dv, capacity=cap,
        events=w.events, training=w.training, busbw_frac=bb, link_frac=lf,
    ) for i, (u, fl, hb, hf, ta, cm, wt, bb, lf, dv) in enumerate(cols)]


def _present(a: np.ndarray, present: bool | np.ndarray) -> list[float | None]:
    """Each window's figure, or None where the window lacks it."""
    ok = np.broadcast_to(present, a.shape).tolist()
    return [v if p else None for v, p in zip(a.tolist(), ok, strict=True)]


def _sev(loss: float) -> str:
    return "critical" if loss >= 0.4 else "warning" if loss >= 0.15 else "info"


def compute(samples: Sequence[Sample], threshold: float = DEFAULT_THRESHOLD,
            window_s: float = DEFAULT_WINDOW_S) -> list[Hint]:
    """Ranked hints for the last `window_s` seconds of `samples` (most important first)."""
    ws = window(samples, window_s)
    if not ws:
        return []
    return rank(stats(ws), threshold)


def rank(st: WindowStats, threshold: float = DEFAULT_THRESHOLD) -> list[Hint]:
    """The hints a window's statistics support, most important first."""
    hints: list[Hint] = []
    hints += _advisories(st)
    if st.util < threshold:
        hints += _bottlenecks(st, threshold)
    hints.sort(key=lambda h: (h.kind != "bottleneck" or h.cause == "unexplained", -h.score,
                              SEVERITY_RANK[h.severity]))
    return hints


def _bottlenecks(st: WindowStats, threshold: float) -> list[Hint]:
    out: list[Hint] = []
    util = st.util
    lost = 1 - util / 100
    cu = st.core_util
    alloc = st.allocated
    busy = alloc & (cu >= 20)
    idle = alloc & (cu < 5)
    explained = 0.0

    # Idle allocated cores: hold memory, do nothing, while their peers work.
    if busy.any() and idle.sum() >= max(1, 0.1 * alloc.sum()):
        k, m = int(idle.sum()), int(alloc.sum())
        share = k / max(1, st.n)
        out.append(Hint(
            "idle_cores", "bottleneck", _sev(share), 0.9, f"{k} of {m} allocated NeuronCores are idle",
            (Evidence("idle allocated cores", k, "cores"), Evidence("allocated cores", m, "cores"),
             Evidence("busy cores' utilisation", float(cu[busy].mean()), "%"),
             Evidence("average utilisation", util, "%")),
            f"give the {k} idle cores work (one worker per core, e.g. torchrun --nproc_per_node={m}) "
            f"or release them (NEURON_RT_VISIBLE_CORES) for another job", "cores", share))
        explained += share

    # Straggler: one core (or a few) busy all the time while its collective peers wait for it.
    working = alloc & (cu >= 5)
    if working.sum() >= 2:
        idx = np.where(working)[0]
        # A straggler sits far above the median of the *other* working cores (works for 2 cores too).
        others_med = {int(i): float(np.median(cu[idx[idx != i]])) for i in idx}
        hi = np.array([i for i in idx if cu[i] >= 80 and cu[i] >= others_med[int(i)] + 25], dtype=int)
        if 0 < len(hi) <= max(1, int(0.125 * working.sum())):
            peers = float(np.delete(cu, hi)[np.delete(working, hi)].mean())
            core = int(hi[0])
            share = (100 - peers) / 100
            out.append(Hint(
                "straggler", "bottleneck", _sev(share), 0.85,
                f"core {core} is a straggler: busy {cu[core]:.1f} % while its peers wait",
                (Evidence(f"NC{core} utilisation", float(cu[core]), "%"),
                 Evidence("peer cores' utilisation", peers, "%"),
                 Evidence("cores this slow", len(hi), "")),
                f"inspect core {core} (throttling, ECC errors, a different input shape or kernel); "
                f"exclude it or rebalance work so that its {plural(int(working.sum()) - len(hi), 'peer')} stop "
                f"waiting at each collective",
                "cores", share))
            explained += share

    # Input pipeline: the device waits for batches; one or a few host threads are saturated.
    hot = st.vcpu_busy >= 85 if len(st.vcpu_busy) else np.zeros(0, dtype=bool)
    n_hot = int(hot.sum())
    rest = float(st.vcpu_busy[~hot].mean()) if len(st.vcpu_busy) and (~hot).any() else 0.0
    few_hot = 0 < n_hot <= max(2, len(st.vcpu_busy) // 4) and rest < 40
    ext_input = st.input_wait is not None and st.input_wait >= 0.1
    if ext_input or (not st.has_ext and few_hot):
        share = st.input_wait if st.input_wait is not None else lost
        ev = []
        if st.input_wait is not None:
            ev.append(Evidence("device waiting for input", st.input_wait * 100, "%"))
        if n_hot:
            ev.append(Evidence("saturated vCPUs (>= 85 %)", n_hot, "vCPUs"))
            ev.append(Evidence("other vCPUs busy", rest, "%"))
        ev.append(Evidence("average utilisation", util, "%"))
        w_now = n_hot if n_hot else None
        act = (f"raise the data-loader workers from {w_now} to {max(8, 4 * w_now)} (DataLoader num_workers)"
               if w_now else "raise the data-loader workers (DataLoader num_workers)")
        out.append(Hint(
            "input_pipeline", "bottleneck", _sev(share), 0.9 if st.has_ext else 0.6,
            "input pipeline bound: the device waits for batches" + (
                f" while {plural(n_hot, 'host thread')} {'is' if n_hot == 1 else 'are'} saturated" if n_hot else ""),
            tuple(ev), act + ", or pre-tokenise and pack the data set offline", "vcpu", share))
        explained += share

    if st.has_ext:
        # Communication: collectives on the critical path.
        if st.exposed_comm is not None and st.exposed_comm >= 0.2:
            ev = [Evidence("time in exposed collectives", st.exposed_comm * 100, "%")]
            if st.busbw_frac is not None:
                ev.append(Evidence("bus bandwidth / link bandwidth", st.busbw_frac * 100, "%"))
            ev.append(Evidence("average utilisation", util, "%"))
            out.append(Hint(
                "communication", "bottleneck", _sev(st.exposed_comm), 0.85,
                "communication bound: cores wait for collectives", tuple(ev),
                "overlap the gradient all-reduce with the backward pass (bucketed all-reduce), raise the "
                "gradient accumulation, and check the links and EFA for degraded bandwidth", "interconnect",
                st.exposed_comm))
            explained += st.exposed_comm
        # HBM bandwidth: streaming at a large share of the peak with low arithmetic intensity.
        if st.hbm_frac is not None and st.hbm_frac >= 0.5:
            t = st.training
            tok = (t.micro_batch * t.seq) if t is not None and t.micro_batch else 0
            ev = [Evidence("HBM bandwidth used (busy cores)", st.hbm_frac * 100, "%"),
                  Evidence("FLOP/s of bf16 peak", st.flops / st.peak * 100 if st.peak else 0.0, "%"),
                  Evidence("average utilisation", util, "%")]
            if tok:
                ev.append(Evidence("tokens per micro-batch", tok, "tokens"))
            act = ("double the micro-batch" + (f" (from {t.micro_batch} x {t.seq} tokens)" if tok else "")
                   + " or fuse element-wise ops to raise arithmetic intensity")
            share = max(0.0, lost)
            out.append(Hint("hbm_bandwidth", "bottleneck", _sev(share), 0.8,
                            "HBM-bandwidth bound: low arithmetic intensity", tuple(ev), act, "memory", share))
            explained += share
        elif (st.training is not None and st.training.micro_batch and
              st.training.micro_batch * st.training.seq < 512 and st.hbm_frac is not None):
            t = st.training
            share = max(0.0, lost - explained)
            out.append(Hint(
                "small_batch", "bottleneck", _sev(share), 0.6, "small batch: per-op overheads dominate",
                (Evidence("tokens per micro-batch", t.micro_batch * t.seq, "tokens"),
                 Evidence("HBM bandwidth used", (st.hbm_frac or 0) * 100, "%"),
                 Evidence("average utilisation", util, "%")),
                f"double the micro-batch (from {t.micro_batch}) and cut gradient accumulation to match",
                "cores", share))
            explained += share

    # Host synchronisation: device and host both mostly idle, and nothing else explains it.
    if not out:
        host_idle = st.host_busy < 30 and n_hot == 0
        if st.has_ext and host_idle and (st.input_wait or 0) < 0.05 and (st.exposed_comm or 0) < 0.1 \
                and (st.hbm_frac or 0) < 0.5:
            out.append(Hint(
                "host_sync", "bottleneck", _sev(lost), 0.7,
                "host synchronisation: device and host both mostly idle",
                (Evidence("average utilisation", util, "%"), Evidence("host CPU busy", st.host_busy, "%"),
                 Evidence("device waiting for input", (st.input_wait or 0) * 100, "%"),
                 Evidence("time in exposed collectives", (st.exposed_comm or 0) * 100, "%")),
                "remove per-step host synchronisation (loss.item(), print, tensor.cpu() in the loop); "
                "log every N steps asynchronously and keep graph building out of the step", "cores", lost))
        else:
            ev = [Evidence("average utilisation", util, "%"), Evidence("threshold", threshold, "%")]
            if len(st.vcpu_busy):
                ev.append(Evidence("host CPU busy", st.host_busy, "%"))
            out.append(Hint(
                "unexplained", "bottleneck", "info", 0.3,
                f"utilisation {util:.1f} % is below {threshold:.0f} %; this telemetry cannot tell why",
                tuple(ev),
                "capture per-engine activity (neuron-profile) or run under the simulator's extension to "
                "separate host synchronisation, communication and memory stalls", "cores", 0.0))
    return out


def _advisories(st: WindowStats) -> list[Hint]:
    out: list[Hint] = []
    for e in st.events:
        if e.get("type") == "oom":
            out.append(Hint(
                "out_of_memory", "advisory", "critical", 1.0, "out of device memory",
                (Evidence("requested per core", e.get("requested_bytes", 0) / 2**30, "GiB"),
                 Evidence("capacity per core", e.get("capacity_bytes", 0) / 2**30, "GiB")),
                "shard the optimizer state (ZeRO-1), enable activation checkpointing or halve the micro-batch",
                "memory", 1.0))
            break
    if st.capacity and st.mem_frac_max >= 0.90:
        out.append(Hint(
            "hbm_capacity", "advisory", "warning" if st.mem_frac_max < 0.97 else "critical", 0.95,
            f"device memory {st.mem_frac_max * 100:.1f} % full",
            (Evidence("device memory used", st.mem_frac_max * 100, "%"),
             Evidence("used on fullest device", st.mem_dev_max / 2**30, "GiB"),
             Evidence("capacity per device", st.capacity / 2**30, "GiB")),
            "free tensors kept across steps, shard optimizer state (ZeRO-1) or enable activation "
            "checkpointing before a larger batch runs out of memory", "memory", st.mem_frac_max))
    if st.util >= 50 and st.has_flops and st.peak:
        if st.has_ext and st.tensor_active:
            productive = st.flops / (st.tensor_active * st.peak) if st.tensor_active else 1.0
            limit = 0.35
            cond = productive < limit and (st.hbm_frac or 0) < 0.5
        else:
            # Without per-engine data a memory-bound kernel also looks unproductive; only a core
            # that is busy nearly all the time at an fp32-like rate supports the claim.
            productive = st.flops / (st.util / 100 * st.peak)
            limit = 0.2
            cond = productive < limit and st.util >= 80
        if cond:
            out.append(Hint(
                "fp32_precision", "advisory", "warning", 0.8 if st.has_ext else 0.5,
                "busy but not productive: FLOP rate fits fp32, not bf16",
                (Evidence("average utilisation", st.util, "%"),
                 Evidence("FLOP/s per core", st.flops / 1e12, "TFLOP/s"),
                 Evidence("FLOP/s of bf16 peak while busy", productive * 100, "%")),
                "enable bf16 autocast (or XLA_USE_BF16=1) and keep fp32 master weights in the optimizer",
                "cores", 1 - productive))
    return out


class HintTracker:
    """Hysteresis: a cause shows after it held for `on_s` and clears after absent for `off_s`."""

    def __init__(self, on_s: float = 3.0, off_s: float = 5.0) -> None:
        self.on_s, self.off_s = on_s, off_s
        self.first_seen: dict[str, float] = {}
        self.last_seen: dict[str, float] = {}
        self.shown: dict[str, Hint] = {}

    def update(self, hints: Sequence[Hint], now: float) -> list[Hint]:
        present = {h.cause: h for h in hints}
        for cause, h in present.items():
            self.first_seen.setdefault(cause, now)
            self.last_seen[cause] = now
            if cause in self.shown or now - self.first_seen[cause] >= self.on_s:
                self.shown[cause] = h
        for cause in list(self.first_seen):
            if cause not in present:
                if cause in self.shown and now - self.last_seen[cause] < self.off_s:
                    continue
                self.first_seen.pop(cause, None)
                self.shown.pop(cause, None)
        order = {h.cause: i for i, h in enumerate(hints)}
        return sorted(self.shown.values(), key=lambda h: (order.get(h.cause, len(order)), -h.score))

    def reset(self) -> None:
        self.first_seen.clear()
        self.last_seen.clear()
        self.shown.clear()


class HintMonitor:
    """Hints over a stream: a sliding window, evaluation at most once a second of stream time, the
    hysteresis, and the changes as events (for the recorder). Shared by the live view, replay,
    `record` and `export`."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, window_s: float = DEFAULT_WINDOW_S,
                 every_s: float = 1.0) -> None:
        import collections

        self.threshold, self.window_s, self.every_s = threshold, window_s, every_s
        self.window: collections.deque[Sample] = collections.deque()
        self.tracker = HintTracker()
        self.shown: list[Hint] = []
        self._at = -1e18

    def reset(self) -> None:
        self.window.clear()
        self.tracker.reset()
        self.shown = []
        self._at = -1e18

    def feed(self, s: Sample) -> list[dict]:
        """Add a sample; return hint events ({"event": "start"|"end", "cause": ...}) if the shown set changed."""
        if self.window and s.time_s < self.window[-1].time_s:
            self.reset()  # the stream restarted
        self.window.append(s)
        while self.window and self.window[0].time_s <= s.time_s - self.window_s - 1e-9:
            self.window.popleft()
        if s.time_s - self._at < self.every_s - 1e-9:
            return []
        self._at = s.time_s
        before = {h.cause for h in self.shown}
        self.shown = self.tracker.update(compute(list(self.window), self.threshold, self.window_s), s.time_s)
        after = {h.cause: h for h in self.shown}
        events = [{"event": "start", **h.to_dict()} for c, h in after.items() if c not in before]
        events += [{"event": "end", "cause": c} for c in sorted(before - set(after))]
        return events


class _Dims:
    """The training figures a rule reads (micro-batch and sequence length), from batch columns."""

    __slots__ = ("micro_batch", "seq")

    def __init__(self, micro_batch: int, seq: int) -> None:
        self.micro_batch, self.seq = micro_batch, seq


def _window_of_batches(segs: list, stream: bool = False) -> WindowArrays:
    """window_arrays() for rows [a, e) of batches (batch.Batch), oldest first. With `stream` the
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
    t = _Dims(int(last.micro_batch[e_last - 1]), int(last.seq_len[e_last - 1])) if lay.has_training else None
    events = [ev for b, a, e in segs for i in range(a, e) for ev in b.events.get(i, ())] \
        if any(b.events for b, _, _ in segs) else []
    return WindowArrays(
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


def _since(segs: list, thr: float) -> list:
    """The rows of (batch, a, e) segments later than time `thr` (each segment's times ascend)."""
    out = []
    for b, a, e in segs:
        k = a + int(np.searchsorted(b.time_s[a:e], thr, side="right"))
        if k < e:
            out.append((b, k, e))
    return out


class BatchHintMonitor:
    """HintMonitor for batches of samples (batch.Batch): the same window, evaluation times and
    hysteresis, so an export's hint columns match what the live view showed."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, window_s: float = DEFAULT_WINDOW_S,
                 every_s: float = 1.0) -> None:
        self.threshold, self.window_s, self.every_s = threshold, window_s, every_s
        self.tracker = HintTracker()
        self.shown: list[Hint] = []
        self._at = -1e18
        self._tail: list = []  # earlier batches' rows that the next window may still reach: (batch, a, e)

    def feed(self, b, causes: Sequence[str]) -> np.ndarray:
        """[rows, causes] bool: the causes shown after each row of batch `b`."""
        n = len(b)
        out = np.zeros((n, len(causes)), dtype=bool)
        if not n:
            return out
        col = {c: i for i, c in enumerate(causes)}
        tl = b.time_s.tolist()
        tail = self._tail
        if tail and tl[0] < tail[-1][0].time_s[tail[-1][2] - 1]:
            tail = []
            self._reset()
        cuts = [r for r in range(1, n) if tl[r] < tl[r - 1]]  # the stream restarted
        for a, e in zip([0, *cuts], [*cuts, n], strict=True):
            if a:
                tail = []
                self._reset()
            self._piece(b, a, e, tail, out, col)
        self._tail = _since([*tail, (b, cuts[-1] if cuts else 0, n)], tl[-1] - self.window_s - 1e-9)
        return out

    def _piece(self, b, a: int, e: int, tail: list, out: np.ndarray, col: dict[str, int]) -> None:
        """Rows [a, e) of `b`, one stream after `tail`: evaluate where due, fill `out`."""
        tl = b.time_s.tolist()
        evals = []
        for r in range(a, e):
            if tl[r] - self._at >= self.every_s - 1e-9:
                self._at = tl[r]
                evals.append(r)

        def mask() -> np.ndarray:
            m = np.zeros(len(col), dtype=bool)
            m[[col[h.cause] for h in self.shown if h.cause in col]] = True
            return m

        out[a:evals[0] if evals else e] = mask()
        for q, (r, st) in enumerate(zip(evals, self._stats(b, a, tail, evals), strict=True)):
            self.shown = self.tracker.update(rank(st, self.threshold), tl[r])
            out[r:evals[q + 1] if q + 1 < len(evals) else e] = mask()

    def _stats(self, b, a: int, tail: list, evals: list[int]) -> list[WindowStats]:
        """The statistics of the window ending at each row in `evals` (rows of `b` from `a` on,
        after `tail`): all at once when every row shares the batch's layout, else one by one."""
        if not evals:
            return []
        t = b.time_s
        thr = [float(t[r]) - self.window_s - 1e-9 for r in evals]
        segs = [*tail, (b, a, evals[-1] + 1)]
        if any(sb.layout != b.layout for sb, _, _ in segs):
            out = []
            for r, th in zip(evals, thr, strict=True):
                lo = a + int(np.searchsorted(t[a:r + 1], th, side="right"))
                out.append(stats_of(_window_of_batches([*(_since(tail, th) if lo == a else []), (b, lo, r + 1)])))
            return out
        w = _window_of_batches(segs, stream=True)
        times = np.concatenate([sb.time_s[sa:se] for sb, sa, se in segs])
        off = len(times) - (evals[-1] + 1 - a)  # the stream's row of batch row a
        hi = np.asarray(evals) - a + off + 1
        lo = np.minimum(np.searchsorted(times, thr, side="right"), hi)  # (times ascend: as searching times[:hi])
        stats = stats_of_windows(w, np.stack([lo, hi], axis=1), vcpu_below=self.threshold)
        ok = np.concatenate([[0], np.cumsum(~np.concatenate([sb.flops_ok[sa:se] for sb, sa, se in segs]))])
        has_events = any(sb.events for sb, _, _ in segs)
        rows = [(sb, i) for sb, sa, se in segs for i in range(sa, se)] if has_events else []
        lay = b.layout
        for st, r, x, y in zip(stats, evals, lo.tolist(), hi.tolist(), strict=True):
            if ok[y] != ok[x]:  # a row of the window lacks FLOP rates
                st.has_flops, st.flops = False, 0.0
            st.training = _Dims(int(b.micro_batch[r]), int(b.seq_len[r])) if lay.has_training else None
            st.events = [ev for sb, i in rows[x:y] for ev in sb.events.get(i, ())]
        return stats

    def _reset(self) -> None:
        self.tracker.reset()
        self.shown = []
        self._at = -1e18
