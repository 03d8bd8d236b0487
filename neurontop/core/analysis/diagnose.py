"""`neuron-top diagnose`: time ranges below the threshold and the hints that explain them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..telemetry.sample import Sample
from ..telemetry.units import clock, format_evidence, plural
from .hints import DEFAULT_THRESHOLD, DEFAULT_WINDOW_S, SEVERITY_RANK, Hint, compute

ON_S = 3.0  # a cause must hold this long to count (same hysteresis as the live view)
OFF_S = 5.0  # gaps shorter than this join two runs of the same cause


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
class Diagnosis:
    samples: int
    duration_s: float
    threshold: float
    instance_type: str
    avg_util: float
    below: list[dict]
    findings: list[dict]
    has_extension: bool

    @property
    def healthy(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict:
        return {
            "samples": self.samples, "duration_s": round(self.duration_s, 3), "threshold_pct": self.threshold,
            "instance_type": self.instance_type, "avg_util_pct": round(self.avg_util, 2),
            "telemetry": "neuron-monitor + neuron_top extension" if self.has_extension else "neuron-monitor",
            "healthy": self.healthy, "below_threshold": self.below, "findings": self.findings,
        }


def diagnose(samples: Iterable[Sample], threshold: float = DEFAULT_THRESHOLD,
             window_s: float = DEFAULT_WINDOW_S) -> Diagnosis:
    window: list[Sample] = []
    t0 = None
    last_t = 0.0
    n = 0
    util_sum = 0.0
    inst = ""
    ext = True
    below: list[dict] = []
    cur_below: dict | None = None
    runs: dict[str, list[Run]] = {}
    period = 1.0
    for s in samples:
        n += 1
        if t0 is None:
            t0 = s.time_s
        rel = s.time_s - t0
        last_t = rel
        period = s.period_s or period
        inst = inst or s.instance_type
        ext = ext and s.has_extension
        util_sum += s.avg_util
        window.append(s)
        while window and window[0].time_s <= s.time_s - window_s - 1e-9:
            window.pop(0)
        w_util = sum(x.avg_util for x in window) / len(window)
        if w_util < threshold:
            if cur_below is None:
                cur_below = {"start_s": rel, "end_s": rel, "sum": 0.0, "n": 0}
                below.append(cur_below)
            cur_below["end_s"] = rel
            cur_below["sum"] += s.avg_util
            cur_below["n"] += 1
        else:
            cur_below = None
        for h in compute(window, threshold, window_s):
            rs = runs.setdefault(h.cause, [])
            if rs and rel - rs[-1].end_s <= OFF_S + 1e-9:
                rs[-1].end_s = rel
                rs[-1].hints.append(h)
            else:
                rs.append(Run(h.cause, rel, rel, [h]))
    if t0 is None:
        raise ValueError("no reports in the input")
    total = last_t + period
    findings = []
    for cause, rs in runs.items():
        for r in rs:
            whole = r.start_s <= 1e-9 and r.end_s >= last_t - 1e-9
            if r.duration + period < ON_S and not whole:
                continue
            best = max(r.hints, key=lambda h: h.score)
            d = best.to_dict()
            d.update(start_s=round(r.start_s, 3), end_s=round(r.end_s + period, 3),
                     share_of_run=round((r.duration + period) / total, 4))
            d["_rank"] = (best.kind != "bottleneck" or cause == "unexplained", -(r.duration + period) * max(best.score, 0.05),
                          SEVERITY_RANK[best.severity])
            findings.append(d)
    findings.sort(key=lambda d: d["_rank"])
    for d in findings:
        d.pop("_rank")
    bl = [{"start_s": round(b["start_s"], 3), "end_s": round(b["end_s"] + period, 3),
           "avg_util_pct": round(b["sum"] / b["n"], 2)} for b in below]
    return Diagnosis(n, total, threshold, inst, util_sum / n, bl, findings, ext)


def format_text(d: Diagnosis, name: str) -> str:
    lines = [f"{name}: {d.instance_type or 'unknown instance'}, {plural(d.samples, 'report')}, {clock(d.duration_s)}, "
             f"average utilisation {d.avg_util:.1f} % ({'with' if d.has_extension else 'no'} neuron_top extension)"]
    if not d.below:
        lines.append(f"utilisation never fell below {d.threshold:.0f} % (10 s window)")
    for b in d.below:
        lines.append(f"utilisation below {d.threshold:.0f} % from {clock(b['start_s'])} to {clock(b['end_s'])} "
                     f"(average {b['avg_util_pct']:.1f} %)")
    if not d.findings:
        lines.append("no bottleneck or advisory: healthy")
    for f in d.findings:
        lines.append(f"[{f['kind']}, {f['severity']}, confidence {f['confidence']:.0%}] {f['title']} "
                     f"({clock(f['start_s'])}-{clock(f['end_s'])})")
        ev = "; ".join(format_evidence(e["name"], e["value"], e["unit"]) for e in f["evidence"])
        lines.append(f"    evidence: {ev}")
        lines.append(f"    action:   {f['action']}")
    return "\n".join(lines)
