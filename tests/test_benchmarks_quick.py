"""`python -m benchmarks --quick` runs the real programs end to end, so the harness cannot rot."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from benchmarks.simulator import CSV as THROUGHPUT_CSV

from .conftest import ROOT


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (.ci/run installs it)")
def test_quick_benchmark_run(tmp_path) -> None:
    out = tmp_path / "results.json"
    r = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    data = json.loads(out.read_text())
    names = {f["name"] for f in data["figures"]}
    sections = {f["section"] for f in data["figures"]}
    # (the throughput check reads ../shared/reference beside the checkout; without it, it says so)
    expected = {"throughput", "simulator", "telemetry", "startup", "monitors", "profiles", "diagnosis", "cluster"}
    if not THROUGHPUT_CSV.exists():
        expected.discard("throughput")
        assert any("throughput check skipped" in n for n in data["notes"])
    assert sections == expected
    assert any(n.startswith("neuron-top trn1.2xlarge refresh 1s CPU") for n in names)
    for f in data["figures"]:
        assert f["n"] >= 1 and f["min"] <= f["median"] <= f["max"], f
    lat = next(f for f in data["figures"] if f["name"].startswith("end-to-end latency p50"))
    assert 0 <= lat["median"] < 5000  # a timestamp from the future would be a clock bug
    assert "| section | figure |" in r.stdout


def test_versions_before_must_be_an_install(tmp_path) -> None:
    r = subprocess.run([sys.executable, "-m", "benchmarks.versions", "--before", str(tmp_path), "--only-export"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert f"--before {tmp_path}: no neuron-top program in that folder" in r.stderr
    assert "Traceback" not in r.stderr


def test_versions_compares_the_runs_in_pairs() -> None:
    from benchmarks.versions import paired

    # the machine's speed drifts between pairs; the after install is 10 % slower in four pairs of
    # five: the pairs say 1.1, where the ratio of the two medians (1.8 / 2.0) would say 0.9
    before = [1.0, 2.0, 1.0, 2.0, 2.0]
    after = [1.1, 2.2, 1.1, 2.2, 1.8]
    p = paired(before, after)
    assert p["median"] == pytest.approx(1.1)
    assert p["pairs"] == 5 and p["faster"] == 1
    assert p["lo"] <= p["median"] <= p["hi"] and p["lo"] >= 0.9 - 1e-9 and p["hi"] <= 1.1 + 1e-9
    assert p["q1"] <= p["median"] <= p["q3"]
    assert paired(before, after) == p  # (a fixed seed: the same runs give the same interval)
    with pytest.raises(ValueError):
        paired([1.0, 2.0], [1.0])


def test_versions_needs_a_run() -> None:
    r = subprocess.run([sys.executable, "-m", "benchmarks.versions", "--before", sys.prefix + "/bin", "--only-export",
                        "--runs", "0"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "--runs 0: at least 1" in r.stderr
    assert "Traceback" not in r.stderr
