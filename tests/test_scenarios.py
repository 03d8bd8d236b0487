"""Each scenario produces its bottleneck, visible in the report's own counters."""

from __future__ import annotations

import numpy as np
import pytest

from devicesim.engine import Engine, SimConfig
from devicesim.presets import get_preset

from .conftest import PRESETS


def run(preset: str, scenario: str, windows: int = 40, **over):
    eng = Engine(SimConfig(get_preset(preset), scenario=scenario, seed=3, numerics=False, overrides=over))
    reps = [eng.step_window() for _ in range(windows)]
    util = np.mean([[c["neuroncore_utilization"] for c in r["neuron_runtime_data"][0]["report"]["neuroncore_counters"]
                     ["neuroncores_in_use"].values()] for r in reps])
    flops = np.mean([[c["flops"] for c in r["neuron_runtime_data"][0]["report"]["neuroncore_counters"]
                      ["neuroncores_in_use"].values()] for r in reps])
    return eng, reps, float(util), float(flops)


@pytest.mark.parametrize("preset", PRESETS)
def test_healthy_is_busy(preset: str) -> None:
    _, _, util, _ = run(preset, "healthy")
    assert util >= 80


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("scenario", ["input_bound", "comm_bound", "hbm_bound", "straggler", "idle_cores", "host_sync"])
def test_bottleneck_scenarios_are_below_70(preset: str, scenario: str) -> None:
    eng, reps, util, _ = run(preset, scenario)
    assert util < 70
    last = reps[-1]["neuron_top"]
    if scenario == "input_bound":
        assert last["input"]["wait_frac"] > 0.2 and last["input"]["queue_depth"] == 0
    elif scenario == "comm_bound":
        exposed = sum(c["exposed_s"] for c in last["collectives"]) / last["period_s"]
        assert exposed > 0.2
    elif scenario == "hbm_bound":
        bw = eng.preset.core_hbm_bw
        rates = [(np.array(b["neuron_top"]["cores"]["hbm_read_bytes"]) + b["neuron_top"]["cores"]["hbm_write_bytes"]
                  - np.array(a["neuron_top"]["cores"]["hbm_read_bytes"]) - a["neuron_top"]["cores"]["hbm_write_bytes"])
                 for a, b in zip(reps[-6:-1], reps[-5:], strict=True)]
        assert np.mean(rates) / bw > 0.55, "HBM bytes/s should be near the bandwidth"
    elif scenario == "straggler":  # averaged over the run: one window may fall inside everyone's compute burst
        u = np.mean([[c["neuroncore_utilization"] for c in r["neuron_runtime_data"][0]["report"]["neuroncore_counters"]
                      ["neuroncores_in_use"].values()] for r in reps], axis=0)
        others = sorted(u)[:-1]
        assert max(u) - np.median(others) > 25  # the slow core is busy while its peers wait
    elif scenario == "idle_cores":
        u = [c["neuroncore_utilization"] for c in reps[-1]["neuron_runtime_data"][0]["report"]["neuroncore_counters"]
             ["neuroncores_in_use"].values()]
        assert sum(x == 0 for x in u) >= len(u) // 2 - 1


@pytest.mark.parametrize("preset", PRESETS)
def test_fp32_is_busy_but_slow(preset: str) -> None:
    eng32, _, util32, flops32 = run(preset, "fp32")
    eng16, _, _, flops16 = run(preset, "fp32", dtype="bf16")
    assert util32 >= 70
    assert flops32 <= 0.30 * flops16  # about a quarter of the bf16 FLOP rate on the same workload
    assert eng32.model.period_s > 2.5 * eng16.model.period_s


@pytest.mark.parametrize("preset", PRESETS)
def test_hbm_pressure_keeps_memory_above_90_percent(preset: str) -> None:
    eng, reps, util, _ = run(preset, "hbm_pressure", windows=60)
    cap = eng.preset.hbm_bytes * eng.preset.n_devices
    for r in reps:
        used = r["neuron_runtime_data"][0]["report"]["memory_used"]["neuron_runtime_used_bytes"]["neuron_device"]
        assert 0.90 * cap < used <= cap
    assert util >= 70


def test_control_changes_scenario_and_records_event() -> None:
    eng = Engine(SimConfig(get_preset("trn1.32xlarge"), numerics=False))
    eng.step_window()
    state = eng.control({"scenario": "input_bound"})
    assert state["scenario"] == "input_bound"
    r = eng.step_window()
    assert r["neuron_top"]["events"][0]["type"] == "scenario"
    eng.control({"set": {"workers": 16}})
    assert eng.knobs.workers == 16
    with pytest.raises(ValueError):
        eng.control({"set": {"nonsense": 1}})


@pytest.mark.parametrize("preset,lnc", [("trn1.2xlarge", None), ("trn1.32xlarge", None), ("trn2.48xlarge", 2),
                                        ("trn2.48xlarge", 1)])
def test_every_preset_at_every_lnc_runs_its_default_workload_healthy(preset: str, lnc: int | None) -> None:
    """The default workload fits (trn2 at LNC=1 has half the memory per core: more tensor parallelism)
    and keeps every core >= 80 % busy."""
    p = get_preset(preset, lnc)
    eng = Engine(SimConfig(p, seed=1, numerics=False))
    assert not eng.crashed and eng.mem_active.total <= p.core_hbm_bytes
    r = [eng.step_window() for _ in range(15)][-1]
    util = [c["neuroncore_utilization"] for rt in r["neuron_runtime_data"]
            for c in rt["report"]["neuroncore_counters"]["neuroncores_in_use"].values()]
    assert len(util) == p.n_cores and min(util) >= 80, (preset, lnc, min(util))


def test_serve_refuses_a_workload_that_does_not_fit() -> None:
    import subprocess

    from .conftest import bin_path

    r = subprocess.run([bin_path("devicesim"), "serve", "--stdout", "--count", "1", "--no-numerics", "--preset",
                        "trn1.32xlarge", "--set", "zero1=false", "--set", "micro_batch=4", "--set", "recompute=none"],
                       capture_output=True, timeout=60)
    err = r.stderr.decode().strip()
    assert r.returncode == 2 and r.stdout == b"" and len(err.splitlines()) == 1 and "Traceback" not in err
    cap = get_preset("trn1.32xlarge").core_hbm_bytes
    assert "does not fit" in err and f"{cap} bytes" in err and "needed per core" in err
