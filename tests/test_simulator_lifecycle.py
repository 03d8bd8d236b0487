"""devicesim's second generation: the timeline inside a step, warm-up, the host and executions,
crashes, and truth computed from the knobs (the counterfactual), never from the scenario's name."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import numpy as np
import pytest

from devicesim.engine import Engine, SimConfig
from devicesim.presets import get_preset
from devicesim.scenarios import resolve
from devicesim.timing import step_model
from devicesim.truth import IDEAL, REMOVED


def _engine(preset="trn1.32xlarge", scenario="healthy", period=1.0, **knobs) -> Engine:
    return Engine(SimConfig(get_preset(preset), scenario=scenario, seed=3, numerics=False, period_s=period,
                            overrides=knobs))


def _util(report: dict) -> float:
    cores = report["neuron_runtime_data"][0]["report"]["neuroncore_counters"]["neuroncores_in_use"]
    return float(np.mean([c["neuroncore_utilization"] for c in cores.values()]))


def test_utilisation_moves_within_a_step_at_fine_periods_and_averages_out() -> None:
    fine, coarse = _engine(period=0.1), _engine(period=1.0)
    step = fine.model.period_s
    u01 = np.array([_util(fine.step_window()) for _ in range(int(60 / 0.1))])
    u1 = np.array([_util(coarse.step_window()) for _ in range(60)])
    one_step = u01[: int(step / 0.1)]
    assert one_step.max() - one_step.min() > 50  # compute bursts and the gaps between them
    for a in range(0, 60, 10):  # each 10 s average matches the 1 s-period run's within 2 points
        assert abs(u01[a * 10:(a + 10) * 10].mean() - u1[a:a + 10].mean()) < 2


def test_a_warm_up_compiles_then_loads_then_trains() -> None:
    e = _engine("trn1.2xlarge", compile_s=8.0)
    reps = [e.step_window() for _ in range(30)]

    def execs(r):
        return r["neuron_runtime_data"][0]["report"]["execution_stats"]["execution_summary"]["completed"]

    def busy_vcpus(r):
        return sum(v["user"] + v["system"] >= 80 for v in r["system_data"]["vcpu_usage"]["usage_data"].values())

    def device_mem(r):
        return r["neuron_runtime_data"][0]["report"]["memory_used"]["neuron_runtime_used_bytes"]["neuron_device"]

    compiling = reps[:7]
    assert all(execs(r) == 0 and _util(r) == 0 and device_mem(r) == 0 for r in compiling)
    assert all(busy_vcpus(r) >= 4 for r in compiling)  # the compiler's jobs
    assert [r["neuron_top"]["truth"]["cause"] for r in compiling] == ["warm_up"] * 7
    assert 0 < device_mem(reps[8]) < device_mem(reps[9]) == device_mem(reps[-1])  # graphs and weights arrive
    # the first step starts on the host (tracing, first-execution setup): 0.8 s, device idle, no executions
    first = [r for r in reps if r["neuron_top"]["truth"]["phase"] == "first_step"]
    assert len(first) == 1 and execs(first[0]) == 0 and _util(first[0]) == 0 and device_mem(first[0]) > 0
    assert first[0]["neuron_top"]["truth"]["cause"] == "warm_up"
    assert e.step_times[0] == pytest.approx(e.step_times[-1] + 0.8, abs=0.05 * e.step_times[-1])  # slower
    steady = reps[15:]
    assert all(execs(r) > 0 and _util(r) > 80 for r in steady)
    assert steady[-1]["neuron_top"]["truth"]["cause"] == "none"


def test_executions_times_device_latency_is_the_device_busy_share() -> None:
    e = _engine("trn1.2xlarge", period=1.0)
    reps = [e.step_window() for _ in range(40)]
    n_cores = 2
    rate = np.mean([r["neuron_runtime_data"][0]["report"]["execution_stats"]["execution_summary"]["completed"]
                    for r in reps]) / n_cores
    lat = reps[-1]["neuron_runtime_data"][0]["report"]["execution_stats"]["latency_stats"]
    dev, tot = lat["device_latency"], lat["total_latency"]
    mean_dev = np.trapezoid([dev[q] for q in ("p0", "p25", "p50", "p75", "p99", "p100")], [0, .25, .5, .75, .99, 1])
    util = np.mean([_util(r) for r in reps]) / 100
    m = e.model  # the share of the step a graph occupies the device: compute, HBM stalls, collectives
    occupied = (m.micro_device_s * (m.executions_per_step - 1) + m.tail_device_s) / m.period_s
    assert util - 0.02 <= rate * mean_dev and abs(rate * mean_dev - occupied) < 0.1
    assert tot["p50"] > dev["p50"]  # total = device + the runtime's own time per execution


def test_the_main_thread_and_the_loaders_are_where_the_host_model_puts_them() -> None:
    launch = _engine("trn1.2xlarge", "launch_bound").step_window()
    rt = launch["neuron_runtime_data"][0]["report"]["neuron_runtime_vcpu_usage"]["vcpu_usage"]
    assert (rt["user"] + rt["system"]) / 100 * 8 > 0.9  # the process: a saturated main thread
    starved = _engine("trn1.2xlarge", "input_bound").step_window()
    per = starved["system_data"]["vcpu_usage"]["usage_data"]
    assert sum(v["user"] + v["system"] > 90 for v in per.values()) == 2  # two loader workers, flat out
    rt = starved["neuron_runtime_data"][0]["report"]["neuron_runtime_vcpu_usage"]["vcpu_usage"]
    assert (rt["user"] + rt["system"]) / 100 * 8 < 0.2  # the main thread waits for them


def test_a_leak_grows_memory_then_crashes_out_of_memory_and_releases_it() -> None:
    e = _engine("trn1.2xlarge", "memory_leak")
    reps = [e.step_window() for _ in range(140)]
    mem = [r["neuron_runtime_data"][0]["report"]["memory_used"]["neuron_runtime_used_bytes"]["neuron_device"]
           for r in reps]
    crash = next(i for i, r in enumerate(reps) if r["neuron_top"]["events"])
    assert reps[crash]["neuron_top"]["events"][0]["type"] == "oom"
    assert all(b > a for a, b in zip(mem[: crash - 1], mem[1:crash], strict=True))  # growing until then
    assert mem[crash + 1] == 0 and _util(reps[crash + 1]) == 0  # the process is gone
    assert reps[5]["neuron_top"]["truth"]["cause"] == "memory_leak"
    assert reps[-1]["neuron_top"]["truth"]["cause"] == "out_of_memory"


def _shapley_by_orders(preset, cfg, knobs, causes) -> dict[str, float]:
    """The truth's shares computed here independently: every order of removing the causes."""
    memo: dict = {}

    def tput(removed) -> float:
        key = frozenset(removed)
        if key not in memo:
            memo[key] = _tput(key)
        return memo[key]

    def _tput(removed) -> float:
        change = {k: v for c in removed for k, v in REMOVED[c].items()}
        ideal = "+".join(sorted(IDEAL[c] for c in removed if c in IDEAL))
        m = step_model(preset, cfg, replace(knobs, **change), ideal=ideal)
        return m.tokens_per_step / m.period_s

    base = tput(())
    out = dict.fromkeys(causes, 0.0)
    orders = list(itertools.permutations(causes))
    for order in orders:
        for i, c in enumerate(order):
            out[c] += ((1 - base / tput(order[: i + 1])) - (1 - base / tput(order[:i]))) / len(orders)
    return out


@pytest.mark.parametrize("knobs", [
    {"workers": 2, "cpu_us_per_token": 60.0, "straggler_core": 1, "straggler_factor": 1.3},  # severe + mild
    {"host_sync_ms": 150.0, "idle_cores": 1},
    {"nodes": 4, "link_efficiency": 0.1, "overlap_grad_allreduce": False, "workers": 3, "cpu_us_per_token": 30.0},
    {"straggler_core": 0, "straggler_factor": 1.02},  # too mild to matter: "none"
])
def test_the_truth_is_the_counterfactual_of_the_knobs(knobs) -> None:
    e = _engine("trn1.2xlarge", **knobs)
    truth = e.truth()
    preset = get_preset("trn1.2xlarge")
    cfg, kn, _ = resolve(preset, "healthy", knobs)
    # (no ECC errors in these: a slow core is a straggler, not a hardware error)
    everything = [c for c in REMOVED if c not in ("fp32_precision", "hardware_errors")]
    alone = _shapley_by_orders(preset, cfg, kn, [])  # (the base: nothing removed)
    assert alone == {}
    # the causes that matter: alone, or as the last one removed (a cause hidden behind another)
    matter = [c for c in everything if _shapley_by_orders(preset, cfg, kn, [c])[c] > 1e-4
              or _shapley_by_orders(preset, cfg, kn, [x for x in everything if x != c] + [c])[c] > 1e-4]
    mine = dict.fromkeys(everything, 0.0) | _shapley_by_orders(preset, cfg, kn, matter)
    for c, v in truth["lost"].items():
        assert v == pytest.approx(mine[c], abs=2e-4)
    big = {c: v for c, v in mine.items() if v >= 0.1}
    assert truth["cause"] == (max(big, key=big.get) if big else "none")


@pytest.mark.parametrize(("scenario", "knob", "value"), [
    ("idle_cores", "idle_cores", 4), ("host_sync", "host_sync_ms", 5.0), ("launch_bound", "graphs_per_micro", 2),
    ("memory_leak", "leak_mb_per_s", 1.0), ("hbm_pressure", "extra_tensor_bytes", 0),
])
def test_a_set_knob_wins_over_the_scenarios_default(scenario, knob, value) -> None:
    e = _engine("trn1.32xlarge", scenario, **{knob: value})
    assert getattr(e.knobs, knob) == value
    assert json.loads(json.dumps(e.hello()))["config"]["knobs"][knob] == value


def test_a_hang_stops_the_cores_and_holds_the_memory() -> None:
    e = _engine("trn1.2xlarge", hang_after_s=10.0)
    reps = [e.step_window() for _ in range(30)]

    def mem(r):
        return r["neuron_runtime_data"][0]["report"]["memory_used"]["neuron_runtime_used_bytes"]["neuron_device"]

    assert _util(reps[5]) > 80 and _util(reps[-1]) == 0
    assert mem(reps[-1]) == mem(reps[5]) > 0
    assert reps[-1]["neuron_runtime_data"][0]["report"]["execution_stats"]["execution_summary"]["completed"] == 0
    assert reps[-1]["neuron_top"]["truth"]["cause"] == "hang"


def test_an_out_of_memory_crash_is_an_execution_error() -> None:
    e = _engine("trn1.2xlarge", "memory_leak")
    reps = [e.step_window() for _ in range(140)]
    errs = [r["neuron_runtime_data"][0]["report"]["execution_stats"] for r in reps]
    crashed = [i for i, x in enumerate(errs) if x["execution_summary"]["completed_with_err"]]
    assert len(crashed) == 1 and errs[crashed[0]]["error_summary"]["runtime"] == 1
    assert reps[crashed[0]]["neuron_top"]["events"][0]["type"] == "oom"


def test_link_and_efa_traffic_follow_the_step_timeline() -> None:
    """Gradients cross EFA at the end of a step (the last backward pass and the exposed tail), not
    evenly: at 0.1 s most windows send nothing over EFA and a few send it all, under EFA's bandwidth;
    every step's bytes are the same at any period."""
    fine, coarse = _engine(period=0.1, nodes=4), _engine(period=1.0, nodes=4)
    step = fine.model.period_s
    reps = [fine.step_window() for _ in range(int(3 * step / 0.1))]
    efa = np.array([r["neuron_top"]["efa"]["bytes"] for r in reps], dtype=float)
    links = np.array([sum(r["neuron_top"]["links"]["bytes"]) for r in reps], dtype=float)
    d_efa, d_links = np.diff(efa), np.diff(links)
    bw = reps[0]["neuron_top"]["efa"]["bandwidth_bytes_per_s"]
    assert (d_efa == 0).mean() > 0.5 and d_efa.max() > 0
    assert (d_efa / 0.1 <= bw * 1.0001).all()
    assert d_links.max() > 1.2 * np.median(d_links)  # the gradients' burst on top of the TP traffic
    for _ in range(int(3 * step)):
        last = coarse.step_window()
    # the same bytes per step at either period (within the part of a step either run is into)
    assert last["neuron_top"]["efa"]["bytes"] == pytest.approx(efa[-1], rel=0.4 / 3)


def test_the_wait_for_input_moves_with_the_timeline_and_averages_to_the_model() -> None:
    """An input-bound run waits in the gaps between compute bursts: at 0.1 s some windows wait most of
    the time and some not at all; over a minute the share is the timing model's."""
    e = _engine(scenario="input_bound", period=0.1)
    w = np.array([e.step_window()["neuron_top"]["input"]["wait_frac"] for _ in range(600)])
    assert w.max() > 0.6 and w.min() < 0.05
    assert w.mean() == pytest.approx(e.model.input_wait_s / e.model.period_s, abs=0.01)
