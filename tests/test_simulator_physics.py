"""The physical laws of DESIGN.md §4 hold for every preset x scenario, and under random knobs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devicesim.engine import Engine, SimConfig, encode
from devicesim.presets import PRESETS, get_preset
from devicesim.scenarios import SCENARIOS
from devicesim.timing import engine_peak

from .conftest import PRESETS as PRESET_NAMES


def check_laws(eng: Engine, windows: int) -> None:
    p = eng.preset
    n = p.n_cores
    prev = None
    peak = lambda dt: sum(engine_peak(p, e, dt) for e in ("tensor", "vector", "scalar", "gpsimd"))  # noqa: E731
    for _ in range(windows):
        r = eng.step_window()
        rep = r["neuron_runtime_data"][0]["report"]
        cores = rep["neuroncore_counters"]["neuroncores_in_use"]
        util = np.array([cores[str(i)]["neuroncore_utilization"] for i in range(n)])
        flops = np.array([cores[str(i)]["flops"] for i in range(n)])
        assert ((util >= 0) & (util <= 100)).all()
        assert (flops <= peak(eng.wl.dtype) * 1.0001).all(), "FLOP/s above the engines' peak"
        ext = r["neuron_top"]
        cum = {k: np.array(ext["cores"][k], dtype=float) for k in ("busy_ns", "flops", "hbm_read_bytes", "hbm_write_bytes")}
        links = np.array(ext["links"]["bytes"], dtype=float)
        mem = rep["memory_used"]["neuron_runtime_used_bytes"]["usage_breakdown"]["neuroncore_memory_usage"]
        per_core = np.array([sum(mem[str(i)].values()) for i in range(n)])
        per_dev = per_core.reshape(p.n_devices, -1).sum(axis=1)
        assert (per_dev <= p.hbm_bytes).all(), "HBM used above capacity"
        for e in ext["cores"]["engines"].values():
            assert all(0 <= x <= 1 for x in e)
        for lat in (rep["execution_stats"]["latency_stats"] or {}).values():  # percentiles never decrease
            assert lat is None or list(lat.values()) == sorted(lat.values()), lat
        if prev is not None:
            dt = ext["time_s"] - prev[0]
            for k, v in cum.items():
                assert (v >= prev[1][k]).all(), f"cumulative {k} decreased"
            hbm = (cum["hbm_read_bytes"] + cum["hbm_write_bytes"] - prev[1]["hbm_read_bytes"] - prev[1]["hbm_write_bytes"]) / dt
            assert (hbm <= p.core_hbm_bw * 1.0001).all(), "HBM bytes/s above bandwidth"
            assert (links >= prev[2]).all()
            assert ((links - prev[2]) / dt <= p.link_bw * 1.0001).all(), "link throughput above link bandwidth"
            busy = (cum["busy_ns"] - prev[1]["busy_ns"]) / dt / 1e9
            assert (busy <= 1.0 + 1e-6).all()
        prev = (ext["time_s"], cum, links)
    m = eng.model
    core_peak = peak(eng.wl.dtype)
    per_step_flops = float(m.flops.max())
    per_step_bytes = float((m.hbm_read + m.hbm_write).max())
    assert m.period_s >= per_step_flops / core_peak, "step shorter than the compute roofline"
    assert m.period_s >= per_step_bytes / p.core_hbm_bw, "step shorter than the memory roofline"


@pytest.mark.parametrize("preset", PRESET_NAMES)
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_physical_laws_every_preset_and_scenario(preset: str, scenario: str) -> None:
    eng = Engine(SimConfig(get_preset(preset), scenario=scenario, seed=5, numerics=False))
    check_laws(eng, 120)


def test_lnc1_preset_has_eight_cores_per_chip() -> None:
    p = get_preset("trn2.48xlarge", lnc=1)
    assert p.cores_per_device == 8 and p.n_cores == 128 and p.core_version == "v3"
    check_laws(Engine(SimConfig(p, numerics=False)), 5)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    preset=st.sampled_from(sorted(PRESETS)),
    workers=st.integers(1, 32),
    cpu=st.floats(0.1, 400.0),
    link=st.floats(0.05, 1.0),
    overlap=st.booleans(),
    micro=st.integers(1, 4),
    seq=st.sampled_from([64, 256, 1024, 2048]),
    dtype=st.sampled_from(["bf16", "fp32"]),
    straggler=st.floats(1.0, 4.0),
    idle_frac=st.floats(0.0, 0.9),
)
def test_physical_laws_hold_for_any_knobs(preset, workers, cpu, link, overlap, micro, seq, dtype, straggler,
                                          idle_frac) -> None:
    p = get_preset(preset)
    overrides = {"workers": workers, "cpu_us_per_token": cpu, "link_efficiency": link,
                 "overlap_grad_allreduce": overlap, "micro_batch": micro, "seq": seq, "dtype": dtype,
                 "straggler_core": 0, "straggler_factor": straggler, "idle_cores": int(idle_frac * p.n_cores),
                 "recompute": "full"}
    eng = Engine(SimConfig(p, scenario="healthy", seed=2, numerics=False, overrides=overrides))
    if eng.crashed:  # out of memory is an event in the stream, never a clamp
        r = eng.step_window()
        assert any(e["type"] == "oom" for e in r["neuron_top"]["events"])
        return
    check_laws(eng, 6)


def test_out_of_memory_is_an_event_not_a_clamp() -> None:
    eng = Engine(SimConfig(get_preset("trn1.32xlarge"), numerics=False,
                           overrides={"zero1": False, "micro_batch": 4, "recompute": "none"}))
    r = eng.step_window()
    ev = r["neuron_top"]["events"]
    assert ev and ev[0]["type"] == "oom" and ev[0]["requested_bytes"] > ev[0]["capacity_bytes"]
    cores = r["neuron_runtime_data"][0]["report"]["neuroncore_counters"]["neuroncores_in_use"]
    assert all(c["neuroncore_utilization"] == 0 for c in cores.values())
    assert json.loads(encode(r))["neuron_top"]["events"][0]["type"] == "oom"  # still a valid report


def _published_rows() -> list[dict]:
    import csv

    from benchmarks.simulator import CSV

    if not CSV.exists():
        pytest.skip(f"{CSV} (the published figures beside the checkout) is not there")
    with open(CSV) as f:
        return list(csv.DictReader(f))


def test_published_trn1_throughput_within_15_percent() -> None:
    """Every row of AWS's published Trn1 training throughput, simulated with the row's TP/PP/DP,
    micro-batch, global batch and sequence, is within ±15 %, and its MFU within AWS's 15-35 %."""
    from benchmarks.simulator import simulated_mfu, simulated_seq_per_s

    rows = _published_rows()
    assert len(rows) >= 9
    for row in rows:
        sim, pub = simulated_seq_per_s(row), float(row["seq_per_s"])
        assert abs(sim - pub) / pub <= 0.15, (row["model"], row["sdk"], sim, pub)
        assert 0.15 <= simulated_mfu(row) <= 0.35, (row["model"], simulated_mfu(row))


def test_pipeline_bubble_is_p_minus_one_micro_batches() -> None:
    """1F1B: a step of m micro-batches on p stages lasts m + p - 1 micro-batch times."""

    from devicesim.timing import Knobs, step_model
    from devicesim.workload import TransformerConfig

    preset = get_preset("trn1.32xlarge")
    cfg = TransformerConfig(name="t", layers=8, d_model=2048, heads=16, kv_heads=16, d_ff=8192, vocab=32000,
                            seq=2048, micro_batch=1, global_batch=16, tp=8, pp=4, dp=1)
    m = step_model(preset, cfg, Knobs(host_sync_ms=0.0, launch_ms=0.0))
    assert m.extra["accumulation"] == 16
    # no data parallelism, so nothing else sits between the last micro-batch and the optimizer
    assert m.device_s - m.optimizer_s == pytest.approx((16 + 4 - 1) * m.micro_device_s, rel=1e-9)
    assert m.tail_gap_s == pytest.approx(3 * m.micro_device_s, rel=1e-9)
