"""`neuron-top exporter`: AWS's neuron-monitor-prometheus.py series (names, types, labels, transforms)
and neuron-top's own, parsed with prometheus_client's text parser; served over real HTTP."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from neurontop.core.export.prometheus import INSTANCE_LABELS, NeuronCollector
from neurontop.core.session import Session
from neurontop.core.telemetry.sources import Line

from .conftest import SAMPLE_JSONL, bin_path, free_port, make_reports, needs_shared

# the reference table (shared/reference/neuron-tools-and-trainium.md §3.1): name -> (type, extra labels)
AWS = {
    "neuroncore_utilization_ratio": ("gauge", {"runtime_tag", "neuroncore"}),
    "neuron_runtime_vcpu_usage_ratio": ("gauge", {"runtime_tag", "usage_type"}),
    "neuron_runtime_memory_used_bytes": ("gauge", {"runtime_tag", "memory_location"}),
    **{f"neuroncore_memory_usage_{c}": ("gauge", {"runtime_tag", "neuroncore", "memory_location"})
       for c in ("constants", "model_code", "model_shared_scratchpad", "runtime_memory", "tensors")},
    "execution_errors": ("counter", {"runtime_tag", "error_type"}),
    "execution_status": ("counter", {"runtime_tag", "status_type"}),
    "execution_latency_seconds": ("gauge", {"runtime_tag", "percentile"}),
    "hardware_ecc_events": ("counter", {"event_type", "neuron_device_index"}),
    "system_vcpu_count": ("gauge", set()),
    "system_vcpu_usage_ratio": ("gauge", {"usage_type"}),
    **{f"system_{k}_bytes": ("gauge", set()) for k in ("memory_total", "memory_used", "swap_total", "swap_used")},
    "instance_info": ("gauge", set()),
    "neuron_hardware_info": ("gauge", {"neuron_device_count", "neuroncore_per_device_count"}),
}


def _scrape(c: NeuronCollector) -> dict:
    reg = CollectorRegistry()
    reg.register(c)
    return {f.name: f for f in text_string_to_metric_families(generate_latest(reg).decode())}


def _fed(lines: list[bytes]) -> tuple[NeuronCollector, Session]:
    c, session = NeuronCollector(), Session()
    for s in session.run(iter([Line(x) for x in lines])):
        c.update(session.decoder.last_report, s, session.shown, session.hints.lost)
    return c, session


@needs_shared
def test_every_aws_metric_with_its_type_labels_and_values() -> None:
    lines = SAMPLE_JSONL.read_bytes().splitlines()
    c, _ = _fed(lines)
    fams = _scrape(c)
    for name, (typ, labels) in AWS.items():
        f = fams.get(name)
        assert f is not None and f.type == typ and f.samples, name
        got = {k for k in f.samples[0].labels if k not in INSTANCE_LABELS}
        assert got == labels and set(INSTANCE_LABELS) <= set(f.samples[0].labels), (name, got)
    doc = json.loads(lines[-1])
    rt = doc["neuron_runtime_data"][0]
    tag = rt["neuron_runtime_tag"] or str(rt["pid"])
    util = {s.labels["neuroncore"]: s.value for s in fams["neuroncore_utilization_ratio"].samples
            if s.labels["runtime_tag"] == tag}
    for core, cc in rt["report"]["neuroncore_counters"]["neuroncores_in_use"].items():
        assert util[core] == pytest.approx(cc["neuroncore_utilization"] / 100)
    used = rt["report"]["memory_used"]["neuron_runtime_used_bytes"]
    mem = {s.labels["memory_location"]: s.value for s in fams["neuron_runtime_memory_used_bytes"].samples}
    assert mem == {"host": used["host"], "neuron_device": used["neuron_device"]}
    p50 = [s.value for s in fams["execution_latency_seconds"].samples if s.labels["percentile"] == "p50"][0]
    assert p50 == pytest.approx(rt["report"]["execution_stats"]["latency_stats"]["total_latency"]["p50"])
    avg = doc["system_data"]["vcpu_usage"]["average_usage"]
    ratio = {s.labels["usage_type"]: s.value for s in fams["system_vcpu_usage_ratio"].samples}
    assert ratio["user"] == pytest.approx(min(100, avg["user"] + avg["nice"]) / 100)
    assert ratio["system"] == pytest.approx(min(100, avg["system"] + avg["io_wait"] + avg["irq"] + avg["soft_irq"]) / 100)
    assert fams["system_vcpu_count"].samples[0].value == len(doc["system_data"]["vcpu_usage"]["usage_data"])
    assert fams["instance_info"].samples[0].labels["instance_type"] == doc["instance_info"]["instance_type"]


def test_counters_add_each_reports_counts_and_gauges_clear_without_a_runtime() -> None:
    lines = make_reports("trn1.2xlarge", "healthy", 6)
    c, _ = _fed(lines[:3])
    before = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for s in _scrape(c)["execution_status"].samples if s.name.endswith("_total")}
    for x in lines[3:]:
        c.update(_report(x))
    after = {(s.name, tuple(sorted(s.labels.items()))): s.value
             for s in _scrape(c)["execution_status"].samples if s.name.endswith("_total")}
    completed = sum(json.loads(x)["neuron_runtime_data"][0]["report"]["execution_stats"]["execution_summary"]["completed"]
                    for x in lines)
    done = [v for k, v in after.items() if ("status_type", "completed") in k[1]]
    assert done == [completed] and all(after[k] >= v for k, v in before.items())
    idle = json.loads(lines[-1])
    idle["neuron_runtime_data"] = []
    c.update(_report(json.dumps(idle).encode()))
    fams = _scrape(c)
    assert not fams["neuroncore_utilization_ratio"].samples  # (AWS's exporter clears them too)
    assert fams["execution_status"].samples  # counters keep their totals
    assert fams["system_memory_total_bytes"].samples


def _report(line: bytes):
    from neurontop.core.telemetry.schema import report_decoder

    return report_decoder.decode(line)


def test_neuron_tops_own_series_and_the_findings() -> None:
    c, session = _fed(make_reports("trn1.32xlarge", "straggler", 20))
    fams = _scrape(c)
    assert [s.labels["cause"] for s in fams["neurontop_finding"].samples] == ["straggler"]
    lost = fams["neurontop_lost_utilization_ratio"].samples
    assert lost[0].labels["cause"] == "straggler" and 0 < lost[0].value <= 1
    assert len(fams["neurontop_neuroncore_flops"].samples) == 32
    assert fams["neurontop_neuronlink_bytes_per_second"].samples[0].labels["link"].startswith("nd")
    assert fams["neurontop_tokens_per_second"].samples[0].value == pytest.approx(session.latest.training.tokens_per_s)



@pytest.mark.e2e
def test_the_exporter_serves_metrics_over_http_from_its_own_simulator(tmp_path) -> None:
    port = free_port()
    env_dir = tmp_path / "run"
    env_dir.mkdir()
    p = subprocess.Popen([bin_path("neuron-top"), "exporter", "--listen", f"127.0.0.1:{port}", "--preset",
                          "trn1.2xlarge", "--period", "0.5s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env={**__import__("os").environ, "XDG_RUNTIME_DIR": str(env_dir)})
    try:
        text = ""
        for _ in range(120):  # (a busy machine: up to a minute for the simulator to start)
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            except OSError:
                text = ""
            if "neuroncore_utilization_ratio{" in text:
                break
            time.sleep(0.5)
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        assert len(fams["neuroncore_utilization_ratio"].samples) == 2
        assert fams["neurontop_neuroncore_flops"].samples
        # a second exporter on the same port: one line, exit 2
        r = subprocess.run([bin_path("neuron-top"), "exporter", "--listen", f"127.0.0.1:{port}", "-"],
                           input=b"", capture_output=True, timeout=60)
        assert r.returncode == 2 and f"127.0.0.1:{port}".encode() in r.stderr and b"Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    finally:
        p.terminate()
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
