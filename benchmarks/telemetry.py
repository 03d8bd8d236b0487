"""The telemetry path: decode speed (neuron-top's decoder vs json.loads), the exporter's scrape, and
end-to-end latency."""

from __future__ import annotations

import json
import os
import tempfile
import time

import numpy as np

from devicesim.engine import Engine, SimConfig, encode
from devicesim.presets import get_preset
from neurontop.core.telemetry.sample import Decoder

from .common import Results, TmuxWindow, bin_path, start_sim, stop


def run(res: Results) -> None:
    reps = 3
    n = 100 if res.quick else 1000
    for preset in ("trn1.32xlarge", "trn2.48xlarge"):
        eng = Engine(SimConfig(get_preset(preset), numerics=False, seed=1))
        lines = [encode(eng.step_window()) for _ in range(min(n, 200))]
        lines = (lines * (n // len(lines) + 1))[:n]
        ours, plain = [], []
        for _ in range(reps):
            d = Decoder()
            t0 = time.perf_counter()
            for line in lines:
                d.decode(line)
            ours.append(n / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            for line in lines:
                json.loads(line)
            plain.append(n / (time.perf_counter() - t0))
        res.add("telemetry", f"{preset} reports decoded/s, neuron-top Decoder (typed, validated, to arrays)", ours,
                "reports/s", size_bytes=len(lines[0]))
        res.add("telemetry", f"{preset} reports parsed/s, json.loads (untyped dicts)", plain, "reports/s")
        res.add("telemetry", f"{preset} Decoder / json.loads speed ratio",
                [a / b for a, b in zip(ours, plain, strict=True)], "x")
    scrape(res)
    latency(res)


def scrape(res: Results) -> None:
    """The exporter's /metrics body for one trn2.48xlarge report (128 cores): prometheus-client's
    generate_latest over neuron-top's collector, in this process (the HTTP server adds its own)."""
    try:
        from prometheus_client import CollectorRegistry, generate_latest

        from neurontop.core.export.prometheus import NeuronCollector
    except ImportError:
        res.note("prometheus-client unavailable: scrape latency skipped")
        return
    from neurontop.core.session import Session
    from neurontop.core.telemetry.sample import Sample
    from neurontop.core.telemetry.sources import Line

    eng = Engine(SimConfig(get_preset("trn2.48xlarge"), numerics=False, seed=1))
    session, c = Session(), NeuronCollector()
    for s in session.run(iter([Line(encode(eng.step_window())) for _ in range(15)])):
        rep = session.decoder.last_report
        if rep is not None and isinstance(s, Sample):  # (a source of lines only: no statuses)
            c.update(rep, s, session.shown)
    reg = CollectorRegistry()
    reg.register(c)
    times = []
    for _ in range(20 if res.quick else 200):
        t0 = time.perf_counter()
        body = generate_latest(reg)
        times.append((time.perf_counter() - t0) * 1e3)
    res.add("telemetry", f"exporter scrape p50, trn2.48xlarge ({len(body) / 1e3:.0f} kB of metrics)",
            [float(np.percentile(times, 50))], "ms")
    res.add("telemetry", "exporter scrape p99", [float(np.percentile(times, 99))], "ms")


def latency(res: Results) -> None:
    """Simulator writes a report (its timestamp) -> the UI has applied it (NEURON_TOP_LATENCY_LOG)."""
    secs = 4.0 if res.quick else 20.0
    tmp = tempfile.mkdtemp(prefix="ntbench-")
    sock = os.path.join(tmp, "sim.sock")
    log = os.path.join(tmp, "latency.log")
    sim = start_sim(sock, "trn1.32xlarge", 0.1)
    w = TmuxWindow(f"{bin_path('neuron-top')} --connect {sock} --refresh 0.1s", env={"NEURON_TOP_LATENCY_LOG": log})
    try:
        time.sleep(2.0 + secs)
        w.keys("q")
        time.sleep(0.5)
    finally:
        w.close()
        stop(sim)
    vals = [float(x) for x in open(log).read().split()] if os.path.exists(log) else []
    vals = vals[5:]  # skip the connection's first reports
    if not vals:
        res.note("latency: no samples recorded")
        return
    arr = np.array(vals) * 1e3
    res.add("telemetry", "end-to-end latency p50 (simulator write -> UI applied), trn1.32xlarge at 10 Hz",
            [float(np.percentile(arr, 50))], "ms", samples=len(arr))
    res.add("telemetry", "end-to-end latency p99", [float(np.percentile(arr, 99))], "ms", samples=len(arr))
