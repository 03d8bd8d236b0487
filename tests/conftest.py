"""Shared fixtures: reports made by the real simulator engine (in-process for speed, seeded)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devicesim.engine import Engine, SimConfig, encode
from devicesim.presets import get_preset

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "reference"
SAMPLE_JSONL = SHARED / "neuron-monitor-sample.jsonl"
SAMPLE_JSON = SHARED / "neuron-monitor-sample.json"
REAL_TRN1 = SHARED / "real" / "neuron-monitor-trn1.2xlarge.jsonl"
PRESETS = ("trn1.2xlarge", "trn1.32xlarge", "trn2.48xlarge")


def make_reports(preset: str = "trn1.32xlarge", scenario: str = "healthy", count: int = 30, seed: int = 1,
                 numerics: bool = False, period: float = 1.0, overrides: dict | None = None) -> list[bytes]:
    eng = Engine(SimConfig(get_preset(preset), scenario=scenario, seed=seed, numerics=numerics, period_s=period,
                           overrides=overrides or {}))
    return [encode(eng.step_window()) for _ in range(count)]


def strip_extension(lines: list[bytes]) -> list[bytes]:
    out = []
    for line in lines:
        d = json.loads(line)
        d.pop("neuron_top", None)
        out.append(json.dumps(d).encode())
    return out


def bin_path(name: str) -> str:
    """The installed console script next to this interpreter (what a user runs)."""
    cand = Path(sys.executable).parent / name
    return str(cand) if cand.exists() else (shutil.which(name) or name)


def run_cli(*args: str, input: bytes | None = None, timeout: float = 120, env: dict | None = None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([bin_path("neuron-top"), *args], input=input, capture_output=True, timeout=timeout, env=e)


@pytest.fixture
def reports():
    return make_reports


needs_shared = pytest.mark.skipif(not SAMPLE_JSONL.exists(), reason="shared/reference not beside the checkout")


def free_port() -> int:
    """A TCP port on loopback that nothing listens on (just now)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def free_ports(n: int) -> int:
    """The first of n consecutive free TCP ports on loopback."""
    import random
    import socket

    for _ in range(200):
        base = random.randint(20000, 60000 - n)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {n} consecutive free ports")
