"""Fault injection, counted: `python -m benchmarks.faults [--bin VENV/bin]`.

Runs the installed `neuron-top` and `devicesim` of a venv (this one by default, or an older
install, to compare) against hostile input of each class and counts the cases that crash: a
traceback, exit 0 with different data, or a stream that stops for the other clients. The inputs are
made here from the simulator with fixed seeds, so two installs meet the same cases. The tests hold
each class to zero (tests/test_*_faults.py); this prints the table for a closing note.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from devicesim.engine import Engine, SimConfig, encode
from devicesim.presets import get_preset


def _reports(n: int, preset: str = "trn1.2xlarge", scenario: str = "input_bound") -> list[bytes]:
    eng = Engine(SimConfig(get_preset(preset), scenario=scenario, seed=1, numerics=False, period_s=0.5))
    return [encode(eng.step_window()) for _ in range(n)]


def paths(obj, prefix=()):
    """Every key path in a JSON document (for mutating it)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield prefix + (k,)
            yield from paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield prefix + (i,)
            yield from paths(v, prefix + (i,))


HOSTILE = [2**63, 2**64 + 5, -(2**63) - 1, 1e308, -1, "³", "", None, True, [], {}, [1] * 3000, 10**18]
KEYS = ["³", "99999999", "-1", " 1", "٣", "0" * 300]


def _mutations(base: list[dict], n: int, rng: random.Random) -> list[bytes]:
    out = []
    for _ in range(n):
        rep = copy.deepcopy(rng.choice(base))
        key_paths = list(paths(rep))
        for _ in range(rng.randint(1, 3)):
            path = rng.choice(key_paths)
            obj = rep
            try:
                for p in path[:-1]:
                    obj = obj[p]
                if rng.random() < 0.25 and isinstance(obj, dict):
                    obj[rng.choice(KEYS)] = obj.pop(path[-1])
                else:
                    obj[path[-1]] = rng.choice(HOSTILE)
            except (KeyError, IndexError, TypeError):
                pass
        out.append(json.dumps(rep).encode())
    return out


def _crashed(r: subprocess.CompletedProcess) -> bool:
    return b"Traceback" in r.stderr or r.returncode not in (0, 1, 2)


def reports_class(bin_dir: Path, tmp: Path, n: int) -> tuple[int, int]:
    """Each mutated report in a log between good ones, exported with --skip-bad."""
    good = _reports(4)
    base = [json.loads(x) for x in good]
    base += [{k: v for k, v in r.items() if k != "neuron_top"} for r in base]
    crashes = 0
    for i, line in enumerate(_mutations(base, n, random.Random(2026))):
        log = tmp / f"m{i}.jsonl"
        log.write_bytes(b"\n".join([good[0], line, good[1]]) + b"\n")
        r = subprocess.run([bin_dir / "neuron-top", "export", str(log), "-o", "-", "--skip-bad"], capture_output=True)
        crashes += _crashed(r) or r.returncode != 0
    return n, crashes


def _start(bin_dir: Path, sock: str) -> subprocess.Popen:
    p = subprocess.Popen([bin_dir / "devicesim", "serve", "--socket", sock, "--preset", "trn1.2xlarge", "--no-numerics",
                          "--period", "0.1s"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not os.path.exists(sock) and time.monotonic() < deadline:
        time.sleep(0.05)
    return p


def _still_streaming(f, timeout: float = 5.0) -> bool:
    f.raw._sock.settimeout(timeout)  # (the makefile's socket)
    try:
        for _ in range(40):
            line = f.readline()
            if not line:
                return False
            if not line.startswith(b'{"type"') and not line.startswith(b'{"protocol"'):
                return True
    except OSError:
        return False
    return False


BAD_KNOBS = [("host_sync_ms", "nan"), ("host_sync_ms", "inf"), ("workers", "abc"), ("workers", 0), ("workers", -3),
             ("workers", 2.5), ("workers", True), ("link_efficiency", 0), ("link_efficiency", -1),
             ("straggler_factor", 0), ("dtype", "fp8"), ("seq", 0), ("micro_batch", -1), ("nodes", 0),
             ("idle_cores", 10**6), ("prefetch", 0), ("cpu_us_per_token", -5), ("recompute", 3)]
HOSTILE_REQUESTS = [b"[" * 30000 + b"]" * 30000, b'{"type":"control","x":' + b"9" * 5000 + b"}",
                    b'{"type":"hello","protocol":"neuron-top-telemetry","version":true}']


def server_class(bin_dir: Path, tmp: Path) -> tuple[int, int]:
    """A bad knob or a hostile request from one client; a crash is the other client's stream stopping
    (or the server's traceback, or a hostile request answered with no error notice)."""
    crashes = 0
    cases: list[bytes] = []
    for knob, value in BAD_KNOBS:
        v = float(value) if value in ("nan", "inf") else value
        cases.append(json.dumps({"type": "control", "set": {knob: v}}).encode())
    cases += HOSTILE_REQUESTS
    for i, req in enumerate(cases):
        sock = str(tmp / f"s{i}.sock")
        sim = _start(bin_dir, sock)
        try:
            a = socket.socket(socket.AF_UNIX)
            a.connect(sock)
            fa = a.makefile("rb")
            b = socket.socket(socket.AF_UNIX)
            b.connect(sock)
            fb = b.makefile("rb")
            fb.readline()
            b.sendall(req + b"\n")
            b.settimeout(5)
            answered = False
            try:
                for _ in range(60):
                    line = fb.readline()
                    if not line:
                        break
                    if line.startswith(b'{"type"'):
                        answered = json.loads(line).get("type") in ("error", "control_error")
                        if answered:
                            break
            except OSError:
                pass
            ok = _still_streaming(fa) and answered
        finally:
            sim.terminate()
            try:
                err = sim.communicate(timeout=10)[1]
            except subprocess.TimeoutExpired:
                sim.kill()
                err = sim.communicate()[1]
                ok = False  # it ignored SIGTERM
        crashes += (not ok) or b"Traceback" in err
    return len(cases), crashes


def profile_class(bin_dir: Path, tmp: Path, n: int) -> tuple[int, int]:
    """Bit flips in a profile: a crash is a traceback or exit 0 with different CSV or verdict."""
    path = tmp / "base.ntprof"
    lines = b"\n".join(_reports(700)) + b"\n"
    (tmp / "base.jsonl").write_bytes(lines)
    subprocess.run([bin_dir / "neuron-top", "import", str(tmp / "base.jsonl"), "-o", str(path)], check=True,
                   capture_output=True)
    nt = bin_dir / "neuron-top"
    ref_csv = subprocess.run([nt, "export", str(path), "-o", "-", "--fields", "all"], capture_output=True).stdout

    def verdict(p: Path):
        r = subprocess.run([nt, "diagnose", str(p), "--json"], capture_output=True)
        if r.returncode == 2 or b"Traceback" in r.stderr:
            return r.returncode, None
        d = json.loads(r.stdout)
        d.pop("source", None)
        return r.returncode, d

    ref_v = verdict(path)
    data = path.read_bytes()
    rng = random.Random(7)
    crashes = 0
    for i in range(n):
        b = bytearray(data)
        pos = rng.randrange(len(b))
        b[pos] ^= 1 << rng.randrange(8)
        p = tmp / f"f{i}.ntprof"
        p.write_bytes(bytes(b))
        r = subprocess.run([nt, "export", str(p), "-o", "-", "--fields", "all"], capture_output=True)
        bad = _crashed(r) or (r.returncode == 0 and r.stdout != ref_csv)
        rc, v = verdict(p)
        bad = bad or (rc != 2 and (v is None or v != ref_v[1]))
        crashes += bad
    return n, crashes


def log_class(bin_dir: Path, tmp: Path) -> tuple[int, int]:
    """Damaged or odd logs: a crash is a traceback, or exit 0 where the input is broken (or an error
    where it is merely odd: a BOM, a captured hello)."""
    import zstandard

    good = _reports(40)
    raw = b"\n".join(good) + b"\n"
    rep = json.loads(good[0])
    rep["neuron_runtime_data"][0]["report"]["memory_used"]["neuron_runtime_used_bytes"]["usage_breakdown"][
        "neuroncore_memory_usage"]["0"]["tensors"] = 2**63
    big = json.dumps(rep).encode()
    rep = json.loads(good[0])
    rep["neuron_runtime_data"][0]["report"]["neuroncore_counters"]["period"] = 1e308
    per = json.dumps(rep).encode()
    rep.pop("neuron_top")
    per_plain = json.dumps(rep).encode()
    gz = bytearray(gzip.compress(raw))
    gz[len(gz) // 2] ^= 0x40
    z = zstandard.ZstdCompressor().compress(raw)
    hello = json.dumps({"protocol": "neuron-top-telemetry", "version": 1}).encode()
    cases = [("flip.jsonl.gz", bytes(gz), "error"), ("empty.jsonl", b"", "error")]
    cases += [(f"cut{k}.jsonl.zst", z[: len(z) * k // 10], "error") for k in (3, 6, 9)]
    cases += [("big.jsonl", raw + big + b"\n", "error"), ("period.jsonl", raw + per + b"\n", "error"),
              ("period-plain.jsonl", per_plain + b"\n" + raw, "error"),
              ("bom.jsonl", b"\xef\xbb\xbf" + raw, "ok"), ("hello.jsonl", hello + b"\n" + raw, "ok")]
    crashes = 0
    total = 0
    for name, content, want in cases:
        p = tmp / name
        p.write_bytes(content)
        for cmd in (["export", str(p), "-o", "-"], ["import", str(p), "-o", str(tmp / (name + ".ntprof"))]):
            total += 1
            r = subprocess.run([bin_dir / "neuron-top", *cmd], capture_output=True)
            wrong = (r.returncode == 0) if want == "error" else (r.returncode != 0)
            left = want == "error" and cmd[0] == "import" and (tmp / (name + ".ntprof")).exists()
            crashes += b"Traceback" in r.stderr or wrong or left
    return total, crashes


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.dirname(sys.executable), help="the venv's bin folder to test")
    ap.add_argument("--reports", type=int, default=200)
    ap.add_argument("--flips", type=int, default=20)
    args = ap.parse_args()
    bin_dir = Path(args.bin)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows.append(("report mutations (decode, export --skip-bad)", *reports_class(bin_dir, tmp, args.reports)))
        rows.append(("server: bad knobs and hostile requests", *server_class(bin_dir, tmp)))
        rows.append(("profile bit flips (export, diagnose)", *profile_class(bin_dir, tmp, args.flips)))
        rows.append(("damaged or odd logs (export, import)", *log_class(bin_dir, tmp)))
    print(f"| input class ({bin_dir}) | cases | crashes or wrong outcomes |\n|---|---|---|")
    for name, n, c in rows:
        print(f"| {name} | {n} | {c} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
