"""Regenerate the shipped example profiles: `python profiles/make_profiles.py [--out profiles]`.

Each profile is the simulator's stream with a fixed seed, recorded through neuron-top's own
Recorder, so the content (every report line and the metadata) is reproducible byte for byte on one
machine; across CPUs only the proxy loss differs in its last digits (float32 BLAS and numpy's SIMD
kernels round differently), so tests compare it as a number.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devicesim.engine import FIXED_EPOCH, Engine, SimConfig, encode  # noqa: E402
from devicesim.presets import get_preset  # noqa: E402
from devicesim.scenarios import SCENARIOS  # noqa: E402
from neurontop.core.store.recorder import Recorder  # noqa: E402
from neurontop.core.telemetry.sample import Decoder  # noqa: E402

DURATION_S = 150
PERIOD_S = 1.0
SEED = 2026

# (preset, scenario, file name suffix, knobs)
PROFILES = [("trn1.32xlarge", name, name, {}) for name in SCENARIOS] + [
    ("trn2.48xlarge", "healthy", "healthy", {}),
    ("trn1.2xlarge", "healthy", "warmup", {"compile_s": 20.0}),  # compile 20 s, load 5 s, then train
]


def make(preset: str, scenario: str, out: Path, name: str | None = None, knobs: dict | None = None) -> Path:
    path = out / f"{preset}-{name or scenario}.ntprof"
    if path.exists():
        path.unlink()
    eng = Engine(SimConfig(get_preset(preset), scenario=scenario, seed=SEED, period_s=PERIOD_S, numerics=True,
                           start_time=FIXED_EPOCH, overrides=dict(knobs or {})))
    meta = {
        "created_unix": f"{FIXED_EPOCH:.3f}", "start_unix": f"{FIXED_EPOCH:.3f}",
        "source": json.dumps({"kind": "simulator", "script": "profiles/make_profiles.py"}),
        "simulator": json.dumps({"preset": preset, "scenario": scenario, "seed": SEED, "period_s": PERIOD_S,
                                 "cause": SCENARIOS[scenario].truth, "knobs": knobs or {}}),
        "description": SCENARIOS[scenario].description,
    }
    rec = Recorder(str(path), meta, autoflush=False)
    dec = Decoder()
    for k in range(int(DURATION_S / PERIOD_S)):
        line = encode(eng.step_window())
        rec.append(line, dec.decode(line), now=float(k))
    rec.close()
    return path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent))
    args = ap.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    out = Path(args.out)
    for preset, scenario, name, knobs in PROFILES:
        p = make(preset, scenario, out, name, knobs)
        print(f"{p.name}: {p.stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
