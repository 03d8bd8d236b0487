"""Reports match neuron-monitor's schema; fixed seeds reproduce byte for byte; the decoder reads it all."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from neurontop.core.telemetry.sample import DecodeError, Decoder

from .conftest import PRESETS, REAL_TRN1, SAMPLE_JSON, SAMPLE_JSONL, make_reports, needs_shared


def _kind(v) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if v is None:
        return "null"
    return type(v).__name__


def _compare(ref, got, path: str, problems: list[str]) -> None:
    if isinstance(ref, dict):
        if got is None and path.endswith(("total_latency", "device_latency")):
            return  # documented: null when nothing executed in the period
        if not isinstance(got, dict):
            problems.append(f"{path}: expected object")
            return
        numeric = ref and all(k.isdigit() for k in ref)
        if numeric:  # per-core / per-cpu maps: compare the shape of one entry
            for k, v in got.items():
                if not k.isdigit():
                    problems.append(f"{path}: key {k!r} is not an index")
                _compare(next(iter(ref.values())), v, f"{path}.{k}", problems)
            return
        for k, v in ref.items():
            if k.startswith("v3d") or k.startswith("nc_v3"):
                continue
            if k not in got:
                problems.append(f"{path}.{k}: missing")
            else:
                _compare(v, got[k], f"{path}.{k}", problems)
    elif isinstance(ref, list):
        if not isinstance(got, list):
            problems.append(f"{path}: expected array")
        elif ref and got:
            for i, g in enumerate(got):
                _compare(ref[0], g, f"{path}[{i}]", problems)
    elif ref is not None and got is not None and _kind(ref) != _kind(got):
        problems.append(f"{path}: {_kind(got)} where neuron-monitor has {_kind(ref)}")


@needs_shared
@pytest.mark.parametrize("preset", PRESETS)
def test_every_report_matches_the_neuron_monitor_sample(preset: str) -> None:
    ref = json.loads(SAMPLE_JSON.read_text())
    for line in make_reports(preset, "healthy", 5) + make_reports(preset, "input_bound", 3):
        got = json.loads(line)
        problems: list[str] = []
        _compare(ref, got, "$", problems)
        assert not problems, problems[:10]
        if preset == "trn2.48xlarge":
            c0 = got["neuron_runtime_data"][0]["report"]["neuroncore_counters"]["neuroncores_in_use"]["5"]
            assert set(c0["v3d"]) == {"nc_v3.10", "nc_v3.11"}


def test_fixed_seed_speed_max_streams_are_byte_identical() -> None:
    cmd = [sys.executable, "-m", "devicesim", "serve", "--stdout", "--speed", "max", "--count", "60",
           "--seed", "11", "--preset", "trn1.2xlarge", "--scenario", "input_bound"]
    a = subprocess.run(cmd, capture_output=True, check=True, timeout=120).stdout
    b = subprocess.run(cmd, capture_output=True, check=True, timeout=120).stdout
    assert a == b and a.count(b"\n") == 60
    c = subprocess.run(cmd[:-5] + ["12"] + cmd[-4:], capture_output=True, check=True, timeout=120).stdout
    assert c != a  # a different seed is a different stream


@needs_shared
def test_decoder_reads_the_trn2_sample_with_64_cores() -> None:
    s = Decoder().decode(SAMPLE_JSONL.read_bytes())
    assert s.n_cores == 64 and s.n_devices == 16 and s.cores_per_device == 4
    assert 55 < s.avg_util < 60
    assert s.flops is not None and s.engines is None and not s.has_extension
    assert s.hbm_capacity == 103079215104
    assert len(s.vcpu_busy) == 192


@needs_shared
def test_decoder_reads_the_real_trn1_capture() -> None:
    d = Decoder()
    samples = [d.decode(line) for line in REAL_TRN1.read_bytes().splitlines() if line.strip()]
    assert [s.n_cores for s in samples] == [2, 2, 2]
    assert samples[0].flops is None  # tools of 2022 had no flops field
    assert samples[0].util[0] == pytest.approx(1.3631567613356375)
    assert samples[2].time_s == pytest.approx(sum(s.period_s for s in samples))
    assert samples[0].hbm_capacity == 32 * 2**30  # from the instance type, the report lacks it


def test_decoder_accepts_effective_flops() -> None:
    line = json.dumps({"neuron_runtime_data": [{"pid": 1, "report": {"neuroncore_counters": {
        "period": 1.0, "neuroncores_in_use": {"0": {"neuroncore_utilization": 99.38,
                                                    "effective_flops": 34776185139834}}}}}]})
    s = Decoder().decode(line)
    assert s.flops[0] == 34776185139834


@pytest.mark.parametrize("bad, where", [
    (b'{"neuron_runtime_data": [{"pid": "x"}]}', "neuron_runtime_data[0].pid"),
    (b'{"neuron_runtime_data": [{"report": {"neuroncore_counters": {"neuroncores_in_use": {"0": '
     b'{"neuroncore_utilization": "high"}}}}}]}', "neuroncore_utilization"),
    (b'{"neuron_runtime_data": [{"report": {"neuroncore_counters": {"neuroncores_in_use": {"zero": {}}}}}]}', "zero"),
    (b'{"hello": 1}', "not a neuron-monitor report"),
    (b'{"neuron_runtime_data": [', "not JSON"),
])
def test_decoder_names_the_bad_field(bad: bytes, where: str) -> None:
    with pytest.raises(DecodeError) as err:
        Decoder().decode(bad)
    assert where in str(err.value)


def test_extension_rates_come_from_cumulative_counters() -> None:
    lines = make_reports("trn1.32xlarge", "healthy", 6)
    d = Decoder()
    samples = [d.decode(x) for x in lines]
    s = samples[-1]
    raw = [json.loads(x) for x in lines[-2:]]
    cores0 = [r["neuron_top"]["cores"] for r in raw]
    expect = (cores0[1]["hbm_read_bytes"][0] + cores0[1]["hbm_write_bytes"][0]
              - cores0[0]["hbm_read_bytes"][0] - cores0[0]["hbm_write_bytes"][0])
    assert s.hbm_rate[0] == pytest.approx(expect, rel=1e-6)
    # Skipping a report (a dropped line) still gives the right average rate over the gap.
    d2 = Decoder()
    d2.decode(lines[0])
    s_gap = d2.decode(lines[2])
    per = [json.loads(lines[k])["neuron_runtime_data"][0]["report"]["neuroncore_counters"]["neuroncores_in_use"]
           ["0"]["neuroncore_utilization"] for k in (1, 2)]
    assert abs(s_gap.util[0] - sum(per) / 2) < 0.5  # the two windows the gap covers, averaged
