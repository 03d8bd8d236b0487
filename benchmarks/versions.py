"""Two installs of neuron-top side by side, in one run: `python -m benchmarks.versions --before VENV/bin`.

For a change that must not cost speed (a refactor): the live view's CPU at a 1 s and a 0.5 s
refresh (trn1.32xlarge, three 20 s windows each, the median) and the export of one hour at 0.1 s
(36,000 samples, --fields all, `--runs` each, the median, the two installs' runs in pairs, which
goes first alternating; `--only-export` for the export alone, `--burner` for it under load), each
for the `--before` install and this one, with btop's CPU and pyarrow's write time of the same table
measured in the same run. Prints each figure and its ratio to the peer, and the after/before change;
for the export also the median of the pairs' ratios with a bootstrap 95 % interval: on a VM whose
speed drifts by 10 % within minutes, a pair's two runs share the drift, so their ratio is what
compares (the ratio of the two medians does not).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile

from .common import start_sim, stop
from .monitors import _ensure_debian, _home_with_configs, _measure_window
from .profiles_bench import _ensure, _run_measured, burner, make_profile, pyarrow_writes


def _live(bin_dir: str, sock: str, refresh: float) -> float:
    sim = start_sim(sock, "trn1.32xlarge", refresh)
    try:
        m = _measure_window(f"{bin_dir}/neuron-top --connect {sock} --refresh {refresh}s", 5.0, 60.0, windows=3)
    finally:
        stop(sim)
    return float("nan") if m is None else m["cpu_pct"]


def _exports(before: str, after: str, path: str, out: str, runs: int) -> dict[str, list[tuple[float, float]]]:
    """(wall s, peak RSS MiB) of each install's CSV export of the profile, in pairs (which goes first
    alternating)."""
    got: dict[str, list[tuple[float, float]]] = {before: [], after: []}
    for k in range(runs):
        for bin_dir in (before, after) if k % 2 == 0 else (after, before):
            got[bin_dir].append(_run_measured([f"{bin_dir}/neuron-top", "export", path, "-o", out, "--fields", "all"]))
    return got


def paired(before: list[float], after: list[float], resamples: int = 2000) -> dict[str, float]:
    """after/before of each pair: the median, the quartiles, a bootstrap 95 % interval of the median
    (a fixed seed: the same runs give the same interval), and how many pairs `after` was faster in."""
    r = sorted(a / b for b, a in zip(before, after, strict=True))
    rng = random.Random(0)
    boots = sorted(statistics.median(rng.choices(r, k=len(r))) for _ in range(resamples))
    q = statistics.quantiles(r, n=4) if len(r) > 1 else [r[0]] * 3
    return {"median": statistics.median(r), "q1": q[0], "q3": q[2], "lo": boots[int(0.025 * resamples)],
            "hi": boots[int(0.975 * resamples) - 1], "faster": sum(x < 1 for x in r), "pairs": len(r)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.versions")
    ap.add_argument("--before", required=True, help="the bin folder of the install to compare with")
    ap.add_argument("--after", default=os.path.dirname(sys.executable), help="default: this venv's bin folder")
    ap.add_argument("--only-export", action="store_true", help="the export alone (not the live view)")
    ap.add_argument("--runs", type=int, default=15, help="exports per install, in pairs (default 15)")
    ap.add_argument("--burner", action="store_true", help="a busy loop on one CPU while the exports run")
    args = ap.parse_args(argv)
    if args.runs < 1:
        print(f"benchmarks.versions: --runs {args.runs}: at least 1", file=sys.stderr)
        return 2
    for name in ("before", "after"):
        if not os.access(os.path.join(getattr(args, name), "neuron-top"), os.X_OK):
            print(f"benchmarks.versions: --{name} {getattr(args, name)}: no neuron-top program in that folder",
                  file=sys.stderr)
            return 2
    rows: list[tuple[str, float, float, str]] = []
    tmp = tempfile.mkdtemp(prefix="ntbench-versions-")
    sock = os.path.join(tmp, "sim.sock")
    btop = _ensure_debian("btop") if not args.only_export else None
    for refresh in () if args.only_export else (1.0, 0.5):
        before = _live(args.before, sock, refresh)
        after = _live(args.after, sock, refresh)
        peer = float("nan")
        if btop:
            m = _measure_window(btop, 5.0, 20.0, {"HOME": _home_with_configs(refresh)})
            peer = m["cpu_pct"] if m else peer
        rows.append((f"live CPU, refresh {refresh:g}s (% of one core)", before, after, f"btop {peer:.3f}"))
        rows.append((f"  / btop at {refresh:g}s", before / peer, after / peer, ""))
    path = os.path.join(tmp, "hour.ntprof")
    make_profile(path, "trn1.32xlarge", 0.1, 36000, seed=3)
    out = os.path.join(tmp, "hour.csv")
    with burner(args.burner):
        got = _exports(args.before, args.after, path, out, args.runs)
    before = statistics.median(w for w, _ in got[args.before])
    after = statistics.median(w for w, _ in got[args.after])
    t_pa = float("nan")
    pa = _ensure("pyarrow", install=True)
    if pa is not None:
        import pyarrow.csv as pacsv

        t_pa = sorted(pyarrow_writes(pacsv.read_csv(out), out + ".pa"))[1]
    rows.append(("export of the hour (s)", before, after, f"pyarrow {t_pa:.3f}"))
    rows.append(("  / pyarrow", before / t_pa, after / t_pa, ""))
    rows.append(("export peak RSS (MiB)", max(r for _, r in got[args.before]), max(r for _, r in got[args.after]), ""))
    print("| figure | before | after | after / before | peer |\n|---|---|---|---|---|")
    for name, b, a, note in rows:
        print(f"| {name} | {b:.3f} | {a:.3f} | {a / b:.3f} | {note} |")
    pr = paired([w for w, _ in got[args.before]], [w for w, _ in got[args.after]])
    print(f"\nexport, after / before in each pair: median {pr['median']:.3f} (quartiles {pr['q1']:.3f}-{pr['q3']:.3f}, "
          f"95 % interval of the median {pr['lo']:.3f}-{pr['hi']:.3f}); after faster in {pr['faster']} of {pr['pairs']} pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
