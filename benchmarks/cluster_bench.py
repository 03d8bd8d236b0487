"""The cluster: `devicesim cluster --nodes N`'s CPU, and `neuron-top cluster`'s CPU and RSS for 8,
32 and 64 simulated trn1.32xlarge nodes at 1 s reports, next to the single-node view of one of the
same nodes in the same run."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
import time

from .common import Results, bin_path, stop
from .monitors import _measure_window
from .procstat import measure


def _cluster(folder: str, nodes: int) -> subprocess.Popen:
    p = subprocess.Popen([bin_path("devicesim"), "cluster", "--nodes", str(nodes), "--socket-dir", folder,
                          "--scenario", "slow_node"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len([f for f in os.listdir(folder) if f.endswith(".sock")]) < nodes if os.path.isdir(folder) else True:
        if time.monotonic() > deadline or p.poll() is not None:
            raise RuntimeError("devicesim cluster did not start")
        time.sleep(0.05)
    return p


def run(res: Results) -> None:
    sizes = (8,) if res.quick else (8, 32, 64)
    secs = 5.0 if res.quick else 20.0
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="nt-cluster-bench-") as tmp:
            folder = os.path.join(tmp, "nodes")
            sim = _cluster(folder, n)
            try:
                time.sleep(2)
                res.add("cluster", f"devicesim cluster --nodes {n} (trn1.32xlarge, 1 s), CPU",
                        [measure(sim.pid, secs)["cpu_pct"]], "% of a core")
                view = _measure_window(f"{bin_path('neuron-top')} cluster --connect {folder}", 4.0, secs,
                                       windows=4)
                if view:
                    res.add("cluster", f"neuron-top cluster, {n} nodes at 1 s: CPU", [view["cpu_pct"]], "% of a core")
                    res.add("cluster", f"neuron-top cluster, {n} nodes: peak RSS", [view["rss_mib"]], "MiB")
                via = _through_prometheus(res, folder, n, tmp, secs)
                if via:
                    res.add("cluster", f"neuron-top cluster --prometheus, {n} nodes: CPU", [via["cpu_pct"]],
                            "% of a core")
                    res.add("cluster", f"neuron-top cluster --prometheus, {n} nodes: peak RSS", [via["rss_mib"]],
                            "MiB")
                if n == sizes[0]:
                    one = _measure_window(f"{bin_path('neuron-top')} --connect {folder}/node-00.sock", 4.0, secs,
                                          windows=4)
                    if one:
                        res.add("cluster", "neuron-top single-node view of one of them: CPU", [one["cpu_pct"]],
                                "% of a core")
                        res.add("cluster", "neuron-top single-node view: peak RSS", [one["rss_mib"]], "MiB")
            finally:
                stop(sim)


def _through_prometheus(res: Results, folder: str, n: int, tmp: str, secs: float) -> dict | None:
    """The same nodes through an exporter per node (one `neuron-top exporter --cluster` process) and a
    real Prometheus scraping them every second."""
    prom = shutil.which("prometheus")
    if prom is None:
        res.note("prometheus is not installed: the cluster view through Prometheus was not measured")
        return None
    base = random.randint(20000, 50000)
    web = base + n
    cfg = os.path.join(tmp, "prometheus.yml")
    targets = ", ".join(f"'127.0.0.1:{base + i}'" for i in range(n))
    with open(cfg, "w") as f:
        # (every 5 s: one exporter process serves all N nodes here, where a real cluster runs one per
        # node; at 1 s its 64 scrapes a second outrun one core and the targets time out)
        f.write("global:\n  scrape_interval: 5s\nscrape_configs:\n  - job_name: neuron\n"
                f"    static_configs:\n      - targets: [{targets}]\n")
    procs = [subprocess.Popen([bin_path("neuron-top"), "exporter", "--cluster", folder, "--listen",
                               f"127.0.0.1:{base}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
             subprocess.Popen([prom, f"--config.file={cfg}", f"--storage.tsdb.path={os.path.join(tmp, 'tsdb')}",
                               f"--web.listen-address=127.0.0.1:{web}"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    try:
        time.sleep(20)  # the first scrapes and a 10 s window of utilisation
        return _measure_window(f"{bin_path('neuron-top')} cluster --prometheus http://127.0.0.1:{web}", 4.0, secs,
                               windows=4)
    finally:
        for p in procs:
            stop(p)
