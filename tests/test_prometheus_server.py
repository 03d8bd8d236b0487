"""A real Prometheus server (Debian's `prometheus` package) scraping two `neuron-top exporter`s, each
on a simulated node of its own: every query of AWS's neuron-monitor Grafana dashboard returns data
(shared/reference/neuron-monitor-grafana-queries.md)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from .conftest import bin_path, free_port, free_ports

pytestmark = pytest.mark.e2e

DASHBOARD = [
    "instance_info",
    "count(instance_info)",
    "sum (system_vcpu_count)",
    "avg(sum by (instance_id) (system_vcpu_usage_ratio))",
    "avg(system_memory_used_bytes / system_memory_total_bytes)",
    "count(neuroncore_utilization_ratio > 0)",
    "avg(neuroncore_utilization_ratio)",
    'sum(rate(execution_status_total{status_type="completed"}[1m]))',
    'sum(rate(execution_status_total{status_type!="completed"}[1m]))',
    "avg by (percentile) (execution_latency_seconds)",
    "avg by (neuroncore) (neuroncore_utilization_ratio)",
    "avg by (usage_type) (neuron_runtime_vcpu_usage_ratio)",
    "avg by (memory_location) (sum by (instance_id, memory_location) (neuron_runtime_memory_used_bytes))",
    "avg by (usage_type) (system_vcpu_usage_ratio)",
    "avg(system_memory_used_bytes)",
]
PROMETHEUS = shutil.which("prometheus")



def _query(base: str, q: str) -> list:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": q})
    body = json.loads(urllib.request.urlopen(url, timeout=10).read())
    assert body["status"] == "success", (q, body)
    return body["data"]["result"]


def _prometheus(cfg, tmp_path, web: int) -> subprocess.Popen:
    """Debian's Prometheus on loopback with the configuration `cfg`, its data under `tmp_path`."""
    assert PROMETHEUS is not None
    return subprocess.Popen([PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{web}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop_all(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()


@pytest.fixture
def prometheus_and_two_nodes(tmp_path):
    if PROMETHEUS is None:
        if os.environ.get("CI"):
            pytest.fail("CI installs Debian's prometheus package (.ci/run); it is missing")
        pytest.skip("Debian's prometheus package is not installed (apt-get install prometheus)")
    procs = []
    ports = [free_port(), free_port()]
    run = tmp_path / "run"
    run.mkdir()
    env = {**os.environ, "XDG_RUNTIME_DIR": str(run)}
    try:
        for seed, port in enumerate(ports, start=1):  # (each its own simulator: its own instance id)
            procs.append(subprocess.Popen(
                [bin_path("neuron-top"), "exporter", "--listen", f"127.0.0.1:{port}", "--preset", "trn1.2xlarge",
                 "--seed", str(seed), "--period", "0.5s"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env=env))
        web = free_port()
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n"
                       "  - job_name: neuron\n    static_configs:\n"
                       f"      - targets: ['127.0.0.1:{ports[0]}', '127.0.0.1:{ports[1]}']\n")
        procs.append(_prometheus(cfg, tmp_path, web))
        yield f"http://127.0.0.1:{web}"
    finally:
        _stop_all(procs)


def test_every_dashboard_query_returns_data_from_a_real_prometheus(prometheus_and_two_nodes) -> None:
    base = prometheus_and_two_nodes
    missing = DASHBOARD
    deadline = time.monotonic() + 120  # (a loaded machine: the simulators and the first scrapes take a while)
    while time.monotonic() < deadline:
        try:
            ready = [r for r in _query(base, 'up{job="neuron"}') if r["value"][1] == "1"]
            if len(ready) == 2:
                missing = [q for q in DASHBOARD if not _query(base, q)]
                if not missing and float(_query(base, "count(instance_info)")[0]["value"][1]) == 2:
                    break
        except OSError:
            pass
        time.sleep(1)
    assert not missing, f"no data for: {missing}"
    assert float(_query(base, "count(instance_info)")[0]["value"][1]) == 2  # two nodes, told apart by labels
    per_core = _query(base, "avg by (neuroncore) (neuroncore_utilization_ratio)")
    assert {r["metric"]["neuroncore"] for r in per_core} == {"0", "1"}
    assert all(0 <= float(r["value"][1]) <= 1 for r in per_core)
    assert float(_query(base, 'sum(rate(execution_status_total{status_type="completed"}[1m]))')[0]["value"][1]) > 0


@pytest.fixture
def prometheus_and_a_cluster(tmp_path):
    """A simulated 4-node job with a slow node (devicesim cluster), an exporter per node, and a real
    Prometheus scraping the four."""
    if PROMETHEUS is None:
        if os.environ.get("CI"):
            pytest.fail("CI installs Debian's prometheus package (.ci/run); it is missing")
        pytest.skip("Debian's prometheus package is not installed (apt-get install prometheus)")
    folder = tmp_path / "nodes"
    procs = [subprocess.Popen([bin_path("devicesim"), "cluster", "--nodes", "4", "--preset", "trn1.2xlarge",
                               "--scenario", "slow_node", "--faulty-node", "2", "--socket-dir", str(folder)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 30
        while len(list(folder.glob("*.sock"))) < 4 if folder.exists() else True:
            assert time.monotonic() < deadline and procs[0].poll() is None
            time.sleep(0.05)
        base = free_ports(4)
        ports = [base + i for i in range(4)]
        # one exporter process for the four nodes, node i on port base+i
        procs.append(subprocess.Popen([bin_path("neuron-top"), "exporter", "--cluster", str(folder),
                                       "--listen", f"127.0.0.1:{base}"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        web = free_port()
        cfg = tmp_path / "prometheus.yml"
        targets = ", ".join(f"'127.0.0.1:{p}'" for p in ports)
        cfg.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n"
                       f"  - job_name: neuron\n    static_configs:\n      - targets: [{targets}]\n")
        procs.append(_prometheus(cfg, tmp_path, web))
        yield f"http://127.0.0.1:{web}", procs
    finally:
        _stop_all(procs)


def test_the_cluster_view_through_prometheus_finds_the_slow_node(prometheus_and_a_cluster) -> None:
    from neurontop.core.cluster import PrometheusCluster

    from .test_e2e_tmux import Tmux

    base, procs = prometheus_and_a_cluster
    c = PrometheusCluster(base)
    deadline = time.monotonic() + 90
    found: list = []
    while time.monotonic() < deadline:
        c.poll()
        rows = c.rows()
        found = c.findings(rows)
        if len([r for r in rows if r.state == "LIVE"]) == 4 and any(f.cause == "slow_node" for f in found):
            break
        time.sleep(1)
    assert [f.nodes for f in found if f.cause == "slow_node"] == [("node-02",)], (rows, found)
    missing = DASHBOARD
    while missing and time.monotonic() < deadline + 30:  # AWS's dashboard on the cluster's series
        missing = [q for q in DASHBOARD if not _query(base, q)]
        time.sleep(1)
    assert not missing, f"no data for: {missing}"
    assert float(_query(base, "count(instance_info)")[0]["value"][1]) == 4
    t = Tmux(f"{bin_path('neuron-top')} cluster --prometheus {base}")
    try:
        screen = t.wait_for(r"node-02 holds the job back", timeout=30)
        assert "4 live" in screen
        procs[1].terminate()  # the exporters: Prometheus sees every target down
        t.wait_for(r"node-01\s+DOWN", timeout=30)
        t.wait_for(r"are down")
        t.keys("q")
        assert t.wait_exit() == 0
    finally:
        t.kill()
