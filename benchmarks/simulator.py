"""The simulator against published Trn1 throughput, and what the simulator itself costs."""

from __future__ import annotations

import csv
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from devicesim.presets import get_preset
from devicesim.timing import Knobs, step_model
from devicesim.workload import TransformerConfig

from .common import Results, bin_path
from .procstat import measure

ROOT = Path(__file__).resolve().parent.parent
CSV = ROOT.parent / "shared" / "reference" / "trn1-training-throughput.csv"

# Public architecture figures. The GPT3-23B/46B shapes are not in the table; the layer counts here
# are chosen so that 12 L d^2 matches the named size (an assumption, said in BENCHMARKS.md).
ARCH: dict[str, dict[str, Any]] = {
    "Llama-3.1-8B": dict(layers=32, d_model=4096, heads=32, kv_heads=8, d_ff=14336, vocab=128256, gated_mlp=True),
    "Llama-3.1-70B": dict(layers=80, d_model=8192, heads=64, kv_heads=8, d_ff=28672, vocab=128256, gated_mlp=True),
    "Llama2-7B": dict(layers=32, d_model=4096, heads=32, kv_heads=32, d_ff=11008, vocab=32000, gated_mlp=True),
    "Llama2-13B": dict(layers=40, d_model=5120, heads=40, kv_heads=40, d_ff=13824, vocab=32000, gated_mlp=True),
    "Llama2-70B": dict(layers=80, d_model=8192, heads=64, kv_heads=8, d_ff=28672, vocab=32000, gated_mlp=True),
    "GPT3-23B": dict(layers=52, d_model=6144, heads=48, kv_heads=48, d_ff=24576, vocab=50257, gated_mlp=False),
    "GPT3-46B": dict(layers=56, d_model=8192, heads=64, kv_heads=64, d_ff=32768, vocab=50257, gated_mlp=False),
    "GPT3-175B": dict(layers=96, d_model=12288, heads=96, kv_heads=96, d_ff=49152, vocab=50257, gated_mlp=False),
}


def simulated_seq_per_s(row: dict) -> float:
    preset = get_preset("trn1.32xlarge")
    tp, pp, dp = int(row["tp"]), int(row["pp"]), int(row["dp"])
    per_node = preset.n_cores
    local_dp = max(1, per_node // (tp * pp))
    nodes = dp // local_dp
    cfg = TransformerConfig(name=row["model"], seq=int(row["seq_len"]), micro_batch=int(row["micro_batch"]),
                            global_batch=int(row["global_batch"]), tp=tp, pp=pp, dp=local_dp, nodes=nodes,
                            **ARCH[row["model"]])
    m = step_model(preset, replace(cfg), Knobs())
    return cfg.global_batch / m.period_s


def simulated_mfu(row: dict) -> float:
    """MFU over every core of the job (the replica spans instances when TP x PP exceeds one)."""
    preset = get_preset("trn1.32xlarge")
    sim = simulated_seq_per_s(row)
    cfg = TransformerConfig(name=row["model"], seq=int(row["seq_len"]), micro_batch=1, global_batch=1,
                            **ARCH[row["model"]])
    cores = int(row["chips"]) * preset.cores_per_device
    return cfg.flops_per_token() * sim * cfg.seq / (cores * preset.core_bf16_flops)


def throughput(res: Results) -> None:
    if not CSV.exists():
        res.note(f"{CSV} not found: throughput check skipped")
        return
    with open(CSV) as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        sim = simulated_seq_per_s(row)
        pub = float(row["seq_per_s"])
        err = (sim - pub) / pub * 100
        mfu = simulated_mfu(row) * 100
        doc = f", AWS says {row['doc_mfu_pct']} %" if row["doc_mfu_pct"] else ""
        res.add("throughput", f"{row['model']} (SDK {row['sdk']}, TP{row['tp']} PP{row['pp']} DP{row['dp']}) "
                f"sim {sim:.1f} vs published {pub:g} seq/s, MFU {mfu:.1f} %{doc}", [err], "% error",
                target="within +-15 %")


def simulator_cost(res: Results) -> None:
    secs = 3.0 if res.quick else 10.0
    configs = [("trn2.48xlarge", 1.0, False)] if res.quick else [
        (p, period, num) for p in ("trn1.32xlarge", "trn2.48xlarge") for period in (1.0, 0.1) for num in (False, True)]
    for preset, period, numerics in configs:
        args = [bin_path("devicesim"), "serve", "--stdout", "--preset", preset, "--period", f"{period}s"]
        if not numerics:
            args.append("--no-numerics")
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.5)
            m = measure(p.pid, secs, include_children=False)
        finally:
            p.terminate()
            p.wait()
        label = "timing + numerics" if numerics else "timing only"
        target = ""
        if preset == "trn2.48xlarge" and period == 1.0 and not numerics:
            target = "<= 2 %"
        elif numerics:
            target = "numerics budget 15 %"
        res.add("simulator", f"devicesim {preset} period {period:g}s {label} CPU", [m["cpu_pct"]],
                "% of one core", target=target)
    reps = 1 if res.quick else 3
    n = 300 if res.quick else 3000
    for numerics in (False, True) if not res.quick else (False,):
        vals = []
        for _ in range(reps):
            args = [bin_path("devicesim"), "serve", "--stdout", "--speed", "max", "--count", str(n),
                    "--preset", "trn2.48xlarge"] + ([] if numerics else ["--no-numerics"])
            t0 = time.perf_counter()
            subprocess.run(args, stdout=subprocess.DEVNULL, check=True)
            vals.append(n / (time.perf_counter() - t0))
        res.add("simulator", f"devicesim trn2.48xlarge --speed max reports/s ({'numerics' if numerics else 'timing only'})",
                vals, "reports/s", target=">= 500" if not numerics else "")
