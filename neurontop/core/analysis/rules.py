"""The hint rules: one object per cause, in a registry, run in phases over a window's statistics.

A rule reads only what real telemetry carries: neuron-monitor's fields and the `neuron_top`
extension (never its `truth`). A rule whose signals the window lacks (None: plain neuron-monitor
data has no per-engine, HBM, link or input-pipeline counters) is not run, so plain data says less
rather than guessing; a low-utilisation window that no rule explains is reported as `unexplained`.

Phases, in order: advisories (any utilisation); below the utilisation threshold the primary causes,
then the remainder (what the primaries left unexplained), the residual cause (only when nothing
else fired) and `unexplained` (only when no bottleneck fired). Adding a cause is one `@rule` here.
The registry's order is the order of the export's hint columns (export/exporter.py) and of the
cause table in docs/hints.md, which `causes_table()` generates (a test compares them).

(About 700 lines: nineteen rules, each with its conditions, evidence and action, and the host
signals several of them share (`host`, `slow_core`), kept in one file so that the registry's order,
which is the export's column order, is the order they are read in.)
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np

from ..telemetry.units import core_name, format_evidence, plural
from .thresholds import DEFAULTS, Thresholds
from .window import WindowStats

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
    kind: str  # "bottleneck", "advisory", or "phase" (warm-up: information, not a problem)
    severity: str  # "critical", "warning", "info"
    confidence: float  # 0..1
    title: str
    evidence: tuple[Evidence, ...]
    action: str
    pane: str  # the pane the UI highlights: cores, memory, interconnect, vcpu
    score: float = 0.0  # share of the window this cause explains, for ranking and the time-loss breakdown
    lacked: tuple[str, ...] = ()  # signals that would have told more, absent from this telemetry

    def to_dict(self) -> dict:
        d = {
            "cause": self.cause, "kind": self.kind, "severity": self.severity,
            "confidence": round(self.confidence, 2), "title": self.title,
            "evidence": [{"name": e.name, "value": round(e.value, 4), "unit": e.unit} for e in self.evidence],
            "action": self.action,
        }
        if self.lacked:
            d["lacked"] = list(self.lacked)
        return d


class Phase(enum.IntEnum):
    ADVISORY = 0  # at any utilisation
    PRIMARY = 1  # below the threshold: causes that stand on their own signals
    REMAINDER = 2  # what the primary causes left unexplained
    UNEXPLAINED = 3  # only when no bottleneck fired


# Findings that end the diagnosis of a window: a crashed or stuck job has no bottleneck, and a
# warm-up is a phase of the run, not a steady state to tune. The first of these is the top finding.
STOPS = ("out_of_memory", "warm_up", "hang")


Evaluate = Callable[[WindowStats, Thresholds, Sequence[Hint]], "Hint | None"]


@dataclass(frozen=True)
class Rule:
    cause: str
    kind: str  # "bottleneck" or "advisory"
    phase: Phase
    pane: str  # the pane the UI points at
    needs: tuple[str, ...]  # WindowStats fields that must not be None for the rule to run
    telemetry: str  # what it needs, for the docs: "no" (plain neuron-monitor), "yes" (the extension), "either"
    when: Callable[[Thresholds], str]  # the signals and thresholds, in words (docs/hints.md)
    why: str
    evaluate: Evaluate

    def applies(self, st: WindowStats) -> bool:
        return all(getattr(st, f) is not None for f in self.needs)


RULES: list[Rule] = []


def rule(cause: str, kind: str, phase: Phase, pane: str, *, needs: tuple[str, ...] = (), telemetry: str,
         when: Callable[[Thresholds], str], why: str) -> Callable[[Evaluate], Evaluate]:
    """Register the decorated function as the rule for `cause`."""
    def register(fn: Evaluate) -> Evaluate:
        add(Rule(cause, kind, phase, pane, needs, telemetry, when, why, fn))
        return fn
    return register


def add(r: Rule) -> None:
    if any(x.cause == r.cause for x in RULES):
        raise ValueError(f"a rule for {r.cause!r} is registered already")
    RULES.append(r)
    _PHASE[r.cause] = r.phase


@contextmanager
def registered(r: Rule) -> Iterator[Rule]:
    """A rule registered for the duration of a with-block (tests, plug-ins)."""
    add(r)
    try:
        yield r
    finally:
        RULES.remove(r)


def causes() -> tuple[str, ...]:
    """Every cause, in the registry's order (the export's hint columns)."""
    return tuple(r.cause for r in RULES)


def bottleneck_causes() -> tuple[str, ...]:
    """The causes the time-loss breakdown splits the lost utilisation among (the export's lost columns)."""
    return tuple(r.cause for r in RULES if r.kind == "bottleneck")


def rank(st: WindowStats, th: Thresholds = DEFAULTS) -> list[Hint]:
    """The hints a window's statistics support, most important first."""
    found: list[Hint] = []
    for phase in Phase:
        if phase > Phase.ADVISORY and (st.util >= th.util_below or any(h.cause in STOPS for h in found)
                                       or not st.allocated.any()):
            break  # healthy, crashed, warming up, or no job on the device: no bottleneck to name
        for r in RULES:
            if r.phase == phase and r.applies(st):
                h = r.evaluate(st, th, found)
                if h is not None:
                    found.append(h)
    if st.rows < th.few_reports:  # one report, or a few: an answer, with low confidence
        found = [replace(h, confidence=h.confidence * 0.6) if h.cause != "out_of_memory" else h for h in found]
    binding = any(binds(h) for h in found)
    found.sort(key=lambda h: (*precedence(h, binding), -h.score, SEVERITY_RANK[h.severity]))
    return found


WAIT = "device waiting for input"  # the input pipeline's measured wait (extension)
_PHASE: dict[str, Phase] = {}  # cause -> its rule's phase (filled as rules register)


def binds(h: Hint) -> bool:
    """An input-pipeline finding with the extension's measured wait: the device has time to spare."""
    return h.cause == "input_pipeline" and bool(h.evidence) and h.evidence[0].name == WAIT


def precedence(h: Hint, binding: bool) -> tuple[bool, bool, bool, bool]:
    """The first part of a finding's sort key (rank, diagnose): the findings that stop a diagnosis,
    then bottlenecks (`unexplained` last), and a measured input wait before device-side causes: a
    device that waits for input has time to spare, so removing a device-side cause alone would not
    raise throughput (idle cores aside, which add throughput of their own). Without the measured
    wait (`binding`: some finding `binds`), the causes rank by their shares."""
    remainder = _PHASE.get(h.cause, Phase.PRIMARY) == Phase.REMAINDER  # what the primaries left: after them
    return (h.cause not in STOPS, h.kind != "bottleneck",
            binding and h.cause not in ("input_pipeline", "idle_cores", "unexplained"), remainder)


def breakdown(st: WindowStats, hints: Sequence[Hint]) -> dict[str, float]:
    """The utilisation lost below 100 %, in points, split among the bottlenecks in rank order (each
    takes at most its own share, no more than is left); what none explains is `unexplained`."""
    lost = max(0.0, 100.0 - st.util)
    out: dict[str, float] = {}
    left = lost
    for h in hints:
        if h.kind != "bottleneck" or h.cause == "unexplained":
            continue
        take = min(left, max(0.0, h.score) * 100)
        if take > 0:
            out[h.cause] = take
            left -= take
    if left > 0.05 and lost > 0:
        out["unexplained"] = left
    return out


def severity(share: float, th: Thresholds) -> str:
    return "critical" if share >= th.critical_share else "warning" if share >= th.warning_share else "info"


def _lost(st: WindowStats) -> float:
    return 1 - st.util / 100


@dataclass(frozen=True)
class Host:
    """Who works when, from what plain neuron-monitor carries, each derived once here.

    device: the working cores' busy share; main: the training process's busiest thread (its CPU in
    cores, at most one; else the busiest vCPU); loaders: host cores busy outside the training process
    (data-loader workers are processes of their own); cover: the share of the window a graph runs on
    the device (executions/s x device latency). None where the telemetry lacks it."""

    device: float
    main: float | None
    main_from: str  # what `main` was read from
    loaders: float | None
    cover: float | None
    host_work: float | None = None  # host cores busy beyond what idle vCPUs show
    work_frac: float = 1.0  # the working cores' share of all cores: a per-core loss times this is the job's

    def lacked(self) -> tuple[str, ...]:
        out = []
        if self.cover is None:
            out.append("execution_stats (executions and their latencies)")
        if self.main_from != "process":
            out.append("neuron_runtime_vcpu_usage (the training process's CPU)")
        return tuple(out)


def host(st: WindowStats, th: Thresholds) -> Host:
    """The window's host signals, worked out once per window and thresholds (several rules read them)."""
    key = ("host", th)
    if key not in st.cache:
        st.cache[key] = _host(st, th)
    return st.cache[key]


def _host(st: WindowStats, th: Thresholds) -> Host:
    working_cores = st.allocated & (st.core_util >= th.idle_core_pct)
    device = float(st.core_util[working_cores].mean()) / 100 if working_cores.any() else st.util / 100
    if st.proc_cores is not None:
        main, src = min(1.0, st.proc_cores), "process"
    elif len(st.vcpu_busy):
        main, src = float(st.vcpu_busy.max()) / 100, "busiest vCPU"
    else:
        main, src = None, "none"
    loaders: float | None = None
    working: float | None = None
    if st.host_cores is not None:
        # What an idle vCPU shows anyway (daemons, interrupts) is not work: the quietest vCPUs'
        # level, at most `idle_vcpu_pct`, on every vCPU.
        v = st.vcpu_busy
        floor = min(float(np.percentile(v, 20)), th.idle_vcpu_pct) / 100 * len(v) if len(v) else 0.0
        working = max(0.0, st.host_cores - floor)
        if st.proc_cores is not None:
            loaders = max(0.0, working - st.proc_cores)
        elif main is not None and len(v):
            loaders = max(0.0, working - main)  # the busiest vCPU stands for the main thread
    frac = float(working_cores.sum()) / max(1, st.n) if working_cores.any() else 1.0
    return Host(device, main, src, loaders, st.dev_cover, working, frac)


def slow_core(st: WindowStats, th: Thresholds) -> tuple[int, float, int] | None:
    """(the straggler core, its peers' mean utilisation, how many are that slow): a working core far above the median of the
    *other* working cores (works for 2 cores too), at most `straggler_max_share` of them."""
    cu = st.core_util
    working = st.allocated & (cu >= th.idle_core_pct)
    if working.sum() < 2:
        return None
    idx = np.where(working)[0]
    others_med = {int(i): float(np.median(cu[idx[idx != i]])) for i in idx}
    hi = np.array([i for i in idx if cu[i] >= th.straggler_pct and cu[i] >= others_med[int(i)] + th.straggler_gap_pct
                   and cu[i] >= th.straggler_ratio * others_med[int(i)]], dtype=int)
    if not 0 < len(hi) <= max(1, int(th.straggler_max_share * working.sum())):
        return None
    return int(hi[0]), float(np.delete(cu, hi)[np.delete(working, hi)].mean()), len(hi)


def _job(st: WindowStats, hs: Host, per_core: float) -> float:
    """A loss on each working core as a share of the whole job's utilisation (idle cores aside)."""
    return max(0.0, min(_lost(st), per_core * hs.work_frac))


def _pct(x: float) -> str:
    return f"{x * 100:g} %"


# -- the rules, in the order of the export's columns ----------------------------------------------
@rule("input_pipeline", "bottleneck", Phase.PRIMARY, "vcpu", telemetry="either (lower confidence without)",
      when=lambda th: f"extension: device waiting for input >= {_pct(th.input_wait)} of the window; plain data: "
                      f"no graph runs on the device (or, without execution_stats, the device idles) >= "
                      f"{_pct(th.input_gap)} of the window while >= {th.loader_cores:g} host cores outside the process are busy "
                      "(data-loader workers) and the main thread is not saturated",
      why="the training loop waits for batches that its data-loader workers, working flat out, cannot make faster")
def _input_pipeline(st: WindowStats, th: Thresholds, found: Sequence[Hint]) -> Hint | None:
    hs = host(st, th)
    ev = []
    if st.input_wait is not None:
        if st.input_wait < th.input_wait:
            return None
        share, conf = _job(st, hs, st.input_wait), 0.9
        ev.append(Evidence(WAIT, st.input_wait * 100, "%"))
    else:
        if hs.main is None or hs.loaders is None or hs.main >= th.saturated or hs.loaders < th.loader_cores:
            return None
        gap = 1 - hs.cover if hs.cover is not None else 1 - hs.device
        if gap < th.input_gap:
            return None
        share, conf = _job(st, hs, gap), 0.75 if hs.cover is not None else 0.6
        ev.append(Evidence("device idle between graphs" if hs.cover is not None else "device idle", gap * 100, "%"))
    if hs.loaders is not None:
        ev.append(Evidence("host cores busy outside the training process", hs.loaders, "cores"))
    if hs.main is not None:
        ev.append(Evidence("training process's main thread busy", hs.main * 100, "%"))
    ev.append(Evidence("average utilisation", st.util, "%"))
    return Hint(
        "input_pipeline", "bottleneck", severity(share, th), conf,
        "input pipeline bound: the device waits for batches", tuple(ev),
        "raise the data-loader workers (DataLoader num_workers) and prefetching, or pre-tokenise and pack the "
        "data set offline", "vcpu", share, hs.lacked())


@rule("communication", "bottleneck", Phase.PRIMARY, "interconnect", telemetry="either (lower confidence without)",
      when=lambda th: f"extension: collectives on the critical path (`exposed_s`) >= {_pct(th.exposed_comm)} of the "
                      f"window; plain data: a graph runs on the device >= {_pct(th.stall_cover)} of the window (executions/s "
                      f"x device latency) while the engines idle >= {_pct(th.stall_idle)} of it, more than the device idles "
                      f"between graphs, on a job of several cores whose engines run at >= {_pct(th.comm_productive)} of the "
                      "bf16 peak while busy (large matmuls: not an HBM-bound kernel)",
      why="the device is inside its graphs but its engines wait: with efficient matmuls, for the collectives")
def _communication(st: WindowStats, th: Thresholds, found: Sequence[Hint]) -> Hint | None:
    comm = st.exposed_comm
    if comm is not None:
        if comm < th.exposed_comm:
            return None
        ev = [Evidence("time in exposed collectives", comm * 100, "%")]
        if st.busbw_frac is not None:
            ev.append(Evidence("bus bandwidth / link bandwidth", st.busbw_frac * 100, "%"))
        share, conf = _job(st, host(st, th), comm), 0.85
    else:
        hs = host(st, th)
        working = int((st.allocated & (st.core_util >= th.idle_core_pct)).sum())
        if hs.cover is None or not (st.has_flops and st.peak and st.util) or working < 2:
            return None
        if slow_core(st, th) is not None:
            return None  # the peers wait at the collectives for a straggler: its finding says so
        inside = min(hs.cover, 1.0) - hs.device
        productive = st.flops / (st.util / 100 * st.peak)
        if hs.cover < th.stall_cover or inside < th.stall_idle or inside < 1 - min(hs.cover, 1.0) \
                or productive < th.comm_productive:
            return None
        ev = [Evidence("device executing a graph", hs.cover * 100, "%"),
              Evidence("engines idle inside graphs", inside * 100, "%"),
              Evidence("FLOP/s of bf16 peak while busy", productive * 100, "%")]
        share, conf = _job(st, hs, inside), 0.6
    ev.append(Evidence("average utilisation", st.util, "%"))
    return Hint(
        "communication", "bottleneck", severity(share, th), conf,
        "communication bound: cores wait for collectives", tuple(ev),
        "overlap the gradient all-reduce with the backward pass (bucketed all-reduce), raise the "
        "gradient accumulation, and check the links and EFA for degraded bandwidth", "interconnect", share,
        () if comm is not None else ("collective counters (neuron-profile) to confirm",))


@rule("hbm_bandwidth", "bottleneck", Phase.PRIMARY, "memory", needs=("hbm_frac",), telemetry="yes",
      when=lambda th: f"HBM bytes/s on busy cores >= {_pct(th.hbm_bandwidth)} of the per-core bandwidth during "
                      "low utilisation",
      why="low arithmetic intensity (small micro-batches) streams weights faster than the engines use them")
def _hbm_bandwidth(st: WindowStats, th: Thresholds, found: Sequence[Hint]) -> Hint | None:
    if not st.has_ext or st.hbm_frac is None or st.hbm_frac < th.hbm_bandwidth:
        return None
    t = st.training
    tok = (t.micro_batch * t.seq) if t is not None and t.micro_batch else 0
    ev = [Evidence("HBM bandwidth used (busy cores)", st.hbm_frac * 100, "%"),
          Evidence("FLOP/s of bf16 peak", st.flops / st.peak * 100 if st.peak else 0.0, "%"),
          Evidence("average utilisation", st.util, "%")]
    if tok:
        ev.append(Evidence("tokens per micro-batch", tok, "tokens"))
    act = ("double the micro-batch" + (f" (from {t.micro_batch} x {t.seq} tokens)" if t is not None and tok else "")
           + " or fuse element-wise ops to raise arithmetic intensity")
    hs = host(st, th)
    share = _job(st, hs, 1 - hs.device - (st.exposed_comm or 0.0) - (st.input_wait or 0.0))
    return Hint("hbm_bandwidth", "bottleneck", severity(share, th), 0.8,
                "HBM-bandwidth bound: low arithmetic intensity", tuple(ev), act, "memory", share)


@rule("small_batch", "bottleneck", Phase.REMAINDER, "cores", needs=("hbm_frac", "training"), telemetry="yes",
      when=lambda th: f"< {th.small_batch_tokens} tokens per micro-batch with HBM < {_pct(th.hbm_bandwidth)}: "
                      "per-op overheads dominate (the share the causes above left)",
      why="tiny ops leave the engines idle between instructions")
def _small_batch(st: WindowStats, th: Thresholds, found: Sequence[Hint]) -> Hint | None:
    t = st.training
    if not st.has_ext or st.hbm_frac is None or st.hbm_frac >= th.hbm_bandwidth or t is None or not t.micro_batch \
            or t.micro_batch * t.seq >= th.small_batch_tokens:
        return None
    share = max(0.0, _lost(st) - sum(h.score for h in found if h.kind == "bottleneck"))
    return Hint(
        "small_batch", "bottleneck", severity(share, th), 0.6, "small batch: per-op overheads dominate",
        (Evidence("tokens per micro-batch", t.micro_batch * t.seq, "tokens"),
         Evidence("HBM bandwidth used", st.hbm_frac * 100, "%"),
         Evidence("average utilisation", st.util, "%")),
        f"double the micro-batch (from {t.micro_batch}) and cut gradient accumulation to match", "cores", share)


@rule("straggler", "bottleneck", Phase.PRIMARY, "cores", telemetry="no",
      when=lambda th: f"a working core >= {th.straggler_pct:g} %, >= {th.straggler_gap_pct:g} points and "
                      f">= {th.straggler_ratio:g}x the median of the other working cores; at most "
                      f"{th.straggler_max_share:g} of the cores",
      why="in synchronous data parallel training, the slow core is the busy one: its peers wait for it at every "
          "collective")
def _straggler(st: WindowStats, th: Thresholds, found: Sequence[Hint]) -> Hint | None:
    cu = st.core_util
    found_slow = slow_core(st, th)
    if found_slow is None:
        return None
    core, peers, k = found_slow
    working = st.allocated & (cu >= th.idle_core_pct)
    if any(h.cause == "hardware_errors" and h.kind == "bottleneck" for h in found):
        return None  # the slow core is on the device with ECC errors: the hardware finding says so
    share = (float(cu[core]) - peers) / 100  # the time its peers wait for it
    name = core_name(core, st.cores_per_device)
    return Hint(
        "straggler", "bottleneck", severity(share, th), 0.85,
        f"core {name} is a straggler: busy {cu[core]:.1f} % while its peers wait",
        (Evidence(f"{name} utilisation", float(cu[core]), "%"),
         Evidence("peer cores' utilisation", peers, "%"),
         Evidence("cores this slow", k, "")),
        f"inspect core {name} (throttling, ECC errors, a different input shape or kernel); "
        f"exclude it or rebalance work so that its {plural(int(working.sum()) - k, 'peer')} stop "
        f"waiting at each collective", "cores", share)


@rule("idle_cores", "bottleneck", Phase.PRIMARY, "cores", telemetry="no",
      when=lambda th: f">= {_pct(th.idle_cores_share)} of allocated cores (>= {th.allocated_bytes / 2**20:g} MiB of "
                      f"device memory, or any activity) below {th.idle_core_pct:g} % while others are >= "
                      f"{th.busy_core_pct:g} %",
      why='memory held but no work is the classic "allocated but idle" fleet waste')
def _idle_cores(st: WindowStats, th: Thresholds, found: Sequence[Hint]) -> Hint | None:
    cu, alloc = st.core_util, st.allocated
    busy = alloc & (cu >= th.busy_core_pct)
    idle = alloc & (cu < th.idle_core_pct)
    if not (busy.any() and idle.sum() >= max(1, th.idle_cores_share * alloc.sum())):
        return None
    k, m = int(idle.sum()), int(alloc.sum())
    share = k / max(1, st.n) * float(cu[busy].mean()) / 100  # what they would add, working as the others do
    return Hint(
        "idle_cores", "bottleneck", severity(share, th), 0.9, f"{k} of {m} allocated NeuronCores are idle",
        (Evidence("idle allocated cores", k, "cores"), Evidence("allocated cores", m, "cores"),
         Evidence("busy cores' utilisation", float(cu[busy].mean()), "%"),
         Evidence("average utilisation", st.util, "%")),
        f"give the {k} idle cores work (one worker per core, e.g. torchrun --nproc_per_node={m}) "
        f"or release them (NEURON_RT_VISIBLE_CORES) for another job", "cores", share)


@rule("host_sync", "bottleneck", Phase.PRIMARY, "cores", telemetry="either (lower confidence without)",
      when=lambda th: f"the device's busy share plus the training process's main thread's >= {_pct(th.turns)} "
                      f"of the window, the main thread >= {_pct(th.host_turn)} and not saturated "
                      f"(< {_pct(th.saturated)}; saturated only between few graphs, < {th.launch_rate:g}/s per "
                      "core), and (with execution_stats) the device idle between graphs rather than inside them",
      why="device and host take turns: each step waits for a result on the host (loss.item(), a print, a "
          "graph rebuild) before the next graph starts")
def _host_sync(st: WindowStats, th: Thresholds, found: Sequence[Hint]) -> Hint | None:
    hs = host(st, th)
    if hs.main is None or hs.main < th.host_turn or hs.device + hs.main < th.turns:
        return None
    # a saturated main thread between few, long graphs is host work per step too (many short graphs
    # at a high rate are the launch-overhead rule's); without execution_stats it cannot be told
    if hs.main >= th.saturated and (st.exec_rate is None or st.exec_rate >= th.launch_rate):
        return None
    if st.exec_rate is not None and st.exec_rate >= th.launch_rate and hs.main >= th.launch_main:
        return None  # a busy main thread between many small graphs is launching them: the launch rule's
    if hs.cover is not None and min(hs.cover, 1.0) - hs.device >= th.stall_idle:
        return None  # the device idles inside its graphs, not between them
    if (st.input_wait or 0) >= th.input_wait or (st.exposed_comm or 0) >= th.exposed_comm:
        return None
    share = _job(st, hs, min(1 - hs.device, hs.main))
    conf = 0.8 if hs.cover is not None and hs.main_from == "process" else 0.6
    return Hint(
        "host_sync", "bottleneck", severity(share, th), conf,
        "host synchronisation: device and host take turns",
        (Evidence("average utilisation", st.util, "%"), Evidence("main thread busy", hs.main * 100, "%"),
         Evidence("device + main thread", (hs.device + hs.main) * 100, "%"),
         # (at a report period shorter than the turns, the utilisation swings between them)
         Evidence("utilisation spread over the window's reports", st.util_swing, "%")),
        "remove per-step host synchronisation (loss.item(), print, tensor.cpu() in the loop); "
        "log every N steps asynchronously and keep graph building out of the step", "cores", share, hs.lacked())


@rule("unexplained", "bottleneck", Phase.UNEXPLAINED, "cores", telemetry="-",
      when=lambda th: "below the threshold, when none of the above is supported or the loss they leave is larger "
                      "than the largest of them",
      why="plain data cannot separate communication from HBM stalls inside a graph, nor every host-side wait, so "
          "neuron-top says what it saw and what would tell instead of guessing")
def _unexplained(st: WindowStats, th: Thresholds, found: Sequence[Hint]) -> Hint | None:
    hs = host(st, th)
    named = [h.score for h in found if h.kind == "bottleneck"]
    rest = max(0.0, _lost(st) - sum(named))
    if named and rest <= max(named):
        return None  # the causes found explain most of the loss
    ev = [Evidence("average utilisation", st.util, "%"), Evidence("threshold", th.util_below, "%")]
    lacked = list(hs.lacked())
    if hs.cover is not None and hs.cover >= th.stall_cover and min(hs.cover, 1.0) - hs.device >= th.stall_idle:
        title = (f"utilisation {st.util:.1f} %: graphs run on the device {hs.cover * 100:.0f} % of the time but its "
                 "engines idle inside them (collectives or HBM stalls)")
        ev.append(Evidence("device executing a graph", hs.cover * 100, "%"))
        act = ("profile one step with neuron-profile: exposed collective time (then overlap the gradient all-reduce, "
               "check EFA and links) or DMA-bound kernels (then raise the micro-batch)")
        lacked.append("collective and per-engine counters (neuron-profile)")
    else:
        title = f"utilisation {st.util:.1f} % is below {th.util_below:.0f} %; this telemetry cannot tell why"
        act = ("profile one step with neuron-profile, and log neuron-monitor with execution_stats and "
               "neuron_runtime_vcpu_usage enabled to separate host waits from device stalls")
    if hs.main is not None:
        ev.append(Evidence("main thread busy", hs.main * 100, "%"))
    if hs.loaders is not None:
        ev.append(Evidence("host cores busy outside the training process", hs.loaders, "cores"))
    return Hint("unexplained", "bottleneck", "info", 0.3, title, tuple(ev), act, "cores", rest, tuple(lacked))


@rule("fp32_precision", "advisory", Phase.ADVISORY, "cores", telemetry="either",
      when=lambda th: f"utilisation >= {th.fp32_util_pct:g} % and FLOP/s below {_pct(th.fp32_productive_ext)} of the "
                      f"bf16 peak per unit of tensor-engine activity (extension, where it does not say the run is "
                      f"bf16) or, with plain data, below {_pct(th.fp32_productive_plain)} of the bf16 peak per unit "
                      f"of utilisation while utilisation >= {th.fp32_plain_util_pct:g} % (a memory-bound kernel looks "
                      f"the same at lower utilisation); HBM < {_pct(th.hbm_bandwidth)}",
      why="busy is not productive: the tensor engine runs fp32 at a quarter of its bf16 rate")
def _fp32_precision(st: WindowStats, th: Thresholds, found: Sequence[Hint]) -> Hint | None:
    if not (st.util >= th.fp32_util_pct and st.has_flops and st.peak):
        return None
    if st.has_ext and st.tensor_active:
        if st.dtype == "bf16":
            return None  # small bf16 matmuls are unproductive too, but not for this reason
        productive = st.flops / (st.tensor_active * st.peak)
        cond = productive < th.fp32_productive_ext and (st.hbm_frac or 0) < th.hbm_bandwidth
    else:
        # Without per-engine data a memory-bound kernel also looks unproductive; only a core
        # that is busy nearly all the time at an fp32-like rate supports the claim.
        productive = st.flops / (st.util / 100 * st.peak)
        cond = productive < th.fp32_productive_plain and st.util >= th.fp32_plain_util_pct
    if not cond:
        return None
    return Hint(
        "fp32_precision", "advisory", "warning", 0.8 if st.has_ext else 0.5,
        "busy but not productive: FLOP rate fits fp32, not bf16",
        (Evidence("average utilisation", st.util, "%"),
         Evidence("FLOP/s per core", st.flops / 1e12, "TFLOP/s"),
         Evidence("FLOP/s of bf16 peak while busy", productive * 100, "%")),
        "enable bf16 autocast (or XLA_USE_BF16=1) and keep fp32 master weights in the optimizer",
        "cores", 1 - productive)


@rule("hbm_capacity", "advisory", Phase.ADVISORY, "memory", telemetry="no",
      when=lambda th: f"a device >= {_pct(th.hbm_capacity_warn)} of its HBM capacity (critical >= "
                      f"{_pct(th.hbm_capacity_critical)})",
      why="the next larger batch or a fragmentation spike will run out of memory")
def _hbm_capacity(st: WindowStats, th: Thresholds, found: Sequence[Hint]) -> Hint | None:
    if not (st.capacity and st.mem_frac_max >= th.hbm_capacity_warn):
        return None
    ev = [Evidence("device memory used", st.mem_frac_max * 100, "%"),
          Evidence("used on fullest device", st.mem_dev_max / 2**30, "GiB"),
          Evidence("capacity per device", st.capacity / 2**30, "GiB")]
    if st.mem_growth > 0.001:
        ev.append(Evidence("growth over the window", st.mem_growth * 100, "%"))
    return Hint(
        "hbm_capacity", "advisory", "warning" if st.mem_frac_max < th.hbm_capacity_critical else "critical", 0.95,
        f"device memory {st.mem_frac_max * 100:.1f} % full", tuple(ev),
        "free tensors kept across steps, shard optimizer state (ZeRO-1) or enable activation "
        "checkpointing before a larger batch runs out of memory", "memory", st.mem_frac_max)


@rule("out_of_memory", "advisory", Phase.ADVISORY, "memory", telemetry="yes",
      when=lambda th: "an `oom` event in the window (always the top finding: the job stopped)", why="the job stopped")
def _out_of_memory(st: WindowStats, th: Thresholds, found: Sequence[Hint]) -> Hint | None:
    e = next((e for e in st.events if e.get("type") == "oom"), None)
    if e is None:
        return None
    return Hint(
        "out_of_memory", "advisory", "critical", 1.0, "out of device memory: the job stopped",
        (Evidence("requested per core", e.get("requested_bytes", 0) / 2**30, "GiB"),
         Evidence("capacity per core", e.get("capacity_bytes", 0) / 2**30, "GiB")),
        "shard the optimizer state (ZeRO-1), enable activation checkpointing or halve the micro-batch; "
        "if memory grew step after step, free tensors kept across steps",
        "memory", 1.0)


@rule("launch_overhead", "bottleneck", Phase.PRIMARY, "vcpu", telemetry="no",
      when=lambda th: f"the training process's main thread saturated (>= {_pct(th.saturated)} of a core; with "
                      f"execution_stats, busy >= {_pct(th.launch_main)}: the step's other phases dilute it) while the "
                      f"device is below the threshold and (with execution_stats) >= {th.launch_rate:g} executions/s "
                      f"per core that keep the device busy < {_pct(th.turns)} of the window (without them: the "
                      f"loader workers < {th.loader_cores:g} cores)",
      why="small graphs: the host spends longer preparing and launching each graph than the device spends "
          "running it")
def _launch_overhead(st: WindowStats, th: Thresholds, found: Sequence[Hint]) -> Hint | None:
    hs = host(st, th)
    if hs.main is None or hs.main < (th.launch_main if hs.cover is not None else th.saturated):
        return None
    if hs.cover is None and hs.loaders is not None and hs.loaders >= th.loader_cores:
        return None  # loaders at work too and no execution rate to tell launching from loading
    if (st.input_wait or 0) >= th.input_wait:
        return None  # the extension says the device waits for input
    if hs.cover is not None and (st.exec_rate is None or st.exec_rate < th.launch_rate or hs.cover >= th.turns):
        return None
    share = _job(st, hs, 1 - hs.cover if hs.cover is not None else 1 - hs.device)
    ev = [Evidence("main thread busy", hs.main * 100, "%"), Evidence("average utilisation", st.util, "%")]
    if st.exec_rate is not None and st.dev_latency is not None:
        ev += [Evidence("executions", st.exec_rate, "/s"), Evidence("device latency per execution",
                                                                    st.dev_latency * 1e3, "ms")]
    conf = 0.8 if hs.cover is not None and hs.main_from == "process" else 0.55
    return Hint(
        "launch_overhead", "bottleneck", severity(share, th), conf,
        "launch overhead: the host cannot launch graphs as fast as the device runs them", tuple(ev),
        "make the graphs larger: remove graph breaks (prints, .item(), data-dependent control flow), raise the "
        "micro-batch, or mark the step for one compiled graph (torch_xla mark_step once per step)",
        "vcpu", share, hs.lacked())


@rule("warm_up", "phase", Phase.ADVISORY, "memory", telemetry="no",
      when=lambda th: f"below the threshold, while device memory grows >= {_pct(th.warmup_growth)} within the window "
                      f"(graphs and weights loading), or >= {_pct(th.warmup_idle_rows)} of the reports have every core "
                      f"idle and no execution while >= {th.warmup_host_cores:g} host cores work (compiling), or the "
                      f"window's first {_pct(th.warmup_lead)} of reports are idle before the work starts",
      why="a run starts by compiling and loading its graphs; that phase is not a bottleneck to tune")
def _warm_up(st: WindowStats, th: Thresholds, found: Sequence[Hint]) -> Hint | None:
    if st.util >= th.util_below:
        return None
    loading = st.mem_growth >= th.warmup_growth
    work = host(st, th).host_work
    compiling = (st.idle_rows >= th.warmup_idle_rows and (st.exec_rate or 0.0) == 0.0
                 and work is not None and work >= th.warmup_host_cores)
    started = st.lead_idle >= th.warmup_lead  # the window began idle and the work started inside it
    if not (loading or compiling or started):
        return None
    ev = [Evidence("average utilisation", st.util, "%"),
          Evidence("device memory gained in the window", st.mem_growth * 100, "%")]
    if work is not None:
        ev.append(Evidence("host cores at work", work, "cores"))
    return Hint(
        "warm_up", "phase", "info", 0.7, "warm-up: " + ("loading graphs and weights" if loading else
                                                            "compiling graphs (no executions yet)" if compiling
                                                            else "the work started within the window"),
        tuple(ev), "nothing to tune yet: the diagnosis starts when training reaches steady state "
                   "(a cached compilation, neuron_parallel_compile, shortens this)", "memory", 0.0)


@rule("memory_leak", "advisory", Phase.ADVISORY, "memory", telemetry="no",
      when=lambda th: f"while the cores work (>= {th.busy_core_pct:g} %), device memory grows >= "
                      f"{_pct(th.leak_growth)} within the window and at that rate fills the fullest device within "
                      f"{th.leak_horizon_s / 60:g} min",
      why="a training step's memory is allocated once; memory that keeps growing is tensors kept across steps, "
          "and the job will run out of memory")
def _memory_leak(st: WindowStats, th: Thresholds, found: Sequence[Hint]) -> Hint | None:
    if st.util < th.busy_core_pct or st.mem_growth < th.leak_growth or not st.capacity or st.mem_frac_max <= 0:
        return None
    if st.idle_rows > 0 or st.lead_idle > 0:
        return None  # loading after a warm-up, not steady training
    rate = st.mem_growth * st.mem_frac_max / th.window_s  # capacity shares per second, on the fullest device
    to_full = max(0.0, 1 - st.mem_frac_max) / rate
    if to_full > th.leak_horizon_s:
        return None
    return Hint(
        "memory_leak", "advisory", "critical" if to_full < 300 else "warning", 0.75,
        f"device memory grows while training: full in about {to_full / 60:.0f} min",
        (Evidence("growth over the window", st.mem_growth * 100, "%"),
         Evidence("device memory used", st.mem_frac_max * 100, "%"),
         Evidence("time until full", to_full / 60, "min")),
        "free tensors kept across steps (losses or outputs appended to a list, a growing cache); "
        "detach and move logged values to the host", "memory", 1 / (1 + to_full / 600))


@rule("hardware_errors", "advisory", Phase.ADVISORY, "cores", telemetry="no",
      when=lambda th: "ECC events in `neuron_hw_counters` in the window: uncorrected ones are critical; corrected "
                      "ones a warning, and the bottleneck when a straggler core sits on that device (below the "
                      "threshold)",
      why="a failing HBM stack corrects errors at a cost (retries, scrubbing) and slows its cores; uncorrected "
          "ones corrupt data")
def _hardware_errors(st: WindowStats, th: Thresholds, found: Sequence[Hint]) -> Hint | None:
    if st.ecc_corrected <= 0 and st.ecc_uncorrected <= 0:
        return None
    dev = st.ecc_device
    ev = [Evidence(f"ECC corrected on ND{dev}" if dev >= 0 else "ECC corrected", st.ecc_corrected, "events"),
          Evidence("ECC uncorrected", st.ecc_uncorrected, "events")]
    found_slow = slow_core(st, th) if st.util < th.util_below and dev >= 0 else None
    if found_slow is not None and found_slow[0] // max(1, st.cores_per_device) == dev:
        core, peers, _ = found_slow
        share = (float(st.core_util[core]) - peers) / 100
        name = core_name(core, st.cores_per_device)
        return Hint(
            "hardware_errors", "bottleneck", severity(share, th), 0.85,
            f"hardware errors: ND{dev} corrects ECC errors and its core {name} is a straggler",
            (*ev, Evidence(f"{name} utilisation", float(st.core_util[core]), "%"),
             Evidence("peer cores' utilisation", peers, "%")),
            f"drain the node or exclude ND{dev} (NEURON_RT_VISIBLE_CORES) and report the device; its peers wait for "
            "it at every collective", "cores", share)
    critical = st.ecc_uncorrected > 0
    return Hint(
        "hardware_errors", "advisory", "critical" if critical else "warning", 0.95,
        f"{'uncorrected' if critical else 'corrected'} ECC errors on " + (f"ND{dev}" if dev >= 0 else "a device"),
        tuple(ev), "uncorrected errors corrupt data: drain the node and report the device" if critical else
        "watch the rate; a device that keeps correcting errors is failing: plan to replace it", "cores", 0.0)


@rule("hang", "advisory", Phase.ADVISORY, "cores", telemetry="no",
      when=lambda th: "the cores hold device memory but every report of the window has every core idle and no "
                      f"execution, the host not compiling (< {th.warmup_host_cores:g} cores at work) and device memory "
                      "not growing",
      why="a job that holds its memory and runs nothing is stuck: a hang, a deadlock at a collective, or a paused "
          "process")
def _hang(st: WindowStats, th: Thresholds, found: Sequence[Hint]) -> Hint | None:
    if not st.allocated.any() or st.idle_rows < 1.0 or (st.exec_rate or 0.0) > 0 or abs(st.mem_growth) > 0.01:
        return None
    work = host(st, th).host_work
    if work is not None and work >= th.warmup_host_cores:
        return None  # the host is busy: compiling, or a long host-side phase (checkpointing)
    return Hint(
        "hang", "advisory", "critical", 0.7 if st.exec_rate is not None else 0.5,
        f"stuck: {int(st.allocated.sum())} cores hold device memory but nothing runs",
        (Evidence("cores holding memory", int(st.allocated.sum()), "cores"),
         Evidence("average utilisation", st.util, "%"), Evidence("device memory used", st.mem_frac_max * 100, "%")),
        "look for a deadlock (a collective some rank never reached: py-spy dump the ranks) or a lost node; "
        "restart from the last checkpoint", "cores", 1.0, () if st.exec_rate is not None else
        ("execution_stats (executions would tell a long graph from a stopped one)",))


def causes_table(th: Thresholds = DEFAULTS) -> str:
    """docs/hints.md's table of causes, from the registry and the thresholds."""
    lines = ["| cause | kind | signals and thresholds | needs the extension? | why |", "|---|---|---|---|---|"]
    lines += [f"| `{r.cause}` | {r.kind} | {r.when(th)} | {r.telemetry} | {r.why} |" for r in RULES]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m neurontop.core.analysis.rules: print the table for docs/hints.md
    print(causes_table(), end="")
