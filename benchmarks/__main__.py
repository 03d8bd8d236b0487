"""python -m benchmarks [--quick] [--only NAME[,NAME]] [--out results.json]

Runs the real installed programs, one measurement at a time, and prints a markdown table.
Figures are ratios within one run where a comparison is made (these machines are shared).
See BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from . import cluster_bench, diagnosis, monitors, profiles_bench, simulator, telemetry
from .common import Results, machine

SECTIONS = {
    "throughput": simulator.throughput,
    "simulator": simulator.simulator_cost,
    "telemetry": telemetry.run,
    "startup": monitors.startup,
    "monitors": monitors.overhead,
    "profiles": profiles_bench.run,
    "export": profiles_bench.export_only,  # part of "profiles"; alone for a quick re-run
    "recording": profiles_bench.recording_only,  # part of "profiles"; alone for a quick re-run
    "diagnosis": diagnosis.run,
    "cluster": cluster_bench.run,
}


def _compile_installed() -> None:
    """Bytecode for neuron-top's own packages, as `pip install` writes it. An editable install under
    PYTHONDONTWRITEBYTECODE (set on these machines) would otherwise compile every module at every
    start, which no installed neuron-top does (about 30 ms per process)."""
    import compileall
    import importlib.util
    import os

    for pkg in ("neurontop", "devicesim"):
        spec = importlib.util.find_spec(pkg)
        if spec is not None and spec.origin:
            compileall.compile_dir(os.path.dirname(spec.origin), quiet=1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks")
    ap.add_argument("--quick", action="store_true", help="a short smoke run (used as a test)")
    ap.add_argument("--only", help=f"comma-separated sections: {', '.join(SECTIONS)}")
    ap.add_argument("--out", help="write the JSON results here")
    ap.add_argument("--burner", action="store_true", help="export: a busy loop on one CPU while the exports run")
    args = ap.parse_args(argv)
    only = [s.strip() for s in args.only.split(",")] if args.only else list(SECTIONS)
    bad = [s for s in only if s not in SECTIONS]
    if bad:
        print(f"benchmarks: unknown section(s) {', '.join(bad)}; choose from {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    res = Results(quick=args.quick)
    res.burner = args.burner
    _compile_installed()
    t0 = time.monotonic()
    for name in only:
        s0 = time.monotonic()
        print(f"## {name}", file=sys.stderr, flush=True)
        SECTIONS[name](res)
        print(f"   ({time.monotonic() - s0:.0f} s)", file=sys.stderr, flush=True)
    out = {"machine": machine(), "quick": args.quick, "elapsed_s": round(time.monotonic() - t0, 1),
           "figures": res.figures, "notes": res.notes}
    print(res.markdown(out["machine"], out["elapsed_s"]))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
