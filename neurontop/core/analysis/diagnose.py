"""`neuron-top diagnose`: time ranges below the threshold and the hints that explain them.

The input goes through the one hint monitor (hints.HintMonitor): the same window, the same
once-a-second evaluation on the stream's clock as the live view. A restart (time going back, a new
instance id or another device shape: two logs one after the other) starts a new segment, and each
segment is reported with its own findings. A finding is a run of evaluations that name a cause: it
counts when it held for `on_s`, or for the whole segment when the segment is shorter; gaps shorter
than `off_s` join two runs (the live view's hysteresis, applied to the whole run).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ..telemetry.batch import Batch, from_samples
from ..telemetry.sample import Sample
from ..telemetry.units import clock, format_evidence, plural
from .hints import HintMonitor
from .rules import SEVERITY_RANK, Hint, binds, precedence
from .thresholds import DEFAULTS, Thresholds


@dataclass
class Run:
    cause: str
    start_s: float
    end_s: float
    hints: list[Hint] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.end_s - self.start_s


@dataclass
class Segment:
    """One stream of the input: from its start to the next restart."""

    first_sample: int  # the input's report number (from 1) that starts it
    reason: str  # why it started: "start", "time went back", "new instance", "new device shape"
    times: list[np.ndarray] = field(default_factory=list)
    utils: list[np.ndarray] = field(default_factory=list)
    period: float = 1.0
    instance_type: str = ""
    instance_id: str = ""
    has_extension: bool = True
    t0: float = 0.0  # the stream time it starts at
    runs: dict[str, list[Run]] = field(default_factory=dict)
    lost_sum: dict[str, float] = field(default_factory=dict)  # breakdown points summed over low windows
    low_evals: int = 0

    def add_rows(self, b: Batch, a: int, e: int) -> None:
        if e <= a:
            return
        self.times.append(b.time_s[a:e])
        self.utils.append(b.util[a:e].mean(axis=1) if b.util.shape[1] else np.zeros(e - a))
        self.period = float(b.period[e - 1]) or self.period
        self.instance_type = self.instance_type or b.layout.instance_type
        self.instance_id = self.instance_id or b.layout.instance_id
        self.has_extension = self.has_extension and b.layout.has_engines

    def evaluated(self, t: float, hints: list[Hint], th: Thresholds, lost: dict[str, float] | None = None) -> None:
        if lost:
            self.low_evals += 1
            for c, v in lost.items():
                self.lost_sum[c] = self.lost_sum.get(c, 0.0) + v
        rel = t - self.t0
        for h in hints:
            rs = self.runs.setdefault(h.cause, [])
            if rs and rel - rs[-1].end_s <= th.off_s + 1e-9:
                rs[-1].end_s = rel
                rs[-1].hints.append(h)
            else:
                rs.append(Run(h.cause, rel, rel, [h]))

    def to_dict(self, th: Thresholds) -> dict:
        t = np.concatenate(self.times) - self.t0
        u = np.concatenate(self.utils)
        last = float(t[-1])
        total = last + self.period
        # below the threshold: where the mean utilisation of the window ending at a sample is
        csum = np.concatenate([[0.0], np.cumsum(u)])
        hi = np.arange(1, len(t) + 1)
        lo = np.searchsorted(t, t - th.window_s - 1e-9, side="right")
        below_mask = (csum[hi] - csum[lo]) / (hi - lo) < th.util_below
        below = []
        k = 0
        while k < len(t):
            if not below_mask[k]:
                k += 1
                continue
            j = k
            while j + 1 < len(t) and below_mask[j + 1]:
                j += 1
            below.append({"start_s": round(float(t[k]), 3), "end_s": round(float(t[j]) + self.period, 3),
                          "avg_util_pct": round(float(u[k:j + 1].mean()), 2)})
            k = j + 1
        findings = []
        binding = any(binds(h) for r in self.runs.get("input_pipeline", []) for h in r.hints)
        for cause, rs in self.runs.items():
            for r in rs:
                whole = r.start_s <= 1e-9 and r.end_s >= last - 1e-9
                if r.duration + self.period < th.on_s and not whole:
                    continue
                # a bottleneck over an advisory of the same cause, then a full window over a first report
                best = max(r.hints, key=lambda h: (h.kind == "bottleneck", h.confidence, h.score))
                d = best.to_dict()
                d.update(start_s=round(r.start_s, 3), end_s=round(r.end_s + self.period, 3),
                         share_of_run=round((r.duration + self.period) / total, 4))
                first = precedence(best, binding)
                d["_rank"] = (cause not in ("out_of_memory", "hang"), first[1], first[2] and below_input(self.runs, r), first[3],
                              -(r.duration + self.period) * max(best.score, 0.05), SEVERITY_RANK[best.severity])
                findings.append(d)
        findings.sort(key=lambda d: d["_rank"])
        for d in findings:
            d.pop("_rank")
        return {"first_sample": self.first_sample, "reason": self.reason, "samples": len(t),
                "duration_s": round(total, 3), "instance_type": self.instance_type, "instance_id": self.instance_id,
                "avg_util_pct": round(float(u.mean()), 2),
                "telemetry": "neuron-monitor + neuron_top extension" if self.has_extension else "neuron-monitor",
                # a warm-up is a phase of the run, not a problem: it does not make a run unhealthy
                "healthy": not [f for f in findings if f["kind"] != "phase"], "below_threshold": below,
                "findings": findings,
                "lost": self.lost()}

    def lost(self) -> dict:
        """The time-loss breakdown of the windows below the threshold: mean utilisation points lost, by cause."""
        if not self.low_evals:
            return {}
        by = {c: round(v / self.low_evals, 2) for c, v in sorted(self.lost_sum.items(), key=lambda kv: -kv[1])}
        return {"windows": self.low_evals, "lost_pct": round(sum(by.values()), 2), "by_cause": by}


def below_input(runs: dict[str, list[Run]], r: Run) -> bool:
    """A device-side finding overlaps an input-pipeline finding for most of its time: it ranks below it."""
    over = sum(max(0.0, min(r.end_s, x.end_s) - max(r.start_s, x.start_s)) for x in runs.get("input_pipeline", []))
    return over >= 0.5 * r.duration if r.duration > 0 else any(
        x.start_s <= r.start_s <= x.end_s for x in runs.get("input_pipeline", []))


@dataclass
class Diagnosis:
    threshold: float
    window_s: float
    segments: list[dict]
    avg_util: float

    @property
    def samples(self) -> int:
        return sum(s["samples"] for s in self.segments)

    @property
    def duration_s(self) -> float:
        return sum(s["duration_s"] for s in self.segments)

    @property
    def healthy(self) -> bool:
        return all(s["healthy"] for s in self.segments)

    def to_dict(self) -> dict:
        """The whole input (findings and ranges carry their segment's number when there are several)
        and each segment on its own."""
        first = self.segments[0]
        many = len(self.segments) > 1
        tag = (lambda k, d: {**d, "segment": k}) if many else (lambda k, d: d)
        return {
            "samples": self.samples, "duration_s": round(self.duration_s, 3), "threshold_pct": self.threshold,
            "instance_type": first["instance_type"], "avg_util_pct": round(self.avg_util, 2),
            "telemetry": first["telemetry"] if not many or len({s["telemetry"] for s in self.segments}) == 1
            else "mixed", "healthy": self.healthy,
            "below_threshold": [tag(k, b) for k, s in enumerate(self.segments) for b in s["below_threshold"]],
            "findings": [tag(k, f) for k, s in enumerate(self.segments) for f in s["findings"]],
            "segments": self.segments,
        }


def _batches(samples: Iterable[Sample], rows: int = 600) -> Iterator[Batch]:
    pending: list[Sample] = []
    for s in samples:
        pending.append(s)
        if len(pending) >= rows:
            yield from from_samples(pending)
            pending = []
    yield from from_samples(pending)


def diagnose(samples: Iterable[Sample], th: Thresholds = DEFAULTS) -> Diagnosis:
    segs: list[Segment] = []
    starts: list[int] = []  # rows of the current batch where a segment starts
    seen = 0
    prev_stream: tuple | None = None
    batch: list[Batch] = []

    def restart(row: int) -> None:
        b = batch[0]
        lay = b.layout
        if row == 0 and prev_stream is not None and prev_stream[0] != lay.instance_id:
            reason = "new instance"
        elif row == 0 and prev_stream is not None and prev_stream[1:] != (lay.n_devices, lay.n_cores):
            reason = "new device shape"
        elif any(e.get("type") == "scenario" for e in b.events.get(row, ())):
            reason = "the job changed"
        else:
            reason = "time went back"
        starts.append(row)
        segs.append(Segment(seen + row + 1, reason, t0=float(b.time_s[row])))

    mon = HintMonitor(th, on_eval=lambda t, _shown, raw, lost: segs[-1].evaluated(t, raw, th, lost),
                      on_restart=restart)
    util_sum = 0.0
    for b in _batches(samples):
        if not segs and len(b):
            segs.append(Segment(1, "start", t0=float(b.time_s[0])))
        batch[:] = [b]
        starts.clear()
        open_before = len(segs) - 1
        mon.feed(b)
        bounds = [0, *starts, len(b)]
        for k in range(len(bounds) - 1):
            segs[open_before + k].add_rows(b, bounds[k], bounds[k + 1])
        util_sum += float(b.util.mean(axis=1).sum()) if b.util.shape[1] else 0.0
        seen += len(b)
        prev_stream = (b.layout.instance_id, b.layout.n_devices, b.layout.n_cores)
    if not seen:
        raise ValueError("no reports in the input")
    return Diagnosis(th.util_below, th.window_s, [s.to_dict(th) for s in segs if s.times], util_sum / seen)


def format_text(d: Diagnosis, name: str) -> str:
    segs = d.segments
    lines: list[str] = []
    if len(segs) > 1:
        lines.append(f"{name}: {plural(len(segs), 'segment')} (the stream restarts or the job changes), {plural(d.samples, 'report')}")
    for k, s in enumerate(segs):
        head = name if len(segs) == 1 else f"segment {k + 1} (from report {s['first_sample']}: {s['reason']})"
        lines.append(f"{head}: {s['instance_type'] or 'unknown instance'}, {plural(s['samples'], 'report')}, "
                     f"{clock(s['duration_s'])}, average utilisation {s['avg_util_pct']:.1f} % "
                     f"({'with' if 'extension' in s['telemetry'] else 'no'} neuron_top extension)")
        if not s["below_threshold"]:
            lines.append(f"utilisation never fell below {d.threshold:.0f} % ({d.window_s:g} s window)")
        for b in s["below_threshold"]:
            lines.append(f"utilisation below {d.threshold:.0f} % from {clock(b['start_s'])} to {clock(b['end_s'])} "
                         f"(average {b['avg_util_pct']:.1f} %)")
        if s.get("lost"):
            lines.append(lost_text(s["lost"]) + " (windows below the threshold, on average)")
        if not s["findings"]:
            lines.append("no bottleneck or advisory: healthy")
        elif s["healthy"]:
            lines.append("no bottleneck or advisory after the warm-up: healthy")
        for f in s["findings"]:
            lines.append(f"[{f['kind']}, {f['severity']}, confidence {f['confidence']:.0%}] {f['title']} "
                         f"({clock(f['start_s'])}-{clock(f['end_s'])})")
            ev = "; ".join(format_evidence(e["name"], e["value"], e["unit"]) for e in f["evidence"])
            lines.append(f"    evidence: {ev}")
            lines.append(f"    action:   {f['action']}")
    return "\n".join(lines)


def lost_text(lost: dict) -> str:
    """'of the 38.0 % lost: input_pipeline 25.0, host_sync 10.0, unexplained 3.0'"""
    parts = ", ".join(f"{c} {v:.1f}" for c, v in lost["by_cause"].items())
    return f"of the {lost['lost_pct']:.1f} % lost: {parts}"
