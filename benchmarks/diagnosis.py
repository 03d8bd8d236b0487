"""The diagnosis holdout: randomised simulator runs with mixed knobs, diagnosed with and without the
extension and scored against the truth the simulator computes (devicesim/truth.py).

A case samples a preset (and LNC), a report period (0.1-5 s), a length (15-300 reports), warm-up on
or off, and none, one or two causes, each mild or severe, set through absolute knobs sized against
the preset's own healthy step (so "severe" means the same on every preset). The truth is the last
report's (steady state). Scoring, per case and per telemetry:

- a run whose steady utilisation (after any warm-up) is >= the threshold must name no bottleneck
  (else a false alarm), except the truth in a run within `BORDER` points of it, whose windows dip below;
- below it, the top bottleneck is right when it is the truth's main cause, `unexplained` when nothing
  is named (or `unexplained`), and wrong otherwise;
- an advisory truth (fp32, memory nearly full) is right when that advisory is among the findings.

`python -m benchmarks --only diagnosis` runs a large sample and prints the confusion matrices and
the calibration table; tests/test_diagnosis_holdout.py runs a fixed-seed sample of about 40 cases.
The rules were derived from the physics of each cause, not from these ranges: they are also checked
on cases and real traces this generator never makes.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from devicesim.engine import Engine, SimConfig, encode
from devicesim.presets import get_preset
from devicesim.scenarios import resolve
from neurontop.core.analysis.diagnose import diagnose
from neurontop.core.analysis.thresholds import DEFAULTS
from neurontop.core.telemetry.sample import Decoder

PRESETS = (("trn1.2xlarge", None), ("trn1.32xlarge", None), ("trn2.48xlarge", None), ("trn2.48xlarge", 1))
PERIODS = (0.1, 0.5, 1.0, 2.0, 5.0)
CAUSES = ("input_pipeline", "host_sync", "launch_overhead", "communication", "straggler", "idle_cores",
          "hbm_bandwidth", "fp32_precision", "hardware_errors")
ADVISORY_TRUTHS = {"fp32_precision", "hbm_capacity", "memory_leak"}  # (and hardware_errors without a slow core)
BORDER = 2.0  # points above the threshold where naming the truth in the windows that dip below is no alarm
NOT_A_BOTTLENECK = {"warm_up", "fp32_precision", "hbm_capacity", "memory_leak", "out_of_memory", "hang"}


@dataclass(frozen=True)
class Case:
    preset: str
    lnc: int | None
    period: float
    reports: int
    knobs: dict
    causes: tuple[str, ...]  # what was injected (the truth is computed, not this)
    workload: str | None = None
    seed: int = 0

    def describe(self) -> str:
        lnc = f" LNC={self.lnc}" if self.lnc else ""
        return (f"{self.preset}{lnc} {self.period:g}s x{self.reports} {'+'.join(self.causes) or 'healthy'} "
                f"{json.dumps(self.knobs, sort_keys=True)}")


def _knobs_for(cause: str, severe: bool, rng: np.random.Generator, base, preset) -> tuple[dict, str | None]:
    """Absolute knobs that inject `cause`, sized against the preset's healthy step `base`."""
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    if cause == "input_pipeline":
        workers = int(rng.integers(1, 9))
        ratio = u(1.6, 4.0) if severe else u(1.1, 1.35)  # input time over device time
        cfg = base.extra["cfg"]
        tokens = cfg.micro_batch * base.extra["accumulation"] * max(1, cfg.dp) * cfg.seq
        return {"workers": workers, "cpu_us_per_token": ratio * base.device_s * workers * 1e6 / tokens}, None
    if cause == "host_sync":
        return {"host_sync_ms": base.micro_device_s * 1e3 * (u(0.6, 2.0) if severe else u(0.15, 0.3))}, None
    if cause == "launch_overhead":
        launch = u(2.0, 20.0)
        x = u(2.0, 5.0) if severe else u(1.15, 1.5)
        return {"launch_ms": launch, "graphs_per_micro": max(1, round(x * base.micro_device_s * 1e3 / launch))}, None
    if cause == "communication":
        return {"nodes": int(rng.integers(2, 9)), "link_efficiency": u(0.05, 0.2) if severe else u(0.3, 0.6),
                "overlap_grad_allreduce": not severe}, None
    if cause == "straggler":
        return {"straggler_core": int(rng.integers(0, preset.n_cores)),
                "straggler_factor": u(1.8, 3.0) if severe else u(1.2, 1.45)}, None
    if cause == "idle_cores":
        return {"idle_cores": max(1, int(preset.n_cores * (u(0.4, 0.6) if severe else u(0.15, 0.25))))}, None
    if cause == "hbm_bandwidth":
        return {"seq": int(rng.integers(32, 97)) if severe else int(rng.integers(160, 320)), "micro_batch": 1}, \
            "gpt-1.3b"
    if cause == "fp32_precision":
        return {"dtype": "fp32", "recompute": "full"}, None
    if cause == "hardware_errors":  # a device correcting ECC errors, its first core slowed (or not, when mild)
        dev = int(rng.integers(0, preset.n_devices))
        out = {"ecc_per_s": u(5.0, 100.0), "ecc_device": dev}
        if severe:
            out |= {"straggler_core": dev * preset.cores_per_device, "straggler_factor": u(1.5, 3.0)}
        return out, None
    raise ValueError(cause)


def sample_cases(n: int, seed: int = 0) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases: list[Case] = []
    while len(cases) < n:
        preset_name, lnc = PRESETS[int(rng.integers(len(PRESETS)))]
        preset = get_preset(preset_name, lnc=lnc) if lnc else get_preset(preset_name)
        k = int(rng.choice([0, 1, 1, 2, 2]))
        causes = tuple(str(c) for c in rng.choice(CAUSES, size=k, replace=False)) if k else ()
        if "hbm_bandwidth" in causes and "fp32_precision" in causes:
            continue
        if "hardware_errors" in causes and "straggler" in causes:
            continue  # (both set the slow core)
        workload = "gpt-1.3b" if "hbm_bandwidth" in causes else None
        if workload is not None and preset.n_cores < 2:
            continue
        from devicesim.timing import step_model

        cfg, kn, _ = resolve(preset, "healthy", {}, workload)
        base = step_model(preset, cfg, kn)
        knobs: dict = {}
        for c in causes:
            add, _ = _knobs_for(c, bool(rng.random() < 0.55), rng, base, preset)
            knobs.update(add)
        period = float(rng.choice(PERIODS))
        reports = int(rng.integers(15, 301))
        # long steps need time to show: at least 60 s of stream, 15-300 reports
        reports = max(reports, min(300, int(np.ceil(60 / period))))
        if rng.random() < 0.35:
            knobs["compile_s"] = round(min(float(rng.uniform(5, 30)), 0.3 * reports * period), 2)
        case = Case(preset_name, lnc, period, reports, knobs, causes, workload, int(rng.integers(1 << 30)))
        try:
            Engine(_config(case))
        except ValueError:  # a mix that does not fit in memory at start: not a diagnosis case
            continue
        cases.append(case)
    return cases


def _config(case: Case) -> SimConfig:
    preset = get_preset(case.preset, lnc=case.lnc) if case.lnc else get_preset(case.preset)
    return SimConfig(preset, scenario="healthy", seed=case.seed, period_s=case.period, numerics=False,
                     overrides=dict(case.knobs), workload=case.workload)


@dataclass
class Outcome:
    case: Case
    truth: str
    lost: dict
    steady_util: float
    predicted: dict[str, str] = field(default_factory=dict)  # telemetry -> predicted top cause
    verdict: dict[str, str] = field(default_factory=dict)  # telemetry -> right, wrong, unexplained, false_alarm, ok
    confidence: dict[str, float] = field(default_factory=dict)


def run_case(case: Case) -> Outcome:
    eng = Engine(_config(case))
    lines = [encode(eng.step_window()) for _ in range(case.reports)]
    last = json.loads(lines[-1])["neuron_top"]["truth"]
    start = eng.train_start()
    d = Decoder()
    samples = [d.decode(x) for x in lines]
    steady = [s.util.mean() for s in samples if s.time_s > start + case.period] or [samples[-1].util.mean()]
    out = Outcome(case, last["cause"], last.get("lost", {}), float(np.mean(steady)))
    plain = []
    for x in lines:
        doc = json.loads(x)
        doc.pop("neuron_top", None)
        plain.append(json.dumps(doc).encode())
    for tel, data in (("extension", lines), ("plain", plain)):
        dec = Decoder()
        res = diagnose([dec.decode(x) for x in data]).to_dict()
        out.predicted[tel], out.confidence[tel] = _top(res)
        out.verdict[tel] = _score(out, res)
    return out


def _top(res: dict) -> tuple[str, float]:
    """The top bottleneck of the run's last segment (warm-up and advisories aside), or 'none'."""
    seg = res["segments"][-1]
    for f in seg["findings"]:
        if f["kind"] == "bottleneck" and f["cause"] not in NOT_A_BOTTLENECK:
            return f["cause"], float(f["confidence"])
    return "none", 1.0


def _score(o: Outcome, res: dict) -> str:
    pred = _top(res)[0]
    named = {f["cause"] for f in res["segments"][-1]["findings"]}
    if o.truth in ADVISORY_TRUTHS or o.truth in ("warm_up", "out_of_memory", "hang") or (
            o.truth == "hardware_errors" and o.steady_util >= DEFAULTS.util_below):
        return "right" if o.truth in named else ("wrong" if pred not in ("none", "unexplained") else "unexplained")
    if o.steady_util >= DEFAULTS.util_below:
        if pred == "none" or (pred == o.truth and o.steady_util < DEFAULTS.util_below + BORDER):
            return "ok"  # (a run that hovers at the threshold dips below it in some windows)
        return "false_alarm"
    if pred == o.truth:
        return "right"
    if pred in ("none", "unexplained"):
        return "unexplained"
    return "wrong"


def summarise(outs: list[Outcome]) -> dict:
    res: dict = {}
    for tel in ("extension", "plain"):
        v = Counter(o.verdict[tel] for o in outs)
        below = [o for o in outs if o.steady_util < DEFAULTS.util_below and o.truth not in ADVISORY_TRUTHS]
        above = [o for o in outs if o.steady_util >= DEFAULTS.util_below and o.truth not in ADVISORY_TRUTHS]
        scored = [o for o in outs if o.verdict[tel] in ("right", "wrong", "unexplained")]
        cb = Counter(o.verdict[tel] for o in below)
        res[tel] = {
            "cases": len(outs), "verdicts": dict(v),
            "top1": sum(o.verdict[tel] in ("right", "ok") for o in outs) / max(1, len(outs)),
            "below": len(below),
            "wrong_below": cb["wrong"] / max(1, len(below)),
            "unexplained_below": cb["unexplained"] / max(1, len(below)),
            "false_alarms": sum(o.verdict[tel] == "false_alarm" for o in above),
            "confusion": dict(Counter((o.truth, o.predicted[tel]) for o in outs)),
            "calibration": _calibration([o for o in scored if o.predicted[tel] not in ("none", "unexplained")], tel),
        }
    return res


def _calibration(outs: list[Outcome], tel: str) -> dict:
    bins: dict[str, list[int]] = {}
    for o in outs:
        c = o.confidence[tel]
        key = f"{int(c * 10) / 10:.1f}-{int(c * 10) / 10 + 0.1:.1f}"
        bins.setdefault(key, []).append(o.verdict[tel] == "right")
    return {k: {"n": len(v), "right": sum(v) / len(v)} for k, v in sorted(bins.items())}


def confusion_table(res: dict, tel: str) -> str:
    conf = res[tel]["confusion"]
    truths = sorted({t for t, _ in conf})
    preds = sorted({p for _, p in conf})
    lines = [f"| truth \\ {tel} | " + " | ".join(preds) + " |", "|---" * (len(preds) + 1) + "|"]
    for t in truths:
        lines.append(f"| {t} | " + " | ".join(str(conf.get((t, p), "")) for p in preds) + " |")
    return "\n".join(lines)


def run(res, quick: bool = False) -> None:
    """`python -m benchmarks --only diagnosis`: the large holdout."""
    n = 6 if quick else 200
    outs = [run_case(c) for c in sample_cases(n, seed=20261206)]
    s = summarise(outs)
    for tel in ("extension", "plain"):
        r = s[tel]
        print(f"\n### {tel}: {r['cases']} cases, {r['below']} below the threshold")
        print(f"top-1 {r['top1']:.1%}; below the threshold: wrong {r['wrong_below']:.1%}, unexplained "
              f"{r['unexplained_below']:.1%}; false alarms at >= 70 %: {r['false_alarms']}")
        print(confusion_table(s, tel))
        print("calibration (confidence bin -> share right):",
              ", ".join(f"{k}: {v['right']:.0%} of {v['n']}" for k, v in r["calibration"].items()))
    for o in outs:
        if "wrong" in o.verdict.values() or "false_alarm" in o.verdict.values():
            print(f"  {o.verdict} truth={o.truth} pred={o.predicted} util={o.steady_util:.1f} {o.case.describe()}")
    for tel in ("extension", "plain"):
        r = s[tel]
        res.add("diagnosis", f"{tel}: top-1", [r["top1"] * 100], "%")
        res.add("diagnosis", f"{tel}: wrong cause below the threshold", [r["wrong_below"] * 100], "%")
        res.add("diagnosis", f"{tel}: unexplained below the threshold", [r["unexplained_below"] * 100], "%")
        res.add("diagnosis", f"{tel}: false alarms at >= 70 %", [r["false_alarms"]], "runs")
