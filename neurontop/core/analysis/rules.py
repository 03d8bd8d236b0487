"""The hint rules: one object per cause, in a registry, run in phases over a window's statistics.

A rule reads only what real telemetry carries: neuron-monitor's fields and the `neuron_top`
extension (never its `truth`). A rule whose signals the window lacks (None: plain neuron-monitor
data has no per-engine, HBM, link or input-pipeline counters) is not run, so plain data says less
rather than guessing; a low-utilisation window that no rule explains is reported as `unexplained`.

Phases, in order: advisories (any utilisation); below the utilisation threshold the primary causes,
then the remainder (what the primaries left unexplained), the residual cause (only when nothing
else fired) and `unexplained` (only when no bottleneck fired). Adding a cause is one `@rule` here.
The registry's order is the order of the export's hint columns (export/csv_writer.py) and of the
cause table in docs/hints.md, which `causes_table()` generates (a test compares them).

(About 400 lines: eleven rules, each with its conditions, evidence and action, kept in one file so
that the registry's order, which is the export's column order, is the order they are read in.)
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..telemetry.units import format_evidence, plural
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


class Phase(enum.IntEnum):
    ADVISORY = 0  # at any utilisation
    PRIMARY = 1  # below the threshold: causes that stand on their own signals
    REMAINDER = 2  # what the primary causes left unexplained
    RESIDUAL = 3  # only when no primary or remainder cause fired
    UNEXPLAINED = 4  # only when no bottleneck fired


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


def rank(st: WindowStats, th: Thresholds = DEFAULTS) -> list[Hint]:
    """The hints a window's statistics support, most important first."""
    found: list[Hint] = []
    for phase in Phase:
        if phase > Phase.ADVISORY and st.util >= th.util_below:
            break
        if phase >= Phase.RESIDUAL and any(h.kind == "bottleneck" for h in found):
            break
        for r in RULES:
            if r.phase == phase and r.applies(st):
                h = r.evaluate(st, th, found)
                if h is not None:
                    found.append(h)
    found.sort(key=lambda h: (h.kind != "bottleneck" or h.cause == "unexplained", -h.score,
                              SEVERITY_RANK[h.severity]))
    return found


def severity(share: float, th: Thresholds) -> str:
    return "critical" if share >= th.critical_share else "warning" if share >= th.warning_share else "info"


def _lost(st: WindowStats) -> float:
    return 1 - st.util / 100


def hot_vcpus(st: WindowStats, th: Thresholds) -> tuple[int, float]:
    """(vCPUs saturated, the mean busy share of the others)."""
    v = st.vcpu_busy
    hot = v >= th.hot_vcpu_pct if len(v) else np.zeros(0, dtype=bool)
    rest = float(v[~hot].mean()) if len(v) and (~hot).any() else 0.0
    return int(hot.sum()), rest


def _pct(x: float) -> str:
    return f"{x * 100:g} %"


# -- the rules, in the order of the export's columns ----------------------------------------------
@rule("input_pipeline", "bottleneck", Phase.PRIMARY, "vcpu", telemetry="either (lower confidence without)",
      when=lambda th: f"extension: device waiting for input >= {_pct(th.input_wait)} of the window; plain data: "
                      f"1 to max(2, {th.hot_vcpu_max_share:g} x vCPUs) vCPUs >= {th.hot_vcpu_pct:g} % busy while "
                      f"the rest average < {th.rest_vcpu_pct:g} %",
      why="saturated data-loader threads on an otherwise idle host starve the device")
def _input_pipeline(st: WindowStats, th: Thresholds, found: Sequence[Hint]) -> Hint | None:
    n_hot, rest = hot_vcpus(st, th)
    few_hot = 0 < n_hot <= max(2, int(len(st.vcpu_busy) * th.hot_vcpu_max_share)) and rest < th.rest_vcpu_pct
    ext_input = st.input_wait is not None and st.input_wait >= th.input_wait
    if not (ext_input or (not st.has_ext and few_hot)):
        return None
    share = st.input_wait if st.input_wait is not None else _lost(st)
    ev = []
    if st.input_wait is not None:
        ev.append(Evidence("device waiting for input", st.input_wait * 100, "%"))
    if n_hot:
        ev.append(Evidence(f"saturated vCPUs (>= {th.hot_vcpu_pct:g} %)", n_hot, "vCPUs"))
        ev.append(Evidence("other vCPUs busy", rest, "%"))
    ev.append(Evidence("average utilisation", st.util, "%"))
    act = (f"raise the data-loader workers from {n_hot} to {max(8, 4 * n_hot)} (DataLoader num_workers)"
           if n_hot else "raise the data-loader workers (DataLoader num_workers)")
    return Hint(
        "input_pipeline", "bottleneck", severity(share, th), 0.9 if st.has_ext else 0.6,
        "input pipeline bound: the device waits for batches" + (
            f" while {plural(n_hot, 'host thread')} {'is' if n_hot == 1 else 'are'} saturated" if n_hot else ""),
        tuple(ev), act + ", or pre-tokenise and pack the data set offline", "vcpu", share)


@rule("communication", "bottleneck", Phase.PRIMARY, "interconnect", needs=("exposed_comm",), telemetry="yes",
      when=lambda th: f"collectives on the critical path (`exposed_s`) >= {_pct(th.exposed_comm)} of the window; "
                      "bus bandwidth vs link bandwidth as evidence",
      why="plain neuron-monitor data has no collective or link counters")
def _communication(st: WindowStats, th: Thresholds, found: Sequence[Hint]) -> Hint | None:
    comm = st.exposed_comm
    if comm is None or comm < th.exposed_comm:
        return None
    ev = [Evidence("time in exposed collectives", comm * 100, "%")]
    if st.busbw_frac is not None:
        ev.append(Evidence("bus bandwidth / link bandwidth", st.busbw_frac * 100, "%"))
    ev.append(Evidence("average utilisation", st.util, "%"))
    return Hint(
        "communication", "bottleneck", severity(comm, th), 0.85,
        "communication bound: cores wait for collectives", tuple(ev),
        "overlap the gradient all-reduce with the backward pass (bucketed all-reduce), raise the "
        "gradient accumulation, and check the links and EFA for degraded bandwidth", "interconnect", comm)


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
    share = max(0.0, _lost(st))
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
      when=lambda th: f"a working core >= {th.straggler_pct:g} % and >= {th.straggler_gap_pct:g} points above the "
                      f"median of the other working cores; at most {th.straggler_max_share:g} of the cores",
      why="in synchronous data parallel training, the slow core is the busy one: its peers wait for it at every "
          "collective")
def _straggler(st: WindowStats, th: Thresholds, found: Sequence[Hint]) -> Hint | None:
    cu = st.core_util
    working = st.allocated & (cu >= th.idle_core_pct)
    if working.sum() < 2:
        return None
    idx = np.where(working)[0]
    # A straggler sits far above the median of the *other* working cores (works for 2 cores too).
    others_med = {int(i): float(np.median(cu[idx[idx != i]])) for i in idx}
    hi = np.array([i for i in idx if cu[i] >= th.straggler_pct and cu[i] >= others_med[int(i)] + th.straggler_gap_pct],
                  dtype=int)
    if not 0 < len(hi) <= max(1, int(th.straggler_max_share * working.sum())):
        return None
    peers = float(np.delete(cu, hi)[np.delete(working, hi)].mean())
    core = int(hi[0])
    share = (100 - peers) / 100
    return Hint(
        "straggler", "bottleneck", severity(share, th), 0.85,
        f"core {core} is a straggler: busy {cu[core]:.1f} % while its peers wait",
        (Evidence(f"NC{core} utilisation", float(cu[core]), "%"),
         Evidence("peer cores' utilisation", peers, "%"),
         Evidence("cores this slow", len(hi), "")),
        f"inspect core {core} (throttling, ECC errors, a different input shape or kernel); "
        f"exclude it or rebalance work so that its {plural(int(working.sum()) - len(hi), 'peer')} stop "
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
    share = k / max(1, st.n)
    return Hint(
        "idle_cores", "bottleneck", severity(share, th), 0.9, f"{k} of {m} allocated NeuronCores are idle",
        (Evidence("idle allocated cores", k, "cores"), Evidence("allocated cores", m, "cores"),
         Evidence("busy cores' utilisation", float(cu[busy].mean()), "%"),
         Evidence("average utilisation", st.util, "%")),
        f"give the {k} idle cores work (one worker per core, e.g. torchrun --nproc_per_node={m}) "
        f"or release them (NEURON_RT_VISIBLE_CORES) for another job", "cores", share)


@rule("host_sync", "bottleneck", Phase.RESIDUAL, "cores", telemetry="yes",
      when=lambda th: f"nothing above fires, host CPU < {th.host_sync_host_pct:g} % busy and no saturated vCPU, "
                      f"input wait < {_pct(th.host_sync_input_wait)}, exposed collectives < "
                      f"{_pct(th.host_sync_comm)}, HBM < {_pct(th.hbm_bandwidth)}",
      why="device and host both idle: the step waits on a host-side synchronisation")
def _host_sync(st: WindowStats, th: Thresholds, found: Sequence[Hint]) -> Hint | None:
    n_hot, _ = hot_vcpus(st, th)
    if not (st.has_ext and st.host_busy < th.host_sync_host_pct and n_hot == 0
            and (st.input_wait or 0) < th.host_sync_input_wait and (st.exposed_comm or 0) < th.host_sync_comm
            and (st.hbm_frac or 0) < th.hbm_bandwidth):
        return None
    lost = _lost(st)
    return Hint(
        "host_sync", "bottleneck", severity(lost, th), 0.7,
        "host synchronisation: device and host both mostly idle",
        (Evidence("average utilisation", st.util, "%"), Evidence("host CPU busy", st.host_busy, "%"),
         Evidence("device waiting for input", (st.input_wait or 0) * 100, "%"),
         Evidence("time in exposed collectives", (st.exposed_comm or 0) * 100, "%")),
        "remove per-step host synchronisation (loss.item(), print, tensor.cpu() in the loop); "
        "log every N steps asynchronously and keep graph building out of the step", "cores", lost)


@rule("unexplained", "bottleneck", Phase.UNEXPLAINED, "cores", telemetry="-",
      when=lambda th: "below the threshold and none of the above is supported",
      why="plain data cannot separate host synchronisation, communication and HBM stalls, so neuron-top says so "
          "instead of guessing")
def _unexplained(st: WindowStats, th: Thresholds, found: Sequence[Hint]) -> Hint | None:
    ev = [Evidence("average utilisation", st.util, "%"), Evidence("threshold", th.util_below, "%")]
    if len(st.vcpu_busy):
        ev.append(Evidence("host CPU busy", st.host_busy, "%"))
    return Hint(
        "unexplained", "bottleneck", "info", 0.3,
        f"utilisation {st.util:.1f} % is below {th.util_below:.0f} %; this telemetry cannot tell why",
        tuple(ev),
        "capture per-engine activity (neuron-profile) or run under the simulator's extension to "
        "separate host synchronisation, communication and memory stalls", "cores", 0.0)


@rule("fp32_precision", "advisory", Phase.ADVISORY, "cores", telemetry="either",
      when=lambda th: f"utilisation >= {th.fp32_util_pct:g} % and FLOP/s below {_pct(th.fp32_productive_ext)} of the "
                      f"bf16 peak per unit of tensor-engine activity (extension) or, with plain data, below "
                      f"{_pct(th.fp32_productive_plain)} of the bf16 peak per unit of utilisation while utilisation "
                      f">= {th.fp32_plain_util_pct:g} % (a memory-bound kernel looks the same at lower utilisation); "
                      f"HBM < {_pct(th.hbm_bandwidth)}",
      why="busy is not productive: the tensor engine runs fp32 at a quarter of its bf16 rate")
def _fp32_precision(st: WindowStats, th: Thresholds, found: Sequence[Hint]) -> Hint | None:
    if not (st.util >= th.fp32_util_pct and st.has_flops and st.peak):
        return None
    if st.has_ext and st.tensor_active:
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
    return Hint(
        "hbm_capacity", "advisory", "warning" if st.mem_frac_max < th.hbm_capacity_critical else "critical", 0.95,
        f"device memory {st.mem_frac_max * 100:.1f} % full",
        (Evidence("device memory used", st.mem_frac_max * 100, "%"),
         Evidence("used on fullest device", st.mem_dev_max / 2**30, "GiB"),
         Evidence("capacity per device", st.capacity / 2**30, "GiB")),
        "free tensors kept across steps, shard optimizer state (ZeRO-1) or enable activation "
        "checkpointing before a larger batch runs out of memory", "memory", st.mem_frac_max)


@rule("out_of_memory", "advisory", Phase.ADVISORY, "memory", telemetry="yes",
      when=lambda th: "an `oom` event in the window", why="the job stopped")
def _out_of_memory(st: WindowStats, th: Thresholds, found: Sequence[Hint]) -> Hint | None:
    e = next((e for e in st.events if e.get("type") == "oom"), None)
    if e is None:
        return None
    return Hint(
        "out_of_memory", "advisory", "critical", 1.0, "out of device memory",
        (Evidence("requested per core", e.get("requested_bytes", 0) / 2**30, "GiB"),
         Evidence("capacity per core", e.get("capacity_bytes", 0) / 2**30, "GiB")),
        "shard the optimizer state (ZeRO-1), enable activation checkpointing or halve the micro-batch",
        "memory", 1.0)


def causes_table(th: Thresholds = DEFAULTS) -> str:
    """docs/hints.md's table of causes, from the registry and the thresholds."""
    lines = ["| cause | kind | signals and thresholds | needs the extension? | why |", "|---|---|---|---|---|"]
    lines += [f"| `{r.cause}` | {r.kind} | {r.when(th)} | {r.telemetry} | {r.why} |" for r in RULES]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m neurontop.core.analysis.rules: print the table for docs/hints.md
    print(causes_table(), end="")
